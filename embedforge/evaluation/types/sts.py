"""STS: ``<split>.jsonl`` rows ``{"sentence1", "sentence2", "score"}``; main score cosine Spearman."""

from __future__ import annotations

from datasets import Dataset, DatasetDict

from embedforge.errors import DataError
from embedforge.evaluation.spec import TaskSpec
from embedforge.evaluation.types import TaskType, read_rows, register_task_type


@register_task_type
class STS(TaskType):
    name = "STS"
    abstask = "mteb.abstasks.sts:AbsTaskSTS"
    default_main_score = "cosine_spearman"
    files = "<eval_split>.jsonl with sentence1, sentence2, score"

    def protocol(self, spec: TaskSpec, data: DatasetDict) -> dict[str, float]:
        low, high = spec.score_range or (0.0, 5.0)  # MTEB's STS default range
        return {"min_score": low, "max_score": high}

    def load(self, spec: TaskSpec) -> DatasetDict:
        path = spec.file(f"{spec.eval_split}.jsonl")
        rows = read_rows(path, ("sentence1", "sentence2"), ("score",))
        for number, row in enumerate(rows, start=1):
            if not isinstance(row["score"], int | float) or isinstance(row["score"], bool):
                raise DataError(f"score must be a number, got {row['score']!r}", path, number)
        # a correlation needs two pairs and two different gold scores; otherwise it is NaN whatever the model
        if len(rows) < 2:
            raise DataError("an STS file needs at least 2 pairs (a correlation of one pair is undefined)", path)
        if len({row["score"] for row in rows}) < 2:
            raise DataError(
                f"every pair has the gold score {rows[0]['score']!r}; the Spearman correlation is undefined",
                path,
                hint="an STS file needs pairs of different similarity",
            )
        return DatasetDict({spec.eval_split: Dataset.from_list(rows)})
