"""all-MiniLM-L6-v2 reproduces its published MTEB main scores on every shared task that holds MTEB's data.

Same check as ``embedforge eval --model all-MiniLM-L6-v2 --task-root ../shared/data/eval --output runs/minilm
--reference ../shared/data/reference_scores/scores_long.json`` (see docs/REPRODUCTION.md): every task whose
``task.json`` says ``same_data_as_mteb`` and that has a published score must match within 0.005.
"""

from __future__ import annotations

import pytest

from embedforge.evaluation import evaluate, find_task_dirs, load_task_spec
from embedforge.evaluation.reference import load_reference, lookup

MODEL = "sentence-transformers__all-MiniLM-L6-v2"


@pytest.mark.slow
def test_minilm_reproduces_published_scores(shared_data, tmp_path):
    published = load_reference(shared_data / "reference_scores" / "scores_long.json", MODEL)
    directories = []
    for directory in find_task_dirs(shared_data / "eval"):
        spec = load_task_spec(directory)
        if spec.same_data_as_mteb and lookup(published, spec.name, spec.eval_split, spec.subset or "default"):
            directories.append(directory)
    assert len(directories) >= 6, directories  # STSBenchmark, SciFact, Banking77, Emotion, ATEC, AFQMC
    report = evaluate(
        "all-MiniLM-L6-v2",
        directories,
        tmp_path / "out",
        cache_dir=None,
        reference=shared_data / "reference_scores" / "scores_long.json",
        reference_model=MODEL,
    )
    assert len(report.reference_rows) == len(directories)
    for row in report.reference_rows:
        assert row["reference"] is not None, row["task"]
        assert abs(row["delta"]) <= 0.005, f"{row['task']}: ours {row['ours']:.4f} vs published {row['reference']:.4f}"
