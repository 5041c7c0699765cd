"""The real training sets in shared/data load with their configs (slow tier)."""

from __future__ import annotations

import gzip
import json

import pytest

from embedforge.data.loading import load_training_datasets

pytestmark = pytest.mark.slow


def read_rows(path):
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def real_configs(data):
    train = data / "train"
    return [
        {
            "name": "snli",
            "path": str(train / "snli" / "triplets.jsonl"),
            "kind": "triplets",
            "instruction": "Retrieve semantically similar text",
            "symmetric": True,
        },
        {
            "name": "debian",
            "path": str(train / "debian_descriptions" / "pairs.jsonl.gz"),
            "kind": "pairs",
            "columns": {"anchor": "summary", "positive": "description"},
            "instruction": "Given a Debian package summary, retrieve its description",
        },
        # MSRP: binary paraphrase labels -> KaLM's pair-classification recipe (label 1 -> two positive pairs)
        {
            "name": "msrp",
            "path": str(train / "msrp" / "train.jsonl"),
            "kind": "sts",
            "columns": {"score": "label"},
            "loss": "infonce",
        },
        {"name": "trecqa", "path": str(train / "trecqa_wang" / "train.jsonl"), "kind": "retrieval"},
        {"name": "stsb", "path": str(data / "eval" / "STSBenchmark" / "train.jsonl"), "kind": "sts"},
        {"name": "snli_pairs", "path": str(train / "snli" / "pairs.dev.jsonl"), "kind": "nli"},
        {"name": "scifact", "path": str(data / "eval" / "SciFact"), "kind": "retrieval", "split": "train"},
    ]


def test_real_training_sets(shared_data):
    datasets, info = load_training_datasets(real_configs(shared_data), seed=0)
    train = shared_data / "train"

    assert datasets["snli"].column_names == ["anchor", "positive", "negative_1"]
    assert info["snli"].rows == len(read_rows(train / "snli" / "triplets.jsonl")) == 6321
    assert set(info["snli"].prompts) == {"anchor", "positive", "negative_1"}

    debian_rows = read_rows(train / "debian_descriptions" / "pairs.jsonl.gz")
    assert datasets["debian"].column_names == ["anchor", "positive"]
    assert info["debian"].rows == len(debian_rows) == 42048
    assert datasets["debian"][0] == {"anchor": debian_rows[0]["summary"], "positive": debian_rows[0]["description"]}
    assert set(info["debian"].prompts) == {"anchor"}

    msrp_positive = sum(r["label"] == 1 for r in read_rows(train / "msrp" / "train.jsonl"))
    assert datasets["msrp"].column_names == ["anchor", "positive"]
    assert info["msrp"].rows == 2 * msrp_positive  # both directions

    trec = read_rows(train / "trecqa_wang" / "train.jsonl")
    assert datasets["trecqa"].column_names == ["anchor", "positive"]  # some queries have no negatives
    assert info["trecqa"].rows == sum(len(r["positives"]) for r in trec)
    assert info["trecqa"].counts["query_without_positive"] == sum(not r["positives"] for r in trec)

    stsb = read_rows(shared_data / "eval" / "STSBenchmark" / "train.jsonl")
    assert datasets["stsb"].column_names == ["sentence1", "sentence2", "score"]
    assert info["stsb"].rows == len(stsb) == 5749 and info["stsb"].loss == "cosent"
    assert datasets["stsb"][0]["score"] == pytest.approx(stsb[0]["score"] / 5)
    assert min(datasets["stsb"]["score"]) >= 0 and max(datasets["stsb"]["score"]) <= 1

    assert datasets["snli_pairs"].column_names == ["anchor", "positive", "negative_1"]
    assert info["snli_pairs"].rows > 2500

    qrels = (shared_data / "eval" / "SciFact" / "qrels" / "train.tsv").read_text().splitlines()[1:]
    assert info["scifact"].rows == len([line for line in qrels if line.strip()])


def test_real_decontamination_against_eval_dirs(shared_data):
    configs = [c for c in real_configs(shared_data) if c["name"] in ("stsb", "snli", "scifact")]
    datasets, info = load_training_datasets(configs, seed=0, eval_dirs=[shared_data / "eval"])
    # STS-B train shares sentences with STS-B test (both were built from the same STS sources)
    removed = info["stsb"].counts["decontaminated_rows"]
    assert 0 < removed < 5749 and info["stsb"].rows == 5749 - removed
    assert info["snli"].counts["decontaminated_rows"] == 0  # the README: touching rows were already removed
    test_queries = {
        line.split("\t")[0]
        for line in (shared_data / "eval" / "SciFact" / "qrels" / "test.tsv").read_text().splitlines()[1:]
    }
    query_texts = {
        r["text"] for r in read_rows(shared_data / "eval" / "SciFact" / "queries.jsonl") if r["_id"] in test_queries
    }
    assert not query_texts & set(datasets["scifact"]["anchor"])
