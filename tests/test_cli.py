"""The command line: instant help, the command registry, the quickstart wiring."""

from __future__ import annotations

import subprocess
import sys

from embedforge.cli import COMMANDS, main
from tests.training.conftest import tiny_recipe, write_recipe


def test_help_lists_every_command_without_importing_the_heavy_stack():
    code = (
        "import sys; from embedforge.cli import main\ntry: main(['--help'])\nexcept SystemExit: pass\n"
        "heavy = [m for m in ('torch', 'sentence_transformers', 'mteb', 'transformers') if m in sys.modules]; "
        "print('HEAVY', heavy)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    for name in COMMANDS:
        assert name in result.stdout
    assert "HEAVY []" in result.stdout


def test_unknown_command_suggests_the_closest(capsys):
    try:
        main(["trian"])
    except SystemExit as exit_:
        assert exit_.code == 2
    assert "Did you mean 'train'?" in capsys.readouterr().err


def test_every_command_has_help():
    for name in COMMANDS:
        try:
            main([name, "--help"])
        except SystemExit as exit_:
            assert exit_.code == 0, name


def test_models_lists_the_presets(capsys):
    assert main(["models"]) == 0
    assert "all-MiniLM-L6-v2" in capsys.readouterr().out


def test_quickstart_trains_then_prints_base_and_trained_rows(tmp_path, tiny_bert_dir, capsys):
    raw = tiny_recipe(tiny_bert_dir, tmp_path / "out", max_steps=2)
    raw["eval"] = {"tasks": [str(tmp_path.parent / "sts")], "compare_base": True}
    sts = tmp_path.parent / "sts"
    sts.mkdir(exist_ok=True)
    (sts / "task.json").write_text('{"name": "MiniSTS", "type": "STS", "eval_split": "test"}')
    rows = [
        ("A man plays a guitar.", "A man is playing guitar.", 4.8),
        ("A dog runs.", "The stock market fell.", 0.2),
        ("Kids play soccer.", "Children are playing football.", 4.5),
        ("A cat sleeps.", "A cat is asleep.", 4.9),
    ]
    (sts / "test.jsonl").write_text(
        "".join(f'{{"sentence1": "{a}", "sentence2": "{b}", "score": {s}}}\n' for a, b, s in rows)
    )
    recipe = write_recipe(tmp_path / "q.yaml", raw)
    assert main(["quickstart", "--recipe", str(recipe), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "Mean(TaskType)" in out and "| tiny |" in out and "| base (" in out
    assert "'train_runtime'" not in out and "'loss'" not in out  # --quiet: no per-step loss dicts either
    # a second run reuses the trained model: both stages are skipped, the table is printed again
    assert main(["quickstart", "--recipe", str(recipe), "--quiet"]) == 0
    assert "| tiny |" in capsys.readouterr().out
