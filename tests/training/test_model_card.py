"""The model card: Hub metadata that parses, results in model-index, citations, nothing machine-specific."""

from __future__ import annotations

import yaml

from embedforge.training.model_card import model_card, portable, read_card_metadata, techniques_used

RECORDS = [
    {"task": "STSBenchmark", "type": "STS", "dim": 384, "main_score": 0.834567, "split": "test",
     "subset": "default", "main_metric": "cosine_spearman", "languages": ["eng"], "same_data_as_mteb": True},
    {"task": "STSBenchmark", "type": "STS", "dim": 128, "main_score": 0.81, "split": "test",
     "subset": "default", "main_metric": "cosine_spearman", "languages": ["eng"], "same_data_as_mteb": True},
    {"task": "DebianSectionClusteringDev", "type": "Clustering", "dim": 384, "main_score": 0.4, "split": "test",
     "subset": "default", "main_metric": "v_measure", "languages": ["eng"], "same_data_as_mteb": False},
]  # fmt: skip


def card_for(tmp_path):
    root = tmp_path / "project"
    config = {
        "name": "quickstart",
        "model": {"base": "all-MiniLM-L6-v2"},
        "output_dir": str(root / "runs" / "quickstart"),
        "stages": {
            "finetune": {
                "type": "train",
                "datasets": [
                    {"name": "snli", "path": str(root / "data/train/snli/triplets.jsonl"), "kind": "triplets"},
                    {"name": "stsb", "path": "/elsewhere/deep/stsb/train.jsonl", "kind": "sts"},
                ],
                "loss": {"temperature": 0.05, "gamma": 0.5, "mix_pairwise": True, "false_negative_margin": 0.0},
                "matryoshka": {"dims": [384, 128]},
            }
        },
    }  # fmt: skip
    stage = {
        "name": "finetune",
        "type": "train",
        "steps": 30,
        "final_loss": 0.123456789,
        "datasets": [
            {"name": "snli", "kind": "triplets", "rows": 6321, "loss": "infonce", "in_batch_negatives": True,
             "num_negatives": 1, "weight": 0.5, "path": str(root / "data/train/snli/triplets.jsonl")},
        ],
        "losses": {
            "snli": "MatryoshkaLoss(matryoshka_dims=[384, 128]) over InfoNCELoss(temperature=0.05000000074505806)"
        },
        "best": {"step": 20, "metric": "mean@384", "value": 0.8312345},
        "final_is_best": True,
    }  # fmt: skip
    return model_card(
        title="quickstart-finetune",
        base_model="all-MiniLM-L6-v2",
        stages=[stage],
        resolved_config=config,
        results=RECORDS,
        eval_table="| Model | Mean(Task) |\n|---|---:|\n| quickstart | 61.73 |\n",
        root=root,
    )


def test_card_metadata_is_what_the_hub_reads(tmp_path):
    card = card_for(tmp_path)
    metadata = read_card_metadata(card)
    assert metadata["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert metadata["license"] == "apache-2.0" and metadata["language"] == ["en"]
    assert metadata["library_name"] == "sentence-transformers" and metadata["datasets"] == ["snli"]
    assert {"loss:MatryoshkaLoss", "matryoshka", "sentence-transformers"} <= set(metadata["tags"])
    (index,) = metadata["model-index"]
    assert index["name"] == "quickstart-finetune"
    sts, clustering = index["results"]
    assert sts["dataset"]["type"] == "mteb/stsbenchmark-sts" and sts["dataset"]["name"] == "MTEB STSBenchmark"
    assert sts["dataset"]["revision"]  # MTEB's dataset revision, as leaderboard tooling expects
    assert sts["metrics"] == [
        {"type": "cosine_spearman", "value": 83.46},
        {"type": "cosine_spearman", "value": 81.0, "name": "cosine_spearman (dim 128)"},
    ]
    assert clustering["dataset"] == {
        "name": "DebianSectionClusteringDev",
        "type": "DebianSectionClusteringDev",
        "config": "default",
        "split": "test",
    }


def test_card_has_no_absolute_paths_and_rounded_numbers(tmp_path):
    card = card_for(tmp_path)
    assert str(tmp_path) not in card and "/elsewhere" not in card
    assert "`data/train/snli/triplets.jsonl`" in card  # relative to the project folder
    assert "…/stsb/train.jsonl" in card  # outside it: shortened
    assert "0.05000000074505806" not in card and "temperature=0.05)" in card
    assert "final_loss: 0.1235" in card
    assert "best `mean@384` = 83.12 at step 20 (saved as this stage's model)" in card
    config = yaml.safe_load(card.split("## Resolved recipe")[1].split("```yaml")[1].split("```")[0])
    assert config["output_dir"] == "runs/quickstart"


def test_card_cites_the_papers_of_the_techniques_used(tmp_path):
    card = card_for(tmp_path)
    for title in (
        "Sentence-BERT",
        "KaLM-Embedding-V2",
        "Focal Loss",
        "Seed1.5-Embedding",
        "CoSENT",
        "Matryoshka Representation Learning",
        "MTEB: Massive Text Embedding Benchmark",
    ):
        assert title in card
    assert "GradCache" not in card and "LoRA" not in card
    assert techniques_used({"stages": {"s": {"datasets": [{"kind": "pairs"}], "loss": {}}}}) == [
        "sentence-transformers",
        "infonce",
    ]


def test_usage_snippet_and_versions(tmp_path):
    card = card_for(tmp_path)
    assert 'model.encode_query(["how do I install a package?"])' in card
    assert "- sentence-transformers: " in card and "- mteb: " in card


def test_portable_paths():
    assert portable({"a": ["/x/y/z/w.txt", "rel/p"]}, "/x/y") == {"a": ["z/w.txt", "rel/p"]}
    assert portable("/a/b/c/d", None) == "…/c/d"
