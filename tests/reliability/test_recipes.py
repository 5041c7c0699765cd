"""Issue 12 (recipes): 2e-5, duplicate keys, --set on a missing stage, validation of every stage before the first."""

from __future__ import annotations

import logging

import pytest
import yaml

from embedforge.cli import main
from embedforge.errors import ConfigError
from embedforge.recipes import load_recipe
from tests.training.conftest import tiny_recipe, write_recipe


@pytest.fixture
def raw(tmp_path, tiny_bert_dir) -> dict:
    return tiny_recipe(tiny_bert_dir, tmp_path / "out")


def _text(raw: dict) -> str:
    return yaml.safe_dump(raw, sort_keys=False)


def test_learning_rate_2e_5_is_a_float_in_yaml_and_set(tmp_path, raw):
    text = _text(raw).replace("learning_rate: 0.0001", "learning_rate: 2e-5", 1)
    assert "learning_rate: 2e-5" in text
    (tmp_path / "r.yaml").write_text(text)
    recipe = load_recipe(
        tmp_path / "r.yaml", ["stages.finetune.learning_rate=3e-5", "stages.finetune.loss.gamma=1E-1"]
    )
    assert recipe.stages["pretrain"].learning_rate == pytest.approx(2e-5)
    assert recipe.stages["finetune"].learning_rate == pytest.approx(3e-5)
    assert recipe.stages["finetune"].loss["gamma"] == pytest.approx(0.1)


def test_duplicate_key_is_an_error_naming_the_line(tmp_path, raw):
    lines = _text(raw).splitlines()
    first = next(i for i, line in enumerate(lines) if line.strip() == "max_steps: 4")
    lines.insert(first + 1, lines[first].replace("4", "8"))
    (tmp_path / "r.yaml").write_text("\n".join(lines) + "\n")
    expected = rf"r\.yaml:{first + 2}: invalid YAML \(duplicate key 'max_steps' \(first on line {first + 1}\)"
    with pytest.raises(ConfigError, match=expected):
        load_recipe(tmp_path / "r.yaml")


def test_two_stages_of_one_name_are_an_error(tmp_path, raw):
    lines = _text(raw).splitlines()
    start = lines.index("  finetune:")
    (tmp_path / "r.yaml").write_text("\n".join([*lines, *lines[start:]]) + "\n")  # the stage appended twice
    with pytest.raises(ConfigError, match=r"duplicate key 'finetune'"):
        load_recipe(tmp_path / "r.yaml")


def test_set_on_a_stage_that_does_not_exist(tmp_path, raw):
    recipe = write_recipe(tmp_path / "r.yaml", raw)
    with pytest.raises(
        ConfigError,
        match=r"--set 'stages\.fintune\.batch_size=1': the recipe has no stage 'fintune'\. "
        r"Did you mean 'finetune'\?",
    ):
        load_recipe(recipe, ["stages.fintune.batch_size=1"])


def test_top_level_typo_message_separates_file_and_key(tmp_path, raw):
    raw["sed"] = 1
    with pytest.raises(ConfigError, match=r"r\.yaml: sed: unknown key\. Did you mean 'seed'\?"):
        load_recipe(write_recipe(tmp_path / "r.yaml", raw))


def _fails_before_training(tmp_path, raw, capsys, expected: str) -> None:
    recipe = write_recipe(tmp_path / "r.yaml", raw)
    assert main(["train", str(recipe), "--quiet"]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("embedforge train: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err[-2000:]
    assert expected in lines[0], lines[0]
    assert not (tmp_path / "out" / "pretrain").exists()  # nothing trained, nothing written


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda r: r["stages"]["finetune"]["datasets"][0].update(path="/nonexistent/snli.jsonl"),
            "stages.finetune.datasets[0].path: /nonexistent/snli.jsonl does not exist",
        ),
        (
            lambda r: r["stages"]["pretrain"].update(init="finetune"),
            "stages.pretrain.init: 'finetune' is a stage that",
        ),
        (
            lambda r: r["stages"]["finetune"].update(matryoshka={"dims": [32, 64]}),
            "stages.finetune.matryoshka.dims: [64] exceed the model's dimension 32",
        ),
        (lambda r: r["stages"]["finetune"]["loss"].update(temperature=0), "stages.finetune.loss.temperature: must be"),
        (lambda r: r["stages"]["finetune"].update(learning_rate=-1e-4), "stages.finetune.learning_rate: must be > 0"),
        (
            lambda r: r["stages"].update(soup={"type": "merge", "models": ["pretrain", "/nonexistent/model"]}),
            "stages.soup.models: '/nonexistent/model' is neither 'base', an earlier stage, a preset nor a model",
        ),
    ],
    ids=["missing-data", "forward-init", "matryoshka-dims", "temperature-0", "negative-lr", "merge-folder"],
)
def test_second_stage_problems_stop_the_run_before_the_first_stage(tmp_path, raw, capsys, edit, expected):
    edit(raw)
    _fails_before_training(tmp_path, raw, capsys, expected)


def test_model_dimension_is_read_without_loading_weights(tmp_path, raw, tiny_model_dir, monkeypatch):
    from embedforge.recipes.validate import validate_recipe

    def no_loading(*args, **kwargs):
        raise AssertionError("validation loaded a model")

    monkeypatch.setattr("embedforge.models.load_model", no_loading)
    monkeypatch.setattr("embedforge.models.loading.load_model", no_loading)
    raw["stages"]["finetune"].update(matryoshka={"dims": [16, 48]}, init=str(tiny_model_dir))  # an ST folder
    with pytest.raises(ConfigError, match=r"matryoshka\.dims: \[48\] exceed the model's dimension 32"):
        validate_recipe(load_recipe(write_recipe(tmp_path / "r.yaml", raw)))


def test_tiny_temperature_warns(tmp_path, raw, capsys, caplog):
    # pretrain's temperature is valid but tiny: a warning; finetune's missing file then stops the run untrained
    raw["stages"]["pretrain"]["loss"] = {"temperature": 1e-9}
    raw["stages"]["finetune"]["datasets"][0]["path"] = "/nonexistent/snli.jsonl"
    with caplog.at_level(logging.WARNING):
        _fails_before_training(tmp_path, raw, capsys, "/nonexistent/snli.jsonl does not exist")
    assert "stages.pretrain.loss.temperature: 1e-09 is very low" in caplog.text


def test_a_run_that_failed_early_does_not_block_a_plain_rerun(tmp_path, raw, capsys):
    # what a run that stopped before any stage wrote something leaves: the resolved recipe and an empty stage folder
    (tmp_path / "out" / "pretrain").mkdir(parents=True)
    (tmp_path / "out" / "recipe.resolved.yaml").write_text(_text(raw))
    raw["stages"]["finetune"]["learning_rate"] = -1.0  # still invalid: the rerun reports that, not the folder
    recipe = write_recipe(tmp_path / "r.yaml", raw)
    assert main(["train", str(recipe), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "learning_rate: must be > 0" in err and "already holds a run" not in err, err[-2000:]


def test_a_folder_with_results_still_needs_resume(tmp_path, raw, capsys):
    (tmp_path / "out" / "pretrain").mkdir(parents=True)
    (tmp_path / "out" / "pretrain" / "stage.json").write_text("{}")
    recipe = write_recipe(tmp_path / "r.yaml", raw)
    assert main(["train", str(recipe), "--quiet"]) == 2
    assert "already holds a run; pass --resume" in capsys.readouterr().err


def test_non_utf8_recipe_is_one_line(tmp_path, raw):
    path = tmp_path / "r.yaml"
    path.write_bytes(_text(raw).replace("name: tiny", "name: caf\xe9").encode("latin-1"))
    with pytest.raises(ConfigError, match=r"r\.yaml: not UTF-8 text \(byte \d+\); save the recipe as UTF-8"):
        load_recipe(path)


def test_full_disk_outside_a_stage_is_one_line(tmp_path, raw, monkeypatch, capsys):
    import errno

    def full(path, text):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr("embedforge.recipes.runner.atomic_write_text", full)  # recipe.resolved.yaml
    assert main(["train", str(write_recipe(tmp_path / "r.yaml", raw)), "--quiet"]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("embedforge train: error:")]
    expected = f"embedforge train: error: no space left on device at {tmp_path / 'out' / 'recipe.resolved.yaml'}"
    assert len(lines) == 1 and lines[0].startswith(expected) and "Traceback" not in err, err[-2000:]
