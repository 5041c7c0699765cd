"""Classification: ``<train_split>.jsonl`` and ``<eval_split>.jsonl`` rows ``{"text", "label"}``.

MTEB's protocol: logistic regression (max_iter 100) on ``samples_per_label`` undersampled training
examples per label, ``n_experiments`` times with fixed seeds; main score accuracy (or the task's).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from datasets import Dataset, DatasetDict

from embedforge.errors import DataError
from embedforge.evaluation.spec import TaskSpec
from embedforge.evaluation.types import TaskType, read_rows, register_task_type


class _LabelsInMemory:
    """A dataset whose label column is read once into a list; everything else goes to the dataset.

    ``Dataset[column]`` is a lazy ``datasets.Column`` whose every ``column[i]`` and every iteration formats rows
    one by one. MTEB's undersampling reads the training labels one index at a time and its metrics iterate the
    test labels a dozen times per experiment: half of a Banking77 evaluation (25 of 52 s, 3 dims) went there.
    """

    def __init__(self, dataset: Dataset, column: str):
        self._dataset, self._column = dataset, column
        self._labels = list(dataset[column])

    def __getitem__(self, key: Any) -> Any:
        return self._labels if key == self._column else self._dataset[key]

    def __len__(self) -> int:
        return len(self._dataset)

    def select(self, indices: Any) -> Dataset:
        return self._dataset.select(indices)


@register_task_type
class Classification(TaskType):
    name = "Classification"
    abstask = "mteb.abstasks.classification:AbsTaskClassification"
    default_main_score = "accuracy"
    files = "<train_split>.jsonl and <eval_split>.jsonl with text, label"

    def mteb_methods(self, base: type) -> dict[str, Any]:
        if not (hasattr(base, "_undersample_data") and hasattr(base, "_calculate_scores")):
            return {}  # a later mteb without these: plain (slower) MTEB

        def _undersample_data(task: Any, dataset: Dataset, experiment_num: int, idxs: Any = None) -> Any:
            labels = _LabelsInMemory(dataset, task.label_column_name)
            return base._undersample_data(task, labels, experiment_num, idxs)

        def _calculate_scores(task: Any, y_test: Any, y_pred: Any) -> Any:
            return base._calculate_scores(task, np.asarray(list(y_test)), y_pred)

        return {"_undersample_data": _undersample_data, "_calculate_scores": _calculate_scores}

    def load(self, spec: TaskSpec) -> DatasetDict:
        splits = {}
        for split in dict.fromkeys((spec.train_split, spec.eval_split)):
            path = spec.file(f"{split}.jsonl")
            rows = read_rows(path, ("text",), ("label",))
            for number, row in enumerate(rows, start=1):
                if not isinstance(row["label"], str | int) or isinstance(row["label"], bool):
                    raise DataError(f"label must be a string or an integer, got {row['label']!r}", path, number)
            labels = {row["label"] for row in rows}
            if len(labels) < 2:
                raise DataError(
                    f"every row has the label {next(iter(labels))!r}; classification needs at least two labels",
                    path,
                )
            if len({type(label) for label in labels}) > 1:
                raise DataError("labels mix strings and integers; use one kind", path)
            splits[split] = rows
        train_labels = {row["label"] for row in splits[spec.train_split]}
        unseen = sorted({row["label"] for row in splits[spec.eval_split]} - train_labels, key=str)
        if unseen:
            raise DataError(
                f"labels {unseen[:5]} occur in {spec.eval_split!r} but never in {spec.train_split!r}",
                spec.directory / f"{spec.eval_split}.jsonl",
            )
        if isinstance(next(iter(train_labels)), str):
            # MTEB expects integer class ids (binary metrics use pos_label=1): number string labels in sorted order
            ids = {label: index for index, label in enumerate(sorted(train_labels))}
            for rows in splits.values():
                for row in rows:
                    row["label"] = ids[row["label"]]
        return DatasetDict({split: Dataset.from_list(rows) for split, rows in splits.items()})
