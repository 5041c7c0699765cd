"""Every task type on a mock task whose score is known in closed form (see conftest)."""
# MTEB rounds retrieval metrics to 5 decimals, hence abs=1e-5 where they are compared.

from __future__ import annotations

import math

import pytest
from scipy.stats import spearmanr

from embedforge.evaluation import evaluate
from tests.evaluation.conftest import bow_cos


def score(model, task_dir, **kwargs):
    report = evaluate(model, [task_dir], cache_dir=None, **kwargs)
    (record,) = report.records
    return record


def test_retrieval_ndcg_at_10(model, task_dirs):
    record = score(model, task_dirs["Retrieval"])
    # q1..q3 find their document first; q4's relevant document ranks 2nd (0.632 vs 0.316); q9 has no qrels
    expected = (3 * 1.0 + 1 / math.log2(3)) / 4
    assert record["main_metric"] == "ndcg_at_10"
    assert record["main_score"] == pytest.approx(expected, abs=1e-5)
    assert record["metrics"]["recall_at_1"] == pytest.approx(0.75, abs=1e-5)


def test_retrieval_self_hits_are_ignored_when_the_protocol_says_so(model, tmp_path):
    from tests.evaluation.conftest import make_task

    files = {
        "corpus.jsonl": [{"_id": "a", "text": "apple"}, {"_id": "b", "text": "apple banana"}],
        "queries.jsonl": [{"_id": "a", "text": "apple"}],
        "qrels/test.tsv": "query-id\tcorpus-id\tscore\na\tb\t1\n",
    }
    plain = score(model, make_task(tmp_path, "SelfHitPlain", "Retrieval", files))
    ignoring = score(
        model, make_task(tmp_path, "SelfHitIgnored", "Retrieval", files, protocol={"ignore_identical_ids": True})
    )
    assert plain["main_score"] == pytest.approx(1 / math.log2(3), abs=1e-5)  # the query finds itself first
    assert ignoring["main_score"] == pytest.approx(1.0, abs=1e-5)


def test_sts_cosine_spearman(model, task_dirs):
    import json

    rows = [json.loads(line) for line in (task_dirs["STS"] / "test.jsonl").read_text().splitlines()]
    expected = spearmanr([r["score"] for r in rows], [bow_cos(r["sentence1"], r["sentence2"]) for r in rows])[0]
    record = score(model, task_dirs["STS"])
    assert record["main_metric"] == "cosine_spearman"
    assert record["main_score"] == pytest.approx(expected, abs=1e-9)


def test_classification_accuracy(model, task_dirs):
    record = score(model, task_dirs["Classification"])
    assert record["main_metric"] == "accuracy"
    assert record["main_score"] == pytest.approx(1.0)
    assert len(record["metrics"]["scores_per_experiment"]) == 10  # MTEB's 10 experiments


def test_pair_classification_ap(model, task_dirs):
    record = score(model, task_dirs["PairClassification"])
    # cosine ranking: 1.0 (pos), 0.816 (neg), 0.707 (pos), 0.5 (neg), 0 (neg) -> AP = (1/1 + 2/3) / 2
    assert record["metrics"]["cosine_ap"] == pytest.approx((1 + 2 / 3) / 2, abs=1e-5)
    assert record["main_metric"] == "max_ap"
    assert record["main_score"] >= record["metrics"]["cosine_ap"] - 1e-9


def test_clustering_v_measure(model, task_dirs):
    record = score(model, task_dirs["Clustering"])
    assert record["main_metric"] == "v_measure"
    assert record["main_score"] == pytest.approx(1.0)


def test_reranking_map(model, task_dirs):
    record = score(model, task_dirs["Reranking"])
    # query 1: positive first (AP 1); query 2: the negative "cherry date" outranks the positive (AP 1/2)
    assert record["main_metric"] == "map_at_1000"
    assert record["main_score"] == pytest.approx(0.75, abs=1e-5)


def test_summarization_spearman(model, task_dirs):
    record = score(model, task_dirs["Summarization"])
    # text 1: machine scores (1.0, 0.5, 0.0) vs relevance (3, 2, 1) -> 1.0
    # text 2: max-cos to humans (0.0, 1.0, 0.5) vs relevance (1, 4, 5) -> ranks (1,3,2) vs (1,2,3) -> 0.5
    assert record["main_metric"] == "cosine_spearman"
    assert record["main_score"] == pytest.approx(0.75, abs=1e-5)
