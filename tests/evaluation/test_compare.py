"""``embedforge compare``: run folders grouped by seed, deltas against the first, Markdown and HTML."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from embedforge.cli import main
from embedforge.errors import ConfigError


def fake_run(root: Path, name: str, seed: int, scores: dict[tuple[str, int], float], gamma: float = 0.5) -> Path:
    """A finished run folder: resolved recipe, one train stage, the recipe's evaluation results."""
    recipe = {
        "name": name,
        "model": {"base": "all-MiniLM-L6-v2"},
        "seed": seed,
        "output_dir": str(root),
        "stages": {"finetune": {"type": "train", "loss": {"gamma": gamma}, "datasets": []}},
    }
    root.mkdir(parents=True)
    (root / "recipe.resolved.yaml").write_text(yaml.safe_dump(recipe))
    (root / "finetune").mkdir()
    (root / "finetune" / "final").mkdir()
    (root / "finetune" / "stage.json").write_text(json.dumps({"model_path": str(root / "finetune" / "final")}))
    records = [
        {"task": task, "type": "STS", "dim": dim, "main_score": value, "metrics": {}}
        for (task, dim), value in scores.items()
    ]
    (root / "eval" / name).mkdir(parents=True)
    (root / "eval" / name / "results.json").write_text(json.dumps(records))
    return root


def test_compare_groups_seeds_and_reports_deltas_against_the_first(tmp_path, capsys):
    first = fake_run(tmp_path / "qs", "quickstart", 42, {("STS", 64): 0.80, ("Ret", 64): 0.40, ("STS", 32): 0.70})
    seed1 = fake_run(tmp_path / "s1", "quickstart", 1, {("STS", 64): 0.84, ("Ret", 64): 0.44, ("STS", 32): 0.72})
    seed2 = fake_run(tmp_path / "s2", "quickstart", 2, {("STS", 64): 0.82, ("Ret", 64): 0.42, ("STS", 32): 0.74})
    first_g0 = fake_run(tmp_path / "g0", "quickstart", 42, {("STS", 64): 0.78, ("Ret", 64): 0.40}, gamma=0.0)
    # seeds 1 and 2 have the recipe of the first run: one group of three seeds; gamma=0 is another variant
    status = main(["compare", str(first), str(first_g0), str(seed1), str(seed2), "--output", str(tmp_path / "cmp")])
    assert status == 0
    text = capsys.readouterr().out
    header = text.splitlines()[2]
    assert "quickstart/finetune (n=3)" in header
    assert "quickstart/finetune [stages.finetune.loss.gamma=0.0] (n=1)" in header
    table = text.split("\n\n")[1].splitlines()[2:]  # the main table (the per-seed table follows)
    rows = {tuple(c.strip() for c in line.strip("|").split("|")[:2]): line for line in table}
    sts = [c.strip() for c in rows[("STS", "64")].strip("|").split("|")]
    # three seeds 0.80, 0.84, 0.82: mean 82.00, sd 2.00; the gamma=0 run: 78.00, delta -4.00
    assert sts[2:] == ["82.00 ± 2.00", "78.00", "-4.00"]
    mean_row = [c.strip() for c in rows[("**Mean(Task)**", "64")].strip("|").split("|")]
    assert mean_row[2:] == ["62.00 ± 2.00", "59.00", "-3.00"]
    assert "| seed 42 | seed 1 | seed 2 | spread (max − min) |" in text
    assert re.search(r"\| STS \| 32 \| 70.00 \| 72.00 \| 74.00 \| 4.00 \|", text)

    page = (tmp_path / "cmp" / "compare.html").read_text()
    assert page.count('src="data:image/png;base64,') == 2  # scores per task, Mean(Task) by dimension
    assert not re.search(r'(src|href)="(https?:|/|file:)', page), "the report must be self-contained"
    assert "82.00 ± 2.00" in page and "-4.00" in page
    assert (tmp_path / "cmp" / "compare.md").read_text().startswith("# embedforge compare")


def test_compare_reads_evaluation_folders_and_results_files(tmp_path, capsys):
    a = tmp_path / "minilm"
    a.mkdir()
    (a / "results.json").write_text(json.dumps([{"task": "STS", "type": "STS", "dim": 8, "main_score": 0.5}]))
    run = fake_run(tmp_path / "run", "recipe", 1, {("STS", 8): 0.75})
    assert main(["compare", str(a), str(run / "eval" / "recipe" / "results.json")]) == 0
    text = capsys.readouterr().out
    assert "minilm (n=1)" in text and "recipe/finetune (n=1)" in text
    assert "| STS | 8 | 50.00 | 75.00 | +25.00 |" in text


def test_compare_errors_name_the_input(tmp_path):
    from embedforge.evaluation.compare import compare

    with pytest.raises(ConfigError, match="not a run folder, an evaluation folder or a results.json"):
        compare([tmp_path / "nothing"])
    bad = tmp_path / "results.json"
    bad.write_text("{")
    with pytest.raises(ConfigError, match=r"results.json:1: not valid JSON"):
        compare([bad])
    run = fake_run(tmp_path / "run", "r", 1, {("STS", 8): 0.5})
    (run / "eval" / "r" / "results.json").unlink()
    with pytest.raises(ConfigError, match="no evaluation results yet"):
        compare([run])


def test_a_run_folder_resolves_to_its_final_model(tmp_path, tiny_model_dir):
    from embedforge.models import load_model, resolve_model_path

    run = fake_run(tmp_path / "run", "r", 1, {("STS", 8): 0.5})
    (run / "finetune" / "final").rmdir()
    (run / "finetune" / "final").symlink_to(tiny_model_dir)
    assert resolve_model_path(run) == run / "finetune" / "final"
    assert load_model(run).get_embedding_dimension() == 32
