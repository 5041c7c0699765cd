"""Put runs side by side: per-task and per-dimension scores, deltas against the first, seed spread.

Each input is a run folder (``embedforge train``'s output), an evaluation folder (``embedforge eval
--output``) or a ``results.json``. Runs are named after their recipe and stage (``quickstart/finetune``);
runs whose resolved recipes differ only in ``seed`` (and ``output_dir``) form one group, shown as the
mean over seeds with the sample standard deviation and the per-seed scores. Groups with the same name
but other settings are told apart by the settings that differ (``quickstart/finetune [stages.finetune.loss.gamma=0]``).

Outputs: a Markdown report and a self-contained HTML report (plots embedded as PNG data URIs).
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from statistics import mean, stdev
from typing import Any

from embedforge.errors import ConfigError
from embedforge.utils.run_folder import is_run_folder, read_run_folder

_IGNORED = {"seed", "output_dir", "source"}  # settings that do not make another variant


@dataclass
class Run:
    """One evaluated model."""

    label: str
    records: list[dict[str, Any]]
    source: Path
    seed: int | None = None
    config: dict[str, Any] | None = None
    pictures: dict[str, Path] = field(default_factory=dict)  # title -> PNG (training curves of the run)

    def scores(self) -> dict[tuple[str, int], float]:
        return {(r["task"], int(r["dim"])): float(r["main_score"]) for r in self.records}


@dataclass
class Group:
    """Runs of one variant (same settings, other seeds)."""

    label: str
    runs: list[Run]

    @property
    def seeds(self) -> list[int | None]:
        return [run.seed for run in self.runs]

    def values(self, key: tuple[str, int]) -> list[float]:
        return [run.scores()[key] for run in self.runs if key in run.scores()]


def load_run(path: str | os.PathLike[str]) -> Run:
    """A run folder, an evaluation folder or a ``results.json``, as a :class:`Run`."""
    path = Path(path)
    if is_run_folder(path):
        folder = read_run_folder(path)
        results = folder.results_file()
        if results is None:
            raise ConfigError(
                f"{path}: the run has no evaluation results yet; give the recipe an 'eval' section and "
                f"rerun with --resume, or run 'embedforge eval --model {path} --output DIR' and compare DIR"
            )
        pictures = {
            f"{stage}: {picture}": path / stage / picture
            for stage in folder.stages
            for picture in ("eval.png", "loss.png")
            if (path / stage / picture).is_file()
        }
        return Run(folder.label, _read_records(results), path, folder.seed, folder.config, pictures)
    results = path / "results.json" if path.is_dir() else path
    if not results.is_file():
        raise ConfigError(f"{path}: not a run folder, an evaluation folder or a results.json")
    label = results.parent.name
    run_root = results.parent.parent.parent  # <run>/eval/<label>/results.json
    if results.parent.parent.name == "eval" and is_run_folder(run_root):
        folder = read_run_folder(run_root)
        if label == folder.name:
            return load_run(run_root)
        return Run(f"{folder.name}/{label}", _read_records(results), results, folder.seed, None)
    return Run(label, _read_records(results), results)


def _read_records(path: Path) -> list[dict[str, Any]]:
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ConfigError(f"{path}:{error.lineno}: not valid JSON ({error.msg})") from None
    if not isinstance(records, list) or not all(
        isinstance(r, dict) and {"task", "dim", "main_score"} <= set(r) for r in records
    ):
        raise ConfigError(f"{path}: expected embedforge's results.json (a list of task/dim/main_score records)")
    return records


def group_runs(runs: Sequence[Run]) -> list[Group]:
    """Runs that differ only in seed, in input order; labels made unique by the settings that differ."""
    groups: dict[str, Group] = {}
    keys: list[tuple[str, dict[str, Any]]] = []
    for run in runs:
        flat = _flatten(run.config) if run.config else {}
        settings = {k: v for k, v in flat.items() if k.split(".")[0] not in _IGNORED}
        key = run.label + "\x00" + json.dumps(settings, sort_keys=True, default=str) if run.config else str(run.source)
        if run.config is None and any(g.label == run.label for g in groups.values()):
            key = run.label + "\x00"  # plain results of one label: seeds are unknown, grouped by name
        if key not in groups:
            groups[key] = Group(run.label, [])
            keys.append((key, settings))
        groups[key].runs.append(run)
    labels = [g.label for g in groups.values()]
    first_settings = keys[0][1] if keys else {}
    for (_key, settings), group in zip(keys, groups.values(), strict=True):
        if labels.count(group.label) > 1 and settings != first_settings:
            differing = sorted(
                k for k in set(settings) | set(first_settings) if settings.get(k) != first_settings.get(k)
            )
            shown = ", ".join(f"{k}={settings.get(k)}" for k in differing[:3]) + (" …" if len(differing) > 3 else "")
            group.label = f"{group.label} [{shown}]"
    seen: dict[str, int] = {}
    for group in groups.values():  # still equal (e.g. two plain results.json of one name): number them
        seen[group.label] = seen.get(group.label, 0) + 1
        if seen[group.label] > 1:
            group.label = f"{group.label} #{seen[group.label]}"
    return list(groups.values())


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): value}


@dataclass
class Comparison:
    """The table behind both reports: rows (task, dim) plus Mean(Task) per dim, one column per group."""

    groups: list[Group]
    rows: list[tuple[str, int]]  # (task, dim); task "Mean(Task)" for the per-dim means

    def cell(self, group: Group, row: tuple[str, int]) -> list[float]:
        task, dim = row
        if task != "Mean(Task)":
            return group.values(row)
        tasks = [t for t, d in self.rows if d == dim and t != "Mean(Task)"]
        per_run = []
        for run in group.runs:
            scores = run.scores()
            if all((t, dim) in scores for t in tasks):
                per_run.append(mean(scores[(t, dim)] for t in tasks))
        return per_run


def compare(inputs: Sequence[str | os.PathLike[str]]) -> Comparison:
    """Load and group ``inputs`` (run folders, evaluation folders, ``results.json``); the first is the reference."""
    if not inputs:
        raise ConfigError("compare needs at least one run folder, evaluation folder or results.json")
    groups = group_runs([load_run(p) for p in inputs])
    tasks = list(dict.fromkeys(r["task"] for g in groups for run in g.runs for r in run.records))
    dims = sorted({int(r["dim"]) for g in groups for run in g.runs for r in run.records}, reverse=True)
    rows = [(t, d) for d in dims for t in tasks if any(g.values((t, d)) for g in groups)]
    rows += [("Mean(Task)", d) for d in dims]
    return Comparison(groups, rows)


def _fmt(values: list[float]) -> str:
    if not values:
        return "–"
    text = f"{100 * mean(values):.2f}"
    return text + (f" ± {100 * stdev(values):.2f}" if len(values) > 1 else "")


def _delta(values: list[float], reference: list[float]) -> str:
    if not values or not reference:
        return "–"
    return f"{100 * (mean(values) - mean(reference)):+.2f}"


def comparison_markdown(comparison: Comparison) -> str:
    """Markdown: scores x100 (mean ± sample sd over seeds), Δ against the first group; per-seed scores."""
    groups = comparison.groups
    first = groups[0]
    header = ["task", "dim", *(f"{g.label} (n={len(g.runs)})" for g in groups)]
    header += [f"Δ {g.label}" for g in groups[1:]]
    lines = ["| " + " | ".join(header) + " |", "|---|---:|" + "---:|" * (len(header) - 2)]
    for row in comparison.rows:
        cells = [f"**{row[0]}**" if row[0] == "Mean(Task)" else row[0], str(row[1])]
        cells += [_fmt(comparison.cell(g, row)) for g in groups]
        cells += [_delta(comparison.cell(g, row), comparison.cell(first, row)) for g in groups[1:]]
        lines.append("| " + " | ".join(cells) + " |")
    text = "Main scores x100; mean ± sample standard deviation over seeds; Δ against the first column.\n\n"
    text += "\n".join(lines) + "\n"
    seeded = [g for g in groups if len(g.runs) > 1]
    for group in seeded:
        text += f"\nPer seed, {group.label}:\n\n"
        seeds = [f"seed {s}" for s in group.seeds]
        text += "| task | dim | " + " | ".join(seeds) + " | spread (max − min) |\n"
        text += "|---|---:|" + "---:|" * (len(seeds) + 1) + "\n"
        for row in comparison.rows:
            values = [comparison.cell(Group(group.label, [run]), row) for run in group.runs]
            flat = [v[0] for v in values if v]
            cells = [f"{100 * v[0]:.2f}" if v else "–" for v in values]
            spread = f"{100 * (max(flat) - min(flat)):.2f}" if len(flat) > 1 else "–"
            text += f"| {row[0]} | {row[1]} | " + " | ".join(cells) + f" | {spread} |\n"
    sources = "\n".join(f"- {g.label}: " + ", ".join(f"`{_short(r.source)}`" for r in g.runs) for g in groups)
    return text + "\nRuns:\n\n" + sources + "\n"


def _short(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _png_data_uri(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def comparison_plots(comparison: Comparison) -> dict[str, str]:
    """Plot title -> PNG data URI: scores per task (largest dim, seed spread as error bars); Mean(Task) per dim."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots: dict[str, str] = {}
    groups = comparison.groups
    full = max(d for _, d in comparison.rows)
    tasks = [t for t, d in comparison.rows if d == full]
    width = 0.8 / len(groups)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(tasks) + 2), 4))
    for index, group in enumerate(groups):
        values = [comparison.cell(group, (t, full)) for t in tasks]
        means = [100 * mean(v) if v else 0.0 for v in values]
        errors = [100 * stdev(v) if len(v) > 1 else 0.0 for v in values]
        positions = [i + (index - (len(groups) - 1) / 2) * width for i in range(len(tasks))]
        ax.bar(positions, means, width=width, yerr=errors, capsize=3, label=f"{group.label} (n={len(group.runs)})")
    ax.set_xticks(range(len(tasks)))
    ax.set_xticklabels(tasks, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("main score x100")
    ax.set_title(f"main scores at dim {full} (error bars: sd over seeds)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7)
    plots[f"Scores per task (dim {full})"] = _png_data_uri(fig)
    dims = sorted({d for _, d in comparison.rows})
    if len(dims) > 1:
        fig, ax = plt.subplots(figsize=(6, 3.6))
        for group in groups:
            values = [comparison.cell(group, ("Mean(Task)", d)) for d in dims]
            points = [(d, v) for d, v in zip(dims, values, strict=True) if v]
            ax.errorbar(
                [d for d, _ in points],
                [100 * mean(v) for _, v in points],
                yerr=[100 * stdev(v) if len(v) > 1 else 0.0 for _, v in points],
                marker="o",
                capsize=3,
                label=group.label,
            )
        ax.set_xscale("log", base=2)
        ax.set_xticks(dims)
        ax.set_xticklabels([str(d) for d in dims])
        ax.set_xlabel("embedding dimension (Matryoshka truncation)")
        ax.set_ylabel("Mean(Task) x100")
        ax.set_title("Mean(Task) by dimension")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        plots["Mean(Task) by dimension"] = _png_data_uri(fig)
    return plots


def comparison_html(comparison: Comparison, title: str = "embedforge compare") -> str:
    """A self-contained HTML page: the tables, the plots and each run's training curves, all embedded."""
    groups = comparison.groups
    first = groups[0]
    head = ["task", "dim", *(f"{g.label} (n={len(g.runs)})" for g in groups), *(f"Δ {g.label}" for g in groups[1:])]
    rows = []
    for row in comparison.rows:
        cells = [_td(row[0], bold=row[0] == "Mean(Task)"), _td(str(row[1]), num=True)]
        cells += [_td(_fmt(comparison.cell(g, row)), num=True) for g in groups]
        for group in groups[1:]:
            delta = _delta(comparison.cell(group, row), comparison.cell(first, row))
            cls = "up" if delta.startswith("+") and delta != "+0.00" else "down" if delta.startswith("-") else ""
            cells.append(f'<td class="num {cls}">{html.escape(delta)}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    table = (
        "<table><thead><tr>"
        + "".join(f"<th>{html.escape(h)}</th>" for h in head)
        + "</tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
    )
    seeds = ""
    for group in (g for g in groups if len(g.runs) > 1):
        seed_rows = []
        for row in comparison.rows:
            values = [comparison.cell(Group(group.label, [run]), row) for run in group.runs]
            flat = [v[0] for v in values if v]
            spread = f"{100 * (max(flat) - min(flat)):.2f}" if len(flat) > 1 else "–"
            seed_rows.append(
                "<tr>"
                + _td(row[0], bold=row[0] == "Mean(Task)")
                + _td(str(row[1]), num=True)
                + "".join(_td(f"{100 * v[0]:.2f}" if v else "–", num=True) for v in values)
                + _td(spread, num=True)
                + "</tr>"
            )
        seed_head = ["task", "dim", *(f"seed {s}" for s in group.seeds), "spread (max − min)"]
        seeds += (
            f"<h3>Per seed: {html.escape(group.label)}</h3><table><thead><tr>"
            + "".join(f"<th>{html.escape(h)}</th>" for h in seed_head)
            + "</tr></thead><tbody>"
            + "".join(seed_rows)
            + "</tbody></table>"
        )
    plots = "".join(
        f'<figure><img alt="{html.escape(name)}" src="{uri}"><figcaption>{html.escape(name)}</figcaption></figure>'
        for name, uri in comparison_plots(comparison).items()
    )
    curves = ""
    for group in groups:
        run = group.runs[0]
        if run.pictures:
            images = "".join(
                f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,'
                f'{base64.b64encode(path.read_bytes()).decode()}"><figcaption>{html.escape(name)}</figcaption></figure>'
                for name, path in run.pictures.items()
            )
            seed = f", seed {run.seed}" if run.seed is not None else ""
            curves += (
                f"<details><summary>{html.escape(group.label)}{seed}: training curves</summary>{images}</details>"
            )
    sources = "".join(
        f"<li><b>{html.escape(g.label)}</b>: "
        + ", ".join(f"<code>{html.escape(_short(r.source))}</code>" for r in g.runs)
        for g in groups
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 24px; color: #222; max-width: 1200px; }}
table {{ border-collapse: collapse; margin: 12px 0; font-size: 13px; }}
th, td {{ border: 1px solid #ccc; padding: 4px 8px; }}
th {{ background: #f3f3f3; }}
td.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
td.up {{ color: #0a7a2f; }} td.down {{ color: #b3261e; }}
figure {{ display: inline-block; margin: 8px; }} img {{ max-width: 560px; border: 1px solid #eee; }}
figcaption {{ font-size: 12px; color: #555; text-align: center; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p>Main scores x100 (MTEB protocol); mean ± sample standard deviation over seeds; Δ against the first column
({html.escape(first.label)}).</p>
{table}{seeds}
<h2>Plots</h2>{plots}
{"<h2>Training curves</h2>" + curves if curves else ""}
<h2>Runs</h2><ul>{sources}</ul>
</body></html>
"""


def _td(text: str, *, num: bool = False, bold: bool = False) -> str:
    body = f"<b>{html.escape(text)}</b>" if bold else html.escape(text)
    return f'<td class="num">{body}</td>' if num else f"<td>{body}</td>"


def write_comparison(
    inputs: Sequence[str | os.PathLike[str]], output_dir: str | os.PathLike[str] | None = None
) -> tuple[Comparison, str]:
    """:func:`compare` the inputs; with ``output_dir``, write ``compare.md`` and ``compare.html`` there.

    Returns:
        The comparison and its Markdown text.
    """
    comparison = compare(inputs)
    text = comparison_markdown(comparison)
    if output_dir is not None:
        from embedforge.utils.io import atomic_write_text

        Path(output_dir).mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(output_dir) / "compare.md", "# embedforge compare\n\n" + text)
        atomic_write_text(Path(output_dir) / "compare.html", comparison_html(comparison))
    return comparison, text
