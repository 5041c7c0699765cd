"""Check a whole recipe before its first stage runs, so a mistake in stage 3 does not surface after hours of stage 1.

The loader checks each stage's keys and types; :func:`validate_recipe` checks what needs the disk or the order of
stages, for every stage that is going to run:

* every data file, task directory and model folder it names exists (``@stage/...`` files are made by an earlier
  stage, so only that stage's order is checked, by the loader);
* ``init`` / ``model`` / ``teacher`` name ``base``, an earlier stage, a preset or a folder, not a later stage;
* Matryoshka and evaluation dimensions are at most the model's dimension, read from its config files (no weights
  are loaded; a stage keeps the dimension of the model it starts from);
* learning rate > 0, weight decay >= 0, warm-up ratio in [0, 1], every loss ``temperature`` / ``scale`` > 0, and a
  warning for a temperature below :data:`LOW_TEMPERATURE` (logits of 1/T overflow fp16/bf16 and train on noise).

Each problem is a :class:`~embedforge.errors.ConfigError` naming ``<recipe>: stages.<stage>.<key>`` and the value.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from typing import Any

from embedforge.errors import ConfigError, did_you_mean
from embedforge.recipes.stage_paths import is_stage_path

logger = logging.getLogger(__name__)

LOW_TEMPERATURE = 1e-3  # below this an InfoNCE temperature gets a warning (papers use 0.01 to 0.05)


def validate_recipe(recipe: Any, skip: Collection[str] = ()) -> None:
    """Check every stage of ``recipe`` not in ``skip`` (finished stages, on ``--resume``) and its final eval.

    Raises:
        ConfigError: the first problem, naming the recipe file, the key and the value.
    """
    source = recipe.source or "recipe"
    names = list(recipe.stages)
    base_dim = _model_dimension(recipe.model.base)
    for position, (name, config) in enumerate(recipe.stages.items()):
        if name in skip:
            continue
        where = f"{source}: stages.{name}"
        earlier = names[:position]
        dim = base_dim
        for key in ("init", "model", "teacher"):
            ref = getattr(config, key, None)
            if isinstance(ref, str):
                folder = _check_model_ref(ref, names, earlier, f"{where}.{key}")
                if folder is not None and key != "teacher":
                    dim = _model_dimension(folder)
        for ref in getattr(config, "models", None) or []:  # merge ingredients: "stage", "stage/checkpoint-N"
            head = ref.split("/", 1)[0]
            if head in names and head not in earlier:
                raise ConfigError(f"{where}.models: {ref!r} refers to stage {head!r}, which does not run before it")
            if head not in names and ref != "base":
                _check_model_ref(ref, names, earlier, f"{where}.models")
        for index, dataset in enumerate(getattr(config, "datasets", None) or []):
            path = getattr(dataset, "path", None)
            if isinstance(path, str) and not is_stage_path(path) and not Path(path).exists():
                raise ConfigError(f"{where}.datasets[{index}].path: {path} does not exist (dataset {dataset.name!r})")
        for key in ("decontaminate_against", "tasks", "task_root", "corpus"):
            _check_paths_exist(getattr(config, key, None), f"{where}.{key}")
        matryoshka = getattr(config, "matryoshka", None)
        if matryoshka is not None:
            _check_dims(matryoshka.dims, dim, f"{where}.matryoshka.dims")
        if getattr(config, "type", None) == "eval":
            _check_dims(getattr(config, "dims", None), dim, f"{where}.dims")
        _check_optimizer(config, where)
        for key, options in _loss_options(config):
            _check_loss_values(options, f"{where}.{key}")
    if recipe.eval is not None:
        _check_paths_exist(recipe.eval.tasks, f"{source}: eval.tasks")
        _check_paths_exist(recipe.eval.task_root, f"{source}: eval.task_root")
        _check_dims(recipe.eval.dims, base_dim, f"{source}: eval.dims")


def _check_model_ref(ref: str, names: list[str], earlier: list[str], where: str) -> str | None:
    """A stage's model reference; returns the folder when it names one (else ``None``: base, a stage, a preset)."""
    from embedforge.models.presets import get_preset

    if ref == "base" or ref in earlier or get_preset(ref) is not None:
        return None
    if ref in names:
        raise ConfigError(f"{where}: {ref!r} is a stage that does not run before this one; use an earlier stage")
    if not Path(ref).is_dir():
        raise ConfigError(
            f"{where}: {ref!r} is neither 'base', an earlier stage, a preset nor a model folder."
            f"{did_you_mean(Path(ref).name, ['base', *earlier])}"
        )
    return ref


def _check_paths_exist(value: Any, where: str) -> None:
    for path in [value] if isinstance(value, str) else list(value or []):
        if isinstance(path, str) and not is_stage_path(path) and not Path(path).exists():
            raise ConfigError(f"{where}: {path} does not exist")


def _check_dims(dims: Any, model_dim: int | None, where: str) -> None:
    if not dims or model_dim is None:
        return
    too_large = [d for d in dims if d > model_dim]
    if too_large:
        raise ConfigError(f"{where}: {too_large} exceed the model's dimension {model_dim}; use dims <= {model_dim}")


def _check_optimizer(config: Any, where: str) -> None:
    rules = {
        "learning_rate": (lambda v: v > 0, "> 0"),
        "weight_decay": (lambda v: v >= 0, ">= 0"),
        "warmup_ratio": (lambda v: 0 <= v <= 1, "between 0 and 1"),
    }
    for key, (ok, wanted) in rules.items():
        value = getattr(config, key, None)
        if isinstance(value, int | float) and not (math.isfinite(value) and ok(value)):
            raise ConfigError(f"{where}.{key}: must be {wanted}, got {value}")


def _loss_options(config: Any) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(key, options) for the stage's loss mappings: ``loss``, ``cosent``, ``loss_overrides.<dataset>``."""
    for key in ("loss", "cosent"):
        options = getattr(config, key, None)
        if isinstance(options, Mapping):
            yield key, options
    for dataset, options in (getattr(config, "loss_overrides", None) or {}).items():
        if isinstance(options, Mapping):
            yield f"loss_overrides.{dataset}", options


def _check_loss_values(options: Mapping[str, Any], where: str) -> None:
    for key in ("temperature", "scale", "listwise_temperature"):
        value = options.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or not (math.isfinite(value) and value > 0):
            raise ConfigError(f"{where}.{key}: must be a number > 0, got {value!r}")
        if key == "temperature" and value < LOW_TEMPERATURE:
            logger.warning(
                "%s.temperature: %g is very low (logits are similarities x %g); the papers use 0.01-0.05",
                where,
                value,
                1 / value,
            )
    inner = options.get("loss")
    if isinstance(inner, Mapping):
        _check_loss_values(inner, f"{where}.loss")


def _model_dimension(ref: str) -> int | None:
    """The embedding dimension of a model folder or preset, from its config files; ``None`` when unknown."""
    from embedforge.models.presets import get_preset

    try:
        preset = get_preset(ref)
        folder = preset.resolve() if preset is not None else Path(ref)
    except Exception:  # a preset whose package is missing: the stage that loads it says so
        return None
    folder = Path(folder)
    modules = _read_json(folder / "modules.json")
    if isinstance(modules, list):  # a SentenceTransformer folder: the last module that sets a dimension
        dim = None
        for entry in modules:
            sub = folder / entry.get("path", "")
            kind = str(entry.get("type", ""))
            if kind.endswith("Transformer"):
                dim = _hidden_size(_read_json(sub / "config.json") or _read_json(folder / "config.json")) or dim
            elif kind.endswith("Pooling"):
                pooling = _read_json(sub / "config.json") or {}
                dim = pooling.get("word_embedding_dimension") or pooling.get("embedding_dimension") or dim
            elif kind.endswith("Dense"):
                dim = (_read_json(sub / "config.json") or {}).get("out_features") or dim
        return int(dim) if dim else None
    return _hidden_size(_read_json(folder / "config.json"))


def _hidden_size(config: Any) -> int | None:
    if not isinstance(config, Mapping):
        return None
    for key in ("hidden_size", "d_model", "n_embd", "dim"):
        if isinstance(config.get(key), int):
            return config[key]
    return _hidden_size(config.get("text_config"))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


# keys of a stage that was interrupted (it has checkpoints) that --resume can change: the train stage applies the
# recipe's learning rate to the restored optimizer and scheduler, and the Trainer takes max_steps from the recipe
RESUMABLE_CHANGES = ("learning_rate", "max_steps")
# top-level keys that do not touch what earlier stages computed
_FREE_TOP_LEVEL = ("name", "description", "eval", "output_dir", "source")


def check_resume_changes(
    saved: Mapping[str, Any], current: Mapping[str, Any], started: Collection[str], finished: Collection[str]
) -> dict[str, dict[str, tuple[Any, Any]]]:
    """Compare the recipe saved by the run being resumed with the one given now.

    Args:
        saved: the plain recipe from ``recipe.resolved.yaml``.
        current: the plain recipe now.
        started: stages with checkpoints but not finished (they continue where they stopped).
        finished: stages that will be skipped.

    Returns:
        ``{stage: {key: (old, new)}}``: the changes that take effect (:data:`RESUMABLE_CHANGES` of a started stage).

    Raises:
        ConfigError: naming every changed key that cannot take effect (of a finished stage, of a started stage
            other than :data:`RESUMABLE_CHANGES`, or a top-level key such as ``seed``/``model`` once a stage ran).
    """
    refused: list[str] = []
    applied: dict[str, dict[str, tuple[Any, Any]]] = {}
    ran = set(started) | set(finished)
    if ran:
        for key in sorted(set(saved) | set(current)):
            if key not in ("stages", *_FREE_TOP_LEVEL) and saved.get(key) != current.get(key):
                refused += _changed_keys(saved.get(key), current.get(key), key)
    saved_stages, current_stages = saved.get("stages") or {}, current.get("stages") or {}
    for name in [n for n in current_stages if n in ran]:
        old, new = saved_stages.get(name), current_stages.get(name)
        for key in _changed_keys(old, new, f"stages.{name}"):
            field = key[len(f"stages.{name}.") :]
            if name in started and field in RESUMABLE_CHANGES:
                applied.setdefault(name, {})[field] = (old.get(field), new.get(field))
            else:
                refused.append(key)
    if refused:
        raise ConfigError(
            f"the recipe differs from the one this run started with ({', '.join(refused)}): those changes cannot "
            f"apply to stages that already ran. Resuming can change {' and '.join(RESUMABLE_CHANGES)} of the "
            "interrupted stage; otherwise undo them, or start over with --overwrite or another --output-dir"
        )
    for name, changes in applied.items():
        for field, (old, new) in changes.items():
            logger.warning("resuming stage %s with %s %s (it was %s)", name, field, new, old)
    return applied


def _changed_keys(old: Any, new: Any, prefix: str) -> list[str]:
    """Dotted keys where two plain values differ (mappings compared key by key, anything else whole)."""
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        keys = list(dict.fromkeys([*old, *new]))
        return [k for key in keys for k in _changed_keys(old.get(key), new.get(key), f"{prefix}.{key}")]
    return [] if old == new else [prefix]


def check_before_running(recipe: Any, output: Path, *, resume: bool) -> None:
    """What the runner checks before it writes anything: the stages to run, and on ``--resume`` the recipe's changes.

    Raises:
        ConfigError: see :func:`validate_recipe` and :func:`check_resume_changes`.
    """
    from embedforge.training.checkpoints import last_complete_checkpoint
    from embedforge.utils.config import to_plain
    from embedforge.utils.yaml_io import load_yaml

    finished = {n for n in recipe.stages if resume and (output / n / "stage.json").is_file()}
    validate_recipe(recipe, skip=finished)
    saved_file = output / "recipe.resolved.yaml"
    if not resume or not saved_file.is_file():
        return
    # a stage continues only from a complete checkpoint; without one it starts afresh and may change freely
    started = {
        n for n in recipe.stages if n not in finished and last_complete_checkpoint(output / n, remove_incomplete=False)
    }
    saved = load_yaml(saved_file.read_text(encoding="utf-8")) or {}
    check_resume_changes(saved, to_plain(recipe), started, finished)
