"""Retrieval (BEIR layout): ``corpus.jsonl`` (``_id``, ``title``, ``text``), ``queries.jsonl`` (``_id``, ``text``),
``qrels/<split>.tsv`` (header ``query-id corpus-id score``); main score nDCG@10.

Scored by MTEB's retrieval evaluator: documents are ``title + " " + text``, queries without a
relevant document are dropped, self-hits are ignored when the task sets ``ignore_identical_ids``.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from datasets import Dataset

from embedforge.errors import DataError
from embedforge.evaluation.spec import TaskSpec
from embedforge.evaluation.types import TaskType, check_text, register_task_type
from embedforge.utils.io import iter_jsonl, open_text


def read_corpus(path: Path) -> dict[str, dict[str, str]]:
    """``{doc_id: {"title", "text"}}``; duplicate ids and empty documents are errors."""
    corpus: dict[str, dict[str, str]] = {}
    for line, obj in iter_jsonl(path):
        if "_id" not in obj or "text" not in obj:
            raise DataError(f"corpus row needs '_id' and 'text' (fields present: {sorted(obj)})", path, line)
        doc_id, title, text = str(obj["_id"]), obj.get("title") or "", obj["text"]
        if not isinstance(title, str):
            raise DataError(f"field 'title' must be a string, got {type(title).__name__}", path, line)
        if not isinstance(text, str):
            raise DataError(f"field 'text' must be a string, got {type(text).__name__}", path, line)
        check_text(f"{title} {text}", path, line, "title + text")
        if doc_id in corpus:
            raise DataError(f"duplicate document id {doc_id!r}", path, line)
        corpus[doc_id] = {"title": title, "text": text}
    if not corpus:
        raise DataError("corpus holds no documents", path)
    return corpus


def read_queries(path: Path) -> dict[str, str]:
    """``{query_id: text}``; duplicate ids and empty queries are errors."""
    queries: dict[str, str] = {}
    for line, obj in iter_jsonl(path):
        if "_id" not in obj or "text" not in obj:
            raise DataError(f"query row needs '_id' and 'text' (fields present: {sorted(obj)})", path, line)
        query_id = str(obj["_id"])
        check_text(obj["text"], path, line, "text")
        if query_id in queries:
            raise DataError(f"duplicate query id {query_id!r}", path, line)
        queries[query_id] = obj["text"]
    return queries


def read_qrels(path: Path, queries: dict[str, Any], corpus: dict[str, Any]) -> dict[str, dict[str, int]]:
    """``{query_id: {doc_id: relevance}}`` from a BEIR qrels tsv; unknown ids are errors naming ``path:line``."""
    qrels: dict[str, dict[str, int]] = {}
    with open_text(path) as handle:
        reader = csv.reader(handle, delimiter="\t")
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:3]] != ["query-id", "corpus-id", "score"]:
            raise DataError(f"qrels header must be 'query-id<TAB>corpus-id<TAB>score', got {header!r}", path, 1)
        for line, row in enumerate(reader, start=2):
            if not row or not "".join(row).strip():
                continue
            if len(row) < 3:
                raise DataError(f"expected 3 tab-separated columns, got {len(row)}", path, line)
            query_id, doc_id, score = row[0].strip(), row[1].strip(), row[2].strip()
            if query_id not in queries:
                raise DataError(f"qrels names query {query_id!r}, which is not in queries.jsonl", path, line)
            if doc_id not in corpus:
                raise DataError(f"qrels names document {doc_id!r}, which is not in corpus.jsonl", path, line)
            try:
                relevance = int(float(score))
            except ValueError:
                raise DataError(f"score must be a number, got {score!r}", path, line) from None
            qrels.setdefault(query_id, {})[doc_id] = relevance
    if not qrels:
        raise DataError("qrels hold no judgements", path)
    return qrels


def retrieval_split(
    corpus: dict[str, dict[str, str]],
    queries: dict[str, str],
    qrels: dict[str, dict[str, int]],
    top_ranked: dict[str, list[str]] | None = None,
) -> dict[str, Any]:
    """MTEB's ``RetrievalSplitData`` for one split (only queries that have judgements)."""
    ids = [query_id for query_id in queries if query_id in qrels]
    return {
        "corpus": Dataset.from_dict(
            {
                "id": list(corpus),
                "title": [doc["title"] for doc in corpus.values()],
                "text": [doc["text"] for doc in corpus.values()],
            }
        ),
        "queries": Dataset.from_dict({"id": ids, "text": [queries[i] for i in ids]}),
        "relevant_docs": qrels,
        "top_ranked": top_ranked,
    }


@register_task_type
class Retrieval(TaskType):
    name = "Retrieval"
    abstask = "mteb.abstasks.retrieval:AbsTaskRetrieval"
    default_main_score = "ndcg_at_10"
    files = "corpus.jsonl, queries.jsonl, qrels/<eval_split>.tsv (BEIR)"

    def load(self, spec: TaskSpec) -> dict[str, Any]:
        corpus = read_corpus(spec.file("corpus.jsonl"))
        queries = read_queries(spec.file("queries.jsonl"))
        qrels = read_qrels(spec.file(f"qrels/{spec.eval_split}.tsv"), queries, corpus)
        return {spec.eval_split: retrieval_split(corpus, queries, qrels)}
