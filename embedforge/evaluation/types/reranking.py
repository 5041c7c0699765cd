"""Reranking, in MTEB's format: ``<split>.jsonl`` rows ``{"query", "positive": [...], "negative": [...]}``.

Each query's candidates are its positives and negatives; the model ranks them by cosine similarity
and MTEB scores the ranking (main score MAP@1000, i.e. MAP over the candidate list). Internally this
is MTEB's retrieval task with ``top_ranked`` candidates, exactly how MTEB v2 runs its reranking tasks.
"""

from __future__ import annotations

from typing import Any

from embedforge.errors import DataError
from embedforge.evaluation.spec import TaskSpec
from embedforge.evaluation.types import TaskType, check_text, register_task_type
from embedforge.evaluation.types.retrieval import retrieval_split
from embedforge.utils.io import iter_jsonl


@register_task_type
class Reranking(TaskType):
    name = "Reranking"
    abstask = "mteb.abstasks.retrieval:AbsTaskRetrieval"
    default_main_score = "map_at_1000"
    files = "<eval_split>.jsonl with query, positive (list), negative (list)"

    def load(self, spec: TaskSpec) -> dict[str, Any]:
        path = spec.file(f"{spec.eval_split}.jsonl")
        corpus: dict[str, dict[str, str]] = {}
        queries: dict[str, str] = {}
        qrels: dict[str, dict[str, int]] = {}
        top_ranked: dict[str, list[str]] = {}
        for line, obj in iter_jsonl(path):
            for key in ("query", "positive", "negative"):
                if key not in obj:
                    raise DataError(f"row lacks the field {key!r} (fields present: {sorted(obj)})", path, line)
            check_text(obj["query"], path, line, "query")
            query_id = f"q{line}"
            queries[query_id] = obj["query"]
            qrels[query_id], top_ranked[query_id] = {}, []
            for key, relevance in (("positive", 1), ("negative", 0)):
                docs = obj[key]
                if not isinstance(docs, list):
                    raise DataError(f"field {key!r} must be a list of texts", path, line)
                for index, text in enumerate(docs):
                    check_text(text, path, line, f"{key}[{index}]")
                    doc_id = f"{query_id}-{key[0]}{index}"
                    corpus[doc_id] = {"title": "", "text": text}
                    qrels[query_id][doc_id] = relevance
                    top_ranked[query_id].append(doc_id)
            if not obj["positive"]:
                raise DataError("row has no positive candidate", path, line)
        if not queries:
            raise DataError("file holds no rows", path)
        return {spec.eval_split: retrieval_split(corpus, queries, qrels, top_ranked)}
