"""The distillation baselines run as a recipe stage the way SDM does: ``teacher:`` puts its embeddings in ``label``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from embedforge.cli import main
from embedforge.models import load_model
from tests.training.conftest import tiny_recipe, write_recipe

TEXTS = ["A man is playing a guitar.", "libssl3: Secure Sockets Layer toolkit - shared libraries", "It rains."]


@pytest.mark.parametrize(("loss", "cls"), [("l2_kd", "L2KDLoss"), ("contrastive_kd", "ContrastiveKDLoss")])
def test_a_teacher_stage_distils_the_pretrained_student_back_towards_the_teacher(tmp_path, tiny_bert_dir, loss, cls):
    """Pretraining moves the student away from the base; distilling from the base must bring it back closer."""
    raw = tiny_recipe(
        tiny_bert_dir, tmp_path / "out", loss={"name": loss}, teacher="base", learning_rate=3e-3, max_steps=8
    )
    raw["stages"]["pretrain"]["learning_rate"] = 3e-3
    raw["stages"]["finetune"]["datasets"] = raw["stages"]["finetune"]["datasets"][:1]  # SNLI triplets
    assert main(["train", str(write_recipe(tmp_path / f"{loss}.yaml", raw)), "--quiet"]) == 0
    summary = json.loads((tmp_path / "out" / "finetune" / "stage.json").read_text())["summary"]
    assert cls in summary["losses"]["snli"] and "teacher_dim=32" in summary["losses"]["snli"]
    assert np.isfinite(summary["final_loss"])

    def similarities(model) -> np.ndarray:
        embeddings = model.encode(TEXTS, normalize_embeddings=True)
        return embeddings @ embeddings.T

    teacher = similarities(load_model(tiny_bert_dir, max_seq_length=48))
    before = np.abs(similarities(load_model(tmp_path / "out" / "pretrain" / "final")) - teacher).mean()
    after = np.abs(similarities(load_model(tmp_path / "out" / "finetune" / "final")) - teacher).mean()
    assert after < before, f"distillation did not move the student towards the teacher ({before:.4f} -> {after:.4f})"
