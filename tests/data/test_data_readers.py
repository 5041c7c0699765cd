"""Readers: jsonl, jsonl.gz, parquet, BEIR, save_to_disk; column mapping; bad-input errors with path:line."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from embedforge.data.readers import LINE_COLUMN, detect_format, read_beir, read_dataset
from embedforge.errors import DataError

ROWS = [
    {"summary": "terminal emulator", "description": "A fast terminal emulator for X.", "section": "x11"},
    {"summary": "image viewer", "description": "View images from the command line.", "section": "graphics"},
    {"summary": "tiny editor", "description": "A small text editor.", "section": "editors"},
]


def write_jsonl(path: Path, rows, blank_after: int | None = None) -> Path:
    lines = [json.dumps(row) for row in rows]
    if blank_after is not None:
        lines.insert(blank_after, "")
    text = "\n".join(lines) + "\n"
    if path.name.endswith(".gz"):
        with gzip.open(path, "wt", encoding="utf-8") as handle:
            handle.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("name", ["pairs.jsonl", "pairs.jsonl.gz"])
def test_jsonl_and_gz_with_mapping_and_line_numbers(tmp_path, name):
    path = write_jsonl(tmp_path / name, ROWS, blank_after=1)  # a blank line 2: rows are on lines 1, 3, 4
    dataset = read_dataset(path, columns={"anchor": "summary", "positive": "description"}, line_numbers=True)
    assert detect_format(path) == "jsonl"
    assert dataset["anchor"] == [r["summary"] for r in ROWS]
    assert dataset["positive"] == [r["description"] for r in ROWS]
    assert dataset["section"] == [r["section"] for r in ROWS]  # unmapped columns keep their names
    assert dataset[LINE_COLUMN] == [1, 3, 4]


def test_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "pairs.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS), path)
    dataset = read_dataset(path, columns={"anchor": "summary"}, required=["anchor"], line_numbers=True)
    assert detect_format(path) == "parquet"
    assert dataset["anchor"] == [r["summary"] for r in ROWS]
    assert dataset[LINE_COLUMN] == [1, 2, 3]


def test_load_from_disk_dataset_and_dataset_dict(tmp_path):
    from datasets import Dataset, DatasetDict

    Dataset.from_list(ROWS).save_to_disk(str(tmp_path / "single"))
    DatasetDict({"train": Dataset.from_list(ROWS[:2]), "dev": Dataset.from_list(ROWS[2:])}).save_to_disk(
        str(tmp_path / "dict")
    )
    assert detect_format(tmp_path / "single") == "disk"
    assert read_dataset(tmp_path / "single")["summary"] == [r["summary"] for r in ROWS]
    assert read_dataset(tmp_path / "dict", split="dev")["summary"] == ["tiny editor"]
    with pytest.raises(DataError, match="no split 'test'"):
        read_dataset(tmp_path / "dict", split="test")


def make_beir(root: Path, qrels: str) -> Path:
    write_jsonl(
        root / "corpus.jsonl",
        [
            {"_id": "d1", "title": "Cats", "text": "Cats purr."},
            {"_id": "d2", "title": "", "text": "Dogs bark."},
            {"_id": "d3", "text": "Fish swim."},
        ],
    )
    write_jsonl(root / "queries.jsonl", [{"_id": "q1", "text": "what purrs"}, {"_id": "q2", "text": "who barks"}])
    (root / "qrels").mkdir()
    (root / "qrels" / "train.tsv").write_text(qrels, encoding="utf-8")
    return root


def test_beir_directory(tmp_path):
    root = make_beir(tmp_path, "query-id\tcorpus-id\tscore\nq2\td2\t1\nq1\td1\t1\nq1\td3\t0\nq2\td1\t2\n")
    assert detect_format(root) == "beir"
    dataset = read_beir(root, split="train", line_numbers=True)
    assert dataset["query"] == ["who barks", "what purrs"]  # order of first qrels line
    assert dataset["positives"] == [["Dogs bark.", "Cats Cats purr."], ["Cats Cats purr."]]  # title + " " + text
    assert dataset["negatives"] == [[], ["Fish swim."]]  # judged with score 0
    assert dataset[LINE_COLUMN] == [2, 3]


def test_beir_unknown_ids_name_qrels_line(tmp_path):
    root = make_beir(tmp_path, "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td9\t1\n")
    with pytest.raises(DataError, match=r"qrels/train\.tsv:3: unknown document id 'd9'"):
        read_beir(root)
    (root / "qrels" / "train.tsv").write_text("q7\td1\t1\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"qrels/train\.tsv:1: unknown query id 'q7'"):
        read_beir(root)
    with pytest.raises(DataError, match="no qrels for split 'dev'.*set 'split' to one of: train"):
        read_beir(root, split="dev")


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"nope\.jsonl: file not found"):
        read_dataset(tmp_path / "nope.jsonl")


def test_malformed_json_line_names_path_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"anchor": "a", "positive": "b"}\n{"anchor": "c", "positive": \n', encoding="utf-8")
    with pytest.raises(DataError, match=rf"{path}:2: malformed JSON"):
        read_dataset(path)


def test_missing_column_names_file_column_and_present_columns(tmp_path):
    path = write_jsonl(tmp_path / "pairs.jsonl", ROWS)
    with pytest.raises(DataError) as error:
        read_dataset(path, required=["anchor", "positive"])
    message = str(error.value)
    assert str(path) in message
    assert "missing column 'anchor'" in message
    assert "columns present: summary, description, section" in message
    assert "columns: {anchor: summary}" in message  # the mapping to write


def test_misnamed_mapped_column(tmp_path):
    path = write_jsonl(tmp_path / "pairs.jsonl", ROWS)
    with pytest.raises(
        DataError, match="column 'sumary' \\(mapped to 'anchor'\\) not found.*columns: {anchor: summary}"
    ):
        read_dataset(path, columns={"anchor": "sumary"})


def test_several_columns_gathered_into_a_list(tmp_path):
    rows = [{"q": "a", "p": "b", "n1": "c", "n2": "d"}, {"q": "e", "p": "f", "n1": "g", "n2": "h"}]
    dataset = read_dataset(write_jsonl(tmp_path / "t.jsonl", rows), columns={"negative": ["n1", "n2"]})
    assert dataset["negative"] == [["c", "d"], ["g", "h"]]


def test_mixed_types_name_the_line(tmp_path):
    path = write_jsonl(tmp_path / "mixed.jsonl", [{"text": "a", "label": 1}, {"text": "b", "label": "x"}])
    with pytest.raises(DataError, match=rf"{path}:2: column 'label' mixes value types"):
        read_dataset(path)


def test_unknown_format(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("a,b\n", encoding="utf-8")
    with pytest.raises(DataError, match="cannot tell the format"):
        detect_format(path)
    with pytest.raises(DataError, match="neither a BEIR directory"):
        detect_format(tmp_path)
