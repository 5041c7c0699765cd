"""PairClassification: ``<split>.jsonl`` rows ``{"sentence1", "sentence2", "label"}`` (0/1); main score max_ap."""

from __future__ import annotations

from datasets import Dataset, DatasetDict

from embedforge.errors import DataError
from embedforge.evaluation.spec import TaskSpec
from embedforge.evaluation.types import TaskType, read_rows, register_task_type


@register_task_type
class PairClassification(TaskType):
    name = "PairClassification"
    abstask = "mteb.abstasks.pair_classification:AbsTaskPairClassification"
    default_main_score = "max_ap"
    files = "<eval_split>.jsonl with sentence1, sentence2, label (0/1)"

    def load(self, spec: TaskSpec) -> DatasetDict:
        path = spec.file(f"{spec.eval_split}.jsonl")
        rows = read_rows(path, ("sentence1", "sentence2"), ("label",))
        labels = []
        for number, row in enumerate(rows, start=1):
            if row["label"] not in (0, 1) or isinstance(row["label"], bool | float):
                raise DataError(f"label must be 0 or 1, got {row['label']!r}", path, number)
            labels.append(int(row["label"]))
        if len(set(labels)) < 2:
            raise DataError(f"all pairs have label {labels[0]}; pair classification needs both 0 and 1", path)
        data = {
            "sentence1": [r["sentence1"] for r in rows],
            "sentence2": [r["sentence2"] for r in rows],
            "labels": labels,
        }
        return DatasetDict({spec.eval_split: Dataset.from_dict(data)})
