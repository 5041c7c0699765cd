"""Results -> ``results.json``, a Markdown leaderboard (Mean(Task), Mean(TaskType)) and a PNG plot."""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path
from statistics import mean
from typing import TYPE_CHECKING, Any

from embedforge.utils.io import staged_directory

if TYPE_CHECKING:
    from embedforge.evaluation.runner import EvalReport

Records = list[dict[str, Any]]


def _row_labels(label: str, records: Records) -> dict[int, str]:
    dims = sorted({r["dim"] for r in records}, reverse=True)
    return {d: label if len(dims) == 1 else f"{label} @{d}" for d in dims}


def leaderboard_markdown(runs: dict[str, Records]) -> str:
    """MTEB-style leaderboard: one row per model (and Matryoshka dim), scores x100.

    Mean(Task) averages every task; Mean(TaskType) averages the per-type means (MTEB's definition).
    """
    tasks: dict[str, str] = {}
    for records in runs.values():
        for r in records:
            tasks.setdefault(r["task"], r["type"])
    types = sorted(set(tasks.values()))
    header = ["Model", "Mean(Task)", "Mean(TaskType)", *types, *tasks]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    for label, records in runs.items():
        for dim, row_label in _row_labels(label, records).items():
            scores = {r["task"]: r["main_score"] for r in records if r["dim"] == dim and r["main_score"] is not None}
            by_type: dict[str, list[float]] = defaultdict(list)
            for task, score in scores.items():
                by_type[tasks[task]].append(score)
            type_means = {t: mean(v) for t, v in by_type.items()}
            cells = [
                row_label,
                _pct(mean(scores.values()) if scores else None),
                _pct(mean(type_means.values()) if type_means else None),
                *(_pct(type_means.get(t)) for t in types),
                *(_pct(scores.get(task)) for task in tasks),
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def reference_markdown(rows: list[dict[str, Any]], label: str = "ours") -> str:
    """Per-task table: our main score vs the reference, and the difference (raw scores, 4 decimals)."""
    lines = [
        f"| task | split | metric | same data as MTEB | {label} | reference | delta |",
        "|---|---|---|---|---:|---:|---:|",
    ]
    for row in rows:
        ref = "–" if row["reference"] is None else f"{row['reference']:.4f}"
        delta = "–" if row["delta"] is None else f"{row['delta']:+.4f}"
        same = "yes" if row["same_data_as_mteb"] else "no"
        ours = "–" if row["ours"] is None else f"{row['ours']:.4f}"  # undefined score (null)
        lines.append(f"| {row['task']} | {row['split']} | {row['main_metric']} | {same} | {ours} | {ref} | {delta} |")
    return "\n".join(lines) + "\n"


def plot_scores(runs: dict[str, Records], path: str | os.PathLike[str]) -> None:
    """Grouped bar chart of main scores per task, one bar per model (and dimension)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(r["task"] for records in runs.values() for r in records))
    series = []
    for label, records in runs.items():
        for dim, row_label in _row_labels(label, records).items():
            scores = {r["task"]: r["main_score"] for r in records if r["dim"] == dim}
            series.append((row_label, [scores.get(t) or 0.0 for t in tasks]))  # undefined (None): no bar
    width = 0.8 / max(len(series), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(tasks) + 2), 4.5))
    for index, (row_label, values) in enumerate(series):
        positions = [i + (index - (len(series) - 1) / 2) * width for i in range(len(tasks))]
        ax.bar(positions, values, width=width, label=row_label)
    ax.set_xticks(range(len(tasks)))
    ax.set_xticklabels(tasks, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("main score")
    ax.set_ylim(0, 1)
    ax.set_title("embedforge evaluation (MTEB main scores)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_outputs(report: EvalReport, output_dir: str | os.PathLike[str]) -> Path:
    """Write ``results.json``, ``leaderboard.md`` and ``scores.png`` into ``output_dir`` all at once."""
    from embedforge.utils.io import atomic_write_json, atomic_write_text

    runs = {report.model: report.records}
    text = f"# {report.model}\n\n" + leaderboard_markdown(runs)
    if report.reference_rows:
        text += "\n## Compared with the reference\n\n" + reference_markdown(report.reference_rows, report.model)
    with staged_directory(output_dir) as staging:
        atomic_write_json(staging / "results.json", report.records)
        atomic_write_text(staging / "leaderboard.md", text)
        plot_scores(runs, staging / "scores.png")
    return Path(output_dir)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}"
