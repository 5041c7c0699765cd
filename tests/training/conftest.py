"""A tiny two-stage recipe on the bundled real data, written per test."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "data" / "train"


def tiny_recipe(base: Path, output: Path, **stage_overrides) -> dict:
    """Pretrain on Debian pairs, fine-tune on SNLI triplets + STS-B (CoSENT): a few steps each."""
    finetune = {
        "datasets": [
            {
                "name": "snli",
                "path": str(DATA / "snli/triplets.jsonl"),
                "kind": "triplets",
                "max_rows": 96,
                "instruction": "Retrieve semantically similar text",
            },
            {"name": "stsb", "path": str(DATA / "stsb/train.jsonl"), "kind": "sts", "max_rows": 96},
        ],
        "loss": {"temperature": 0.05, "gamma": 0.5},
        "batch_size": 8,
        "max_steps": 6,
        "save_steps": 2,
        "logging_steps": 2,
        "learning_rate": 1e-4,
        "warmup_ratio": 0.0,
    }
    finetune.update(stage_overrides)
    return {
        "name": "tiny",
        "model": {"base": str(base), "max_seq_length": 48},
        "output_dir": str(output),
        "seed": 7,
        "stages": {
            "pretrain": {
                "datasets": [
                    {
                        "name": "debian",
                        "path": str(DATA / "debian/pairs.jsonl.gz"),
                        "kind": "pairs",
                        "columns": {"anchor": "summary", "positive": "description"},
                        "max_rows": 128,
                    },
                ],
                "batch_size": 16,
                "max_steps": 4,
                "save_steps": 2,
                "logging_steps": 2,
                "learning_rate": 1e-4,
            },
            "finetune": finetune,
        },
    }


KILLER = Path(__file__).with_name("kill_at_step.py")


def train_killed_at(recipe: Path, stage: str, step: int) -> subprocess.CompletedProcess:
    """``embedforge train RECIPE`` in a subprocess that kill -9s itself at ``step`` of ``stage``."""
    env = {
        **os.environ,
        "KILL_STAGE": stage,
        "KILL_AT_STEP": str(step),
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(REPO),
    }
    return subprocess.run(
        [sys.executable, str(KILLER), "train", str(recipe), "--quiet"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def write_recipe(path: Path, recipe: dict) -> Path:
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


@pytest.fixture
def recipe_file(tmp_path, tiny_bert_dir) -> Path:
    return write_recipe(tmp_path / "recipe.yaml", tiny_recipe(tiny_bert_dir, tmp_path / "out"))
