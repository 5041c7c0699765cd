"""A tiny two-stage recipe on the bundled real data, written per test."""

from __future__ import annotations

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


def write_recipe(path: Path, recipe: dict) -> Path:
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


@pytest.fixture
def recipe_file(tmp_path, tiny_bert_dir) -> Path:
    return write_recipe(tmp_path / "recipe.yaml", tiny_recipe(tiny_bert_dir, tmp_path / "out"))
