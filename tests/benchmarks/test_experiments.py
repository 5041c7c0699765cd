"""The seeded-experiment benchmarks: the noise rule, the generated tables, and recipes the loader accepts."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from benchmarks import distillation, domain_adaptation, smollm2_recipe
from benchmarks._experiments import Experiment, paired_table, reading, scores_table, verdict
from embedforge.recipes import recipe_from_dict


def test_the_noise_rule_needs_three_seeds_and_a_mean_beyond_twice_the_spread():
    assert verdict([0.02, 0.03]) == "not called (< 3 seeds)"
    assert verdict([0.010, 0.012, 0.011]) == "**real**: better"  # mean 0.011, sd 0.001
    assert verdict([-0.010, -0.012, -0.011]) == "**real**: worse"
    assert verdict([0.02, -0.01, 0.01]) == "within noise"  # mean 0.0067, sd 0.015


def fabricated() -> Experiment:
    experiment = Experiment(Path("unused"), tasks=[])
    experiment.references["base"] = {"A": 0.50, "B": 0.40}
    experiment.scores = {
        "baseline": {42: {"A": 0.60, "B": 0.50}, 43: {"A": 0.62, "B": 0.48}, 44: {"A": 0.61, "B": 0.49}},
        "better": {42: {"A": 0.65, "B": 0.50}, 43: {"A": 0.67, "B": 0.49}, 44: {"A": 0.66, "B": 0.47}},
    }
    return experiment


def test_tables_show_mean_std_and_per_seed_paired_differences():
    experiment = fabricated()
    table = scores_table(experiment, ["A", "B"])
    assert "| base (not trained here) | — | 50.00 | 40.00 | 45.00 |" in table
    assert "| baseline | 3 | 61.00 ± 1.00 | 49.00 ± 1.00 | 55.00 ± 0.00 |" in table
    paired = paired_table(experiment, "baseline", ["A", "B"])
    # per seed: A +5 each seed (real), B 0, +1, -2 (noise); mean over tasks +2.5, +3.0, +1.5
    row = "| better | +2.50, +3.00, +1.50 | +2.33 ± 0.76 | **real**: better | +5.00 ± 0.00 ▲ | -0.33 ± 1.53 |"
    assert row in paired
    text = reading(experiment, "baseline", ["A", "B"])
    assert "better vs baseline: mean +2.33 ± 0.76 points over 3 seed(s) — **real**: better" in text
    assert "per task beyond noise: A (better)" in text


def test_tables_only_reuses_finished_variants_and_trains_nothing(tmp_path, monkeypatch):
    tasks = [SimpleNamespace(spec=SimpleNamespace(name="A"))]
    trained = []

    def run(spec):
        trained.append(spec["seed"])
        return "model"

    running = Experiment(tmp_path, tasks, resume=True)
    monkeypatch.setattr(running, "evaluate", lambda label, model, folder: {"A": 0.5})
    running.variant("v", 42, {"name": "x"}, "v", run=run)
    assert trained == [42]

    tables = Experiment(tmp_path, tasks, train=False)
    assert tables.variant("v", 42, {"name": "x"}, "v", run=run) == {"A": 0.5}  # finished: reused
    assert tables.variant("v", 43, {"name": "x"}, "v", run=run) is None  # unfinished: skipped, not trained
    assert tables.variant("v", 42, {"name": "changed"}, "v", run=run) is None  # another recipe: not this run's
    assert trained == [42] and tables.scores == {"v": {42: {"A": 0.5}}}


@pytest.mark.parametrize("label", list(distillation.VARIANTS))
def test_distillation_recipes_load(label, tmp_path):
    args = distillation.parse_args([])
    spec = distillation.recipe(label, tmp_path / "student", args)
    recipe = recipe_from_dict({**spec, "output_dir": str(tmp_path / "out")}, label)
    stage = recipe.stages["distill"]
    loss, with_teacher, after_scl = distillation.VARIANTS[label]
    assert sum(s.max_steps for s in recipe.stages.values()) == args.steps  # equal steps for every variant
    assert stage.loss["name"] == loss["name"] and (stage.teacher == distillation.TEACHER) == with_teacher
    assert list(recipe.stages) == (["scl", "distill"] if after_scl else ["distill"])
    if after_scl:  # the contrastive stage learns from the hard labels alone, and the KD stage starts from it
        assert recipe.stages["scl"].teacher is None and recipe.stages["scl"].loss["symmetric"] is True
        assert stage.init is None  # None = the previous stage's model


@pytest.mark.parametrize("label", list(domain_adaptation.VARIANTS))
@pytest.mark.parametrize("domain", ["scifact", "debian"])
def test_domain_adaptation_recipes_load_with_equal_steps(label, domain, tmp_path):
    args = domain_adaptation.parse_args([])
    spec = domain_adaptation.recipe(label, domain, domain_adaptation.domains()[domain], tmp_path / "m.jsonl", args)
    recipe = recipe_from_dict({**spec, "output_dir": str(tmp_path / "out")}, label)
    steps = sum(s.max_steps for s in recipe.stages.values() if s.type == "train")
    assert steps == args.steps
    mines = [s for s in recipe.stages.values() if s.type == "mine"]
    assert len(mines) == (1 if domain_adaptation.VARIANTS[label][1] == "iterative" else 0)
    mining = recipe_from_dict(
        {**domain_adaptation.base_mining_recipe(domain, domain_adaptation.domains()[domain], args), "output_dir": "x"}
    )
    assert mining.stages["mine"].relative_margin == 0.05  # the false-negative filter is on


@pytest.mark.parametrize("label", smollm2_recipe.VARIANTS)
def test_smollm2_recipes_load_with_equal_steps(label, tmp_path):
    args = smollm2_recipe.parse_args([])
    recipe = recipe_from_dict({**smollm2_recipe.recipe(label, args), "output_dir": str(tmp_path)}, label)
    train = {n: s for n, s in recipe.stages.items() if s.type == "train"}
    pretrain_steps = train.pop("pretrain").max_steps
    assert pretrain_steps == args.pretrain_steps
    if label == "full KaLM-style recipe":
        assert sum(s.max_steps for s in train.values()) == args.finetune_steps  # the soup's ingredients share it
        assert recipe.stages["soup"].type == "merge" and recipe.stages["mine"].type == "mine"
        assert all(s.matryoshka is not None and s.loss["gamma"] == 0.5 for s in train.values())
    else:
        assert train["finetune"].max_steps == args.finetune_steps
        assert train["finetune"].matryoshka is None
    instructed = [d.instruction for s in recipe.stages.values() if s.type == "train" for d in s.datasets]
    assert all(instructed) if label != "sentence-transformers MNRL" else not any(instructed)


def test_result_sections_carry_the_noise_rule_description_tables_and_reading(monkeypatch):
    from benchmarks._experiments import NOISE_RULE, result_sections

    monkeypatch.setattr(Experiment, "task_names", property(lambda self: ["A", "B"]))
    experiment = fabricated()
    doc = "Title.\n\nSecond paragraph.\n\nWhat the benchmark compares."
    text = result_sections(experiment, "baseline", doc)
    assert text.startswith(f"- Noise rule, fixed before the run: {NOISE_RULE}\n\nWhat the benchmark compares.\n")
    assert scores_table(experiment) in text
    assert reading(experiment, "baseline") in text
    assert text.index("## Main scores") < text.index("## Per-seed paired differences against baseline")


def test_every_benchmark_applies_one_noise_rule_with_its_sign_condition():
    from benchmarks import _common

    # nine seeds gain 1 point, one loses 0.01: |mean| > 2 std, but the signs differ, so nothing is called
    mixed = [0.01] * 9 + [-0.0001]
    assert _common.Paired(mixed).verdict == "within noise"
    assert verdict(mixed) == "within noise"
    assert verdict([0.01] * 9 + [0.0099]) == "**real**: better"


def one_task(**scores: list[float]) -> Experiment:
    """An experiment on one task "A" with the given per-seed scores (seeds 42, 43, ...) for each label."""
    experiment = Experiment(Path("unused"), tasks=[SimpleNamespace(spec=SimpleNamespace(name="A"))])
    experiment.scores = {label: {42 + i: {"A": v} for i, v in enumerate(values)} for label, values in scores.items()}
    return experiment


def test_distillation_pairs_the_sea_order_variants_against_the_contrastive_control():
    experiment = one_task(**{"InfoNCE, no teacher": [0.50, 0.52, 0.51]})
    assert distillation.sea_order_section(experiment) == ""  # no SEA-order variant yet: no section
    experiment.scores["InfoNCE, then SDM"] = {42: {"A": 0.53}, 43: {"A": 0.55}, 44: {"A": 0.54}}
    section = distillation.sea_order_section(experiment)
    assert "paired against InfoNCE, no teacher" in section
    assert "| InfoNCE, then SDM | +3.00, +3.00, +3.00 |" in section


def test_smollm2_pairs_the_full_recipe_against_plain_infonce_too():
    """The issue asks full recipe vs MNRL *and* vs plain InfoNCE: the second pairing isolates KaLM's techniques."""
    experiment = one_task(**{"embedforge plain InfoNCE": [0.40, 0.42, 0.41]})
    assert smollm2_recipe.techniques_section(experiment) == ""  # no full-recipe seed yet: no section
    experiment.scores["full KaLM-style recipe"] = {42: {"A": 0.30}, 43: {"A": 0.31}, 44: {"A": 0.30}}
    section = smollm2_recipe.techniques_section(experiment)
    assert "paired against embedforge plain InfoNCE" in section
    assert "| full KaLM-style recipe | -10.00, -11.00, -11.00 |" in section and "**real**: worse" in section
