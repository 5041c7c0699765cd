"""Issue 12 (resume): a kill during the final save, and a recipe changed between the kill and ``--resume``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from embedforge.cli import main
from tests.training.conftest import KILLER, REPO, tiny_recipe, write_recipe


def _one_stage(base: Path, output: Path, **overrides) -> dict:
    """The fine-tune stage alone, with a constant learning rate (an extra step at the end changes the weights)."""
    raw = tiny_recipe(base, output, scheduler="constant", logging_steps=1, **overrides)
    del raw["stages"]["pretrain"]
    return raw


def _run_killed(recipe: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """``embedforge train`` in a subprocess that kill -9s itself as ``env`` says (no kill without KILL_* keys)."""
    return subprocess.run(
        [sys.executable, str(KILLER), "train", str(recipe), "--quiet", *args],
        env={**os.environ, "KILL_STAGE": "finetune", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), **env},
        capture_output=True,
        text=True,
        timeout=600,
    )


def _weights(folder: Path) -> dict:
    return load_file(str(folder / "model.safetensors"))


@pytest.mark.slow
def test_kill_during_final_save_then_resume_matches_an_uninterrupted_run(tmp_path, tiny_bert_dir):
    # the reference runs like the killed run (a subprocess, one thread), so weights can be compared bit for bit
    reference = write_recipe(tmp_path / "ref.yaml", _one_stage(tiny_bert_dir, tmp_path / "ref"))
    assert _run_killed(reference).returncode == 0

    recipe = write_recipe(tmp_path / "killed.yaml", _one_stage(tiny_bert_dir, tmp_path / "killed"))
    killed = _run_killed(recipe, KILL_IN_FINAL_SAVE="1")
    assert killed.returncode == -9, killed.stderr[-2000:]
    stage = tmp_path / "killed" / "finetune"
    assert not (stage / "final").exists() and list(stage.glob(".final.saving-*"))  # killed mid-save

    resumed_run = _run_killed(recipe, "--resume")
    assert resumed_run.returncode == 0, resumed_run.stderr[-2000:]
    resumed, uninterrupted = _weights(stage / "final"), _weights(tmp_path / "ref" / "finetune" / "final")
    assert resumed.keys() == uninterrupted.keys()
    different = [name for name in resumed if not torch.equal(resumed[name], uninterrupted[name])]
    assert not different, f"{len(different)}/{len(resumed)} tensors differ"
    assert json.loads((stage / "stage.json").read_text())["summary"]["steps"] == 6
    assert not [p.name for p in stage.iterdir() if p.name.startswith(".final.")]


@pytest.mark.slow
def test_resume_applies_a_lowered_learning_rate_and_more_steps(tmp_path, tiny_bert_dir, caplog):
    recipe = write_recipe(tmp_path / "r.yaml", _one_stage(tiny_bert_dir, tmp_path / "out"))
    killed = _run_killed(recipe, KILL_AT_STEP="3")
    assert killed.returncode == -9, killed.stderr[-2000:]
    stage = tmp_path / "out" / "finetune"
    assert (stage / "checkpoint-2").is_dir()

    changes = ["--set", "stages.finetune.learning_rate=5e-5", "--set", "stages.finetune.max_steps=8"]
    assert main(["train", str(recipe), "--resume", *changes]) == 0
    assert "resuming stage finetune with learning_rate 5e-05 (it was 0.0001)" in caplog.text
    assert json.loads((stage / "stage.json").read_text())["summary"]["steps"] == 8
    history = json.loads((stage / "checkpoint-8" / "trainer_state.json").read_text())["log_history"]
    rates = {entry["step"]: entry["learning_rate"] for entry in history if "learning_rate" in entry}
    assert [rates[s] for s in (1, 2)] == [pytest.approx(1e-4)] * 2  # before the kill
    assert [rates[s] for s in range(3, 9)] == [pytest.approx(5e-5)] * 6  # after the resume: the new rate
    optimizer = torch.load(stage / "checkpoint-8" / "optimizer.pt", weights_only=False)
    assert [g["lr"] for g in optimizer["param_groups"]] == [pytest.approx(5e-5)] * len(optimizer["param_groups"])
    saved = yaml.safe_load((tmp_path / "out" / "recipe.resolved.yaml").read_text())
    assert saved["stages"]["finetune"]["learning_rate"] == pytest.approx(5e-5)


def _interrupted_run(tmp_path: Path, tiny_bert_dir: Path) -> Path:
    """What a killed run leaves for its checks (the resolved recipe, a checkpoint of the started stage)."""
    from embedforge.recipes import load_recipe
    from embedforge.utils.config import to_plain

    raw = tiny_recipe(tiny_bert_dir, tmp_path / "out")
    recipe = write_recipe(tmp_path / "r.yaml", raw)
    (tmp_path / "out" / "pretrain").mkdir(parents=True)
    (tmp_path / "out" / "pretrain" / "stage.json").write_text('{"model_path": null, "summary": {}}')
    (tmp_path / "out" / "finetune" / "checkpoint-2").mkdir(parents=True)
    (tmp_path / "out" / "finetune" / "checkpoint-2" / ".embedforge-complete").write_text("2\n")
    resolved = yaml.safe_dump(to_plain(load_recipe(recipe)), sort_keys=False)
    (tmp_path / "out" / "recipe.resolved.yaml").write_text(resolved)
    return recipe


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        (["stages.finetune.loss.temperature=0.1"], "stages.finetune.loss.temperature"),
        (["stages.pretrain.learning_rate=1e-3"], "stages.pretrain.learning_rate"),  # that stage has finished
        (["seed=8", "stages.finetune.batch_size=4"], "seed, stages.finetune.batch_size"),
    ],
)
def test_resume_refuses_changes_that_cannot_apply_naming_the_keys(tmp_path, tiny_bert_dir, capsys, changes, named):
    recipe = _interrupted_run(tmp_path, tiny_bert_dir)
    sets = [arg for change in changes for arg in ("--set", change)]
    assert main(["train", str(recipe), "--quiet", "--resume", *sets]) == 2
    err = capsys.readouterr().err
    assert f"the recipe differs from the one this run started with ({named})" in err, err[-2000:]
    assert "Traceback" not in err


def test_resume_of_a_stage_without_a_complete_checkpoint_accepts_changes(tmp_path, tiny_bert_dir):
    from embedforge.recipes import load_recipe
    from embedforge.recipes.validate import check_before_running

    recipe_file = _interrupted_run(tmp_path, tiny_bert_dir)
    (tmp_path / "out" / "finetune" / "checkpoint-2" / ".embedforge-complete").unlink()  # cut short: restarts
    recipe = load_recipe(recipe_file, ["stages.finetune.loss.temperature=0.1"])
    check_before_running(recipe, tmp_path / "out", resume=True)  # no error: the stage starts from scratch
