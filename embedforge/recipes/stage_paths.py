"""``@stage/...`` paths: files an earlier stage of the same recipe writes, e.g. ``path: "@mine/debian.jsonl"``.

A path starting with ``@`` is relative to the recipe's output folder, so a ``train`` stage can read what a
``mine`` stage produced without knowing where the run lives. The loader leaves such paths alone (they are not
relative to the YAML file); :func:`check_stage_paths` checks at load time that the first segment names an
*earlier* stage, and :func:`resolve_stage_paths` turns them into real paths when the stage runs.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from embedforge.errors import ConfigError, DataError, did_you_mean

STAGE_PATH_PREFIX = "@"


def is_stage_path(value: Any) -> bool:
    """Whether ``value`` is an ``@stage/...`` path."""
    return isinstance(value, str) and value.startswith(STAGE_PATH_PREFIX)


def check_stage_paths(stages: dict[str, Any], source: str) -> None:
    """Every ``@stage/...`` dataset path of every stage must name a stage that runs before it.

    Raises:
        ConfigError: naming ``stages.<stage>.datasets[i].path`` and the stages it may refer to.
    """
    names = list(stages)
    for position, (name, config) in enumerate(stages.items()):
        for index, dataset in enumerate(getattr(config, "datasets", None) or []):
            path = getattr(dataset, "path", None)
            if not is_stage_path(path):
                continue
            target = path[len(STAGE_PATH_PREFIX) :].split("/", 1)[0]
            earlier = names[:position]
            if target not in earlier:
                where = f"{source}: stages.{name}.datasets[{index}].path"
                if target in names:
                    raise ConfigError(f"{where}: {path!r} refers to stage {target!r}, which runs after this one")
                choices = earlier or ["(no earlier stage)"]
                raise ConfigError(f"{where}: {path!r} names no earlier stage.{did_you_mean(target, choices)}")


def resolve_stage_path(path: str, output_dir: str | os.PathLike[str]) -> Path:
    """``@mine/x.jsonl`` -> ``<output_dir>/mine/x.jsonl``; other paths unchanged."""
    if not is_stage_path(path):
        return Path(path)
    return Path(output_dir) / path[len(STAGE_PATH_PREFIX) :]


def resolve_stage_paths(configs: Sequence[Any], output_dir: str | os.PathLike[str]) -> list[Any]:
    """Copies of dataset configs with ``@stage/...`` paths made real (relative to ``output_dir``).

    Raises:
        DataError: an ``@`` path whose file does not exist (the earlier stage did not write it).
    """
    resolved = []
    for config in configs:
        if is_stage_path(config.path):
            path = resolve_stage_path(config.path, output_dir)
            if not path.exists():
                stage = config.path[len(STAGE_PATH_PREFIX) :].split("/", 1)[0]
                written = (
                    sorted(p.name for p in path.parent.glob("*") if not p.name.startswith("."))
                    if (path.parent.is_dir())
                    else []
                )
                hint = f"stage {stage!r} wrote: {', '.join(written)}" if written else f"did stage {stage!r} run?"
                raise DataError(f"dataset {config.name!r}: {config.path!r} does not exist", path, hint=hint)
            config = dataclasses.replace(config, path=str(path))
        resolved.append(config)
    return resolved
