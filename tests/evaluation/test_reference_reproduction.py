"""all-MiniLM-L6-v2 reproduces its published MTEB main scores on every shared task that holds MTEB's data.

Same check as ``embedforge eval --model all-MiniLM-L6-v2 --task-root ../shared/data/eval --output runs/minilm
--reference ../shared/data/reference_scores/scores_long.json`` (see docs/REPRODUCTION.md): every task whose
``task.json`` says ``same_data_as_mteb`` and that has a published score must match within 0.005. One test per
task (each under its own timeout), plus one that keeps the list complete when tasks are added.
"""

from __future__ import annotations

import pytest

from embedforge.evaluation import evaluate, find_task_dirs, load_task_spec
from embedforge.evaluation.reference import load_reference, lookup

MODEL = "sentence-transformers__all-MiniLM-L6-v2"
CHECKED = [
    "STSBenchmark",
    "Banking77Classification",
    "EmotionClassification",
    "AFQMC",
    "SciFact",
    "ATEC",
]


def _published(shared_data):
    return load_reference(shared_data / "reference_scores" / "scores_long.json", MODEL)


def _checkable(shared_data) -> dict[str, object]:
    """Task name -> directory, for every same-data task with a published all-MiniLM-L6-v2 score."""
    published = _published(shared_data)
    found = {}
    for directory in find_task_dirs(shared_data / "eval"):
        spec = load_task_spec(directory)
        if spec.same_data_as_mteb and lookup(published, spec.name, spec.eval_split, spec.subset or "default"):
            found[spec.name] = directory
    return found


def test_every_same_data_task_with_a_published_score_is_checked(shared_data):
    assert sorted(_checkable(shared_data)) == sorted(CHECKED)


@pytest.mark.slow
@pytest.mark.parametrize("task", CHECKED)
def test_minilm_reproduces_published_score(shared_data, tmp_path, task):
    directory = _checkable(shared_data)[task]
    report = evaluate(
        "all-MiniLM-L6-v2",
        [directory],
        tmp_path / "out",
        cache_dir=None,
        reference=shared_data / "reference_scores" / "scores_long.json",
        reference_model=MODEL,
    )
    (row,) = report.reference_rows
    assert row["reference"] is not None, row
    assert abs(row["delta"]) <= 0.005, f"{task}: ours {row['ours']:.4f} vs published {row['reference']:.4f}"
