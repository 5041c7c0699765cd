"""Hard-negative mining: rank window, false-negative filter, prompts, seed — checked against a brute-force ranking."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from datasets import Dataset

from embedforge.data import DatasetConfig
from embedforge.errors import ConfigError, DataError
from embedforge.mining import mine_hard_negatives, read_corpus
from embedforge.mining.miner import _drop_anchor_negatives, load_pairs

DATA = Path(__file__).resolve().parents[2] / "data" / "train"
INSTRUCTION = "Given a package summary, retrieve its description"
PROMPT = f"Instruct: {INSTRUCTION}\nQuery: "


def debian(max_rows: int = 80, **extra) -> dict:
    return {
        "name": "debian",
        "path": str(DATA / "debian/pairs.jsonl.gz"),
        "kind": "pairs",
        "columns": {"anchor": "summary", "positive": "description"},
        "max_rows": max_rows,
        "instruction": INSTRUCTION,
        **extra,
    }


def source_rows(config: dict, seed: int) -> Dataset:
    """The (anchor, positive) pairs the miner starts from (same reader, subset and seed)."""
    return load_pairs(DatasetConfig.from_dict(config), seed)[0]


def brute_force(model, rows, *, query_prompt, corpus_prompt, extra=()):
    """Scores of every anchor against every candidate text (the input pairs' positives + ``extra``),
    computed independently of the miner."""
    anchors = list(dict.fromkeys(rows["anchor"]))
    texts = list(dict.fromkeys([*extra, *rows["positive"]]))
    q = model.encode(anchors, prompt=query_prompt, normalize_embeddings=True, convert_to_numpy=True)
    d = model.encode(texts, prompt=corpus_prompt, normalize_embeddings=True, convert_to_numpy=True)
    positives: dict[str, set[str]] = {}
    for anchor, positive in zip(rows["anchor"], rows["positive"], strict=True):
        positives.setdefault(anchor, set()).add(positive)
    return {a: dict(zip(texts, (q[i] @ d.T).tolist(), strict=True)) for i, a in enumerate(anchors)}, positives


def check_window(mined, scores, positives, *, range_min, range_max, survives=lambda s, pos: True, tol=2e-5):
    """Every negative is a non-positive candidate whose rank among the surviving candidates is in the window."""
    negative_columns = [c for c in mined.column_names if c.startswith("negative")]
    checked = 0
    for row in mined:
        row_scores = scores[row["anchor"]]
        own = positives[row["anchor"]]
        s_pos = min(row_scores[p] for p in own)
        ranked = sorted((s for t, s in row_scores.items() if t not in own and survives(s, s_pos)), reverse=True)
        high = ranked[range_min]
        low = ranked[min(range_max, len(ranked)) - 1]
        negatives = [row[c] for c in negative_columns]
        assert len(set(negatives)) == len(negatives), "a row repeats a negative"
        for negative in negatives:
            assert negative not in own, "a positive came back as a negative"
            assert negative != row["anchor"]
            assert survives(row_scores[negative], s_pos), "a filtered candidate came back as a negative"
            assert low - tol <= row_scores[negative] <= high + tol, (
                f"negative score {row_scores[negative]:.5f} outside the window [{low:.5f}, {high:.5f}]"
            )
            checked += 1
    return checked


def test_negatives_come_from_the_rank_window_and_never_the_positive(tiny_model):
    result = mine_hard_negatives(
        tiny_model, debian(), range_min=10, range_max=30, num_negatives=4, relative_margin=None, seed=3
    )
    mined, stats = result.dataset, result.stats
    assert mined.column_names == ["anchor", "positive", "negative_1", "negative_2", "negative_3", "negative_4"]
    assert stats.rows == len(mined) == stats.pairs == 80  # no filter: every pair fills its 4 negatives
    assert stats.rows_without_enough_negatives == 0 and stats.filtered_candidates == {}
    # the training prompt is on the anchors only (asymmetric pairs)
    assert stats.settings["query_prompt"] == PROMPT and stats.settings["corpus_prompt"] == ""
    rows = source_rows(debian(), seed=3)
    scores, positives = brute_force(tiny_model, rows, query_prompt=PROMPT, corpus_prompt="")
    assert check_window(mined, scores, positives, range_min=10, range_max=30) == 80 * 4
    # and the prompt mattered: without it the brute-force window does not hold for every negative
    plain, _ = brute_force(tiny_model, rows, query_prompt="", corpus_prompt="")
    with pytest.raises(AssertionError, match="outside the window"):
        check_window(mined, plain, positives, range_min=10, range_max=30)


def test_false_negative_filter_is_respected_and_counted(tiny_model):
    margin = 0.004  # the tiny random model scores everything ~0.95-0.99, so a small margin already bites
    result = mine_hard_negatives(
        tiny_model, debian(), range_min=2, range_max=40, num_negatives=3, relative_margin=margin, seed=0
    )
    mined, stats = result.dataset, result.stats
    assert stats.filtered_candidates.get("relative_margin", 0) > 0
    assert stats.rows + stats.rows_without_enough_negatives == stats.pairs
    assert 0 < stats.rows < stats.pairs  # the filter left some pairs without enough negatives
    rows = source_rows(debian(), seed=0)
    scores, positives = brute_force(tiny_model, rows, query_prompt=PROMPT, corpus_prompt="")

    def survives(score, s_pos):
        return score <= s_pos - abs(s_pos) * margin

    assert check_window(mined, scores, positives, range_min=2, range_max=40, survives=survives) == 3 * stats.rows


def test_a_near_duplicate_of_the_positive_is_dropped_as_a_false_negative(tiny_model):
    # identity pairs (SimCSE-style): the positive is the anchor's own text; the corpus holds a near-copy of some
    texts = [row["description"] for row in _debian_rows(40)]
    pairs = Dataset.from_dict({"anchor": texts, "positive": texts})
    near_copies = [t + " ." for t in texts[:10]]
    options = {"range_min": 0, "range_max": 5, "num_negatives": 1, "sampling": "top", "relative_margin": None}
    unfiltered = mine_hard_negatives(tiny_model, pairs, corpus=near_copies, **options).dataset
    # without a filter the near-copy is the hardest "negative" of its anchor
    assert sum(row["negative_1"] == row["anchor"] + " ." for row in unfiltered) == 10
    filtered = mine_hard_negatives(tiny_model, pairs, corpus=near_copies, **{**options, "absolute_margin": 0.003})
    assert not any(row["negative_1"] == row["anchor"] + " ." for row in filtered.dataset)
    assert filtered.stats.filtered_candidates["absolute_margin"] >= 10
    assert filtered.stats.rows == 40  # the next candidate took the near-copy's place


def test_same_seed_same_negatives_other_seed_other_negatives(tiny_model):
    options = {"range_min": 5, "range_max": 35, "num_negatives": 3, "relative_margin": None}
    state = random.getstate()
    data = debian(60, seed=5)  # the dataset's own seed fixes its max_rows subset; the mining seed the sampling
    first = mine_hard_negatives(tiny_model, data, seed=11, **options).dataset.to_list()
    assert random.getstate() == state, "the caller's random state was changed"
    again = mine_hard_negatives(tiny_model, data, seed=11, **options).dataset.to_list()
    other = mine_hard_negatives(tiny_model, data, seed=12, **options).dataset.to_list()
    assert first == again
    assert first != other
    assert [r["anchor"] for r in first] == [r["anchor"] for r in other]


def test_triplet_output_and_symmetric_prompts(tiny_model):
    sts = {
        "name": "stsb",
        "path": str(DATA / "stsb/train.jsonl"),
        "kind": "sts",
        "max_rows": 60,
        "instruction": "Retrieve semantically similar text",
    }
    result = mine_hard_negatives(
        tiny_model, sts, range_min=1, range_max=20, num_negatives=2, relative_margin=None, output_format="triplet"
    )
    mined = result.dataset
    assert mined.column_names == ["anchor", "positive", "negative"]
    # symmetric data: the instruction goes on both sides, as in training
    prompt = "Instruct: Retrieve semantically similar text\nQuery: "
    assert result.stats.settings["query_prompt"] == result.stats.settings["corpus_prompt"] == prompt
    assert all(row["negative"] not in (row["anchor"], row["positive"]) for row in mined)
    assert len(mined) == 2 * (result.stats.pairs - result.stats.rows_without_enough_negatives)


def test_rows_whose_anchor_comes_back_as_a_negative_are_dropped():
    rows = Dataset.from_dict(
        {"anchor": list("abc"), "positive": list("pqr"), "negative_1": list("xby"), "negative_2": list("zzc")}
    )
    kept, dropped = _drop_anchor_negatives(rows)
    assert dropped == 2 and kept["anchor"] == ["a"]


def test_bad_input_is_a_clear_error(tiny_model, tmp_path):
    with pytest.raises(ConfigError, match="too few for 7 negatives from rank 50"):
        mine_hard_negatives(tiny_model, debian(30))
    with pytest.raises(ConfigError, match="num_negatives: 9 negatives do not fit in ranks"):
        mine_hard_negatives(tiny_model, debian(30), range_min=0, range_max=5, num_negatives=9)
    with pytest.raises(ConfigError, match="sampling: 'topk' is not valid. Did you mean 'top'"):
        mine_hard_negatives(tiny_model, debian(30), sampling="topk")
    with pytest.raises(ConfigError, match="kind 'classification' is not mined"):
        mine_hard_negatives(
            tiny_model, {"name": "x", "path": str(DATA / "stsb/train.jsonl"), "kind": "classification"}
        )
    with pytest.raises(DataError, match="missing \\['positive'\\]"):
        mine_hard_negatives(tiny_model, Dataset.from_dict({"anchor": ["a"], "document": ["b"]}))
    empty = tmp_path / "corpus.jsonl"
    empty.write_text("\n")
    with pytest.raises(DataError, match=f"{empty}: the corpus has no texts"):
        read_corpus(empty)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"body": "no text field"}\n')
    with pytest.raises(DataError, match=f"{bad}:2: no text in field 'text'"):
        read_corpus(bad)


def test_read_corpus_formats(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"title": "T", "text": "one"}\n{"text": "two"}\n')
    (tmp_path / "b.txt").write_text("two\nthree\n\n")
    assert read_corpus([tmp_path / "a.jsonl", tmp_path / "b.txt"]) == ["T one", "two", "three"]


def _debian_rows(count: int) -> list[dict]:
    from embedforge.utils.io import iter_jsonl

    rows = []
    for _, row in iter_jsonl(DATA / "debian/pairs.jsonl.gz"):
        rows.append(row)
        if len(rows) == count:
            return rows
    return rows


def test_brute_force_helper_detects_a_wrong_window(tiny_model):
    """The checker used above fails on negatives from outside the window (so its passing means something)."""
    result = mine_hard_negatives(
        tiny_model, debian(40), range_min=20, range_max=30, num_negatives=2, relative_margin=None, seed=1
    )
    rows = source_rows(debian(40), seed=1)
    scores, positives = brute_force(tiny_model, rows, query_prompt=PROMPT, corpus_prompt="")
    assert check_window(result.dataset, scores, positives, range_min=20, range_max=30) == 2 * 40
    with pytest.raises(AssertionError, match="outside the window"):
        check_window(result.dataset, scores, positives, range_min=0, range_max=10)
    assert np.isfinite(result.stats.mean_negative_score)


def test_mine_cli_writes_triplets_a_recipe_can_read(tiny_model_dir, tmp_path, capsys):
    from embedforge.cli import main
    from embedforge.data import load_training_datasets

    out = tmp_path / "mined.jsonl"
    argv = ["mine", "--model", str(tiny_model_dir), "--data", str(DATA / "debian/pairs.jsonl.gz")]
    argv += ["--columns", "anchor=summary", "positive=description", "--max-rows", "40", "--instruction", INSTRUCTION]
    window = ["--range-min", "3", "--range-max", "15", "--num-negatives", "2", "--relative-margin", "none"]
    assert main([*argv, *window, "--output", str(out), "--quiet"]) == 0
    assert '"rows": 40' in capsys.readouterr().out
    datasets, info = load_training_datasets([{"name": "mined", "path": str(out), "kind": "triplets"}])
    assert info["mined"].num_negatives == 2 and info["mined"].rows == 40
    assert main([*argv, "--range-min", "5", "--range-max", "3", "--output", str(out)]) == 2
    assert "range_max: must be greater than range_min (5), got 3" in capsys.readouterr().err
    assert main([*argv, *window, "--corpus", str(tmp_path / "missing.jsonl"), "--output", str(out)]) == 2
    assert "missing.jsonl: corpus file not found" in capsys.readouterr().err


def test_faiss_search_finds_the_same_negatives_as_torch(tiny_model):
    pytest.importorskip("faiss")
    options = {"range_min": 3, "range_max": 12, "num_negatives": 3, "sampling": "top", "relative_margin": None}
    with_torch = mine_hard_negatives(tiny_model, debian(40), **options).dataset.to_list()
    with_faiss = mine_hard_negatives(tiny_model, debian(40), use_faiss=True, **options).dataset.to_list()
    assert with_faiss == with_torch
