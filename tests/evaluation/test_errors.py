"""Bad input: a clear error naming the file (and line), and nothing half-written in OUT."""

from __future__ import annotations

import json

import pytest

from embedforge.cli import main
from embedforge.errors import ConfigError, DataError
from embedforge.evaluation import evaluate, load_task
from tests.evaluation.conftest import RETRIEVAL_FILES, make_task


def test_missing_data_file(tmp_path):
    directory = make_task(tmp_path, "NoData", "STS", {})
    with pytest.raises(DataError, match=r"NoData/test\.jsonl: missing data file"):
        load_task(directory)


def test_missing_task_json(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty/task\.json: missing task\.json"):
        load_task(tmp_path / "empty")


def test_malformed_json_line(tmp_path):
    directory = make_task(tmp_path, "Broken", "STS", {})
    (directory / "test.jsonl").write_text('{"sentence1": "a", "sentence2": "b", "score": 1}\n{"sentence1": "a",\n')
    with pytest.raises(DataError, match=r"Broken/test\.jsonl:2: malformed JSON"):
        load_task(directory)


def test_unknown_task_type(tmp_path):
    directory = make_task(tmp_path, "Odd", "Retreival", {})
    with pytest.raises(DataError, match=r"Odd/task\.json: unknown task type 'Retreival'\. Did you mean 'Retrieval'"):
        load_task(directory)


def test_qrels_row_naming_a_missing_document(tmp_path):
    files = dict(RETRIEVAL_FILES)
    files["qrels/test.tsv"] = "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td404\t1\n"
    directory = make_task(tmp_path, "BadQrels", "Retrieval", files)
    with pytest.raises(DataError, match=r"qrels/test\.tsv:3: qrels names document 'd404'"):
        load_task(directory)


@pytest.mark.parametrize(
    ("type_", "files", "where"),
    [
        (
            "STS",
            {
                "test.jsonl": [
                    {"sentence1": "a", "sentence2": "b", "score": 1},
                    {"sentence1": " ", "sentence2": "b", "score": 2},
                ]
            },
            r"test\.jsonl:2: field 'sentence1' is an empty text",
        ),
        (
            "Retrieval",
            {**RETRIEVAL_FILES, "queries.jsonl": [{"_id": "q1", "text": "apple"}, {"_id": "q2", "text": ""}]},
            r"queries\.jsonl:2: field 'text' is an empty text",
        ),
        (
            "Retrieval",
            {**RETRIEVAL_FILES, "corpus.jsonl": [{"_id": "d1", "title": "", "text": ""}]},
            r"corpus\.jsonl:1: field 'title \+ text' is an empty text",
        ),
    ],
)
def test_empty_text(tmp_path, type_, files, where):
    directory = make_task(tmp_path, "Empty", type_, files)
    with pytest.raises(DataError, match=where):
        load_task(directory)


def test_classification_with_one_label(tmp_path):
    rows = [{"text": f"text {i}", "label": "only"} for i in range(4)]
    directory = make_task(tmp_path, "OneLabel", "Classification", {"train.jsonl": rows, "test.jsonl": rows})
    with pytest.raises(DataError, match=r"OneLabel/train\.jsonl: every row has the label 'only'"):
        load_task(directory)


def test_missing_field_names_the_fields_present(tmp_path):
    directory = make_task(tmp_path, "Fields", "STS", {"test.jsonl": [{"text1": "a", "sentence2": "b", "score": 1}]})
    with pytest.raises(
        DataError,
        match=r"test\.jsonl:1: row lacks the field 'sentence1' \(fields present: \['score', 'sentence2', 'text1'\]\)",
    ):
        load_task(directory)


def test_unknown_protocol_key(tmp_path, model):
    directory = make_task(tmp_path, "Proto", "Retrieval", RETRIEVAL_FILES, protocol={"ignore_identical_idz": True})
    with pytest.raises(DataError, match=r"Proto/task\.json: protocol key 'ignore_identical_idz'"):
        evaluate(model, [directory], cache_dir=None)


def test_bad_dims(model, task_dirs):
    with pytest.raises(ConfigError, match="--dims: 4096 is not between 1 and the model's dimension 11"):
        evaluate(model, [task_dirs["STS"]], cache_dir=None, dims=[4096])


def test_failed_run_leaves_output_untouched(model, task_dirs, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text("previous run")
    broken = make_task(tmp_path / "more", "Broken", "STS", {})
    (broken / "test.jsonl").write_text("not json\n")
    with pytest.raises(DataError):
        evaluate(model, [task_dirs["STS"], broken], out, cache_dir=None)
    assert (out / "results.json").read_text() == "previous run"
    assert sorted(p.name for p in out.iterdir()) == ["results.json"]
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]


def test_cli_reports_bad_input_without_traceback(tmp_path, capsys):
    directory = make_task(tmp_path, "Odd", "Clusterring", {})
    status = main(["eval", "--model", "all-MiniLM-L6-v2", "--tasks", str(directory), "--output", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert status == 2
    assert "Odd/task.json: unknown task type 'Clusterring'. Did you mean 'Clustering'?" in err
    assert "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_cli_eval_writes_results(tmp_path, task_dirs, tiny_model_dir, capsys):
    status = main(
        [
            "eval",
            "--model",
            str(tiny_model_dir),
            "--tasks",
            str(task_dirs["STS"]),
            str(task_dirs["Reranking"]),
            "--output",
            str(tmp_path / "o"),
            "--dims",
            "32",
            "16",
            "--no-cache",
            "--quiet",
        ]
    )
    out = capsys.readouterr().out
    assert status == 0
    assert "Mean(TaskType)" in out and "@16" in out
    records = json.loads((tmp_path / "o" / "results.json").read_text())
    assert {(r["task"], r["dim"]) for r in records} == {
        ("MockSTS", 32),
        ("MockSTS", 16),
        ("MockReranking", 32),
        ("MockReranking", 16),
    }
