"""Save a SentenceTransformer in the widely-read module format, atomically.

sentence-transformers >= 5.4 writes a compact layout (``sentence_transformers.base.modules...``
module paths, ``{"pooling_mode": "mean"}`` pooling configs, no ``max_seq_length``) that older
sentence-transformers releases and serving stacks (TEI, infinity, vLLM) cannot read. We save with
sentence-transformers and then rewrite the three files those readers need:

* ``modules.json`` with ``sentence_transformers.models.<Class>`` types;
* ``1_Pooling/config.json`` with ``word_embedding_dimension`` and boolean ``pooling_mode_*`` flags;
* ``sentence_bert_config.json`` with ``max_seq_length`` and ``do_lower_case``.

Current sentence-transformers reads this layout too (it converts legacy keys on load). Prompts stay
in ``config_sentence_transformers.json``. The folder is written beside the target and swapped in,
so a crash never leaves a half-written model.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embedforge.utils.io import make_staging_dir

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

# class name -> legacy import path every sentence-transformers version understands
_LEGACY_MODULE_TYPES = {
    "Transformer": "sentence_transformers.models.Transformer",
    "Pooling": "sentence_transformers.models.Pooling",
    "Normalize": "sentence_transformers.models.Normalize",
    "Dense": "sentence_transformers.models.Dense",
    "LayerNorm": "sentence_transformers.models.LayerNorm",
    "Dropout": "sentence_transformers.models.Dropout",
}

_LEGACY_POOLING_FLAGS = {
    "cls": "pooling_mode_cls_token",
    "mean": "pooling_mode_mean_tokens",
    "max": "pooling_mode_max_tokens",
    "mean_sqrt_len_tokens": "pooling_mode_mean_sqrt_len_tokens",
    "weightedmean": "pooling_mode_weightedmean_tokens",
    "lasttoken": "pooling_mode_lasttoken",
}


# keys newer sentence-transformers writes to sentence_bert_config.json, with their default values
_NEW_TRANSFORMER_DEFAULTS: dict[str, Any] = {
    "transformer_task": "feature-extraction",
    "modality_config": {"text": {"method": "forward", "method_output_name": "last_hidden_state"}},
    "module_output_name": "token_embeddings",
}


def legacy_pooling_config(pooling: Any) -> dict[str, Any]:
    """The wide ``1_Pooling/config.json`` for a sentence-transformers ``Pooling`` module."""
    modes = pooling.pooling_mode if isinstance(pooling.pooling_mode, tuple) else (pooling.pooling_mode,)
    config: dict[str, Any] = {"word_embedding_dimension": int(pooling.embedding_dimension)}
    for mode, flag in _LEGACY_POOLING_FLAGS.items():
        config[flag] = mode in modes
    config["include_prompt"] = bool(pooling.include_prompt)
    return config


def save_model(
    model: SentenceTransformer,
    path: str | os.PathLike[str],
    *,
    prompts: dict[str, str] | None = None,
    default_prompt_name: str | None = None,
    extra_files: dict[str, str] | None = None,
) -> Path:
    """Save ``model`` to ``path`` in the widely-read format (atomically replacing ``path``).

    Args:
        model: the model to save.
        path: target folder; replaced as a whole if it exists.
        prompts: prompts to store (``{"query": "Instruct: ...\\nQuery: ", "document": "", ...}``),
            merged over the model's own.
        default_prompt_name: stored as the model's default prompt name.
        extra_files: ``{relative_path: text}`` written into the folder too (e.g. ``README.md``).

    Returns:
        The folder written.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if prompts:
        model.prompts = {**(model.prompts or {}), **prompts}
    if default_prompt_name is not None:
        model.default_prompt_name = default_prompt_name
    staging = make_staging_dir(target, "saving")  # the umask's permissions, not mkdtemp's 0700
    try:
        model.save(str(staging), safe_serialization=True)
        _rewrite_legacy_format(model, staging)
        for relative, text in (extra_files or {}).items():
            (staging / relative).parent.mkdir(parents=True, exist_ok=True)
            (staging / relative).write_text(text, encoding="utf-8")
        _swap_in(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _rewrite_legacy_format(model: SentenceTransformer, folder: Path) -> None:
    modules_file = folder / "modules.json"
    entries = json.loads(modules_file.read_text())
    for entry, module in zip(entries, model, strict=True):
        name = type(module).__name__
        if name in _LEGACY_MODULE_TYPES:
            entry["type"] = _LEGACY_MODULE_TYPES[name]
        module_dir = folder / entry["path"]
        if name == "Pooling":
            (module_dir / "config.json").write_text(json.dumps(legacy_pooling_config(module), indent=2) + "\n")
        elif name == "Transformer":
            config_file = module_dir / "sentence_bert_config.json"
            saved = json.loads(config_file.read_text()) if config_file.is_file() else {}
            # Older releases pass this file's keys to Transformer(**kwargs) and fail on the newer
            # keys; drop those that hold their defaults (they are implied when absent).
            # drop them only as a group: a non-default modality_config needs its module_output_name too
            all_default = all(saved.get(key, value) == value for key, value in _NEW_TRANSFORMER_DEFAULTS.items())
            config = {
                key: value for key, value in saved.items() if not (all_default and key in _NEW_TRANSFORMER_DEFAULTS)
            }
            config["max_seq_length"] = module.max_seq_length
            config["do_lower_case"] = bool(getattr(module, "do_lower_case", False))
            config_file.write_text(json.dumps(config, indent=2) + "\n")
    modules_file.write_text(json.dumps(entries, indent=2) + "\n")


def _swap_in(staging: Path, target: Path) -> None:
    """Replace ``target`` by ``staging`` with two renames (the old folder is removed afterwards)."""
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
        os.replace(staging, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, target)
