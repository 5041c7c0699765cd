"""Instructions: prompts for the trainer (per dataset, per column) and for the saved model (mteb keys)."""

from __future__ import annotations

import json
import os

import pytest

from embedforge.data.config import DatasetConfig
from embedforge.data.instructions import (
    DEFAULT_TASK_TYPE_INSTRUCTIONS,
    dataset_prompts,
    format_prompt,
    model_prompts,
    task_types_from_dirs,
    trainer_prompts,
)
from embedforge.errors import ConfigError


def test_default_template_is_kalm_qwen_style():
    assert format_prompt("Find the answer") == "Instruct: Find the answer\nQuery: "
    assert format_prompt("Find", "task: {task} | {text}") == "task: Find | "
    with pytest.raises(ConfigError, match="end with"):
        format_prompt("x", "{text} {task}")


def test_trainer_prompts_query_only_vs_both_sides():
    retrieval = DatasetConfig(name="qa", path="p", kind="retrieval", instruction="Answer it", num_negatives=2)
    sts = DatasetConfig(name="sts", path="p", kind="sts", instruction="Similar text")
    cls = DatasetConfig(name="cls", path="p", kind="classification", instruction="Classify it")
    plain = DatasetConfig(name="plain", path="p", kind="pairs")
    prompts = trainer_prompts(
        [retrieval, sts, cls, plain],
        {
            "qa": ["anchor", "positive", "negative_1", "negative_2"],
            "sts": ["sentence1", "sentence2", "score"],
            "cls": ["anchor", "positive", "negative_1"],
            "plain": ["anchor", "positive"],
        },
    )
    assert prompts["qa"] == {"anchor": "Instruct: Answer it\nQuery: "}
    assert prompts["sts"] == {
        "sentence1": "Instruct: Similar text\nQuery: ",
        "sentence2": "Instruct: Similar text\nQuery: ",
    }
    assert set(prompts["cls"]) == {"anchor", "positive", "negative_1"}
    assert prompts["plain"] == {}  # every dataset present: the collator requires it for nested prompts


def test_prompts_derived_from_config_without_columns():
    config = DatasetConfig(name="nli", path="p", kind="nli", instruction="Similar", num_negatives=2)
    assert set(dataset_prompts(config)) == {"anchor", "positive", "negative_1", "negative_2"}
    asymmetric = DatasetConfig(name="t", path="p", kind="triplets", instruction="Find", symmetric=False)
    assert set(dataset_prompts(asymmetric)) == {"anchor"}


def test_model_prompts_keys_follow_mteb():
    prompts = model_prompts()
    retrieval = format_prompt(DEFAULT_TASK_TYPE_INSTRUCTIONS["Retrieval"])
    assert prompts["Retrieval-query"] == retrieval and prompts["Retrieval-document"] == ""
    assert prompts["query"] == retrieval and prompts["document"] == ""
    assert prompts["STS"] == format_prompt("Retrieve semantically similar text")
    assert "STS-query" not in prompts  # symmetric types: one key for both sides


def test_model_prompts_overrides_by_type_and_by_task_name():
    prompts = model_prompts(
        {"Classification": "Classify the review", "Banking77Classification": "Find the intent", "SciFact": "Verify"},
        task_types={"Banking77Classification": "Classification", "SciFact": "Retrieval"},
    )
    assert prompts["Classification"] == format_prompt("Classify the review")
    assert prompts["Banking77Classification"] == format_prompt("Find the intent")
    assert prompts["SciFact-query"] == format_prompt("Verify") and prompts["SciFact-document"] == ""
    with pytest.raises(ConfigError, match="task type is unknown"):
        model_prompts({"MyTask": "Do it"})


def test_task_types_from_dirs(tmp_path):
    for name, task_type in [("A", "STS"), ("B", "Retrieval")]:
        (tmp_path / name).mkdir()
        (tmp_path / name / "task.json").write_text(json.dumps({"name": name, "type": task_type}))
    assert task_types_from_dirs([tmp_path / "A", tmp_path / "B"]) == {"A": "STS", "B": "Retrieval"}


def test_mteb_lookup_finds_our_prompts(tmp_path):
    """mteb's own prompt lookup (the one its SentenceTransformer wrapper uses) picks our keys."""
    os.environ.setdefault("MTEB_CACHE", str(tmp_path / "mteb-cache"))
    import mteb
    from mteb.models.abs_encoder import get_prompt_name
    from mteb.types import PromptType

    prompts = model_prompts(
        {"Banking77Classification": "Find the intent"}, task_types={"Banking77Classification": "Classification"}
    )
    sts = mteb.get_task("STSBenchmark").metadata
    scifact = mteb.get_task("SciFact").metadata
    banking = mteb.get_task("Banking77Classification").metadata
    emotion = mteb.get_task("EmotionClassification").metadata
    assert get_prompt_name(prompts, sts, None) == "STS"
    assert get_prompt_name(prompts, scifact, PromptType.query) == "Retrieval-query"
    assert get_prompt_name(prompts, scifact, PromptType.document) == "Retrieval-document"
    assert get_prompt_name(prompts, banking, None) == "Banking77Classification"
    assert get_prompt_name(prompts, emotion, None) == "Classification"


def test_per_task_evaluation_instructions_from_task_json_and_the_recipe():
    """Evaluation prompts were generic per task type; KaLM-V2 evaluates with per-task instructions (Table 12)."""
    from pathlib import Path

    from embedforge.data.instructions import evaluation_prompts

    bundled = Path(__file__).resolve().parents[2] / "data" / "eval"
    prompts = evaluation_prompts([str(bundled)])
    assert prompts["Banking77Classification"] == (
        "Instruct: Given a online banking query, find the corresponding intents\nQuery: "
    )  # KaLM-V2 Table 12, from task.json
    assert prompts["DebianPackageRetrievalDev-query"].startswith("Instruct: Given a package summary")
    assert prompts["DebianPackageRetrievalDev-document"] == ""  # asymmetric: documents get no prompt
    assert prompts["Classification"] == "Instruct: Classify text into its appropriate category\nQuery: "  # default
    override = evaluation_prompts([str(bundled)], {"Banking77Classification": "Find the intent"})
    assert override["Banking77Classification"] == "Instruct: Find the intent\nQuery: "  # the recipe key wins
