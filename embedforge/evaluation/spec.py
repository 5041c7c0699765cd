"""Task directories: ``task.json`` + data files, in the layout of ``shared/data/README.md``.

``task.json``::

    {"name": "STSBenchmark", "type": "STS", "eval_split": "test", "main_score": "cosine_spearman",
     "languages": ["eng"], "same_data_as_mteb": true, "score_range": [0, 5]}

Optional keys: ``train_split`` (Classification), ``subset`` (an MTEB subset such as ``en`` for a
multilingual task), ``note``, and ``protocol``: overrides of the MTEB task-class attributes that
define the evaluation protocol (e.g. ``{"samples_per_label": 16}``, ``{"ignore_identical_ids": true}``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embedforge.errors import DataError
from embedforge.utils.io import read_json

_REQUIRED = ("name", "type")
_KNOWN = {
    "name",
    "type",
    "eval_split",
    "main_score",
    "languages",
    "same_data_as_mteb",
    "score_range",
    "train_split",
    "subset",
    "note",
    "protocol",
    "description",
    "instruction",
}


@dataclass(frozen=True)
class TaskSpec:
    """What ``task.json`` says about a task directory."""

    name: str  # task name; when it names an MTEB task, that task's protocol is used
    type: str  # Retrieval | STS | Classification | PairClassification | Clustering | Reranking | Summarization
    directory: Path  # the task directory
    eval_split: str = "test"  # split that is scored
    main_score: str | None = None  # MTEB main metric; default per type
    languages: tuple[str, ...] = ("eng",)  # ISO 639-3 codes
    same_data_as_mteb: bool = False  # rows equal MTEB's copy: scores must equal the leaderboard's
    score_range: tuple[float, float] | None = None  # STS / Summarization gold score range
    train_split: str = "train"  # Classification: split the logistic regression is trained on
    subset: str | None = None  # MTEB subset (hf_subset) for multilingual tasks
    note: str | None = None
    instruction: str | None = None  # the task's instruction for instruction-trained models (e.g. KaLM-V2 Table 12)
    protocol: dict[str, Any] = field(default_factory=dict)  # MTEB task attribute overrides

    @property
    def task_json(self) -> Path:
        return self.directory / "task.json"

    def file(self, relative: str) -> Path:
        """A data file of this task; a missing file is a :class:`DataError` naming the path."""
        path = self.directory / relative
        if not path.is_file():
            raise DataError(
                f"missing data file for {self.type} task {self.name!r}",
                path,
                hint=f"a {self.type} task directory needs this file (see the task-directory layout in the README)",
            )
        return path


def load_task_spec(directory: str | os.PathLike[str]) -> TaskSpec:
    """Read and validate ``directory/task.json`` (the task type itself is checked by the type registry)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError("task directory not found", directory, hint="pass a folder that contains task.json")
    path = directory / "task.json"
    if not path.is_file():
        raise DataError("missing task.json", path, hint="every task directory needs a task.json (see README)")
    raw = read_json(path)
    if not isinstance(raw, dict):
        raise DataError(f"task.json must hold a JSON object, got {type(raw).__name__}", path)
    for key in _REQUIRED:
        if not raw.get(key):
            raise DataError(f"task.json lacks the required key {key!r}", path)
    unknown = sorted(set(raw) - _KNOWN)
    if unknown:
        raise DataError(f"unknown key(s) {unknown} in task.json; known keys: {sorted(_KNOWN)}", path)
    score_range = raw.get("score_range")
    if score_range is not None:
        if not (isinstance(score_range, list) and len(score_range) == 2 and score_range[0] < score_range[1]):
            raise DataError(f"score_range must be [min, max] with min < max, got {score_range!r}", path)
        score_range = (float(score_range[0]), float(score_range[1]))
    languages = raw.get("languages") or ["eng"]
    if isinstance(languages, str):
        languages = [languages]
    protocol = raw.get("protocol") or {}
    if not isinstance(protocol, dict):
        raise DataError(f"protocol must be an object of MTEB task attributes, got {protocol!r}", path)
    return TaskSpec(
        name=str(raw["name"]),
        type=str(raw["type"]),
        directory=directory,
        eval_split=str(raw.get("eval_split", "test")),
        main_score=raw.get("main_score"),
        languages=tuple(languages),
        same_data_as_mteb=bool(raw.get("same_data_as_mteb", False)),
        score_range=score_range,
        train_split=str(raw.get("train_split", "train")),
        instruction=raw.get("instruction"),
        subset=raw.get("subset"),
        note=raw.get("note"),
        protocol=dict(protocol),
    )


def find_task_dirs(root: str | os.PathLike[str]) -> list[Path]:
    """Every directory under ``root`` (recursively) that holds a ``task.json``, sorted."""
    root = Path(root)
    if not root.is_dir():
        raise DataError("task root not found", root, hint="--task-root takes a folder of task directories")
    found = sorted(p.parent for p in root.rglob("task.json"))
    if not found:
        raise DataError("no task directories (folders with a task.json) found", root)
    return found
