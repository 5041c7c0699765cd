"""load_training_datasets: DatasetDict + info, determinism, max_rows, and the real trainer's dataloader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from embedforge.data.loading import load_training_datasets
from embedforge.errors import ConfigError, DataError


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def sources(tmp_path) -> dict[str, Path]:
    pairs = write_jsonl(
        tmp_path / "pairs.jsonl",
        [{"summary": f"pkg {i}", "description": f"description {i} " * (1 + i % 7)} for i in range(64)],
    )
    sts = write_jsonl(
        tmp_path / "sts.jsonl",
        [{"sentence1": f"s{i}", "sentence2": f"t{i}", "score": float(i % 6)} for i in range(48)],
    )
    cls = write_jsonl(tmp_path / "cls.jsonl", [{"text": f"text {i}", "label": f"L{i % 4}"} for i in range(40)])
    return {"pairs": pairs, "sts": sts, "cls": cls}


def configs(sources):
    return [
        {
            "name": "debian",
            "path": str(sources["pairs"]),
            "kind": "pairs",
            "columns": {"anchor": "summary", "positive": "description"},
            "instruction": "Retrieve the description",
        },
        {"name": "sts", "path": str(sources["sts"]), "kind": "sts", "instruction": "Similar text"},
        {"name": "cls", "path": str(sources["cls"]), "kind": "classification", "num_negatives": 2, "weight": 0.5},
    ]


def test_dataset_dict_and_info(sources):
    datasets, info = load_training_datasets(configs(sources), seed=0)
    assert list(datasets) == info.names == ["debian", "sts", "cls"]
    assert datasets["debian"].column_names == ["anchor", "positive"]
    assert datasets["sts"].column_names == ["sentence1", "sentence2", "score"]
    assert datasets["cls"].column_names == ["anchor", "positive", "negative_1", "negative_2", "label"]
    assert (info["debian"].rows, info["sts"].rows, info["cls"].rows) == (64, 48, 40)
    assert (info["debian"].loss, info["sts"].loss, info["cls"].loss) == ("infonce", "cosent", "infonce")
    assert (info["debian"].in_batch_negatives, info["sts"].in_batch_negatives, info["cls"].in_batch_negatives) == (
        True,
        False,
        True,  # same-class candidates are masked by the class ids
    )
    # a batch may repeat a text only where the class ids make the repeat harmless
    assert [info[n].unique_texts_per_batch for n in info.names] == [True, False, False]
    assert info.prompts == {
        "debian": {"anchor": "Instruct: Retrieve the description\nQuery: "},
        "sts": {"sentence1": "Instruct: Similar text\nQuery: ", "sentence2": "Instruct: Similar text\nQuery: "},
        "cls": {},
    }
    weights = info.weights
    assert sum(weights.values()) == pytest.approx(1.0)
    # cls's explicit 0.5 replaces its size share (40/152) before renormalizing
    expected = {"debian": 64 / 152, "sts": 48 / 152, "cls": 0.5}
    total = sum(expected.values())
    assert weights == pytest.approx({k: v / total for k, v in expected.items()})
    assert "debian" in info.summary() and info.to_dict()["datasets"][0]["name"] == "debian"
    assert datasets["debian"].info.dataset_name == "debian"


def test_deterministic_given_seed_and_max_rows(sources):
    first, _ = load_training_datasets(configs(sources), seed=3)
    second, _ = load_training_datasets(configs(sources), seed=3)
    other, _ = load_training_datasets(configs(sources), seed=4)
    assert first["cls"].to_dict() == second["cls"].to_dict()
    assert first["cls"].to_dict() != other["cls"].to_dict()
    capped = configs(sources)
    capped[0]["max_rows"] = 10
    datasets, info = load_training_datasets(capped, seed=3)
    assert info["debian"].rows == 10 and info["debian"].counts["capped_by_max_rows"] == 54
    anchors = datasets["debian"]["anchor"]
    assert len(set(anchors)) == 10 and anchors != [f"pkg {i}" for i in range(10)]  # a random subset, not the head
    assert anchors == sorted(anchors, key=lambda a: int(a.split()[1]))  # in file order


def test_errors(sources, tmp_path):
    with pytest.raises(ConfigError, match="named 'a'"):
        load_training_datasets(
            [{"name": "a", "path": str(sources["pairs"]), "kind": "pairs"}] * 2,
        )
    with pytest.raises(DataError, match="missing column 'anchor'.*columns: {anchor: summary}"):
        load_training_datasets([{"name": "a", "path": str(sources["pairs"]), "kind": "pairs"}])
    empty = write_jsonl(tmp_path / "neutral.jsonl", [{"premise": "p", "hypothesis": "h", "label": "neutral"}])
    with pytest.raises(DataError, match="'nli' has no training rows left"):
        load_training_datasets([{"name": "nli", "path": str(empty), "kind": "nli"}])


def test_trainer_dataloader_homogeneous_batches_with_prompts(sources, tiny_model, tmp_path):
    """The real SentenceTransformerTrainer builds its dataloader from our datasets, samplers and prompts."""
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.sentence_transformer.losses import CoSENTLoss, MultipleNegativesRankingLoss

    from embedforge.data.sampler import LengthGroupedBatchSampler

    datasets, info = load_training_datasets(configs(sources), seed=0)
    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=8,
        prompts=info.prompts,
        batch_sampler=LengthGroupedBatchSampler,
        multi_dataset_batch_sampler=info.multi_dataset_batch_sampler(),
        report_to=[],
        use_cpu=True,
    )
    losses = {
        name: CoSENTLoss(tiny_model) if loss == "cosent" else MultipleNegativesRankingLoss(tiny_model)
        for name, loss in info.losses.items()
    }
    trainer = SentenceTransformerTrainer(model=tiny_model, args=args, train_dataset=datasets, loss=losses)
    dataloader = trainer.get_train_dataloader()
    seen = set()
    for batch in dataloader:
        name = batch["dataset_name"]
        seen.add(name)
        first_column = "sentence1" if name == "sts" else "anchor"
        assert batch[f"{first_column}_input_ids"].shape[0] == 8
        # prompts: debian's anchors and both sts sides carry a prompt length, cls (no instruction) none
        assert (f"{first_column}_prompt_length" in batch) == (name != "cls")
        assert ("positive_prompt_length" in batch) is False
    assert seen == {"debian", "sts", "cls"}
    assert len(dataloader) == 64 // 8 + 48 // 8 + 40 // 8


def test_labelled_rows_reach_the_loss_as_class_ids_and_mask_same_class_candidates(tiny_model):
    """Real Banking77 rows: the collator hands the class ids to the loss, which drops same-intent candidates."""
    import torch

    from embedforge.data.collator import pretokenized_collator
    from embedforge.losses import InfoNCELoss

    path = Path(__file__).resolve().parents[2] / "data/eval/Banking77Classification/train.jsonl"
    config = {"name": "b77", "path": str(path), "kind": "classification", "num_negatives": 2, "max_rows": 400}
    datasets, info = load_training_datasets([config], seed=0)
    rows = datasets["b77"]
    assert info.datasets["b77"].in_batch_negatives and "label" in rows.column_names
    # a batch of 48 rows whose anchors repeat some intents (77 intents: collisions are the norm, not the exception)
    batch = pretokenized_collator(tiny_model, packing=False)([rows[i] for i in range(48)])
    classes = batch["label"]
    assert classes.shape == (48, 3) and classes.dtype == torch.long
    assert (classes[:, 0:1] != classes[:, 1:]).all()  # negatives are of other intents
    anchors = classes[:, 0]
    assert (anchors.unsqueeze(0) == anchors.unsqueeze(1)).sum() > 48  # some intent repeats in the batch
    features = [batch[f"{column}_input_ids"] for column in ("anchor", "positive", "negative_1", "negative_2")]
    assert all(f.size(0) == 48 for f in features)
    loss = InfoNCELoss(tiny_model, temperature=0.05)
    sentence_features = [
        {key[len(column) + 1 :]: value for key, value in batch.items() if key.startswith(f"{column}_")}
        for column in ("anchor", "positive", "negative_1", "negative_2")
    ]
    loss(sentence_features, classes)
    masked = loss.last_stats["negatives"].item()
    loss(sentence_features, None)
    assert masked < loss.last_stats["negatives"].item() == 48 * 3 - 1  # every candidate but its positive
