"""Issue 12 (eval): --output naming a file fails first, undefined STS scores, one-row and non-UTF-8 task files."""

from __future__ import annotations

import json
import logging

import pytest

from embedforge.cli import main
from embedforge.errors import ConfigError, DataError
from embedforge.evaluation import evaluate, load_tasks
from tests.evaluation.conftest import make_task


def test_eval_output_naming_a_file_fails_before_any_work(tmp_path, task_dirs, monkeypatch, capsys):
    def no_loading(*args, **kwargs):
        raise AssertionError("the model was loaded before --output was checked")

    monkeypatch.setattr("embedforge.models.load_model", no_loading)
    existing = tmp_path / "scores.json"
    existing.write_text("keep me")
    status = main(["eval", "--model", "any", "--tasks", str(task_dirs["STS"]), "--output", str(existing)])
    err = capsys.readouterr().err
    assert status == 2 and "Traceback" not in err
    assert (
        err.strip() == f"embedforge eval: error: --output {existing}: is a file; name a folder (results.json, "
        "leaderboard.md, scores.png)"
    )
    assert existing.read_text() == "keep me"


def test_eval_output_under_a_file_fails_before_any_work(tmp_path, task_dirs, model):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match=r"--output .*file/out: .*file is a file"):
        evaluate(model, [task_dirs["STS"]], tmp_path / "file" / "out", cache_dir=None)


def _sts(tmp_path, pairs):
    rows = [{"sentence1": a, "sentence2": b, "score": s} for a, b, s in pairs]
    return make_task(tmp_path, "TinySTS", "STS", {"test.jsonl": rows}, score_range=[0, 5])


def test_sts_with_constant_gold_scores_is_an_error_naming_the_file(tmp_path):
    task = _sts(tmp_path, [("apple", "banana", 3.0), ("fig", "kiwi", 3.0), ("lemon", "mango", 3.0)])
    with pytest.raises(DataError, match=r"TinySTS/test\.jsonl: every pair has the gold score 3\.0; the Spearman"):
        load_tasks([task])


def test_one_row_sts_file_is_an_error_naming_the_file(tmp_path):
    task = _sts(tmp_path, [("apple", "banana", 3.0)])
    with pytest.raises(DataError, match=r"TinySTS/test\.jsonl: an STS file needs at least 2 pairs"):
        load_tasks([task])


def test_undefined_main_score_is_written_as_null_with_a_warning(tmp_path, model, caplog):
    # every pair is a text with itself: cosine 1 everywhere, so the Spearman correlation is NaN
    task = _sts(tmp_path, [("apple", "apple", 1.0), ("fig", "fig", 2.0), ("kiwi", "kiwi", 4.0)])
    with caplog.at_level(logging.WARNING):
        report = evaluate(model, [task], tmp_path / "out", cache_dir=None)
    assert report.records[0]["main_score"] is None
    assert "cosine_spearman is undefined" in caplog.text

    def no_nan(name):
        raise AssertionError(f"results.json holds {name}, which is not JSON")

    records = json.loads((tmp_path / "out" / "results.json").read_text(), parse_constant=no_nan)
    assert records[0]["main_score"] is None
    assert "–" in (tmp_path / "out" / "leaderboard.md").read_text()


def test_non_utf8_eval_file_names_file_and_line(tmp_path):
    task = _sts(tmp_path, [("apple", "banana", 3.0), ("fig", "kiwi", 1.0)])
    data = (task / "test.jsonl").read_bytes().replace(b"kiwi", b"k\xeewi")
    (task / "test.jsonl").write_bytes(data)
    with pytest.raises(DataError, match=r"TinySTS/test\.jsonl:2: not UTF-8 text: byte 0xee"):
        load_tasks([task])
