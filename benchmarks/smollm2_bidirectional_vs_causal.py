"""SmolLM2-135M-Instruct as an embedding model: bidirectional vs causal attention, same recipe, steps and seed.

KaLM-Embedding-V2 and NV-Embed report that removing the causal mask of a decoder LLM gives better
embeddings. This runs that comparison at CPU scale, in one command:

1. evaluates the untrained SmolLM2 with mean pooling, bidirectional and causal;
2. trains ``recipes/smollm2-kalm.yaml`` twice — ``model.bidirectional=true`` and ``=false`` — with the
   same steps, data and seed (everything else in the recipe is identical);
3. evaluates both trained models on the same tasks, with the same maximum length;
4. prints a Markdown table (per task + mean) and writes it, with the command, machine, times and a
   reading, to ``docs/smollm2_bidirectional_vs_causal.md``.

Every model gets the same evaluation prompts: the trained ones save KaLM-style instructions
(``Instruct: {task}\\nQuery: ``) from the recipe, and the untrained ones are given the same prompts, so the
rows differ only in weights and attention.

    python benchmarks/smollm2_bidirectional_vs_causal.py                    # CPU default: 3 tasks, 64 tokens
    python benchmarks/smollm2_bidirectional_vs_causal.py --tasks all --max-seq-length 512 --threads 0  # GPU
    python benchmarks/smollm2_bidirectional_vs_causal.py --set stages.finetune.max_steps=200

Finished trainings and evaluations under ``--output`` are reused when the command is run again (an
interrupted training resumes from its last checkpoint); pass ``--fresh`` to start over.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shlex
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
DEFAULT_TASKS = ("STSBenchmark", "EmotionClassification", "DebianPackageRetrievalDev")
BASE = "SmolLM2-135M-Instruct"
# Left out of the CPU default (2 cores shared with other jobs; SmolLM2 encodes ~400 tokens/s per core):
LEFT_OUT = {
    "SciFact": "5,183 long abstracts (~300 tokens each): ~25 min per model at 128 tokens",
    "ATEC": "Chinese (SmolLM2 is English-centred); 40k texts",
    "AFQMC": "Chinese (SmolLM2 is English-centred)",
    "Ocnli": "Chinese (SmolLM2 is English-centred)",
    "WisesightSentimentClassification": "Thai (SmolLM2 is English-centred)",
    "Banking77Classification": "~9k texts per model with MTEB's undersampling; EmotionClassification is the "
    "cheaper classification task",
    "DebianSectionClusteringDev": "2,463 long descriptions: ~6 min per model; retrieval covers long texts",
}

logger = logging.getLogger("smollm2_bidirectional_vs_causal")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--tasks",
        default=",".join(DEFAULT_TASKS),
        help="comma-separated task names under --task-root (or task directories); 'all' = every task there",
    )
    parser.add_argument("--task-root", default=str(REPO.parent / "shared" / "data" / "eval"), help="task folder")
    parser.add_argument("--recipe", default=str(REPO / "recipes" / "smollm2-kalm.yaml"))
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="recipe override applied to both trainings (repeatable)")  # fmt: skip
    parser.add_argument("--max-seq-length", type=int, default=64, help="evaluation max tokens per text")
    parser.add_argument("--batch-size", type=int, default=32, help="evaluation batch size")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0 = torch's default)")
    parser.add_argument(
        "--no-untrained-causal", action="store_true", help="skip evaluating the untrained causal model"
    )
    parser.add_argument("--output", default=str(REPO / "runs" / "smollm2-bidirectional-vs-causal"))
    parser.add_argument("--doc", default=str(REPO / "docs" / "smollm2_bidirectional_vs_causal.md"),
                        help="Markdown report to write ('' = none)")  # fmt: skip
    parser.add_argument("--fresh", action="store_true", help="delete earlier results under --output first")
    return parser.parse_args(argv)


def task_dirs(spec: str, root: Path) -> list[Path]:
    if spec == "all":
        return sorted(p.parent for p in root.glob("*/task.json"))
    dirs = []
    for item in filter(None, (t.strip() for t in spec.split(","))):
        path = Path(item) if Path(item).is_dir() else root / item
        if not (path / "task.json").is_file():
            raise SystemExit(f"--tasks: {item!r} is neither a task directory nor a task under {root}")
        dirs.append(path)
    return dirs


def evaluate_model(label: str, make_model, tasks, args, output: Path) -> dict:
    """Evaluate ``make_model()`` (a model or a folder) once; a finished evaluation (``scores.json``) is reused."""
    from embedforge.evaluation import evaluate

    done = output / "scores.json"
    if done.is_file():
        logger.info("%s: reusing %s", label, done)
        return json.loads(done.read_text())
    started = time.perf_counter()
    # memory-only embedding cache: the on-disk cache is keyed by a fingerprint of weights and modules that
    # does not include config.is_causal, so a causal and a bidirectional copy of one checkpoint would share it
    report = evaluate(
        make_model(), tasks, output, batch_size=args.batch_size, max_seq_length=args.max_seq_length, cache_dir=None,
        model_name=label,
    )  # fmt: skip
    result = {"scores": report.main_scores(), "seconds": round(time.perf_counter() - started, 1)}
    done.write_text(json.dumps(result, indent=2) + "\n")
    return result


def untrained(bidirectional: bool):
    from embedforge.data.instructions import model_prompts
    from embedforge.models import load_model

    model = load_model(BASE, bidirectional=bidirectional, pooling="mean")
    model.prompts = model_prompts()  # the prompts the trained models save (see the module docstring)
    return model


def train_variant(bidirectional: bool, args, output: Path) -> dict:
    from embedforge.recipes.runner import train

    overrides = [
        *args.overrides,
        f"model.bidirectional={str(bidirectional).lower()}",
        f"output_dir={output}",
        "eval=null",
    ]
    started = time.perf_counter()
    result = train(args.recipe, overrides, resume=True)  # finished stages are skipped, an interrupted one resumes
    stages = {name: stage.summary for name, stage in result.stages.items()}
    return {
        "final": result.final_model,
        "seconds": round(time.perf_counter() - started, 1),
        "train_seconds": round(sum(s.get("train_seconds", 0.0) for s in stages.values()), 1),
        "steps": {name: s.get("steps") for name, s in stages.items()},
        "final_loss": {name: s.get("final_loss") for name, s in stages.items()},
    }


def machine() -> str:
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


def table(rows: dict[str, dict], tasks: list[str]) -> str:
    lines = [
        "| model | " + " | ".join(tasks) + " | mean |",
        "|---|" + "---:|" * (len(tasks) + 1),
    ]
    for label, scores in rows.items():
        values = [scores.get(task) for task in tasks]
        present = [v for v in values if v is not None]
        mean = sum(present) / len(present) if len(present) == len(values) else None
        cells = [f"{v * 100:.2f}" if v is not None else "—" for v in [*values, mean]]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def reading(rows: dict[str, dict], tasks: list[str]) -> str:
    """The facts in the numbers, in words (no interpretation beyond them)."""

    def mean(label: str) -> float:
        return sum(rows[label][t] for t in tasks) / len(tasks)

    bi, ca = "trained, bidirectional", "trained, causal"
    diffs = {t: rows[bi][t] - rows[ca][t] for t in tasks}
    wins = [t for t, d in diffs.items() if d > 0]
    text = [
        f"- Trained: bidirectional {mean(bi) * 100:.2f} vs causal {mean(ca) * 100:.2f} mean "
        f"({(mean(bi) - mean(ca)) * 100:+.2f} points); bidirectional is ahead on {len(wins)} of {len(tasks)} tasks "
        f"({', '.join(f'{t} {d * 100:+.2f}' for t, d in diffs.items())})."
    ]
    ub, uc = "untrained, bidirectional", "untrained, causal"
    if ub in rows:
        text.append(f"- Training gain (bidirectional): {(mean(bi) - mean(ub)) * 100:+.2f} points mean.")
    if uc in rows:
        text.append(f"- Training gain (causal): {(mean(ca) - mean(uc)) * 100:+.2f} points mean.")
        if ub in rows:
            text.append(
                f"- Untrained: bidirectional {mean(ub) * 100:.2f} vs causal {mean(uc) * 100:.2f} mean "
                "(removing the mask without training changes what the pretrained LLM computes)."
            )
    return "\n".join(text)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("mteb", "datasets", "matplotlib", "httpx", "sentence_transformers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    import torch

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    from embedforge.evaluation import load_tasks

    output = Path(args.output)
    if args.fresh and output.exists():
        import shutil

        shutil.rmtree(output)
    output.mkdir(parents=True, exist_ok=True)
    given = shlex.join(argv if argv is not None else sys.argv[1:])
    command = f"python benchmarks/smollm2_bidirectional_vs_causal.py {given}".rstrip()
    host = machine()
    started = time.perf_counter()
    tasks = load_tasks(task_dirs(args.tasks, Path(args.task_root)))
    names = [task.spec.name for task in tasks]

    scores: dict[str, dict] = {}
    timings: dict[str, float] = {}
    variants = [("untrained, bidirectional", True)]
    if not args.no_untrained_causal:
        variants.append(("untrained, causal", False))
    for label, bidirectional in variants:
        result = evaluate_model(
            label, lambda b=bidirectional: untrained(b), tasks, args, output / label.replace(", ", "-")
        )
        scores[label], timings[f"eval {label}"] = result["scores"], result["seconds"]
    trainings = {}
    for label, bidirectional in (("trained, bidirectional", True), ("trained, causal", False)):
        folder = output / label.replace(", ", "-")
        trainings[label] = train_variant(bidirectional, args, folder / "run")
        timings[f"train {label}"] = trainings[label]["seconds"]
        result = evaluate_model(label, lambda f=trainings[label]["final"]: f, tasks, args, folder / "eval")
        scores[label], timings[f"eval {label}"] = result["scores"], result["seconds"]
    total = time.perf_counter() - started

    report = table(scores, names)
    sys.stdout.write("\n" + report + "\n\n" + reading(scores, names) + "\n")
    (output / "summary.json").write_text(
        json.dumps({"scores": scores, "timings": timings, "trainings": trainings, "command": command}, indent=2)
    )
    if args.doc:
        write_doc(Path(args.doc), args, command, host, names, report, scores, timings, trainings, total)
    return 0


def write_doc(path, args, command, host, names, report, scores, timings, trainings, total) -> None:
    left_out = [f"- {task}: {why}" for task, why in LEFT_OUT.items() if task not in names]
    timing_lines = [f"| {step} | {seconds:.0f} |" for step, seconds in timings.items()]

    def per_stage(values: dict) -> str:
        return ", ".join(f"{stage} {v:.3f}" if isinstance(v, float) else f"{stage} {v}" for stage, v in values.items())

    training_lines = [
        f"| {label} | {per_stage(t['steps'])} | {per_stage(t['final_loss'])} | {t['train_seconds']:.0f} |"
        for label, t in trainings.items()
    ]
    text = f"""# SmolLM2-135M-Instruct: bidirectional vs causal attention (mean pooling)

Generated by `benchmarks/smollm2_bidirectional_vs_causal.py`. Main scores × 100 (MTEB protocol, embedforge's
evaluation), every text truncated to {args.max_seq_length} tokens at evaluation.

```bash
{command}
```

- Machine: {host}.
- Recipe: `{Path(args.recipe).relative_to(REPO) if Path(args.recipe).is_relative_to(REPO) else args.recipe}` \
(overrides for both runs: `{" ".join(args.overrides) or "none"}`), trained once with `model.bidirectional=true` and \
once with `false` — same data, steps, seed and LoRA settings. Untrained rows: the converted GGUF weights with \
mean pooling and the same evaluation prompts as the trained models.
- Tasks: {", ".join(names)} from `{args.task_root}`.
- Total wall time: {total / 60:.1f} min.

## Scores

{report}

## Reading (computed from the table)

{reading(scores, names)}

## Training

| run | steps | final loss (last logged) | train seconds |
|---|---|---|---:|
{chr(10).join(training_lines)}

## Times

| step | seconds |
|---|---:|
{chr(10).join(timing_lines)}

## Left out of the CPU default

{chr(10).join(left_out) or "- nothing"}

Run everything (e.g. on a GPU): `--tasks all --max-seq-length 512 --threads 0`.
"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    logger.info("wrote %s", path)


if __name__ == "__main__":
    sys.exit(main())
