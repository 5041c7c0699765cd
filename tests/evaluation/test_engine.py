"""The engine around MTEB's evaluators: one encoding pass for all dims, the cache, prompts, outputs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from embedforge.evaluation import evaluate
from embedforge.utils.matryoshka import truncate_and_renormalize
from tests.evaluation.conftest import RETRIEVAL_FILES, WORDS, bow_model, make_task


def test_several_dims_come_from_one_encoding_pass(model, task_dirs):
    tasks = [task_dirs["STS"], task_dirs["Retrieval"]]
    one = evaluate(model, tasks, cache_dir=None, dims=[11])
    three = evaluate(bow_model(), tasks, cache_dir=None, dims=[11, 6, 3])
    assert three.texts_encoded == one.texts_encoded  # extra dims cost no encoding
    assert {r["dim"] for r in three.records} == {11, 6, 3}
    assert len(three.records) == 6


def test_shared_and_repeated_texts_are_encoded_once(model, task_dirs):
    report = evaluate(model, [task_dirs["STS"], task_dirs["PairClassification"]], cache_dir=None)
    assert report.texts_encoded < report.texts_requested
    sts = [json.loads(line) for line in (task_dirs["STS"] / "test.jsonl").read_text().splitlines()]
    pairs = [json.loads(line) for line in (task_dirs["PairClassification"] / "test.jsonl").read_text().splitlines()]
    unique = {r[k] for r in sts + pairs for k in ("sentence1", "sentence2")}
    assert report.texts_encoded == len(unique)


def test_disk_cache_serves_a_repeated_run(model, task_dirs, tmp_path):
    first = evaluate(model, [task_dirs["STS"]], cache_dir=tmp_path / "cache")
    second = evaluate(bow_model(), [task_dirs["STS"]], cache_dir=tmp_path / "cache")
    assert first.texts_encoded > 0 and second.texts_encoded == 0
    assert second.records[0]["main_score"] == first.records[0]["main_score"]


def test_cache_is_keyed_by_the_model_weights(model, task_dirs, tmp_path):
    import torch

    evaluate(model, [task_dirs["STS"]], cache_dir=tmp_path / "cache")
    other = bow_model()
    with torch.no_grad():
        other[0].embedding.weight[3] *= 2.0  # a different model must not reuse the cached vectors
    assert evaluate(other, [task_dirs["STS"]], cache_dir=tmp_path / "cache").texts_encoded > 0


def test_truncated_dims_are_renormalized(model):
    full = model.encode(["apple banana cherry", "kiwi"])
    cut = truncate_and_renormalize(full, 3)
    assert truncate_and_renormalize(full, None) is full and truncate_and_renormalize(full, 99) is full
    assert cut.shape == (2, 3)
    np.testing.assert_allclose(np.linalg.norm(cut[0]), 1.0, rtol=1e-6)
    np.testing.assert_allclose(cut[0], full[0, :3] / np.linalg.norm(full[0, :3]), rtol=1e-6)


def test_truncation_is_bit_identical_to_sentence_transformers_truncate_dim(tiny_bert_dir):
    """MTEB's k-means flips on last-bit differences, so a truncated dim must equal, bit for bit, what
    ``SentenceTransformer(truncate_dim=d).encode(normalize_embeddings=True)`` gives (numpy's norm does not)."""
    from sentence_transformers import SentenceTransformer

    texts = [f"text number {i} about {'apples ' * (i % 7)}and rivers" for i in range(64)]
    full = SentenceTransformer(str(tiny_bert_dir)).encode(texts, batch_size=64)
    for dim in (24, 7):
        theirs = SentenceTransformer(str(tiny_bert_dir), truncate_dim=dim).encode(
            texts, batch_size=64, normalize_embeddings=True
        )
        np.testing.assert_array_equal(truncate_and_renormalize(full, dim), theirs)


def test_query_prompts_follow_mteb_prompt_type_convention(task_dirs):
    # The "Retrieval-query" prompt prefixes every query (not the documents) with "lemon lemon kiwi", which pulls
    # d4 ("kiwi lemon") above each relevant document: q1..q3 find theirs 2nd, q4 finds d2 3rd (cosines by hand).
    model = bow_model()
    model.prompts = {"Retrieval-query": "lemon lemon kiwi ", "document": ""}
    record = evaluate(model, [task_dirs["Retrieval"]], cache_dir=None).records[0]
    assert record["main_score"] == pytest.approx((3 / math.log2(3) + 1 / math.log2(4)) / 4, abs=1e-5)
    assert record["metrics"]["recall_at_1"] == 0.0


def test_outputs_written(model, task_dirs, tmp_path):
    out = tmp_path / "out"
    evaluate(model, list(task_dirs.values()), out, cache_dir=None, dims=[11, 4])
    records = json.loads((out / "results.json").read_text())
    assert len(records) == 2 * len(task_dirs)
    for record in records:
        assert {"task", "type", "dim", "main_score", "metrics"} <= set(record)
        assert isinstance(record["main_score"], float) and isinstance(record["metrics"], dict)
    table = (out / "leaderboard.md").read_text()
    assert "Mean(Task)" in table and "Mean(TaskType)" in table and "@4" in table
    assert (out / "scores.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_leaderboard_means(model, task_dirs):
    from embedforge.evaluation.report import leaderboard_markdown

    records = [
        {"task": "A", "type": "STS", "dim": 8, "main_score": 0.5},
        {"task": "B", "type": "STS", "dim": 8, "main_score": 0.7},
        {"task": "C", "type": "Retrieval", "dim": 8, "main_score": 0.9},
    ]
    row = leaderboard_markdown({"m": records}).splitlines()[2]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[:3] == ["m", "70.00", "75.00"]  # Mean(Task) = 2.1/3; Mean(TaskType) = (0.6 + 0.9)/2


def test_reference_deltas(model, task_dirs, tmp_path):
    reference = tmp_path / "ref.json"
    reference.write_text(json.dumps({"MockRetrieval": 0.9, "SomethingElse": 0.1}))
    report = evaluate(model, [task_dirs["Retrieval"], task_dirs["Clustering"]], cache_dir=None, reference=reference)
    rows = {row["task"]: row for row in report.reference_rows}
    expected = (3 + 1 / math.log2(3)) / 4
    assert rows["MockRetrieval"]["delta"] == pytest.approx(expected - 0.9, abs=1e-5)
    assert rows["MockClustering"]["reference"] is None


def test_reference_picks_the_model_from_scores_long(tmp_path, model, task_dirs):
    from embedforge.errors import DataError
    from embedforge.evaluation.reference import load_reference

    path = tmp_path / "scores_long.json"
    path.write_text(
        json.dumps(
            [
                {"model": "org__m1", "task": "T", "split": "test", "subset": "default", "main_score": 0.1},
                {"model": "org__m2", "task": "T", "split": "test", "subset": "default", "main_score": 0.2},
            ]
        )
    )
    assert load_reference(path, our_model="m2") == {("T", "test", "default"): 0.2}
    with pytest.raises(DataError, match="--reference-model"):
        load_reference(path)
    with pytest.raises(DataError, match="Did you mean 'org__m"):
        load_reference(path, model="org__m0")


def _noisy_labelled_rows(n: int = 60) -> list[dict[str, str]]:
    """Texts of three random words labelled by which half of the vocabulary their first word is in: the clusters
    overlap, so k-means' v_measure depends on which bootstrap sample MTEB draws."""
    rng = np.random.default_rng(0)
    words = WORDS
    rows = []
    for _ in range(n):
        picked = rng.choice(len(words), size=3)
        rows.append({"text": " ".join(words[i] for i in picked), "label": "low" if picked[0] < 5 else "high"})
    return rows


@pytest.mark.parametrize(
    ("type_", "files"),
    [
        ("Retrieval", RETRIEVAL_FILES),
        ("Clustering", {"test.jsonl": _noisy_labelled_rows()}),
        (
            "Classification",  # string labels, numbered by our loader; MTEB undersamples 8 per label, 10 times
            {
                "train.jsonl": _noisy_labelled_rows(120),
                "test.jsonl": _noisy_labelled_rows(80)[40:],
            },
        ),
    ],
)
def test_generic_task_equals_mteb_evaluate_on_the_same_model(tmp_path, type_, files):
    """Our pipeline (cache, dims, encoder) vs plain `mteb.evaluate` with a SentenceTransformer, one fresh MTEB run
    per dim. Clustering catches MTEB's random state: a task object advances it with every evaluate, so each of our
    dims must get what a fresh MTEB run at that dim gets (the same bootstrap samples), not the next draws."""
    import mteb

    from embedforge.evaluation import load_task
    from embedforge.evaluation.mteb_tasks import build_mteb_task
    from embedforge.evaluation.types import get_task_type

    extra = {"train_split": "train"} if type_ == "Classification" else {}
    directory = make_task(tmp_path, f"Mock{type_}2", type_, files, **extra)
    ours = evaluate(bow_model(), [directory], cache_dir=None, dims=[11, 5, 3])
    for dim in (11, 5, 3):
        loaded = load_task(directory)
        task = build_mteb_task(loaded.spec, get_task_type(loaded.spec), loaded.data, plain=True)
        reference = bow_model()
        reference.truncate_dim = dim
        result = mteb.evaluate(
            reference,
            task,
            cache=None,
            show_progress_bar=False,
            encode_kwargs={"batch_size": 32, "normalize_embeddings": dim < 11},  # renormalize truncated dims
        )
        theirs = result.task_results[0].scores["test"][0]["main_score"]
        (record,) = [r for r in ours.records if r["dim"] == dim]
        assert record["main_score"] == pytest.approx(theirs, abs=1e-9), dim


def test_fingerprint_tells_a_causal_from_a_bidirectional_decoder(tmp_path):
    from embedforge.evaluation.cache import model_fingerprint
    from embedforge.models import load_model
    from embedforge.models.tiny import build_tiny_model

    folder = build_tiny_model("llama", tmp_path / "llama")
    bidirectional = load_model(folder, bidirectional=True)
    causal = load_model(folder, bidirectional=False)
    assert model_fingerprint(bidirectional) != model_fingerprint(causal)
    assert model_fingerprint(bidirectional) == model_fingerprint(load_model(folder, bidirectional=True))
