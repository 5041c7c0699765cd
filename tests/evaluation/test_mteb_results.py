"""embedforge's output read back by mteb itself (``ResultCache.load_results`` and the older ``load_results``)."""

from __future__ import annotations

import json
import warnings

import pytest

from embedforge.evaluation import evaluate


def test_mteb_reads_the_result_files_evaluate_writes(model, task_dirs, tmp_path, monkeypatch):
    import mteb

    out = tmp_path / "out"
    evaluate(model, [task_dirs["STS"], task_dirs["Retrieval"]], out, cache_dir=None, dims=[11, 4], model_name="bow")
    ours = {(r["task"], r["dim"]): r["main_score"] for r in json.loads((out / "results.json").read_text())}

    loaded = mteb.ResultCache(out / "mteb").load_results(include_remote=False)
    scores = {
        (task.task_name, 4 if model.model_name.endswith("-dim4") else 11): task.get_score()
        for model in loaded.model_results
        for task in model.task_results
    }
    assert {m.model_name for m in loaded.model_results} == {"embedforge/bow", "embedforge/bow-dim4"}
    assert scores.keys() == ours.keys()
    for key, value in ours.items():
        assert scores[key] == pytest.approx(value)

    monkeypatch.setenv("MTEB_CACHE", str(out / "mteb"))  # the older entry point reads $MTEB_CACHE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        legacy = mteb.load_results(download_latest=False, validate_and_filter=False)
    assert {m.model_name for m in legacy.model_results} == {"embedforge/bow", "embedforge/bow-dim4"}


def test_a_preset_is_written_under_its_hub_id():
    from embedforge.evaluation.report import _mteb_model_name

    assert _mteb_model_name("all-MiniLM-L6-v2") == "sentence-transformers/all-MiniLM-L6-v2"
    assert _mteb_model_name("quickstart") == "quickstart"
