"""Decontamination against evaluation task directories: normalization, what is indexed, counts per dataset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from datasets import Dataset

from embedforge.data.decontaminate import EvalTextIndex, decontaminate_dataset, normalize_text
from embedforge.data.loading import load_training_datasets
from embedforge.errors import DataError


def write_jsonl(path: Path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def task(root: Path, name: str, task_type: str, **meta) -> Path:
    directory = root / name
    directory.mkdir(parents=True)
    (directory / "task.json").write_text(json.dumps({"name": name, "type": task_type, "eval_split": "test", **meta}))
    return directory


@pytest.fixture
def eval_root(tmp_path) -> Path:
    root = tmp_path / "eval"
    sts = task(root, "MySTS", "STS")
    write_jsonl(sts / "test.jsonl", [{"sentence1": "A man plays guitar.", "sentence2": "A woman sings.", "score": 3}])
    write_jsonl(sts / "train.jsonl", [{"sentence1": "Train only sentence.", "sentence2": "Another.", "score": 1}])
    cls = task(root, "MyClassification", "Classification", train_split="train")
    write_jsonl(cls / "test.jsonl", [{"text": "Where is my card?", "label": "card_arrival"}])
    write_jsonl(cls / "train.jsonl", [{"text": "I lost my card", "label": "lost_card"}])
    clu = task(root, "MyClustering", "Clustering")
    write_jsonl(clu / "test.jsonl", [{"text": "terminal emulator for X", "label": "x11"}])
    pair = task(root, "MyPairs", "PairClassification")
    write_jsonl(pair / "test.jsonl", [{"sentence1": "Is it raining?", "sentence2": "Does it rain?", "label": 1}])
    ret = task(root, "MyRetrieval", "Retrieval")
    write_jsonl(ret / "queries.jsonl", [{"_id": "q1", "text": "what purrs"}, {"_id": "q2", "text": "train query"}])
    write_jsonl(
        ret / "corpus.jsonl",
        [{"_id": "d1", "title": "", "text": "Cats purr."}, {"_id": "d2", "title": "", "text": "Dogs bark."}],
    )
    (ret / "qrels").mkdir()
    (ret / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    (ret / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\nq2\td2\t1\n")
    other = task(root, "MyReranking", "Reranking")
    write_jsonl(other / "test.jsonl", [{"query": "best pizza", "positive": ["Pizza place"], "negative": ["Car wash"]}])
    return root


def test_normalize_text():
    assert normalize_text("  A  Man\tplays\n GUITAR. ") == "a man plays guitar."
    assert normalize_text("ＡＢＣ") == "abc"  # NFKC folds full-width letters


def test_index_collects_eval_splits_only(eval_root):
    index = EvalTextIndex.from_task_dirs([eval_root])
    for text in [
        "A man plays guitar.",
        "a woman   sings.",
        "Where is my card?",
        "terminal emulator for X",
        "Is it raining?",
        "what purrs",
        "best pizza",
        "Pizza place",
        "Car wash",
    ]:
        assert text in index, text
    for text in ["Train only sentence.", "I lost my card", "train query", "Cats purr.", "card_arrival"]:
        assert text not in index, text  # train splits, train queries, documents (default) and labels stay out
    assert set(index.per_task) == {
        "MySTS",
        "MyClassification",
        "MyClustering",
        "MyPairs",
        "MyRetrieval",
        "MyReranking",
    }


def test_retrieval_documents_option(eval_root):
    judged = EvalTextIndex.from_task_dirs([eval_root / "MyRetrieval"], retrieval_documents="judged")
    assert "Cats purr." in judged and "Dogs bark." not in judged
    everything = EvalTextIndex.from_task_dirs([eval_root / "MyRetrieval"], retrieval_documents="all")
    assert "Dogs bark." in everything


def test_load_training_datasets_reports_counts_per_dataset(tmp_path, eval_root):
    pairs = tmp_path / "pairs.jsonl"
    write_jsonl(
        pairs,
        [
            {"anchor": "what  PURRS", "positive": "cats"},  # a test query, after normalization
            {"anchor": "fine", "positive": "also fine"},
            {"anchor": "ok", "positive": "A man plays guitar."},  # an STS test sentence
            {"anchor": "still ok", "positive": "good"},
        ],
    )
    labelled = tmp_path / "cls.jsonl"
    write_jsonl(
        labelled,
        [
            {"text": "Where is my card?", "label": "a"},
            {"text": "card please", "label": "a"},
            {"text": "hello", "label": "b"},
            {"text": "hi", "label": "b"},
        ],
    )
    configs = [
        {"name": "pairs", "path": str(pairs), "kind": "pairs"},
        {"name": "cls", "path": str(labelled), "kind": "classification"},
        {"name": "kept", "path": str(pairs), "kind": "pairs", "decontaminate": False},
    ]
    datasets, info = load_training_datasets(configs, seed=0, eval_dirs=[eval_root])
    assert info["pairs"].counts["decontaminated_rows"] == 2 and info["pairs"].rows == 2
    assert datasets["pairs"]["anchor"] == ["fine", "still ok"]
    assert info["cls"].counts["decontaminated_rows"] == 1 and info["cls"].rows == 2  # "card please" lost its pair
    texts = {t for column in datasets["cls"].column_names if column != "label" for t in datasets["cls"][column]}
    assert "Where is my card?" not in texts
    assert "decontaminated_rows" not in info["kept"].counts and info["kept"].rows == 4


def test_decontaminate_dataset(eval_root):
    index = EvalTextIndex.from_task_dirs([eval_root])
    dataset = Dataset.from_dict({"anchor": ["x", "Is it raining?", "y"], "positive": ["p", "q", "does it RAIN?"]})
    kept, removed = decontaminate_dataset(dataset, index)
    assert removed == 2 and kept["anchor"] == ["x"]


def test_missing_task_dir(tmp_path):
    with pytest.raises(DataError, match="not found"):
        EvalTextIndex.from_task_dirs([tmp_path / "nope"])
    with pytest.raises(DataError, match="no task.json"):
        EvalTextIndex.from_task_dirs([tmp_path])


def test_near_duplicates_beside_exact_match(shared_data):
    """Exact matching let STS-B train sentences that differ from a test sentence by one word through."""
    from embedforge.utils.io import iter_jsonl

    test = shared_data / "eval" / "STSBenchmark"
    exact = EvalTextIndex.from_task_dirs([test])
    near = EvalTextIndex.from_task_dirs([test], near_duplicates=0.8)
    sentence = next(row for _, row in iter_jsonl(test / "test.jsonl") if len(row["sentence1"].split()) >= 14)[
        "sentence1"
    ]
    words = sentence.split()
    variant = " ".join(words[:-1] + ["(edited)" if words[-1] != "(edited)" else "x"])  # one word changed
    assert sentence in exact and sentence in near
    assert variant not in exact and variant in near
    assert "A completely unrelated sentence about package managers and compilers." not in near
    with pytest.raises(Exception, match=r"near_duplicates: a Jaccard threshold in \(0, 1\]"):
        EvalTextIndex(near_duplicates=1.5)


def test_near_duplicate_matches_are_confirmed_by_the_exact_jaccard():
    from embedforge.data.decontaminate import jaccard, shingles

    index = EvalTextIndex(near_duplicates=0.9)
    index.add(["the quick brown fox jumps over the lazy dog today"])
    assert "The  quick brown fox jumps over the lazy dog today!" not in index  # 7 of 9 shingles: J = 0.78
    assert jaccard(shingles("a b c d"), shingles("a b c d")) == 1.0
    assert "the quick brown fox jumps over the lazy dog today" in index
