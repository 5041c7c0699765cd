"""Summarization, in MTEB's format: ``<split>.jsonl`` rows
``{"text", "human_summaries": [...], "machine_summaries": [...], "relevance": [...]}``.

Each machine summary is scored by its maximum cosine similarity to the human summaries; the main
score is the Spearman correlation of those scores with ``relevance`` (MTEB's SummEval protocol).
"""

from __future__ import annotations

from datasets import Dataset, DatasetDict

from embedforge.errors import DataError
from embedforge.evaluation.spec import TaskSpec
from embedforge.evaluation.types import TaskType, check_text, register_task_type
from embedforge.utils.io import iter_jsonl


@register_task_type
class Summarization(TaskType):
    name = "Summarization"
    abstask = "mteb.abstasks.text.summarization:AbsTaskSummarization"
    default_main_score = "cosine_spearman"
    files = "<eval_split>.jsonl with text, human_summaries, machine_summaries, relevance"

    def protocol(self, spec: TaskSpec, data: DatasetDict) -> dict[str, float]:
        if spec.score_range is not None:
            low, high = spec.score_range
        else:  # the observed range of the relevance judgements
            values = [v for row in data[spec.eval_split]["relevance"] for v in row]
            low, high = min(values), max(values)
        return {"min_score": low, "max_score": high}

    def load(self, spec: TaskSpec) -> DatasetDict:
        path = spec.file(f"{spec.eval_split}.jsonl")
        rows = []
        for line, obj in iter_jsonl(path):
            for key in ("text", "human_summaries", "machine_summaries", "relevance"):
                if key not in obj:
                    raise DataError(f"row lacks the field {key!r} (fields present: {sorted(obj)})", path, line)
            check_text(obj["text"], path, line, "text")
            for key in ("human_summaries", "machine_summaries"):
                if not isinstance(obj[key], list) or not obj[key]:
                    raise DataError(f"field {key!r} must be a non-empty list of texts", path, line)
                for index, text in enumerate(obj[key]):
                    check_text(text, path, line, f"{key}[{index}]")
            relevance = obj["relevance"]
            if not isinstance(relevance, list) or len(relevance) != len(obj["machine_summaries"]):
                raise DataError("'relevance' must be a list with one score per machine summary", path, line)
            rows.append({key: obj[key] for key in ("text", "human_summaries", "machine_summaries", "relevance")})
        if not rows:
            raise DataError("file holds no rows", path)
        return DatasetDict({spec.eval_split: Dataset.from_list(rows)})
