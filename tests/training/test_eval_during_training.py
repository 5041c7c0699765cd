"""Evaluation during training, per-dataset loss curves, the best model kept (tiny model, bundled data)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from embedforge.cli import main
from embedforge.errors import ConfigError
from embedforge.training.callbacks import parse_metric, smooth
from tests.training.conftest import REPO, tiny_recipe, write_recipe


def small_sts_task(folder: Path, rows: int = 60) -> Path:
    """The first ``rows`` pairs of the bundled STSBenchmark test set, as a task directory."""
    source = REPO / "data" / "eval" / "STSBenchmark"
    folder.mkdir(parents=True)
    (folder / "task.json").write_text((source / "task.json").read_text())
    lines = (source / "test.jsonl").read_text().splitlines()[:rows]
    (folder / "test.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def tensorboard_scalars(stage: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    scalars: dict[str, list[tuple[int, float]]] = {}
    for events in stage.glob("runs/*"):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        for tag in accumulator.Tags()["scalars"]:
            scalars.setdefault(tag, []).extend((e.step, e.value) for e in accumulator.Scalars(tag))
    return scalars


def test_eval_steps_log_scores_keep_the_best_model_and_use_it_as_final(tmp_path, tiny_bert_dir):
    task = small_sts_task(tmp_path / "tasks" / "STSBenchmark")
    raw = tiny_recipe(
        tiny_bert_dir,
        tmp_path / "out",
        eval_steps=2,
        eval_tasks=[str(task)],
        eval_dims=[32, 16],
        metric_for_best_model="STSBenchmark@16",
        load_best_model_at_end=True,
    )
    del raw["stages"]["pretrain"]
    assert main(["train", str(write_recipe(tmp_path / "r.yaml", raw)), "--quiet"]) == 0
    stage = tmp_path / "out" / "finetune"

    state = json.loads((stage / "checkpoint-6" / "trainer_state.json").read_text())
    evals = [e for e in state["log_history"] if "eval/STSBenchmark@16" in e]
    assert [e["step"] for e in evals] == [2, 4, 6]
    for entry in evals:
        assert set(entry) >= {"eval/STSBenchmark@32", "eval/mean@32", "eval/mean@16", "eval/best_step"}
        assert -1 <= entry["eval/STSBenchmark@32"] <= 1
    # per-dataset losses sit beside the Trainer's loss in the log, for both datasets of the stage
    losses = [e for e in state["log_history"] if "loss" in e]
    assert all("loss/snli" in e or "loss/stsb" in e for e in losses)
    assert any("loss_by_objective/CoSENTLoss" in e for e in losses)
    assert any("loss_by_objective/InfoNCELoss" in e for e in losses)

    scalars = tensorboard_scalars(stage)
    assert [step for step, _ in scalars["eval/STSBenchmark@16"]] == [2, 4, 6]
    assert "loss/snli" in scalars and "train/learning_rate" in scalars

    best_step, best_value = max(((e["step"], e["eval/STSBenchmark@16"]) for e in evals), key=lambda x: (x[1], -x[0]))
    best = json.loads((stage / "best" / "best.json").read_text())
    assert (best["step"], best["metric"]) == (best_step, "STSBenchmark@16")
    assert best["value"] == pytest.approx(best_value)
    summary = json.loads((stage / "stage.json").read_text())["summary"]
    assert summary["best"]["step"] == best_step and summary["final_is_best"] is True

    from embedforge.models import load_model

    texts = ["A man is playing a guitar.", "A woman slices an onion."]
    final, kept = load_model(stage / "final"), load_model(stage / "best")
    np.testing.assert_allclose(final.encode(texts), kept.encode(texts), atol=1e-6)
    for picture in ("loss.png", "eval.png"):
        assert (stage / picture).read_bytes()[:4] == b"\x89PNG"


def test_eval_keys_are_checked_when_the_recipe_loads(tmp_path, tiny_bert_dir):
    from embedforge.recipes import load_recipe

    raw = tiny_recipe(tiny_bert_dir, tmp_path / "out", eval_tasks=[str(tmp_path)])
    with pytest.raises(ConfigError, match=r"stages.finetune.eval_tasks: needs eval_steps"):
        load_recipe(write_recipe(tmp_path / "a.yaml", raw))
    raw = tiny_recipe(tiny_bert_dir, tmp_path / "out", eval_steps=2)
    with pytest.raises(ConfigError, match=r"stages.finetune.eval_tasks: eval_steps needs task directories"):
        load_recipe(write_recipe(tmp_path / "b.yaml", raw))
    raw = tiny_recipe(tiny_bert_dir, tmp_path / "out", trainer_args={"load_best_model_at_end": True})
    with pytest.raises(ConfigError, match=r"trainer_args.load_best_model_at_end: set by the stage itself"):
        load_recipe(write_recipe(tmp_path / "c.yaml", raw))


def test_metric_for_best_model_names_a_task_and_dimension():
    assert parse_metric("mean", ["STS"], [64, 32]) == ("mean", 64)
    assert parse_metric("STS@32", ["STS"], [64, 32]) == ("STS", 32)
    with pytest.raises(ConfigError, match="names no evaluated task.*Did you mean 'STS'"):
        parse_metric("STSS", ["STS"], [64])
    with pytest.raises(ConfigError, match="must be one of"):
        parse_metric("STS@48", ["STS"], [64, 32])


def test_smoothing_is_tensorboards_debiased_moving_average():
    assert smooth([1.0, 1.0, 1.0]) == pytest.approx([1.0, 1.0, 1.0])  # debiased: no pull towards 0
    values = smooth([0.0, 1.0], weight=0.5)
    assert values == pytest.approx([0.0, 0.5 / 0.75])
