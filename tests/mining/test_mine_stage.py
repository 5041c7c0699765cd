"""Recipe stages: pretrain -> mine -> finetune (on ``@mine/...``) -> merge, end to end, and their config errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from sentence_transformers import SentenceTransformer

from embedforge.cli import main
from embedforge.data import DatasetConfig
from embedforge.errors import ConfigError, DataError
from embedforge.models import load_model
from embedforge.recipes import StageContext, load_recipe, recipe_from_dict
from embedforge.recipes.stage_paths import resolve_stage_paths
from embedforge.recipes.stages.merge import resolve_ingredient

DATA = Path(__file__).resolve().parents[2] / "data" / "train"
INSTRUCTION = "Given a package summary, retrieve its description"


def debian(name: str, path: str, kind: str, **extra) -> dict:
    return {"name": name, "path": path, "kind": kind, "instruction": INSTRUCTION, **extra}


def soup_recipe(base: Path, output: Path) -> dict:
    source = debian(
        "debian",
        str(DATA / "debian/pairs.jsonl.gz"),
        "pairs",
        columns={"anchor": "summary", "positive": "description"},
        max_rows=160,
    )
    train = {"batch_size": 8, "max_steps": 2, "save_steps": 1, "logging_steps": 1, "learning_rate": 1e-3}
    return {
        "name": "soup",
        "model": {"base": str(base), "max_seq_length": 32},
        "output_dir": str(output),
        "seed": 5,
        "stages": {
            "pretrain": {"datasets": [source], **train},
            "mine": {
                "type": "mine",
                "datasets": [source],
                "range_min": 5,
                "range_max": 50,
                "num_negatives": 3,
                "relative_margin": None,
            },
            # small batches: on 160 texts a tiny random model's negatives repeat, and batches must not repeat a text
            "finetune": {"datasets": [debian("mined", "@mine/debian.jsonl", "triplets")], **train, "batch_size": 4},
            "soup": {
                "type": "merge",
                "models": ["finetune", "pretrain", "finetune/checkpoint-1"],
                "weights": [2, 1, 1],  # method: weighted (implied)
            },
        },
    }


def test_pretrain_mine_finetune_merge_recipe(tmp_path, tiny_bert_dir):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(soup_recipe(tiny_bert_dir, tmp_path / "out"), sort_keys=False))
    assert main(["train", str(recipe), "--quiet"]) == 0
    out = tmp_path / "out"

    # mine: the file the fine-tuning stage read, mined with the pre-trained model
    mine = json.loads((out / "mine" / "stage.json").read_text())["summary"]
    assert mine["model"] == str(out / "pretrain" / "final")
    rows = [json.loads(line) for line in (out / "mine" / "debian.jsonl").read_text().splitlines()]
    assert len(rows) == mine["mined"]["debian"]["rows"] == 160
    assert set(rows[0]) == {"anchor", "positive", "negative_1", "negative_2", "negative_3"}
    assert all(row["positive"] not in (row["negative_1"], row["negative_2"], row["negative_3"]) for row in rows)
    finetune = json.loads((out / "finetune" / "stage.json").read_text())["summary"]
    assert finetune["init"] == str(out / "pretrain" / "final")  # mine makes no model: finetune starts from pretrain
    assert finetune["hard_negatives_per_query"] == {"mined": 3}
    assert finetune["datasets"][0]["path"] == str(out / "mine" / "debian.jsonl")

    # merge: the weighted average of the ingredients, loadable without embedforge
    final = out / "soup" / "final"
    ingredients = [out / "finetune" / "final", out / "pretrain" / "final", out / "finetune" / "checkpoint-1"]
    states = [load_model(p, device="cpu").state_dict() for p in ingredients]
    merged = SentenceTransformer(str(final), device="cpu")
    weights = [0.5, 0.25, 0.25]
    differs = 0
    for key, value in merged.state_dict().items():
        expected = sum(w * s[key].double() for w, s in zip(weights, states, strict=True))
        torch.testing.assert_close(value.double(), expected, atol=1e-6, rtol=1e-6)
        differs += not torch.equal(states[0][key], states[1][key])
    assert differs > 10, "the ingredients are (nearly) identical; the test would prove nothing"
    first = SentenceTransformer(str(ingredients[0]), device="cpu")
    assert merged.prompts == first.prompts and merged.prompts["STS"]  # the first ingredient's (mteb keys)
    soup = json.loads((out / "soup" / "stage.json").read_text())
    assert soup["model_path"] == str(final)
    assert [i["weight"] for i in soup["summary"]["ingredients"]] == weights
    card = (final / "README.md").read_text()
    assert "finetune/checkpoint-1" in card and "0.5000" in card and "weighted" in card


def _load(tmp_path: Path, stages: dict) -> object:
    recipe = {"name": "r", "model": {"base": "base-model"}, "output_dir": str(tmp_path / "out"), "stages": stages}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return load_recipe(path)


TRAIN = {"datasets": [{"name": "d", "path": str(DATA / "stsb/train.jsonl"), "kind": "sts"}]}


def test_stage_config_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"stages.soup.weights: 2 weights for 3 models"):
        _load(tmp_path, {"a": TRAIN, "soup": {"type": "merge", "models": ["a", "base", "a"], "weights": [1, 2]}})
    with pytest.raises(ConfigError, match=r"stages.soup.weights: method 'uniform' picks its own weights"):
        _load(
            tmp_path,
            {"a": TRAIN, "soup": {"type": "merge", "models": ["a", "base"], "weights": [1, 2], "method": "uniform"}},
        )
    with pytest.raises(ConfigError, match=r"stages.soup.method: unknown merge method 'avg'"):
        _load(tmp_path, {"a": TRAIN, "soup": {"type": "merge", "models": ["a", "base"], "method": "avg"}})
    with pytest.raises(ConfigError, match=r"stages.soup.models: a soup needs at least two models"):
        _load(tmp_path, {"a": TRAIN, "soup": {"type": "merge", "models": ["a"]}})
    mine = {"type": "mine", "datasets": TRAIN["datasets"], "range_min": 0, "range_max": 3, "num_negatives": 4}
    with pytest.raises(ConfigError, match=r"stages.mine.num_negatives: 4 negatives do not fit"):
        _load(tmp_path, {"mine": mine})
    classes = {"name": "c", "path": str(DATA / "stsb/train.jsonl"), "kind": "classification"}
    with pytest.raises(ConfigError, match=r"stages.mine.datasets\[0\].kind: 'classification' is not mined"):
        _load(tmp_path, {"mine": {"type": "mine", "datasets": [classes]}})
    mined = {"datasets": [{"name": "m", "path": "@mien/d.jsonl", "kind": "triplets"}]}
    with pytest.raises(
        ConfigError,
        match=r"stages.train.datasets\[0\].path: '@mien/d.jsonl' names no earlier stage. Did you mean 'mine'",
    ):
        _load(tmp_path, {"mine": {"type": "mine", "datasets": TRAIN["datasets"]}, "train": mined})
    with pytest.raises(ConfigError, match=r"'@mine/d.jsonl' refers to stage 'mine', which runs after this one"):
        _load(
            tmp_path,
            {
                "train": {"datasets": [{"name": "m", "path": "@mine/d.jsonl", "kind": "triplets"}]},
                "mine": {"type": "mine", "datasets": TRAIN["datasets"]},
            },
        )


def test_stage_paths_stay_relative_to_the_output_folder(tmp_path):
    stages = {
        "mine": {"type": "mine", "datasets": TRAIN["datasets"]},
        "train": {"datasets": [{"name": "m", "path": "@mine/d.jsonl", "kind": "triplets"}]},
    }
    recipe = _load(tmp_path, stages)
    assert recipe.stages["train"].datasets[0].path == "@mine/d.jsonl"  # not made relative to the YAML file
    config = recipe.stages["train"].datasets
    with pytest.raises(DataError, match=r"out/mine/d.jsonl: dataset 'm': '@mine/d.jsonl' does not exist"):
        resolve_stage_paths(config, tmp_path / "out")
    (tmp_path / "out" / "mine").mkdir(parents=True)
    (tmp_path / "out" / "mine" / "d.jsonl").write_text('{"anchor": "a", "positive": "b"}\n')
    (resolved,) = resolve_stage_paths(config, tmp_path / "out")
    assert resolved.path == str(tmp_path / "out" / "mine" / "d.jsonl")
    assert isinstance(resolved, DatasetConfig)


def test_merge_references_are_checked_with_the_stage_and_key(tmp_path, tiny_model_dir):
    recipe = recipe_from_dict(
        {
            "name": "r",
            "model": {"base": str(tiny_model_dir)},
            "stages": {
                "finetune": TRAIN,
                "mine": {"type": "mine", "datasets": TRAIN["datasets"]},
                "soup": {"type": "merge", "models": ["finetune", "base"]},
                "later": TRAIN,
            },
        },
        "recipe.yaml",
    )
    out = tmp_path / "out"
    (out / "finetune" / "checkpoint-2").mkdir(parents=True)
    context = StageContext(
        recipe=recipe,
        name="soup",
        directory=out / "soup",
        resume=False,
        models={"base": str(tiny_model_dir), "finetune": str(out / "finetune" / "final")},
        previous_model=str(out / "finetune" / "final"),
        summaries={"finetune": {}, "mine": {}},
    )
    where = "stages.soup.models[1]"
    assert resolve_ingredient("finetune/checkpoint-2", context, where) == str(out / "finetune" / "checkpoint-2")
    assert resolve_ingredient("base", context, where) == str(tiny_model_dir)
    with pytest.raises(ConfigError, match=r"models\[1\]: '/x/finetun' is neither a stage .* Did you mean 'finetune'"):
        resolve_ingredient("/x/finetun", context, where)
    with pytest.raises(ConfigError, match=r"stage 'mine' \(mine\) makes no model to merge"):
        resolve_ingredient("mine", context, where)
    with pytest.raises(ConfigError, match=r"stage 'later', which has not run before it"):
        resolve_ingredient("later", context, where)
    with pytest.raises(ConfigError, match=r"checkpoint-9 does not exist; stage 'finetune' has: checkpoint-2"):
        resolve_ingredient("finetune/checkpoint-9", context, where)
