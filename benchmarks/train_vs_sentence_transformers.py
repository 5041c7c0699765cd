"""embedforge training vs plain sentence-transformers: same base, data, batch size, length and steps, one run.

Peer: ``SentenceTransformerTrainer`` + ``MultipleNegativesRankingLoss`` (scale 20 = temperature 0.05) with
the recommended ``BatchSamplers.NO_DUPLICATES`` and the default proportional multi-dataset sampler (the
FIELD-NOTES baseline). embedforge: the same data and hyperparameters through ``embedforge train`` (InfoNCE
with KaLM's focal reweighting, weighted homogeneous length-grouped batches, and the default speed options of
``embedforge.training.speed``: texts tokenized once before training, padding-free packed batches, and on CPU
cheap dropout masks). Both start
from the same base and run the same number of optimizer steps; then both are evaluated with embedforge's MTEB
evaluation.

The machine is shared: with ``--rounds N`` the two sides train alternately N times each (peer, embedforge,
peer, ...), so load that comes and goes lands on both; the ratio is total peer time / total embedforge time
(the Trainer's own ``train_runtime``), and the scores are those of the last round's models. The load average
is printed before and after.

    python benchmarks/train_vs_sentence_transformers.py                     # 3,000 Debian pairs + 3,000 SNLI triplets
    python benchmarks/train_vs_sentence_transformers.py --steps 60 --rounds 2 --tasks data/eval/STSBenchmark
    python benchmarks/train_vs_sentence_transformers.py --rounds 2 --packing auto true   # CPU: padded vs packed
    python benchmarks/train_vs_sentence_transformers.py --speed default fast_dropout=false  # with / without

Each ``--speed`` value is one embedforge side: ``default`` (the stage's default speed options) or comma-separated
``option=value`` pairs of the stage's ``speed:`` mapping (``packing=true,fast_dropout=false``); ``--packing X`` is
short for ``--speed packing=X``.

Prints pairs/s for both, the ratio (issue 15's goal: >= 2.0 at equal or better scores), and the per-task
scores of base, peer and embedforge.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data" / "train"


def datasets_yaml(rows: int) -> list[dict]:
    return [
        {
            "name": "debian",
            "path": str(DATA / "debian/pairs.jsonl.gz"),
            "kind": "pairs",
            "columns": {"anchor": "summary", "positive": "description"},
            "max_rows": rows,
        },
        {"name": "snli", "path": str(DATA / "snli/triplets.jsonl"), "kind": "triplets", "max_rows": rows},
    ]


def run_peer(base: str, data, steps: int, args, output: Path) -> tuple[float, str]:
    """Plain sentence-transformers; returns (training seconds, saved model path)."""
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.base.sampler import BatchSamplers
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    from embedforge.models import resolve_model_path

    model = SentenceTransformer(str(resolve_model_path(base)))
    model.max_seq_length = args.max_seq_length
    loss = MultipleNegativesRankingLoss(model, scale=1 / args.temperature)
    training_args = SentenceTransformerTrainingArguments(
        output_dir=str(output),
        per_device_train_batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        warmup_steps=0.1,
        lr_scheduler_type="cosine",
        max_steps=steps,
        seed=args.seed,
        data_seed=args.seed,
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        save_strategy="no",
        logging_steps=10,
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
    )
    trainer = SentenceTransformerTrainer(model=model, args=training_args, train_dataset=data, loss=loss)
    seconds = trainer.train().metrics["train_runtime"]  # the Trainer's own clock, as for embedforge
    model.save(str(output / "final"))
    return seconds, str(output / "final")


def parse_speed(spec: str) -> dict:
    """``default`` -> {}; ``packing=true,fast_dropout=false`` -> {"packing": True, "fast_dropout": False}."""
    if spec == "default":
        return {}
    values = {"true": True, "false": False, "auto": "auto"}
    speed = {}
    for pair in spec.split(","):
        key, sep, value = pair.partition("=")
        if not sep or value not in values:
            raise SystemExit(f"--speed {spec!r}: expected default or option=true|false|auto[,option=...]")
        speed[key.strip()] = values[value]
    return speed


def run_embedforge(base: str, steps: int, args, output: Path, speed: dict) -> tuple[float, str, dict]:
    from embedforge.recipes import recipe_from_dict, run_recipe

    recipe = recipe_from_dict(
        {
            "name": "bench-embedforge",
            "model": {"base": base, "max_seq_length": args.max_seq_length},
            "output_dir": str(output),
            "seed": args.seed,
            "stages": {
                "train": {
                    "datasets": datasets_yaml(args.rows),
                    "loss": {"temperature": args.temperature, "gamma": args.gamma},
                    "batch_size": args.batch_size,
                    "max_steps": steps,
                    "learning_rate": args.learning_rate,
                    "warmup_ratio": 0.1,
                    "save_steps": steps,
                    "logging_steps": 10,
                    "trainer_args": {"report_to": [], "disable_tqdm": True},
                    "speed": speed,
                }
            },
        },
        "benchmark",
    )
    result = run_recipe(recipe, overwrite=True)
    summary = result.stages["train"].summary
    return summary["train_seconds"], result.final_model, summary


def slug(side: str) -> str:
    return side.replace("=", "-").replace(",", "+")


def speed_table(summary: dict, batch_size: int) -> str:
    """The run's speed table (markdown) from its ``summary.json``: seconds, pairs/s, ratio and mean score."""
    anchors = summary["steps"] * batch_size * summary["rounds"]
    scores = summary.get("scores", {})

    def mean(label: str) -> str:
        values = list(scores.get(label, {}).values())
        return f"{100 * sum(values) / len(values):.2f}" if values else "-"

    lines = [
        f"| {summary['steps']} steps x {batch_size} pairs, {summary['rounds']} round(s) | training s | pairs/s "
        "| ratio | mean score |",
        "|---|---:|---:|---:|---:|",
        f"| sentence-transformers (MNRL) | {summary['peer_seconds']:.1f} | {anchors / summary['peer_seconds']:.2f} "
        f"| 1.00 | {mean('sentence-transformers')} |",
    ]
    for side, seconds in summary["embedforge_seconds"].items():
        lines.append(
            f"| embedforge, speed `{side}` | {seconds:.1f} | {anchors / seconds:.2f} | {summary['ratio'][side]:.2f} "
            f"| {mean(f'embedforge-{slug(side)}')} |"
        )
    if "base" in scores:
        lines.append(f"| base (untrained) | | | | {mean('base')} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="all-MiniLM-L6-v2")
    parser.add_argument("--rows", type=int, default=3000, help="rows per dataset (Debian pairs, SNLI triplets)")
    parser.add_argument("--steps", type=int, default=None, help="default: one epoch of the peer (rows*2/batch)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=2e-5)
    parser.add_argument("--temperature", type=float, default=0.05)
    parser.add_argument("--gamma", type=float, default=0.5, help="embedforge's focal gamma (KaLM-V2: 0.5)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--tasks", nargs="*", default=None, help="task dirs to score (default: data/eval/*)")
    parser.add_argument("--no-eval", action="store_true", help="speed only: skip scoring the trained models")
    parser.add_argument("--rounds", type=int, default=1, help="alternate peer/embedforge runs this many times")
    parser.add_argument("--output", default=None, help="work folder (default: a temporary one)")
    parser.add_argument(
        "--speed",
        nargs="+",
        default=None,
        help="embedforge side(s), one per value, each round: 'default' or option=value[,option=value] of speed:",
    )
    parser.add_argument(
        "--packing",
        nargs="+",
        choices=["auto", "true", "false"],
        default=None,
        help="short for --speed packing=VALUE ... (auto = when the model supports it)",
    )
    parser.add_argument(
        "--table", type=Path, default=None, help="only print the speed table of an earlier run's summary.json"
    )
    args = parser.parse_args(argv)
    if args.table is not None:
        print(speed_table(json.loads(args.table.read_text()), args.batch_size), end="")
        return 0
    sides = list(args.speed or [])
    sides += [f"packing={value}" for value in args.packing or []]
    sides = sides or ["default"]
    speeds = {side: parse_speed(side) for side in sides}
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    from embedforge.data import load_training_datasets
    from embedforge.evaluation import evaluate, load_tasks
    from embedforge.evaluation.report import leaderboard_markdown

    work = Path(args.output or tempfile.mkdtemp(prefix="bench-train-"))
    data, info = load_training_datasets(datasets_yaml(args.rows), seed=args.seed)
    steps = args.steps or sum(len(d) for d in data.values()) // args.batch_size
    print(
        f"base {args.base} | {', '.join(f'{n} {len(d)} rows' for n, d in data.items())} | batch {args.batch_size} "
        f"| max_seq_length {args.max_seq_length} | {steps} steps | lr {args.learning_rate}",
        flush=True,
    )

    print(f"load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    peer_seconds = 0.0
    ours_seconds = dict.fromkeys(sides, 0.0)
    our_models: dict[str, str] = {}
    for round_index in range(args.rounds):
        seconds, peer_model = run_peer(args.base, data, steps, args, work / f"peer-{round_index}")
        peer_seconds += seconds
        print(f"round {round_index + 1}: sentence-transformers {seconds:7.1f} s", end="", flush=True)
        for side in sides:
            folder = work / f"embedforge-{slug(side)}-{round_index}"
            seconds, our_models[side], _ = run_embedforge(args.base, steps, args, folder, speeds[side])
            ours_seconds[side] += seconds
            print(f" | embedforge ({side}) {seconds:7.1f} s", end="", flush=True)
        print(f" | load {os.getloadavg()[0]:.1f}", flush=True)
    anchors = steps * args.batch_size * args.rounds
    peer_rate = anchors / peer_seconds
    ratios = {side: anchors / seconds / peer_rate for side, seconds in ours_seconds.items()}
    print(f"\nsentence-transformers (MNRL, NO_DUPLICATES): {peer_seconds:7.1f} s  {peer_rate:6.2f} pairs/s")
    for side, seconds in ours_seconds.items():
        rate = anchors / seconds
        print(f"embedforge (InfoNCE, length-grouped, speed {side}): {seconds:7.1f} s  {rate:6.2f} pairs/s")
        print(f"speed ratio embedforge ({side}) / sentence-transformers = {ratios[side]:.2f} (goal 2.0)")
    print(f"\nload average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)

    tasks = [] if args.no_eval else load_tasks(args.tasks or [], None if args.tasks else REPO / "data" / "eval")
    runs = {}
    scored = [("base", args.base), ("sentence-transformers", peer_model)]
    scored += [(f"embedforge-{slug(side)}", model) for side, model in our_models.items()]
    for label, model in scored:
        if not tasks:
            break
        report = evaluate(
            model,
            tasks,
            work / "eval" / label.replace(" ", "-"),
            model_name=label,
            max_seq_length=args.max_seq_length if label == "base" else None,
        )
        runs[label] = report.records
    if runs:
        print(leaderboard_markdown(runs))
    summary = {
        "steps": steps,
        "rounds": args.rounds,
        "peer_seconds": peer_seconds,
        "embedforge_seconds": ours_seconds,
        "ratio": ratios,
        "scores": {k: {r["task"]: r["main_score"] for r in v} for k, v in runs.items()},
    }
    (work / "summary.json").write_text(json.dumps(summary, indent=2))
    table = speed_table(summary, args.batch_size)
    (work / "table.md").write_text(table)
    print(table, end="")
    print(f"work folder: {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
