"""The three paper recipes, unchanged but for size, run end to end on tiny models and the bundled data.

Each shipped YAML is loaded with ``--set`` overrides that only shrink it: a tiny base (and teacher), a few steps,
a few dozen rows, Matryoshka dims scaled to the tiny width, a small mining window, STS-B as the only eval task.
Everything else — the objective, the modifiers, the dataset flags, decontamination, mining, the soup — is the
recipe's own.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from embedforge.recipes import load_recipe, run_recipe

REPO = Path(__file__).resolve().parents[2]
STS_TEST = REPO / "data" / "eval" / "STSBenchmark"


def shrink(name: str, base: Path, output: Path, teacher: Path | None = None) -> list[str]:
    """``--set`` overrides that make recipe ``name`` tiny, derived from the YAML itself."""
    raw = yaml.safe_load((REPO / "recipes" / f"{name}.yaml").read_text())
    sets = [f"model.base={base}", f"output_dir={output}", "model.max_seq_length=32"]
    sets.append(f'eval={{"tasks": ["{STS_TEST}"], "compare_base": false}}')
    for stage_name, stage in raw["stages"].items():
        key = f"stages.{stage_name}"
        kind = stage.get("type", "train")
        if kind == "mine":
            sets += [f"{key}.range_min=0", f"{key}.range_max=40", f"{key}.num_negatives=2", f"{key}.use_faiss=false"]
            sets.append(f"{key}.relative_margin=null")  # a random tiny model scores everything alike
            sets += [f"{key}.datasets.{i}.max_rows=160" for i in range(len(stage["datasets"]))]
        if kind != "train":
            continue
        sets += [f"{key}.max_steps=2", f"{key}.batch_size=8", f"{key}.save_steps=1", f"{key}.logging_steps=1"]
        sets += [f"{key}.bf16=false", f"{key}.learning_rate=1.0e-4"]
        if stage.get("decontaminate_near_duplicates"):  # near duplicates have their own tests; exact match stays
            sets.append(f"{key}.decontaminate_near_duplicates=null")
        for i, dataset in enumerate(stage["datasets"]):
            sets.append(f"{key}.datasets.{i}.max_rows=48")
            if dataset.get("num_negatives"):
                sets.append(f"{key}.datasets.{i}.num_negatives=2")
        if "gradcache_mini_batch" in stage:
            sets.append(f"{key}.gradcache_mini_batch=4")
        if "matryoshka" in stage:
            dims = [32 >> k for k in range(len(stage["matryoshka"]["dims"]))]
            sets.append(f"{key}.matryoshka.dims={dims}")
        if "teacher" in stage:
            sets.append(f"{key}.teacher={teacher}")
        if stage.get("loss", {}).get("queue_size"):
            sets.append(f"{key}.loss.queue_size=64")
    return sets


def test_kalm_v2(tiny_decoder_dir, tmp_path):
    recipe = load_recipe(REPO / "recipes" / "kalm-v2.yaml", shrink("kalm-v2", tiny_decoder_dir("qwen2"), tmp_path))
    result = run_recipe(recipe)
    finetune = result.stages["finetune"].summary
    assert set(finetune.losses) == {"debian", "snli", "stsb", "banking77", "banking77_labels"}
    assert all(
        text.startswith("MatryoshkaLoss(") and "CachedInfoNCELoss(" in text for text in finetune.losses.values()
    )
    infos = {d["name"]: d for d in finetune.datasets}
    assert infos["snli"]["symmetric"] and set(infos["snli"]["prompts"]) == {"anchor", "positive", "negative_1"}
    # paper Eq. 3: in-batch and hard negatives for every dataset (same-class candidates are masked by the labels)
    assert infos["banking77"]["in_batch_negatives"] is True and infos["banking77_labels"]["symmetric"] is False
    assert finetune.decontaminated_against == [str(STS_TEST)]  # on without a decontaminate_against key
    soup = result.stages["soup"].summary
    assert soup.method == "cocktail" and [i["model"] for i in soup.ingredients] == [
        "finetune/checkpoint-1",
        "finetune/checkpoint-2",
    ]  # LM-Cocktail over the fine-tuning checkpoints
    assert result.final_model.endswith("soup/final") and result.eval_reports


def test_seed15(tiny_decoder_dir, tmp_path):
    base = tiny_decoder_dir("qwen2_moe")
    recipe = load_recipe(REPO / "recipes" / "seed1.5.yaml", shrink("seed1.5", base, tmp_path))
    result = run_recipe(recipe)
    finetune2 = result.stages["finetune2"].summary
    assert all(text.startswith("RouterAuxLoss(coef=0.001) over MatryoshkaLoss(") for text in finetune2.losses.values())
    infos = {d["name"]: d for d in result.stages["finetune"].summary.datasets}
    assert set(infos["banking77"]["prompts"]) == {"anchor"}  # the document side gets no prompt
    assert infos["snli"]["in_batch_negatives"] is False
    # finetune2 decontaminates too: STS-B train rows sharing a sentence with the STS-B test set are dropped
    stsb = {d["name"]: d for d in finetune2.datasets}["stsb"]
    assert finetune2.decontaminated_against == [str(STS_TEST)] and stsb["counts"].get("decontaminated_rows", 0) >= 0
    stage_json = json.loads((tmp_path / "finetune2" / "stage.json").read_text())
    assert stage_json["summary"]["decontaminated_against"] == [str(STS_TEST)]


def test_sea(tiny_bert_dir, tiny_model_dir, tmp_path):
    recipe = load_recipe(REPO / "recipes" / "sea.yaml", shrink("sea", tiny_bert_dir, tmp_path, tiny_model_dir))
    result = run_recipe(recipe)
    instruction = result.stages["instruction"].summary
    infos = {d["name"]: d for d in instruction.datasets}
    # symmetric InfoNCE with in-batch negatives everywhere (paper §2.2.1); the labels mask same-intent candidates
    assert infos["banking77"]["in_batch_negatives"] is True and set(infos["banking77"]["prompts"]) == {"anchor"}
    assert (
        "in_batch_negatives=True" in instruction.losses["banking77"]
        and "symmetric=True" in (instruction.losses["banking77"])
    )
    assert "symmetric=True" in instruction.losses["snli"]
    sdm = result.stages["sdm"].summary
    assert sdm.losses["snli"].startswith("SDMLoss(") and sdm.decontaminated_against == [str(STS_TEST)]


@pytest.mark.parametrize("name", ["kalm-v2", "seed1.5", "sea"])
def test_every_paper_value_is_sourced(name):
    """Every stage setting of a paper recipe says where it comes from: the paper (with its section) or us."""
    from embedforge.recipes.paper_table import recipe_rows

    rows = recipe_rows(REPO / "recipes" / f"{name}.yaml")
    assert rows and all(row.source for row in rows), [row.key for row in rows if not row.source]
    assert any(row.ours for row in rows) and any(not row.ours for row in rows)


def test_the_docs_table_is_the_generated_one():
    from embedforge.recipes.paper_table import END, START, render

    docs = (REPO / "docs" / "recipes.md").read_text()
    assert docs.split(START, 1)[1].split(END, 1)[0].strip() == render(REPO / "recipes").strip(), (
        "regenerate: python -m embedforge.recipes.paper_table --write docs/recipes.md"
    )
