"""Shared machinery of the seeded experiments (distillation, domain adaptation, raw SmolLM2 -> embedder).

Each experiment is a set of *variants* (a recipe dict per seed, run with embedforge's recipe runner) plus
untrained *reference rows*, evaluated on the same task directories. What this module adds:

- resumable runs: a variant writes ``variant.json`` (its recipe and scores) last; ``--resume`` reuses it when the
  recipe is unchanged and otherwise continues an interrupted recipe from its last complete checkpoint;
- the statistics every table uses: mean ± sample std over seeds, per-seed paired differences against a baseline
  variant (same seed = same data order, initialisation and mixing draws in both), and one noise rule
  (:data:`NOISE_RULE`) applied the same way everywhere;
- Markdown tables generated from the numbers, written atomically.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from statistics import mean, stdev
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
SHARED_EVAL = SHARED / "eval"
DATA = REPO / "data" / "train"

from benchmarks._common import NOISE_RULE, Paired  # noqa: E402  (one noise rule for every benchmark)

logger = logging.getLogger("benchmarks.experiments")


def setup(threads: int) -> None:
    """Logging for a benchmark run (quiet libraries) and torch's thread count (0 = torch's default)."""
    import warnings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("mteb", "datasets", "matplotlib", "httpx", "sentence_transformers", "embedforge", "transformers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore")
    import torch

    if threads > 0:
        torch.set_num_threads(threads)


def command_line(script: str, argv: Sequence[str] | None) -> str:
    """The command that reproduces this run, as typed."""
    given = shlex.join(list(argv) if argv is not None else sys.argv[1:])
    return f"python benchmarks/{script} {given}".rstrip()


def machine() -> str:
    """CPU, GPU, torch threads and load: the facts a reader needs to compare timings."""
    import torch

    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{cpu}, {os.cpu_count()} logical CPUs, {device}; torch {torch.__version__} with "
        f"{torch.get_num_threads()} thread(s); load average at start {os.getloadavg()[0]:.1f}"
    )


def task_dirs(names: Sequence[str], root: Path = SHARED_EVAL) -> list[Path]:
    """Task names under ``root`` (or task directories) -> directories holding a ``task.json``."""
    dirs = []
    for item in names:
        path = Path(item) if Path(item).is_dir() else root / item
        if not (path / "task.json").is_file():
            raise SystemExit(f"--tasks: {item!r} is neither a task directory nor a task under {root}")
        dirs.append(path)
    return dirs


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


@dataclass
class Experiment:
    """Runs and evaluates variants under ``work``; keeps every score for the tables.

    Args:
        work: output folder (one sub folder per reference row and per variant and seed).
        tasks: loaded evaluation tasks (:func:`embedforge.evaluation.load_tasks`).
        resume: reuse finished variants and continue interrupted ones (else start each variant afresh).
        eval_options: keyword arguments for :func:`embedforge.evaluation.evaluate` (``max_seq_length``, ...).
        train: False = tables only: reuse finished variants (as ``resume``) and skip the others, training nothing.
    """

    work: Path
    tasks: list[Any]
    resume: bool = False
    eval_options: dict[str, Any] = field(default_factory=dict)
    train: bool = True
    references: dict[str, dict[str, float]] = field(default_factory=dict)  # label -> {task: score}
    scores: dict[str, dict[int, dict[str, float]]] = field(default_factory=dict)  # variant -> seed -> {task: score}
    seconds: dict[str, dict[int, float]] = field(default_factory=dict)  # variant -> seed -> training seconds
    reused: int = 0

    @property
    def reusing(self) -> bool:
        """Finished work is reused when resuming and when writing tables only."""
        return self.resume or not self.train

    @property
    def task_names(self) -> list[str]:
        return [task.spec.name for task in self.tasks]

    def evaluate(self, label: str, model: Any, folder: Path) -> dict[str, float]:
        """Evaluate a model (folder, preset name or a zero-argument factory) once; ``scores.json`` is reused."""
        from embedforge.evaluation import evaluate
        from embedforge.utils.io import atomic_write_text

        done = folder / "scores.json"
        if self.reusing and done.is_file():
            saved = json.loads(done.read_text(encoding="utf-8"))
            if saved.get("tasks") == self.task_names and saved.get("options") == _plain(self.eval_options):
                return saved["scores"]
        started = time.perf_counter()
        report = evaluate(
            model() if inspect.isfunction(model) else model, self.tasks, folder, model_name=label, **self.eval_options
        )
        scores = report.main_scores()
        record = {
            "scores": scores,
            "tasks": self.task_names,
            "options": _plain(self.eval_options),
            "seconds": round(time.perf_counter() - started, 1),
        }
        atomic_write_text(done, json.dumps(record, indent=1))
        return scores

    def reference(self, label: str, model: Any, slug: str) -> dict[str, float]:
        """A row not trained here (base, teacher, student before training), evaluated once."""
        self.references[label] = self.evaluate(label, model, self.work / "reference" / slug)
        logger.info("%s: mean %.2f", label, 100 * mean(self.references[label].values()))
        return self.references[label]

    def variant(
        self, label: str, seed: int, spec: dict[str, Any], slug: str, run: Callable[[dict], str] | None = None
    ) -> dict[str, float] | None:
        """Train ``spec`` (a recipe dict; ``output_dir`` is set here) for ``seed``, evaluate its final model.

        ``run`` replaces the recipe runner for variants trained by other code (it gets the spec, returns the
        final model folder). With ``train`` off, an unfinished variant is skipped and None returned.
        """
        from embedforge.utils.io import atomic_write_text

        folder = self.work / slug / f"seed{seed}"
        spec = _plain({**spec, "output_dir": str(folder / "run"), "seed": seed})
        done = folder / "variant.json"
        previous = json.loads(done.read_text(encoding="utf-8")) if self.reusing and done.is_file() else None
        if previous is not None and previous["recipe"] == spec and previous["tasks"] == self.task_names:
            scores, seconds = previous["scores"], previous["seconds"]
            self.reused += 1
        elif not self.train:
            logger.info("%s seed %d: not finished, left out of the tables", label, seed)
            return None
        else:
            started_file = folder / "recipe.json"
            same = self.resume and started_file.is_file() and json.loads(started_file.read_text()) == spec
            atomic_write_text(started_file, json.dumps(spec, indent=1))
            started = time.perf_counter()
            if run is not None:
                final = run(spec)
            else:
                from embedforge.recipes import recipe_from_dict, run_recipe

                result = run_recipe(recipe_from_dict(spec, f"{slug} seed {seed}"), resume=same, overwrite=not same)
                final = result.final_model
            seconds = round(time.perf_counter() - started, 1)
            scores = self.evaluate(label, final, folder / "eval")
            record = {"recipe": spec, "tasks": self.task_names, "scores": scores, "seconds": seconds}
            atomic_write_text(done, json.dumps(record, indent=1))
        self.scores.setdefault(label, {})[seed] = scores
        self.seconds.setdefault(label, {})[seed] = seconds
        logger.info("%s seed %d: mean %.2f (%.0f s)", label, seed, 100 * mean(scores.values()), seconds)
        return scores

    def save(self, path: Path) -> None:
        from embedforge.utils.io import atomic_write_text

        data = {"references": self.references, "scores": self.scores, "seconds": self.seconds}
        atomic_write_text(path, json.dumps(data, indent=1))


# ---------------------------------------------------------------------------------------------------- statistics


def _mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    return mean(values), (stdev(values) if len(values) > 1 else None)


def fmt(values: Sequence[float], scale: float = 100.0, signed: bool = False) -> str:
    """``mean ± std`` (x100) of seeds; one value alone has no ± part; ``signed`` for differences."""
    m, s = _mean_std([v * scale for v in values])
    text = f"{m:+.2f}" if signed else f"{m:.2f}"
    return text if s is None else f"{text} ± {s:.2f}"


def verdict(differences: Sequence[float]) -> str:
    """The noise rule (:data:`NOISE_RULE`, shared with ``recipe_vs_st``) on per-seed paired differences."""
    if len(differences) < 3:
        return "not called (< 3 seeds)"
    called = Paired(list(differences)).verdict
    return {"real gain": "**real**: better", "real loss": "**real**: worse"}.get(called, called)


def per_seed_mean(scores: dict[int, dict[str, float]], tasks: Sequence[str]) -> dict[int, float]:
    return {seed: mean(row[t] for t in tasks) for seed, row in scores.items()}


def scores_table(experiment: Experiment, tasks: Sequence[str] | None = None) -> str:
    """Reference rows, then every variant: per task and mean over tasks, mean ± std over seeds (x100)."""
    tasks = list(tasks or experiment.task_names)
    lines = [
        "| model | seeds | " + " | ".join(tasks) + " | mean |",
        "|---|---:|" + "---:|" * (len(tasks) + 1),
    ]
    for label, row in experiment.references.items():
        cells = [f"{100 * row[t]:.2f}" for t in tasks] + [f"{100 * mean(row[t] for t in tasks):.2f}"]
        lines.append(f"| {label} (not trained here) | — | " + " | ".join(cells) + " |")
    for label, by_seed in experiment.scores.items():
        cells = [fmt([row[t] for row in by_seed.values()]) for t in tasks]
        cells.append(fmt(list(per_seed_mean(by_seed, tasks).values())))
        lines.append(f"| {label} | {len(by_seed)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paired_table(experiment: Experiment, baseline: str, tasks: Sequence[str] | None = None) -> str:
    """Per-seed paired differences (x100) of every variant against ``baseline``, with the noise-rule verdict."""
    tasks = list(tasks or experiment.task_names)
    base = experiment.scores.get(baseline, {})
    lines = [
        f"| variant − {baseline} | per-seed Δ mean | Δ mean ± std | verdict | "
        + " | ".join(f"Δ {t}" for t in tasks)
        + " |",
        "|---|---|---:|---|" + "---:|" * len(tasks),
    ]
    base_means = per_seed_mean(base, tasks)
    for label, by_seed in experiment.scores.items():
        if label == baseline:
            continue
        seeds = sorted(set(by_seed) & set(base))
        if not seeds:
            continue
        means = per_seed_mean(by_seed, tasks)
        diffs = [means[s] - base_means[s] for s in seeds]
        task_cells = []
        for t in tasks:
            task_diffs = [by_seed[s][t] - base[s][t] for s in seeds]
            mark = {"**real**: better": " ▲", "**real**: worse": " ▼"}.get(verdict(task_diffs), "")
            task_cells.append(fmt(task_diffs, signed=True) + mark)
        lines.append(
            f"| {label} | {', '.join(f'{100 * d:+.2f}' for d in diffs)} | {fmt(diffs, signed=True)} | "
            + f"{verdict(diffs)} | "
            + " | ".join(task_cells)
            + " |"
        )
    return "\n".join(lines)


def reading(experiment: Experiment, baseline: str, tasks: Sequence[str] | None = None) -> str:
    """The table's facts in words: each variant's mean difference to the baseline and the verdict."""
    tasks = list(tasks or experiment.task_names)
    base = experiment.scores.get(baseline, {})
    if not base:
        return f"- The baseline {baseline!r} has no finished seed yet."
    base_means = per_seed_mean(base, tasks)
    lines = []
    for label, by_seed in experiment.scores.items():
        if label == baseline:
            continue
        seeds = sorted(set(by_seed) & set(base))
        if not seeds:
            lines.append(f"- {label}: no seed finished alongside the baseline yet.")
            continue
        means = per_seed_mean(by_seed, tasks)
        diffs = [means[s] - base_means[s] for s in seeds]
        real_tasks = []
        for t in tasks:
            v = verdict([by_seed[s][t] - base[s][t] for s in seeds])
            if v.startswith("**real**"):
                real_tasks.append(f"{t} ({v.split(': ')[1]})")
        lines.append(
            f"- {label} vs {baseline}: mean {fmt(diffs, signed=True)} points over {len(seeds)} seed(s) — "
            + verdict(diffs)
            + (f"; per task beyond noise: {', '.join(real_tasks)}" if real_tasks else "; no single task beyond noise")
            + "."
        )
    for label, row in experiment.references.items():
        for variant, by_seed in experiment.scores.items():
            gain = mean(per_seed_mean(by_seed, tasks).values()) - mean(row[t] for t in tasks)
            lines.append(f"- {variant} vs {label}: {100 * gain:+.2f} points mean (mean over seeds).")
    return "\n".join(lines)


def write_doc(path: Path, text: str) -> None:
    from embedforge.utils.io import atomic_write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)
    logger.info("wrote %s", path)


def result_sections(experiment: Experiment, baseline: str, module_doc: str | None) -> str:
    """The generated part every experiment document shares: the noise rule, the benchmark's description (its
    module docstring after the first two paragraphs), the score and paired-difference tables and the reading."""
    return f"""- Noise rule, fixed before the run: {NOISE_RULE}

{(module_doc or "").split(chr(10) + chr(10), 2)[2].strip()}

## Main scores (x100; mean ± std over seeds)

{scores_table(experiment)}

## Per-seed paired differences against {baseline} (x100)

▲ / ▼: that task's difference is beyond noise by the rule above.

{paired_table(experiment, baseline)}

## Reading (computed from the tables)

{reading(experiment, baseline)}
"""
