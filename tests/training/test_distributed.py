"""A 2-process CPU (gloo) run equals a single process on the same global batch.

Both runs see the same global batches (``accelerator_config.split_batches``: the dataloader yields the
global batch and each rank takes half). In-batch negatives are gathered across ranks with gradients, so
each rank's InfoNCE sees every candidate of the global batch, and DDP averages the ranks' gradients:
the updates, hence the final weights, must equal the single-process run's (up to float rounding).
(Dropout is off in this tiny model: each rank would otherwise draw its own masks.)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from tests.training.conftest import tiny_recipe, write_recipe

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def no_dropout_model(tiny_bert_dir, tmp_path) -> Path:
    import json

    folder = tmp_path / "tiny-no-dropout"
    shutil.copytree(tiny_bert_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def _recipe(base: Path, output: Path, path: Path) -> Path:
    raw = tiny_recipe(base, output, max_steps=4, save_steps=4, batch_size=8)
    raw["stages"].pop("pretrain")
    stage = raw["stages"]["finetune"]
    stage["datasets"] = [
        stage["datasets"][0],  # SNLI triplets: InfoNCE with a hard negative, focal gamma 0.5
        {
            "name": "debian",
            "path": str(REPO / "data/train/debian/pairs.jsonl.gz"),
            "kind": "pairs",
            "columns": {"anchor": "summary", "positive": "description"},
            "max_rows": 96,
        },
    ]
    # SGD, not AdamW: Adam's update is ~lr * sign(g) for the tiny gradients of rarely used weights, which turns
    # float-rounding differences between the runs into lr-sized ones; SGD keeps them proportional.
    stage.update(learning_rate=0.05, weight_decay=0.0)
    stage["trainer_args"] = {"accelerator_config": {"split_batches": True}, "optim": "sgd"}  # CPU torchrun: gloo
    return write_recipe(path, raw)


@pytest.mark.slow
def test_two_gloo_processes_equal_one_process(no_dropout_model, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    single = _recipe(no_dropout_model, tmp_path / "single", tmp_path / "single.yaml")
    double = _recipe(no_dropout_model, tmp_path / "ddp", tmp_path / "ddp.yaml")
    one = subprocess.run(
        [sys.executable, "-m", "embedforge", "train", str(single), "--quiet"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_port",
            "29533",
            "-m",
            "embedforge",
            "train",
            str(double),
            "--quiet",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    a = load_file(str(tmp_path / "single" / "finetune" / "final" / "model.safetensors"))
    b = load_file(str(tmp_path / "ddp" / "finetune" / "final" / "model.safetensors"))
    base = load_file(str(no_dropout_model / "model.safetensors"))
    moved = max((a[k] - base[k]).abs().max().item() for k in a if k in base)
    assert moved > 1e-4, "the single-process run did not train"
    for name in a:
        assert (a[name] - b[name]).abs().max().item() <= 1e-6, name  # float rounding; duplicated batches: ~3e-5
