"""Converters by source kind: exact training rows, thresholds, example-based labels, negatives, empty texts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from embedforge.data.config import DatasetConfig
from embedforge.data.converters import Source, convert
from embedforge.errors import DataError


def source(columns: dict, path: str = "/data/src.jsonl", lines=None) -> Source:
    size = len(next(iter(columns.values())))
    return Source(Path(path), {k: list(v) for k, v in columns.items()}, lines or list(range(1, size + 1)))


def run(kind: str, columns: dict, seed: int = 0, **options):
    config = DatasetConfig(name="d", path="/data/src.jsonl", kind=kind, **options)
    return convert(source(columns), config, np.random.default_rng(seed))


def rows(converted) -> list[tuple]:
    """The text columns' rows (the class-id column of labelled kinds is checked on its own)."""
    return list(zip(*(v for k, v in converted.columns.items() if k != "label"), strict=True))


def test_pairs_exact():
    out = run("pairs", {"anchor": ["a1", "a2"], "positive": ["p1", "p2"]})
    assert list(out.columns) == ["anchor", "positive"]
    assert rows(out) == [("a1", "p1"), ("a2", "p2")]


def test_triplets_list_column_and_min_negatives():
    out = run(
        "triplets",
        {"anchor": ["a1", "a2"], "positive": ["p1", "p2"], "negative": [["n1", "n2", "n3"], ["m1", "m2"]]},
    )
    # num_negatives None: as many as every row has (2); the 3-negative row keeps a sample of 2, in file order
    assert list(out.columns) == ["anchor", "positive", "negative_1", "negative_2"]
    first = rows(out)[0]
    assert first[:2] == ("a1", "p1") and set(first[2:]) < {"n1", "n2", "n3"}
    source_order = ["n1", "n2", "n3"]
    assert source_order.index(first[2]) < source_order.index(first[3])  # the sample keeps file order
    assert rows(out)[1] == ("a2", "p2", "m1", "m2")


def test_triplets_numbered_negative_columns():
    columns = {"anchor": ["a"], "positive": ["p"], "negative_2": ["y"], "negative_1": ["x"]}
    assert rows(run("triplets", columns)) == [("a", "p", "x", "y")]


def test_triplets_too_few_negatives_drop_or_fill():
    columns = {"anchor": ["a1", "a2", "a3"], "positive": ["p1", "p2", "p3"], "negative": [["n1", "n2"], ["m1"], []]}
    dropped = run("triplets", columns, num_negatives=2)
    assert rows(dropped) == [("a1", "p1", "n1", "n2")]
    assert dropped.counts["dropped_too_few_negatives"] == 2
    filled = run("triplets", columns, num_negatives=2, negatives_fill="random")
    assert len(filled) == 3 and filled.counts["filled_negatives"] == 2
    for anchor, positive, *negatives in rows(filled):
        assert len(set(negatives)) == 2 and anchor not in negatives and positive not in negatives
    assert rows(filled)[1][2] == "m1"  # the row's own negative comes first


def test_nli_grouped_by_premise_string_labels():
    columns = {
        "premise": ["P", "P", "P", "P", "Q", "R", "S"],
        "hypothesis": ["E1", "N", "C1", "E2", "Qn", "Re", "Se"],
        "label": ["entailment", "neutral", "contradiction", "entailment", "neutral", "entailment", "-"],
    }
    out = run("nli", columns)
    assert rows(out) == [("P", "E1", "C1"), ("P", "E2", "C1")]
    assert out.counts["premise_without_entailment"] == 1  # Q
    assert out.counts["dropped_too_few_negatives"] == 1  # R has no contradiction
    assert out.counts["no_gold_label"] == 1  # S


def test_nli_snli_int_labels_and_label_map():
    columns = {"premise": ["P", "P", "P"], "hypothesis": ["E", "N", "C"], "label": [0, 1, 2]}
    assert rows(run("nli", columns)) == [("P", "E", "C")]
    columns = {"premise": ["P", "P"], "hypothesis": ["E", "C"], "label": ["yes", "no"]}
    mapped = run("nli", columns, label_map={"yes": "entailment", "no": "contradiction"})
    assert rows(mapped) == [("P", "E", "C")]


def test_nli_unknown_label_names_line():
    columns = {"premise": ["P", "P"], "hypothesis": ["E", "C"], "label": ["entailment", "maybe"]}
    with pytest.raises(DataError, match=r"/data/src\.jsonl:2: unknown NLI label 'maybe'.*label_map"):
        run("nli", columns)


STS = {"sentence1": ["a", "b", "c", "d"], "sentence2": ["A", "B", "C", "D"], "score": [5.0, 4.2, 4.0, 1.0]}


def test_sts_cosent_keeps_normalized_scores():
    out = run("sts", STS)
    assert list(out.columns) == ["sentence1", "sentence2", "score"]
    assert rows(out) == [("a", "A", 1.0), ("b", "B", pytest.approx(0.84)), ("c", "C", 0.8), ("d", "D", 0.2)]


def test_sts_infonce_threshold_gives_both_directions():
    out = run("sts", STS, loss="infonce")
    # normalized > 0.8 (KaLM: score > 4 of 5): a/A and b/B, each in both directions; exactly 4.0 is not above
    assert rows(out) == [("a", "A"), ("A", "a"), ("b", "B"), ("B", "b")]
    assert out.counts["below_threshold"] == 2


def test_sts_binary_labels_infer_unit_range():
    out = run("sts", {"sentence1": ["a", "b"], "sentence2": ["A", "B"], "score": [1, 0]}, loss="infonce")
    assert rows(out) == [("a", "A"), ("A", "a")]


def test_sts_score_outside_range_names_line():
    with pytest.raises(DataError, match=r"src\.jsonl:2: score 7\.0 outside score_range"):
        run("sts", {"sentence1": ["a", "b"], "sentence2": ["A", "B"], "score": [1.0, 7.0]}, score_range=[0, 5])
    with pytest.raises(DataError, match="neither \\[0, 1\\] nor \\[0, 5\\]"):
        run("sts", {"sentence1": ["a", "b"], "sentence2": ["A", "B"], "score": [1.0, 7.0]})


CLASSES = {
    "text": ["cat1", "dog1", "cat2", "bird1", "dog2", "cat3", "bird2", "fish1"],
    "label": ["cat", "dog", "cat", "bird", "dog", "cat", "bird", "fish"],
}


def test_example_based_labels():
    out = run("classification", CLASSES, num_negatives=2)
    label_of = dict(zip(CLASSES["text"], CLASSES["label"], strict=True))
    assert list(out.columns) == ["anchor", "positive", "negative_1", "negative_2", "label"]
    assert len(out) == 7 and out.counts["no_other_text_with_label"] == 1  # fish1 is alone in its class
    class_of = {"cat": 0, "dog": 1, "bird": 2, "fish": 3}  # class ids in order of first appearance
    for (anchor, positive, negative_1, negative_2), classes in zip(rows(out), out.columns["label"], strict=True):
        assert positive != anchor and label_of[positive] == label_of[anchor]
        assert label_of[negative_1] != label_of[anchor] and label_of[negative_2] != label_of[anchor]
        assert label_of[negative_1] != label_of[negative_2]  # one per other label while there are enough labels
        # the class ids the loss masks with: anchor (= positive), then each negative's
        assert classes == [class_of[label_of[anchor]], class_of[label_of[negative_1]], class_of[label_of[negative_2]]]


def test_label_name_rows():
    """KaLM-V2 §3.4.2: (text, its label's name, other labels' names); the instruction on the text only."""
    out = run("classification", {**CLASSES, "label": [f"{x}_pet" for x in CLASSES["label"]]}, label_names=True,
              num_negatives=2)  # fmt: skip
    assert list(out.columns) == ["anchor", "positive", "negative_1", "negative_2", "label"]
    assert len(out) == 8  # every text, fish1 too: its positive is a name, not another text
    names = ["cat pet", "dog pet", "bird pet", "fish pet"]
    rows_ = zip(rows(out), CLASSES["label"], out.columns["label"], strict=True)
    for (anchor, positive, negative_1, negative_2), label, classes in rows_:
        assert anchor in CLASSES["text"] and positive == f"{label} pet"
        assert {negative_1, negative_2} <= set(names) - {positive}
        assert negative_1 != negative_2
        assert [names[c] for c in classes] == [positive, negative_1, negative_2]
    config = DatasetConfig(name="d", path="x.jsonl", kind="classification", label_names=True)
    assert config.is_symmetric is False and DatasetConfig(name="d", path="x", kind="classification").is_symmetric
    with pytest.raises(Exception, match="'label_names' needs labelled texts"):
        DatasetConfig(name="d", path="x.jsonl", kind="pairs", label_names=True)


def test_example_based_labels_deterministic_given_seed():
    first = rows(run("clustering", CLASSES, seed=5, num_negatives=2))
    assert first == rows(run("clustering", CLASSES, seed=5, num_negatives=2))
    others = [rows(run("clustering", CLASSES, seed=s, num_negatives=2)) for s in range(6, 12)]
    assert any(other != first for other in others)


def test_one_class_is_an_error_naming_file_and_label():
    with pytest.raises(DataError, match=r"/data/src\.jsonl: only one label \('spam'\)"):
        run("classification", {"text": ["a", "b", "c"], "label": ["spam", "spam", "spam"]})


def test_retrieval_rows_trecqa_style():
    columns = {
        "query": ["q1", "q2", "q3"],
        "positives": [["p1", "p2"], [], ["p3"]],
        "negatives": [["n1", "n2"], ["x"], ["n3", "n4", "n5"]],
    }
    out = run("retrieval", columns, num_negatives=2)
    assert [r[:2] for r in rows(out)] == [("q1", "p1"), ("q1", "p2"), ("q3", "p3")]
    assert rows(out)[0][2:] == ("n1", "n2") and set(rows(out)[2][2:]) < {"n3", "n4", "n5"}
    assert out.counts["query_without_positive"] == 1


def test_retrieval_single_positive_column_without_negatives():
    out = run("retrieval", {"query": ["q1", "q2"], "positive": ["p1", "p2"]})
    assert rows(out) == [("q1", "p1"), ("q2", "p2")]


def test_empty_text_is_an_error_naming_file_line():
    config = DatasetConfig(name="d", path="/data/src.jsonl", kind="pairs")
    data = source({"anchor": ["a", "b", ""], "positive": ["p", "q", "r"]}, lines=[1, 2, 5])
    with pytest.raises(DataError, match=r"/data/src\.jsonl:5: empty text in column 'anchor'.*on_empty: skip"):
        convert(data, config, np.random.default_rng(0))
    data = source({"anchor": ["a", "b"], "positive": ["p", "  "]})
    with pytest.raises(DataError, match=r"src\.jsonl:2: empty text in column 'positive'"):
        convert(data, config, np.random.default_rng(0))


def test_empty_text_skipped_and_counted():
    out = run("pairs", {"anchor": ["a", None, "c"], "positive": ["p", "q", ""]}, on_empty="skip")
    assert rows(out) == [("a", "p")]
    assert out.counts["skipped_empty_text"] == 2
    listed = run("retrieval", {"query": ["q"], "positives": [["p", ""]], "negatives": [["n", " "]]}, on_empty="skip")
    assert rows(listed) == [("q", "p", "n")] and listed.counts["skipped_empty_text"] == 2


def test_parquet_rows_are_located_by_row_number():
    data = Source(Path("/data/x.parquet"), {"anchor": ["a", ""], "positive": ["p", "q"]}, [1, 2], numbered_rows=True)
    config = DatasetConfig(name="d", path="/data/x.parquet", kind="pairs")
    with pytest.raises(DataError, match=r"/data/x\.parquet: row 2: empty text"):
        convert(data, config, np.random.default_rng(0))
