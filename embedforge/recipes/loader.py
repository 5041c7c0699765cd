"""Load a recipe YAML: parse, apply ``--set`` overrides, resolve paths, validate into dataclasses.

* Relative paths written **in the YAML file** are relative to that file's folder (so a recipe can be
  run from anywhere); paths given with ``--set`` are relative to the current directory.
* ``--set stages.finetune.loss.gamma=0.5``: dotted key path (list items by index, e.g.
  ``stages.finetune.datasets.0.max_rows=100``), value parsed as YAML (``0.5`` -> float, ``[1, 2]`` -> list).
* Every problem names the file and the key path.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from embedforge.errors import ConfigError, did_you_mean
from embedforge.recipes import stages as _stages  # noqa: F401 - importing the stage modules registers them
from embedforge.recipes.schema import STAGE_TYPES, Recipe
from embedforge.recipes.stage_paths import check_stage_paths
from embedforge.utils.config import dataclass_from_dict


def load_recipe(path: str | os.PathLike[str], overrides: Sequence[str] = ()) -> Recipe:
    """Read ``path`` and return the validated :class:`Recipe` (with ``overrides`` applied)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: recipe file not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{line}: invalid YAML ({error.problem})") from None
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{path}: a recipe must be a YAML mapping (name, model, stages, ...)")
    data = _resolve_paths(copy.deepcopy(dict(raw)), path.parent.resolve(), str(path))
    for override in overrides:
        apply_override(data, override)
    return recipe_from_dict(data, str(path))


def recipe_from_dict(data: Mapping[str, Any], source: str = "recipe") -> Recipe:
    """Validate a recipe mapping (paths already resolved) into a :class:`Recipe`."""
    data = dict(data)
    stages = data.pop("stages", None)
    if not isinstance(stages, Mapping) or not stages:
        raise ConfigError(f"{source}: stages: a recipe needs a mapping of at least one stage (name -> config)")
    data.pop("source", None)
    recipe = dataclass_from_dict(Recipe, {**data, "stages": {}}, source)
    typed: dict[str, Any] = {}
    for name, stage in stages.items():
        where = f"{source}: stages.{name}"
        if not isinstance(stage, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {type(stage).__name__}")
        kind = stage.get("type", "train")
        if kind not in STAGE_TYPES:
            raise ConfigError(f"{where}.type: unknown stage type {kind!r}.{did_you_mean(str(kind), STAGE_TYPES)}")
        stage_type = STAGE_TYPES[kind]
        config = dataclass_from_dict(stage_type.config_class, {**stage, "type": kind}, where)
        validate = getattr(stage_type.run, "validate", None)
        if validate is not None:
            validate(config, where)
        typed[str(name)] = config
    check_stage_paths(typed, source)
    recipe.stages = typed
    recipe.source = source
    return recipe


def apply_override(data: dict[str, Any], override: str) -> None:
    """Apply one ``a.b.c=value`` override to the raw recipe mapping in place."""
    key, sep, text = override.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {override!r}: expected KEY=VALUE, e.g. stages.finetune.loss.gamma=0.5")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = text
    parts = key.strip().split(".")
    node: Any = data
    for depth, part in enumerate(parts[:-1]):
        where = ".".join(parts[: depth + 1])
        if isinstance(node, list):
            node = node[_index(part, node, where, override)]
        else:
            if part not in node or node[part] is None:
                node[part] = {}
            node = node[part]
        if not isinstance(node, dict | list):
            raise ConfigError(f"--set {override!r}: {where} is a {type(node).__name__}, not a mapping or list")
    last = parts[-1]
    if isinstance(node, list):
        node[_index(last, node, key, override)] = value
    else:
        node[last] = value


def _index(part: str, node: list[Any], where: str, override: str) -> int:
    if not part.lstrip("-").isdigit() or not -len(node) <= int(part) < len(node):
        raise ConfigError(f"--set {override!r}: {where}: expected a list index below {len(node)}, got {part!r}")
    return int(part)


def _resolve_paths(data: dict[str, Any], base: Path, source: str) -> dict[str, Any]:
    """Make the recipe file's relative paths absolute (relative to the file's folder)."""
    from embedforge.models.presets import get_preset

    def resolve(value: Any) -> Any:
        # "@stage/..." paths are relative to the run's output folder, resolved when the stage runs (stage_paths)
        if isinstance(value, str) and value and not os.path.isabs(value) and "://" not in value and value[0] != "@":
            return str((base / value).resolve())
        return value

    if isinstance(data.get("output_dir"), str):
        data["output_dir"] = resolve(data["output_dir"])
    model = data.get("model")
    if isinstance(model, Mapping) and isinstance(model.get("base"), str) and get_preset(model["base"]) is None:
        model["base"] = resolve(model["base"])
    evaluation = data.get("eval")
    if isinstance(evaluation, Mapping):
        _resolve_fields(evaluation, ("tasks", "task_root"), resolve)
    stages = data.get("stages")
    if isinstance(stages, Mapping):
        for stage in stages.values():
            if not isinstance(stage, Mapping):
                continue
            stage_type = STAGE_TYPES.get(stage.get("type", "train"))
            for dataset in stage.get("datasets") or []:
                if isinstance(dataset, dict) and isinstance(dataset.get("path"), str):
                    dataset["path"] = resolve(dataset["path"])
            if stage_type is not None:
                _resolve_fields(stage, stage_type.path_fields, resolve)
            # "init"/"model" may name a stage, "base", or a folder: only folders are resolved
            for key in ("init", "model", "teacher"):
                value = stage.get(key)
                if isinstance(value, str) and value != "base" and value not in stages and get_preset(value) is None:
                    stage[key] = resolve(value)
            if isinstance(stage.get("models"), list):
                stage["models"] = [
                    resolve(m)
                    if isinstance(m, str) and m.split("/")[0] not in stages and m != "base" and get_preset(m) is None
                    else m
                    for m in stage["models"]
                ]
    return data


def _resolve_fields(mapping: Any, keys: Sequence[str], resolve) -> None:
    for key in keys:
        value = mapping.get(key)
        if isinstance(value, list):
            mapping[key] = [resolve(v) for v in value]
        elif value is not None:
            mapping[key] = resolve(value)
