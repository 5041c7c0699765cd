"""The losses run under sentence-transformers' own trainer (the protocol users rely on), model card included."""

from __future__ import annotations

import torch
from datasets import Dataset
from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments

from embedforge.data.config import DatasetConfig
from embedforge.losses import build_loss
from embedforge.losses.objective import MatryoshkaConfig, ObjectiveConfig, build_objective


def test_two_trainer_steps_with_every_option(tiny_model, tmp_path):
    train = Dataset.from_dict(
        {
            "anchor": ["how do cats sleep", "capital of france", "rain tomorrow", "best pizza"],
            "positive": ["cats nap all day", "paris is the capital", "showers expected", "naples pizza"],
            "negative_1": ["dogs bark", "lyon is a city", "sunny all week", "sushi rolls"],
            "negative_2": ["cats are mammals", "france borders spain", "snow in the alps", "pasta dishes"],
        }
    )
    objective = ObjectiveConfig(
        loss={
            "temperature": 0.05,
            "gamma": 0.5,
            "symmetric": True,
            "false_negative_margin": 0.1,
            "mix_pairwise": True,
            "mix_listwise": True,
        },
        gradcache_mini_batch=2,
        matryoshka=MatryoshkaConfig(dims=[32, 16], weights=[1.0, 0.3]),
    )
    triplets = DatasetConfig(name="t", path="unused.jsonl", kind="triplets").resolved()
    loss = build_objective(triplets, objective, tiny_model)
    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path / "run"),
        per_device_train_batch_size=4,
        max_steps=2,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
    )
    before = [p.detach().clone() for p in tiny_model.parameters()]
    trainer = SentenceTransformerTrainer(model=tiny_model, args=args, train_dataset=train, loss=loss)
    result = trainer.train()
    assert torch.isfinite(torch.tensor(result.training_loss))
    assert any(not torch.equal(b, p.detach()) for b, p in zip(before, tiny_model.parameters(), strict=True))
    tiny_model.save_pretrained(str(tmp_path / "model"))
    card = (tmp_path / "model" / "README.md").read_text()
    assert "CachedInfoNCELoss" in card and "KaLM-Embedding-V2" in card


def test_sdm_takes_teacher_embeddings_from_the_label_column(tiny_model, tmp_path):
    teacher = torch.randn(4, 3, 48, generator=torch.Generator().manual_seed(0))
    train = Dataset.from_dict(
        {
            "anchor": ["how do cats sleep", "capital of france", "rain tomorrow", "best pizza"],
            "positive": ["cats nap all day", "paris is the capital", "showers expected", "naples pizza"],
            "negative_1": ["dogs bark", "lyon is a city", "sunny all week", "sushi rolls"],
            "label": teacher.tolist(),  # teacher.encode() of the three columns, precomputed
        }
    )
    loss = build_loss("sdm", tiny_model, {"teacher_dim": 48, "queue_size": 16})
    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path / "run"),
        per_device_train_batch_size=2,
        max_steps=2,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
    )
    projection_before = loss.projection.weight.detach().clone()
    SentenceTransformerTrainer(model=tiny_model, args=args, train_dataset=train, loss=loss).train()
    assert loss.queue_filled == 8  # 2 steps x 2 anchors x (positive + negative)
    assert not torch.equal(projection_before, loss.projection.weight.detach())  # the optimizer trains it


def test_teacher_embeddings_replace_the_class_ids_of_labelled_rows(tiny_model):
    """Classification rows carry class ids in `label`; a teacher stage puts its vectors there instead."""
    from datasets import Dataset, DatasetDict

    from embedforge.training.teacher import add_teacher_embeddings

    rows = Dataset.from_dict(
        {
            "anchor": ["a cat", "a dog"],
            "positive": ["cats", "dogs"],
            "negative_1": ["dogs", "cats"],
            "label": [[0, 1], [1, 0]],
        }
    )
    out = add_teacher_embeddings(DatasetDict({"cls": rows}), tiny_model)["cls"]
    assert out.column_names == ["anchor", "positive", "negative_1", "label"]
    teacher = out["label"]
    assert len(teacher) == 2 and len(teacher[0]) == 3 and len(teacher[0][0]) == tiny_model.get_embedding_dimension()
