"""Recipe YAML: overrides, path resolution, and bad input named by file and key."""

from __future__ import annotations

import pytest

from embedforge.errors import ConfigError
from embedforge.recipes import load_recipe
from tests.training.conftest import tiny_recipe, write_recipe


def test_overrides_and_types(recipe_file):
    recipe = load_recipe(
        recipe_file, ["stages.finetune.loss.gamma=0", "seed=3", "stages.finetune.datasets.0.max_rows=10"]
    )
    assert recipe.seed == 3
    assert recipe.stages["finetune"].loss == {"temperature": 0.05, "gamma": 0}
    assert recipe.stages["finetune"].datasets[0].max_rows == 10
    assert recipe.stages["finetune"].learning_rate == pytest.approx(1e-4)


def test_relative_paths_are_relative_to_the_recipe_file(tmp_path, tiny_bert_dir):
    raw = tiny_recipe(tiny_bert_dir, tmp_path / "out")
    raw["output_dir"] = "runs/x"
    raw["stages"]["pretrain"]["datasets"][0]["path"] = "data/pairs.jsonl"
    sub = tmp_path / "recipes"
    sub.mkdir()
    recipe = load_recipe(write_recipe(sub / "r.yaml", raw))
    assert recipe.output_dir == str(sub / "runs/x")
    assert recipe.stages["pretrain"].datasets[0].path == str(sub / "data/pairs.jsonl")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda r: r["stages"]["finetune"]["loss"].update(gama=0.5),
            r"stages\.finetune\.loss\.gama: unknown option for loss 'infonce'\. Did you mean 'gamma'\?",
        ),
        (
            lambda r: r["stages"]["finetune"]["loss"].update(name="infonse"),
            r"stages\.finetune\.loss\.name: unknown loss 'infonse'\. Did you mean 'infonce'\?",
        ),
        (
            lambda r: r["stages"]["finetune"].update(learning_rte=1e-3),
            r"stages\.finetune\.learning_rte: unknown key\. Did you mean 'learning_rate'\?",
        ),
        (
            lambda r: r["stages"]["finetune"].update(type="trian"),
            r"stages\.finetune\.type: unknown stage type 'trian'\. Did you mean 'train'\?",
        ),
        (
            lambda r: r["stages"]["finetune"]["datasets"][1].update(kind="stss"),
            r"stages\.finetune\.datasets\[1\]: dataset 'stsb': kind 'stss' is not valid\. Did you mean 'sts'\?",
        ),
        (
            lambda r: r["stages"]["finetune"].update(batch_size="big"),
            r"stages\.finetune\.batch_size: expected int, got str 'big'",
        ),
        (
            lambda r: (
                r["stages"]["finetune"]["trainer_args"].update(deepspeeed="ds.json")
                if "trainer_args" in r["stages"]["finetune"]
                else r["stages"]["finetune"].update(trainer_args={"deepspeeed": "x"})
            ),
            r"stages\.finetune\.trainer_args\.deepspeeed: not a training argument\. Did you mean 'deepspeed'\?",
        ),
        (
            lambda r: r["stages"]["finetune"].update(loss_overrides={"nope": {"gamma": 0}}),
            r"stages\.finetune\.loss_overrides\.nope: no dataset of that name",
        ),
        (  # the registry spelling of earlier versions lost the dataset's in_batch_negatives flag and the gather
            lambda r: r["stages"]["finetune"].update(
                loss={"name": "matryoshka", "loss": {"name": "infonce"}, "matryoshka_dims": [16]}
            ),
            r"stages\.finetune\.loss\.name: 'matryoshka' is a modifier, not a base loss: write the stage key "
            r"`matryoshka: \{dims: \[\.\.\.\], weights: \[\.\.\.\]\}`",
        ),
        (
            lambda r: r["stages"]["finetune"].update(matryoshka={"dims": [32, 16], "weights": [1.0]}),
            r"stages\.finetune\.matryoshka: weights: 1 weights for 2 dims",
        ),
    ],
)
def test_bad_recipe_names_file_and_key(tmp_path, tiny_bert_dir, edit, message):
    raw = tiny_recipe(tiny_bert_dir, tmp_path / "out")
    edit(raw)
    path = write_recipe(tmp_path / "bad.yaml", raw)
    with pytest.raises(ConfigError, match=rf"bad\.yaml: {message}"):
        load_recipe(path)


def test_invalid_yaml_names_the_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\nmodel: {base: a\nstages: {}\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml:3: invalid YAML"):
        load_recipe(path)


def test_bad_override(recipe_file):
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        load_recipe(recipe_file, ["stages.finetune.loss.gamma"])
    with pytest.raises(ConfigError, match="expected a list index below 2"):
        load_recipe(recipe_file, ["stages.finetune.datasets.5.max_rows=1"])


def test_shipped_recipes_load():
    from pathlib import Path

    paths = sorted((Path(__file__).resolve().parents[2] / "recipes").glob("*.yaml"))
    assert {p.stem for p in paths} >= {"quickstart", "kalm-v2", "seed1.5", "sea"}
    for path in paths:
        recipe = load_recipe(path)
        assert recipe.stages, path


def test_recipe_modules_import_without_a_cycle():
    """stages imported the runner, which imported the loader, which imported the stages (lazily, in functions)."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "embedforge" / "recipes"
    graph: dict[str, set[str]] = {}
    for path in root.rglob("*.py"):
        if path.name == "__init__.py":
            continue  # a package __init__ runs before any of its modules; it re-exports, it does not cycle
        module = "embedforge." + ".".join(path.relative_to(root.parent).with_suffix("").parts)
        graph[module] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):  # function-level imports too
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("embedforge.recipes"):
                graph[module].add(node.module)
                graph[module].update(f"{node.module}.{a.name}" for a in node.names)
    graph = {m: {d for d in deps if d in graph and d != m} for m, deps in graph.items()}

    def reaches(start: str, target: str, seen: frozenset[str]) -> bool:
        return any(n == target or (n not in seen and reaches(n, target, seen | {n})) for n in graph[start])

    assert sorted(m for m in graph if reaches(m, m, frozenset({m}))) == []


def test_stage_summaries_are_typed_and_read_back():
    from embedforge.recipes.context import MineSummary, TrainSummary, summary_from_dict
    from embedforge.utils.config import to_plain

    train = TrainSummary(global_batch=8, world_size=1, dtype="fp32", hard_negatives_per_query={"a": 1}, init="base")
    plain = to_plain(train) | {"key_of_a_newer_version": 1}
    assert summary_from_dict(TrainSummary, plain) == train
    mine = summary_from_dict(MineSummary, {"model": "m", "files": {}, "mined": {}, "seconds": 1.0})
    assert isinstance(mine, MineSummary) and not isinstance(mine, TrainSummary) and mine.seconds == 1.0
