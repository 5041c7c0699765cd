"""kill -9 in the middle of a stage, then --resume: the same final weights as an uninterrupted run."""

from __future__ import annotations

from pathlib import Path

import pytest
from safetensors.torch import load_file

from embedforge.cli import main
from tests.training.conftest import tiny_recipe, train_killed_at, write_recipe

REPO = Path(__file__).resolve().parents[2]


def _weights(folder: Path) -> dict:
    return load_file(str(folder / "model.safetensors"))


@pytest.fixture
def one_thread():
    """The killed run's subprocess trains on one thread; so do the in-process runs it is compared with (two threads
    sum matrix products in another order: about 1e-6 apart after a few steps, which is not what this test is about)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_kill_9_then_resume_matches_an_uninterrupted_run(tmp_path, tiny_bert_dir, one_thread):
    # the uninterrupted reference
    reference = write_recipe(tmp_path / "ref.yaml", tiny_recipe(tiny_bert_dir, tmp_path / "ref"))
    assert main(["train", str(reference), "--quiet"]) == 0

    recipe = write_recipe(tmp_path / "killed.yaml", tiny_recipe(tiny_bert_dir, tmp_path / "killed"))
    killed = train_killed_at(recipe, "finetune", 3)
    assert killed.returncode == -9, killed.stderr[-2000:]
    stage = tmp_path / "killed" / "finetune"
    assert (stage / "checkpoint-2").is_dir() and not (stage / "final").exists()
    assert (tmp_path / "killed" / "pretrain" / "stage.json").is_file()  # the first stage had finished

    assert main(["train", str(recipe), "--quiet", "--resume"]) == 0
    resumed, uninterrupted = _weights(stage / "final"), _weights(tmp_path / "ref" / "finetune" / "final")
    assert resumed.keys() == uninterrupted.keys()
    for name in resumed:
        assert (resumed[name] - uninterrupted[name]).abs().max().item() <= 1e-6, name
