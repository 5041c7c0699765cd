"""benchmarks/recipe_vs_st.py and benchmarks/_common.py: the peer's data plan, the noise rule, generated sections."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        yield importlib.import_module("recipe_vs_st"), importlib.import_module("_common")
    finally:
        sys.path.remove(str(REPO / "benchmarks"))


def test_noise_rule_needs_three_seeds_one_sign_and_twice_the_std(bench):
    _, common = bench
    assert common.Paired([1.2, 1.0, 1.1]).verdict == "real gain"
    assert common.Paired([-1.2, -1.0, -1.1]).verdict == "real loss"
    assert common.Paired([3.0, 0.1, 0.2]).verdict == "within noise"  # mean 1.1 < 2 x std 1.68
    assert common.Paired([2.0, 2.5, -0.1]).verdict == "within noise"  # one seed of the other sign
    assert common.Paired([2.0, 2.5]).verdict.startswith("too few seeds")


def test_replace_section_keeps_the_rest_of_the_file(bench, tmp_path):
    _, common = bench
    path = tmp_path / "RESULTS.md"
    path.write_text("# Intro\n\nhand-written\n")
    common.replace_section(path, "a", "table one")
    common.replace_section(path, "b", "table two")
    common.replace_section(path, "a", "table one, regenerated")
    text = path.read_text()
    assert text.startswith("# Intro\n\nhand-written\n")
    assert "table one, regenerated" in text and "table one\n" not in text
    assert text.index("table one, regenerated") < text.index("table two")


def test_peer_gets_every_source_dataset_once_in_plain_mnrl_form(bench):
    module, _ = bench
    recipe = module.load(module.DEFAULT_RECIPE, module.embedforge_overrides(module.DEFAULT_RECIPE, [], None))
    plan = module.peer_plan(recipe)
    stages = module.train_stages(recipe)
    assert plan["steps"] == sum(s.max_steps for s in stages.values())
    by_kind = {d.kind: d for d in plan["datasets"]}
    assert by_kind["sts"].loss == "infonce"  # MNRL cannot use scores: positive pairs above the threshold
    assert by_kind["classification"].num_negatives == 0  # (text, same-label text) pairs, no label negatives
    sources = {
        (d.path, d.kind, str(d.columns), d.max_rows)
        for s in recipe.stages.values()
        for d in getattr(s, "datasets", [])
    }
    assert len(plan["datasets"]) == len(sources)  # a dataset used by two stages is fed once


def test_steps_are_split_over_the_training_stages(bench):
    module, _ = bench
    overrides = module.embedforge_overrides(module.DEFAULT_RECIPE, [], 50)
    recipe = module.load(module.DEFAULT_RECIPE, overrides)
    assert sum(s.max_steps for s in module.train_stages(recipe).values()) == 50


def test_settings_are_portable_across_checkouts(bench):
    """--resume compares settings: a clone elsewhere must see the same ones (paths relative to the checkout)."""
    rvs, _ = bench
    inside = f"{REPO}/data/train/snli/triplets.jsonl"
    settings = {"datasets": [{"path": inside, "max_rows": 3}], "eval": ["/elsewhere/eval", inside], "seed": 1}
    assert rvs.portable(settings) == {
        "datasets": [{"path": "data/train/snli/triplets.jsonl", "max_rows": 3}],
        "eval": ["/elsewhere/eval", "data/train/snli/triplets.jsonl"],
        "seed": 1,
    }


SOUP = REPO / "benchmarks" / "recipes" / "quickstart-soup.yaml"


def _load(module, path):
    """A recipe as recipe_vs_st loads it, without overrides."""
    return module.load(path, module.embedforge_overrides(path, [], None))


def test_soup_experiment_trains_the_same_data_and_steps_as_the_shipped_recipe(bench):
    """The soup variant is paired with the shipped recipe's peer, so both must plan the same peer."""
    module, _ = bench
    shipped, soup = _load(module, module.DEFAULT_RECIPE), _load(module, SOUP)
    assert module.peer_plan(soup) == module.peer_plan(shipped)
    assert soup.stages["soup"].models == ["finetune", "finetune_labels"]
    assert soup.stages["finetune_labels"].init == "pretrain"


FINETUNE_ALONE = REPO / "benchmarks" / "recipes" / "quickstart-finetune-alone.yaml"


def test_finetune_alone_experiment_trains_the_same_data_and_steps_as_the_shipped_recipe(bench):
    """Pre-training -> fine-tuning vs fine-tuning alone: one stage of all the steps, the shipped peer, same loss."""
    module, _ = bench
    shipped, alone = _load(module, module.DEFAULT_RECIPE), _load(module, FINETUNE_ALONE)
    assert module.peer_plan(alone) == module.peer_plan(shipped)
    assert list(alone.stages) == ["finetune"]
    assert alone.stages["finetune"].max_steps == sum(stage.max_steps for stage in shipped.stages.values())
    assert alone.stages["finetune"].loss == shipped.stages["finetune"].loss


def _record(seed: int, scores: dict[str, float], ingredients: dict | None = None) -> dict:
    record = {"seed": seed, "scores": scores, "train_seconds": 1.0, "what": "x"}
    return record | ({"ingredients": ingredients} if ingredients else {})


def _write_base(module, folder, scores: dict[str, float]) -> None:
    (folder / "base").mkdir()
    (folder / "base" / "result.json").write_text(module.json.dumps({"label": "base", "scores": scores}))


def test_soup_section_pairs_the_soup_with_its_best_ingredient_per_seed(bench, tmp_path):
    module, _ = bench
    tasks = {"A": 0.5, module.NOISY_TASK: 0.5}
    _write_base(module, tmp_path, tasks)
    for seed in (1, 2, 3):
        peer = tmp_path / f"seed{seed}" / "peer"
        soup = tmp_path / f"seed{seed}" / "soup"
        for folder in (peer, soup):
            folder.mkdir(parents=True)
        (peer / "result.json").write_text(module.json.dumps(_record(seed, tasks)))
        # ingredient x is best at seeds 1-2, y at seed 3; the soup is 1 point above the better one
        best, other = (0.60, 0.55) if seed < 3 else (0.55, 0.62)
        ingredients = {"x": {"A": best, module.NOISY_TASK: best}, "y": {"A": other, module.NOISY_TASK: other}}
        top = max(best, other) + 0.01
        soup_scores = {"A": top, module.NOISY_TASK: top}
        (soup / "result.json").write_text(module.json.dumps(_record(seed, soup_scores, ingredients)))
    text = module.render(tmp_path)
    row = next(line for line in text.splitlines() if line.startswith("| soup | 1, 2, 3 | 58.33"))
    assert "+1.00, +1.00, +1.00" in row and "real gain" in row


def test_variants_section_pairs_each_side_with_the_shipped_recipe_per_seed(bench, tmp_path):
    module, _ = bench
    base = {"A": 0.5, module.NOISY_TASK: 0.5}
    _write_base(module, tmp_path, base)
    for seed in (1, 2, 3):
        # the variant: +1 point on A at every seed (real), clustering -4 / +4 / -4 (noise)
        sides = {
            "peer": {"A": 0.50, module.NOISY_TASK: 0.50},
            "embedforge": {"A": 0.60, module.NOISY_TASK: 0.60},
            "variant": {"A": 0.61, module.NOISY_TASK: 0.56 if seed != 2 else 0.64},
        }
        for name, scores in sides.items():
            folder = tmp_path / f"seed{seed}" / name
            folder.mkdir(parents=True)
            (folder / "result.json").write_text(module.json.dumps(_record(seed, scores)))
    text = module.render(tmp_path)
    section = text.split("Every other side against the recipe as shipped")[1]
    row = next(line for line in section.splitlines() if line.startswith("| variant | 1, 2, 3 |"))
    cells = [cell.strip() for cell in row.split("|")]
    assert cells[3] == "-1.50, +2.50, -1.50" and cells[5] == "within noise"  # the 2-task mean: noise
    assert cells[6] == "+1.00, +1.00, +1.00" and cells[8] == "real gain"  # without clustering: real
    assert "| peer |" not in section.split("\n\n")[1]  # the peer is the other table's baseline, not a variant


def test_records_carry_the_code_they_were_made_with_and_the_table_names_it(bench, tmp_path):
    module, common = bench
    version = common.code_version()
    assert version is None or len(version.split("+")[0]) >= 7  # a short hash, "+dirty" when tracked files differ
    record = common.save_record(tmp_path / "r.json", {"seed": 1}, scores={})
    assert record["code"] == version and common.load_record(tmp_path / "r.json", {"seed": 1})["code"] == version
    assert common.save_record(tmp_path / "s.json", {}, code="abc1234")["code"] == "abc1234"
    assert common.code_version(tmp_path) is None  # not a git checkout

    tasks = {"A": 0.5, module.NOISY_TASK: 0.5}
    _write_base(module, tmp_path, tasks)
    for seed in (1, 2, 3):
        for name, code in (("peer", None), ("embedforge", "abc1234"), ("old", None)):
            folder = tmp_path / f"seed{seed}" / name
            folder.mkdir(parents=True)
            record = _record(seed, tasks) | ({"code": code} if code else {})
            (folder / "result.json").write_text(module.json.dumps(record))
    rows = {line.split("|")[1].strip(): line for line in module.render(tmp_path).splitlines() if "| x" in line}
    assert "| x (trained at abc1234) |" in rows["embedforge"]
    assert "| x |" in rows["old"]  # records from before the field: nothing claimed
