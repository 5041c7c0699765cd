"""Mock tasks with exactly known scores, and a bag-of-words model whose embeddings are known in closed form.

The model maps each whitespace-separated word to its own one-hot axis and mean-pools + normalizes, so
cos(a, b) = (count-vector overlap) / (norms): every expected score below is computed by hand from
that formula, independently of the code under test.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

WORDS = "apple banana cherry date elder fig grape kiwi lemon mango".split()


def bow_model(words=WORDS):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Normalize
    from sentence_transformers.sentence_transformer.modules import StaticEmbedding
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    vocab = {word: index for index, word in enumerate(["[UNK]", *words])}
    tokenizer = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = Whitespace()
    weights = np.eye(len(vocab), dtype=np.float32)
    weights[0] = 0.0  # unknown words contribute nothing
    return SentenceTransformer(modules=[StaticEmbedding(tokenizer, embedding_weights=weights), Normalize()])


def bow_cos(a: str, b: str) -> float:
    """Cosine of word-count vectors: the closed form of bow_model's similarity."""
    va = np.array([a.split().count(w) for w in WORDS], dtype=float)
    vb = np.array([b.split().count(w) for w in WORDS], dtype=float)
    return float(va @ vb / (np.linalg.norm(va) * np.linalg.norm(vb)))


@pytest.fixture
def model():
    return bow_model()


def write_jsonl(path: Path, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


def make_task(root: Path, name: str, type_: str, files: dict[str, object], **meta) -> Path:
    """Write a task directory: task.json + files ({relative path: rows list (jsonl) or text})."""
    directory = root / name
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "task.json").write_text(json.dumps({"name": name, "type": type_, "eval_split": "test", **meta}))
    for relative, content in files.items():
        if isinstance(content, str):
            (directory / relative).parent.mkdir(parents=True, exist_ok=True)
            (directory / relative).write_text(content, encoding="utf-8")
        else:
            write_jsonl(directory / relative, content)
    return directory


RETRIEVAL_FILES = {
    "corpus.jsonl": [
        {"_id": "d1", "title": "", "text": "apple banana"},
        {"_id": "d2", "title": "cherry", "text": "date"},
        {"_id": "d3", "title": "", "text": "elder fig"},
        {"_id": "d4", "title": "", "text": "kiwi lemon"},
    ],
    "queries.jsonl": [
        {"_id": "q1", "text": "apple"},
        {"_id": "q2", "text": "cherry"},
        {"_id": "q3", "text": "fig grape"},
        {"_id": "q4", "text": "apple apple cherry"},
        {"_id": "q9", "text": "mango"},  # no judgement: MTEB drops it
    ],
    "qrels/test.tsv": "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t1\nq3\td3\t1\nq4\td2\t1\n",
}


@pytest.fixture
def task_dirs(tmp_path) -> dict[str, Path]:
    """One mock task per type."""
    root = tmp_path / "tasks"
    sts_pairs = [
        ("apple banana", "apple banana", 5.0),
        ("apple banana", "apple cherry", 3.0),
        ("apple banana cherry", "apple date elder", 1.0),
        ("fig", "grape", 0.5),
        ("kiwi lemon", "kiwi lemon mango", 4.0),
    ]
    classification = {
        split: [
            {"text": f"{w} {w} {filler}", "label": label}
            for w, label in (("apple", "fruit-a"), ("banana", "fruit-b"))
            for filler in [
                "kiwi",
                "lemon",
                "mango",
                "fig",
                "grape",
                "date",
                "elder",
                "cherry",
                "kiwi lemon",
                "mango fig",
            ]
        ]
        for split in ("train", "test")
    }
    return {
        "Retrieval": make_task(root, "MockRetrieval", "Retrieval", RETRIEVAL_FILES, main_score="ndcg_at_10"),
        "STS": make_task(
            root,
            "MockSTS",
            "STS",
            {"test.jsonl": [{"sentence1": a, "sentence2": b, "score": s} for a, b, s in sts_pairs]},
            score_range=[0, 5],
        ),
        "Classification": make_task(
            root,
            "MockClassification",
            "Classification",
            {"train.jsonl": classification["train"], "test.jsonl": classification["test"]},
            train_split="train",
        ),
        "PairClassification": make_task(
            root,
            "MockPairs",
            "PairClassification",
            {
                "test.jsonl": [
                    {"sentence1": "apple banana", "sentence2": "apple banana", "label": 1},
                    {"sentence1": "apple banana", "sentence2": "apple cherry", "label": 0},
                    {"sentence1": "fig grape", "sentence2": "fig grape kiwi", "label": 0},
                    {"sentence1": "kiwi", "sentence2": "lemon", "label": 0},
                    {"sentence1": "mango date", "sentence2": "mango", "label": 1},
                ]
            },
        ),
        "Clustering": make_task(
            root,
            "MockClustering",
            "Clustering",
            {
                "test.jsonl": [
                    {"text": text, "label": label}
                    for label, texts in {
                        "a": ["apple", "apple banana", "banana apple apple"],
                        "b": ["kiwi", "kiwi lemon", "lemon kiwi kiwi"],
                    }.items()
                    for text in texts
                ]
            },
            protocol={"max_documents_per_cluster": 64},
        ),  # MTEB draws 16,384 per k-means run; keep tests fast
        "Reranking": make_task(
            root,
            "MockReranking",
            "Reranking",
            {
                "test.jsonl": [
                    {"query": "apple", "positive": ["apple banana"], "negative": ["kiwi", "lemon mango"]},
                    {"query": "cherry date", "positive": ["cherry fig"], "negative": ["cherry date", "kiwi"]},
                ]
            },
        ),
        "Summarization": make_task(
            root,
            "MockSummarization",
            "Summarization",
            {
                "test.jsonl": [
                    {
                        "text": "apple banana cherry date",
                        "human_summaries": ["apple banana"],
                        "machine_summaries": ["apple banana", "apple kiwi", "kiwi lemon"],
                        "relevance": [3.0, 2.0, 1.0],
                    },
                    {
                        "text": "fig grape kiwi lemon",
                        "human_summaries": ["fig grape", "kiwi"],
                        "machine_summaries": ["mango", "fig grape", "fig lemon"],
                        "relevance": [1.0, 4.0, 5.0],
                    },
                ]
            },
            score_range=[1, 5],
        ),
    }
