"""all-MiniLM-L6-v2 reproduces its published MTEB main scores on the shared tasks that hold MTEB's data.

The full table (SciFact and ATEC included, ~15 min on 2 cores) is reproduced by
``embedforge eval --model all-MiniLM-L6-v2 --task-root ../shared/data/eval --output runs/minilm
--reference ../shared/data/reference_scores/scores_long.json`` (see docs/REPRODUCTION.md); CI checks the
tasks that fit its time budget.
"""

from __future__ import annotations

import pytest

from embedforge.evaluation import evaluate, load_task_spec

CI_TASKS = ["STSBenchmark", "Banking77Classification", "EmotionClassification", "AFQMC"]


@pytest.mark.slow
def test_minilm_reproduces_published_scores(shared_data, tmp_path):
    directories = [shared_data / "eval" / name for name in CI_TASKS]
    assert all(load_task_spec(d).same_data_as_mteb for d in directories)
    report = evaluate(
        "all-MiniLM-L6-v2",
        directories,
        tmp_path / "out",
        cache_dir=None,
        reference=shared_data / "reference_scores" / "scores_long.json",
        reference_model="sentence-transformers__all-MiniLM-L6-v2",
    )
    rows = {row["task"]: row for row in report.reference_rows}
    assert set(rows) == set(CI_TASKS)
    for task, row in rows.items():
        assert row["reference"] is not None, f"no published score for {task}"
        assert abs(row["delta"]) <= 0.005, f"{task}: ours {row['ours']:.4f} vs published {row['reference']:.4f}"
