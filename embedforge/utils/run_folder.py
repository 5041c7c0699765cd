"""Read a training run's output folder: its recipe, seed, stages, final model and evaluation results.

A run folder (``embedforge train``'s ``output_dir``) holds ``recipe.resolved.yaml``, one folder per stage
(``<stage>/stage.json`` once finished, ``<stage>/final`` for a trained model) and, after the recipe's
evaluation, ``eval/<recipe name>/results.json`` (and ``eval/base/``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from embedforge.errors import ConfigError

RESOLVED_RECIPE = "recipe.resolved.yaml"


@dataclass
class RunFolder:
    """What a run folder says about itself."""

    path: Path
    name: str  # the recipe's name
    seed: int | None
    config: dict[str, Any]  # the resolved recipe
    stages: list[str] = field(default_factory=list)  # finished stages, in recipe order
    model_stage: str | None = None  # the last finished stage that produced a model
    model_path: Path | None = None  # that stage's model folder

    @property
    def label(self) -> str:
        """``<recipe>/<stage>``: what tables call this run's model."""
        return f"{self.name}/{self.model_stage}" if self.model_stage else self.name

    def results_file(self) -> Path | None:
        """The final model's ``results.json`` (recipe evaluation, else the last eval stage's), if any."""
        candidates = [self.path / "eval" / self.name / "results.json"]
        candidates += [self.path / stage / "results.json" for stage in reversed(self.stages)]
        return next((c for c in candidates if c.is_file()), None)


def is_run_folder(path: str | os.PathLike[str]) -> bool:
    return (Path(path) / RESOLVED_RECIPE).is_file()


def read_run_folder(path: str | os.PathLike[str]) -> RunFolder:
    """Read ``path`` (a run's output folder); a folder without ``recipe.resolved.yaml`` is a ``ConfigError``."""
    path = Path(path)
    recipe_file = path / RESOLVED_RECIPE
    if not recipe_file.is_file():
        raise ConfigError(
            f"{path}: not a run folder (no {RESOLVED_RECIPE}); pass the output_dir of 'embedforge train'"
        )
    config = yaml.safe_load(recipe_file.read_text(encoding="utf-8")) or {}
    run = RunFolder(path=path, name=str(config.get("name") or path.name), seed=config.get("seed"), config=config)
    for stage in config.get("stages") or {}:
        done = path / stage / "stage.json"
        if not done.is_file():
            continue
        run.stages.append(stage)
        model = json.loads(done.read_text()).get("model_path")
        if model:
            model_path = Path(model)
            if not model_path.is_absolute() and not model_path.exists():
                model_path = path / stage / "final"
            if not model_path.exists() and (path / stage / "final").is_dir():  # the run folder was moved
                model_path = path / stage / "final"
            run.model_stage, run.model_path = stage, model_path
    return run


def find_run_model(path: str | os.PathLike[str]) -> Path:
    """The model a run folder ended with (its last finished model stage's ``final``)."""
    run = read_run_folder(path)
    if run.model_path is None:
        raise ConfigError(
            f"{path}: the run has no finished stage with a model yet (run 'embedforge train ... --resume')"
        )
    return run.model_path
