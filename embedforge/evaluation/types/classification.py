"""Classification: ``<train_split>.jsonl`` and ``<eval_split>.jsonl`` rows ``{"text", "label"}``.

MTEB's protocol: logistic regression (max_iter 100) on ``samples_per_label`` undersampled training
examples per label, ``n_experiments`` times with fixed seeds; main score accuracy (or the task's).
"""

from __future__ import annotations

from datasets import Dataset, DatasetDict

from embedforge.errors import DataError
from embedforge.evaluation.spec import TaskSpec
from embedforge.evaluation.types import TaskType, read_rows, register_task_type


@register_task_type
class Classification(TaskType):
    name = "Classification"
    abstask = "mteb.abstasks.classification:AbsTaskClassification"
    default_main_score = "accuracy"
    files = "<train_split>.jsonl and <eval_split>.jsonl with text, label"

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
