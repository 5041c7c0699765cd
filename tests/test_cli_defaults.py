"""CLI defaults users meet first: progress bars, warnings, ``embedforge.serving``, Hub ids on opt-in (offline)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import warnings

import pytest

from embedforge.cli import COMMANDS, main
from embedforge.errors import ConfigError
from embedforge.utils.progress import progress_enabled, set_progress

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_serving_is_an_attribute_after_import_embedforge():
    code = "import embedforge; print(embedforge.serving.create_app.__name__, embedforge.evaluation.evaluate.__name__)"
    out = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": REPO}, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["create_app", "evaluate"]


def test_progress_follows_the_terminal_and_ci(monkeypatch):
    monkeypatch.delenv("EMBEDFORGE_PROGRESS", raising=False)
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert progress_enabled() is True
    monkeypatch.setenv("CI", "true")
    assert progress_enabled() is False  # CI logs get no bars, even on a pseudo-terminal
    monkeypatch.setenv("EMBEDFORGE_PROGRESS", "1")
    assert progress_enabled() is True  # --progress wins
    monkeypatch.delenv("CI")
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    monkeypatch.delenv("EMBEDFORGE_PROGRESS")
    assert progress_enabled() is False  # a pipe or a log file
    for key in ("HF_HUB_DISABLE_PROGRESS_BARS", "HF_DATASETS_DISABLE_PROGRESS_BARS", "TQDM_DISABLE"):
        monkeypatch.delenv(key, raising=False)
    assert set_progress(None) is False and os.environ["TQDM_DISABLE"] == "1"
    assert set_progress(True) is True and os.environ["EMBEDFORGE_PROGRESS"] == "1"


def test_every_command_takes_progress_and_warnings_go_through_logging(monkeypatch, caplog):
    import importlib

    for name, (module_name, _) in COMMANDS.items():
        parser = argparse.ArgumentParser()
        importlib.import_module(module_name).add_arguments(parser)
        assert not any("--progress" in a.option_strings for a in parser._actions), f"{name} defines --progress"

    module = importlib.import_module("embedforge.cli.models")

    def noisy_run(args):
        warnings.warn("a third-party deprecation", UserWarning, stacklevel=1)
        return 0

    monkeypatch.setattr(module, "run", noisy_run)
    monkeypatch.delenv("EMBEDFORGE_PROGRESS", raising=False)
    assert main(["models", "--no-progress"]) == 0
    assert os.environ["EMBEDFORGE_PROGRESS"] == "0"
    # a log record (printed through tqdm.write above any bar), not a raw write to stderr
    assert [r.name for r in caplog.records if "a third-party deprecation" in r.getMessage()] == ["py.warnings"]


def test_hub_ids_need_the_users_opt_in(monkeypatch, tiny_model_dir, tmp_path):
    import huggingface_hub

    from embedforge.models import load_model, resolve_model_path

    calls = []
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda repo_id: calls.append(repo_id) or tiny_model_dir)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError, match="set HF_HUB_OFFLINE=0"):
        resolve_model_path("someone/some-model")
    assert calls == []
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert load_model("someone/some-model").get_embedding_dimension() == 32
    assert calls == ["someone/some-model"]
    with pytest.raises(ConfigError, match="neither a local folder"):
        resolve_model_path("not/a/hub/id")  # a mistyped path is not sent to the Hub
    # a recipe keeps the Hub id as its base (instead of making it a path next to the recipe file)
    from embedforge.recipes import load_recipe

    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "name: r\nmodel: {base: someone/some-model}\nstages:\n  s: {type: eval, tasks: []}\n", encoding="utf-8"
    )
    assert load_recipe(recipe).model.base == "someone/some-model"
