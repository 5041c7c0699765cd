"""End-to-end training runs on a tiny model and the bundled real data."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer

from embedforge.cli import main
from embedforge.errors import ConfigError
from embedforge.models import load_model
from tests.training.conftest import tiny_recipe, write_recipe

TEXTS = ["A man is playing a guitar.", "libssl3: Secure Sockets Layer toolkit - shared libraries"]


def test_two_stage_recipe_trains_and_saves_a_plain_sentence_transformer(recipe_file, tmp_path, tiny_bert_dir):
    assert main(["train", str(recipe_file), "--quiet"]) == 0
    out = tmp_path / "out"
    final = out / "finetune" / "final"
    model = SentenceTransformer(str(final))  # no embedforge code needed to load it
    assert model.max_seq_length == 48
    # instructions were used in training, so the eval prompts are saved with the model (mteb's key convention)
    assert model.prompts["STS"] == "Instruct: Retrieve semantically similar text\nQuery: "
    assert model.prompts["Retrieval-document"] == ""
    np.testing.assert_allclose(model.encode(TEXTS), load_model(final).encode(TEXTS), atol=1e-6)
    base = load_model(tiny_bert_dir, max_seq_length=48)
    assert not np.allclose(model.encode(TEXTS), base.encode(TEXTS), atol=1e-3), "training changed nothing"

    stage = out / "finetune"
    assert (stage / "loss.png").read_bytes()[:4] == b"\x89PNG"
    assert list((stage / "runs").rglob("events.out.tfevents*")), "no TensorBoard log"
    card = (final / "README.md").read_text()
    for expected in (
        "snli",
        "stsb",
        "InfoNCELoss",
        "CoSENTLoss",
        "gamma=0.5",
        "## Resolved recipe",
        "Stage `pretrain`",
    ):
        assert expected in card
    summary = json.loads((stage / "stage.json").read_text())
    assert summary["summary"]["steps"] == 6
    assert (out / "recipe.resolved.yaml").is_file()
    # the pre-training stage started from the base, the fine-tuning stage from pre-training's model
    assert json.loads((out / "pretrain" / "stage.json").read_text())["summary"]["init"] == str(tiny_bert_dir)
    assert summary["summary"]["init"] == str(out / "pretrain" / "final")


def test_existing_output_needs_resume_or_overwrite(recipe_file):
    assert main(["train", str(recipe_file), "--quiet", "--set", "stages.finetune.max_steps=2"]) == 0
    with pytest.raises(ConfigError, match="already holds a run; pass --resume"):
        from embedforge.recipes.runner import train

        train(recipe_file)
    # --resume: both stages are finished, nothing runs again
    assert main(["train", str(recipe_file), "--quiet", "--resume", "--set", "stages.finetune.max_steps=2"]) == 0


class NaNAfterLoss(torch.nn.Module):
    """MNRL for the first `after` calls, then NaN (to exercise the divergence guard)."""

    def __init__(self, model, after: int = 3):
        super().__init__()
        from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

        self.model, self.inner, self.after, self.calls = model, MultipleNegativesRankingLoss(model), after, 0

    def forward(self, features, labels):
        self.calls += 1
        loss = self.inner(features, labels)
        return loss * float("nan") if self.calls > self.after else loss


def test_nan_loss_stops_with_a_message_and_keeps_the_last_good_checkpoint(tmp_path, tiny_bert_dir, capsys):
    from embedforge.losses import LOSSES, register_loss

    register_loss("nan_after_test", NaNAfterLoss)
    try:
        raw = tiny_recipe(tiny_bert_dir, tmp_path / "out", loss={"name": "nan_after_test", "after": 3})
        raw["stages"]["finetune"]["datasets"] = raw["stages"]["finetune"]["datasets"][:1]
        status = main(["train", str(write_recipe(tmp_path / "nan.yaml", raw)), "--quiet"])
    finally:
        LOSSES.pop("nan_after_test")
    err = capsys.readouterr().err
    stage = tmp_path / "out" / "finetune"
    assert status == 2
    assert "the loss is nan at step 4 (dataset 'snli')" in err
    assert f"Last good checkpoint: {stage / 'checkpoint-2'}" in err
    assert "Traceback" not in err
    assert (stage / "checkpoint-2" / ".embedforge-complete").is_file()
    assert not (stage / "checkpoint-4").exists() and not (stage / "final").exists()
    assert not (stage / "stage.json").exists()


def test_distillation_stage_with_a_teacher_trains_the_student(tmp_path, tiny_bert_dir):
    """SEA's SDM: the teacher's embeddings of every column become labels; the student matches its distributions."""
    raw = tiny_recipe(tiny_bert_dir, tmp_path / "out", loss={"name": "sdm", "queue_size": 64}, teacher="base")
    raw["stages"]["finetune"]["datasets"] = raw["stages"]["finetune"]["datasets"][:1]  # SNLI triplets
    assert main(["train", str(write_recipe(tmp_path / "sdm.yaml", raw)), "--quiet"]) == 0
    summary = json.loads((tmp_path / "out" / "finetune" / "stage.json").read_text())["summary"]
    assert "SDMLoss" in summary["losses"]["snli"] and summary["final_loss"] is not None
    assert np.isfinite(summary["final_loss"])
