"""Domain adaptation for retrieval: in-batch only vs mined vs re-mined hard negatives (+ focal and mixing).

    python benchmarks/domain_adaptation.py                  # CPU default, 3 seeds: hours on 2 cores (below)
    python benchmarks/domain_adaptation.py --resume         # after a kill: finished seeds are reused
    python benchmarks/domain_adaptation.py --tables-only    # the document from the seeds finished so far
    python benchmarks/domain_adaptation.py --steps 600 --seeds 5 --max-seq-length 256 --threads 0   # GPU scale
    python benchmarks/domain_adaptation.py --steps 4 --seeds 1 --rows 64 --batch-size 8 --domains debian \
        --task-root DIR   # smoke test (DIR/DebianPackageRetrievalDev: a small task of the same layout)

all-MiniLM-L6-v2 is adapted to two retrieval domains and scored on each domain's held-out queries:

- **SciFact**: the 809 training queries of ``../shared/data/eval/SciFact`` (``qrels/train.tsv``; BEIR's split)
  -> the 300 test queries; mining searches the whole 5,183-abstract corpus (as BEIR shares it between splits;
  the test queries are never seen). Nothing is decontaminated here: the corpus is shared by design.
- **Debian**: ``data/train/debian`` (summary -> long description pairs, disjoint from the eval directories)
  -> ``DebianPackageRetrievalDev``; mining searches the training descriptions.

Variants (same rows, steps, batch, learning rate and seeds; the loss is InfoNCE at τ 0.05 = MNRL's scale 20):

- **in-batch only (MNRL)**: sentence-transformers' ``MultipleNegativesRankingLoss`` on the pairs — the baseline
  of the paired differences;
- **mined negatives**: a ``mine`` stage with the base model picks negatives from ranks ``--range-min`` to
  ``--range-max`` after the false-negative filter (drop candidates scoring above 95% of the positive,
  NV-Retriever's relative margin 0.05); then one ``train`` stage with those hard negatives and in-batch ones;
- **re-mined (iterative)**: the same, but after half the steps a second ``mine`` stage re-mines with the model
  being trained, and the second half trains on its negatives (Seed1.5 / KaLM-V2: negatives chosen by the
  current model);
- **re-mined + focal + mixing**: the re-mined variant with KaLM-V2's focal reweighting (γ 0.5) and one
  pair-wise + one list-wise synthetic hard negative per query.

The base-model mining is shared by all seeds (its window sampling uses seed 42); re-mining runs per seed.
Scale chosen for 2 CPU cores: 3 negatives per query, 128 tokens for training, mining and evaluation (SciFact's
abstracts average ~300 tokens: evaluation at 256 tokens costs twice as much; pass ``--max-seq-length 256``).
Evaluation uses embedforge's embedding cache, so the untrained base is encoded once. Measured cost per seed on
one thread of the 2-core machine (the other busy): SciFact in-batch 4 min, mined 14, re-mined 16 (mining
encodes the 5,183 abstracts); Debian about half that with 2 threads. All of it: about 4 hours; ``--variants``
and ``--domains`` run parts, ``--resume`` adds to them.
Mined negatives are drawn from the training texts themselves (Debian) or the corpus (SciFact), and batches never
repeat a text, so a run needs rows well above batch x (2 + negatives): the smoke test above uses batch 8 (with 64
rows and batch 32 the sampler refuses the mined triplets, as it should).
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._experiments import (  # noqa: E402
    DATA,
    NOISE_RULE,
    REPO,
    SHARED_EVAL,
    Experiment,
    command_line,
    machine,
    paired_table,
    reading,
    scores_table,
    setup,
    task_dirs,
    write_doc,
)

BASE = "all-MiniLM-L6-v2"
BASELINE = "in-batch only (MNRL)"
VARIANTS = {  # label -> (loss options, mining: None | "once" | "iterative")
    BASELINE: ({"name": "mnrl"}, None),
    "mined negatives": ({"name": "infonce"}, "once"),
    "re-mined (iterative)": ({"name": "infonce"}, "iterative"),
    "re-mined + focal + mixing": (
        {"name": "infonce", "gamma": 0.5, "mix_pairwise": True, "mix_listwise": True},
        "iterative",
    ),
}


def domains() -> dict[str, dict]:
    """Domain -> its training source (a dataset entry), extra mining corpus and evaluation task."""
    return {
        "scifact": {
            "dataset": {
                "name": "scifact",
                "path": str(SHARED_EVAL / "SciFact"),
                "kind": "retrieval",
                "split": "train",
            },
            "corpus": str(SHARED_EVAL / "SciFact"),
            "task": "SciFact",
        },
        "debian": {
            "dataset": {
                "name": "debian",
                "path": str(DATA / "debian/pairs.jsonl.gz"),
                "kind": "pairs",
                "columns": {"anchor": "summary", "positive": "description"},
            },
            "corpus": None,
            "task": "DebianPackageRetrievalDev",
        },
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--domains", nargs="*", default=["scifact", "debian"], choices=["scifact", "debian"])
    parser.add_argument("--steps", type=int, default=60, help="optimizer steps per variant and seed (even)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per variant (42, 43, ...)")
    parser.add_argument("--rows", type=int, default=2000, help="training rows per domain (SciFact has ~920 pairs)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=3e-5)
    parser.add_argument("--num-negatives", type=int, default=3)
    parser.add_argument("--range-min", type=int, default=10, help="first rank a mined negative may take")
    parser.add_argument("--range-max", type=int, default=50, help="ranks up to (not including) this one")
    parser.add_argument("--max-seq-length", type=int, default=128, help="tokens for training, mining, evaluation")
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--task-root", default=str(SHARED_EVAL), help="folder holding the evaluation tasks")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    parser.add_argument("--output", default=str(REPO / "runs" / "domain-adaptation"))
    parser.add_argument("--doc", default=str(REPO / "docs" / "results" / "domain_adaptation.md"), help="'' = none")
    parser.add_argument("--resume", action="store_true", help="reuse finished seeds, continue interrupted ones")
    parser.add_argument(
        "--tables-only", action="store_true", help="write the document from finished seeds; train and mine nothing"
    )
    return parser.parse_args(argv)


def _mine_stage(domain: dict, args: argparse.Namespace, model: str | None) -> dict:
    dataset = {**domain["dataset"], "max_rows": args.rows}
    stage = {
        "type": "mine",
        "datasets": [dataset],
        "range_min": args.range_min,
        "range_max": args.range_max,
        "num_negatives": args.num_negatives,
        "relative_margin": 0.05,
        "model": model,
        "seed": 42,
    }
    if domain["corpus"]:
        stage["corpus"] = domain["corpus"]
    return stage


def _train_stage(dataset: dict, loss: dict, steps: int, args: argparse.Namespace) -> dict:
    return {
        "datasets": [dataset],
        "loss": dict(loss),
        "batch_size": args.batch_size,
        "max_seq_length": args.max_seq_length,
        "max_steps": steps,
        "learning_rate": args.learning_rate,
        "warmup_ratio": 0.1,
        "save_steps": steps,
        "logging_steps": max(steps // 5, 1),
        "trainer_args": {"disable_tqdm": True},
    }


def base_mining_recipe(name: str, domain: dict, args: argparse.Namespace) -> dict:
    """Mine once with the base model; every seed of the mined variants trains on this file."""
    return {
        "name": f"{name}-mining",
        "model": {"base": BASE, "max_seq_length": args.max_seq_length},
        "stages": {"mine": _mine_stage(domain, args, "base")},
    }


def recipe(label: str, name: str, domain: dict, mined: Path, args: argparse.Namespace) -> dict:
    loss, mining = VARIANTS[label]
    source = {**domain["dataset"], "max_rows": args.rows}
    triplets = {"name": domain["dataset"]["name"], "path": str(mined), "kind": "triplets"}
    if mining is None:
        stages = {"train": _train_stage(source, loss, args.steps, args)}
    elif mining == "once":
        stages = {"train": _train_stage(triplets, loss, args.steps, args)}
    else:
        half = max(args.steps // 2, 1)
        again = {**triplets, "path": f"@mine2/{domain['dataset']['name']}.jsonl"}
        stages = {
            "train": _train_stage(triplets, loss, half, args),
            "mine2": _mine_stage(domain, args, None),  # None: the model of the stage before (train)
            "train2": _train_stage(again, loss, max(args.steps - half, 1), args),
        }
    return {"name": name, "model": {"base": BASE, "max_seq_length": args.max_seq_length}, "stages": stages}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup(args.threads)
    from embedforge.evaluation import load_tasks
    from embedforge.recipes import recipe_from_dict, run_recipe

    started = datetime.datetime.now(datetime.UTC)
    host = machine()
    work = Path(args.output)
    experiments: dict[str, Experiment] = {}
    every = domains()
    for name in args.domains:
        domain = every[name]
        tasks = load_tasks(task_dirs([domain["task"]], Path(args.task_root)))
        experiment = Experiment(
            work / name,
            tasks,
            resume=args.resume,
            eval_options={"max_seq_length": args.max_seq_length},
            train=not args.tables_only,
        )
        experiments[name] = experiment
        experiment.reference(BASE, BASE, "base")
        if args.tables_only:
            continue
        spec = {**base_mining_recipe(name, domain, args), "output_dir": str(work / name / "mined"), "seed": 42}
        mined = work / name / "mined" / "mine" / f"{domain['dataset']['name']}.jsonl"
        marker = work / name / "mined" / "recipe.json"
        if not (args.resume and mined.is_file() and marker.is_file() and json.loads(marker.read_text()) == spec):
            run_recipe(recipe_from_dict(spec, f"{name} mining"), overwrite=True)
            marker.write_text(json.dumps(spec, indent=1))
    for seed in [42 + i for i in range(args.seeds)]:  # seed-major: a partial run has every variant for its first seeds
        for name in args.domains:
            domain = every[name]
            mined = work / name / "mined" / "mine" / f"{domain['dataset']['name']}.jsonl"
            for label in args.variants:
                slug = label.lower().replace("(", "").replace(")", "").replace("+", "").replace(" ", "-")
                experiments[name].variant(label, seed, recipe(label, name, domain, mined, args), slug)
                experiments[name].save(work / name / "summary.json")
                if args.doc:
                    write_doc(Path(args.doc), document(experiments, args, argv, host, started))
    return 0


def document(experiments: dict[str, Experiment], args, argv, host: str, started) -> str:
    sections = []
    for name, experiment in experiments.items():
        baseline = BASELINE if BASELINE in experiment.scores else next(iter(experiment.scores), BASELINE)
        done = ", ".join(f"{k} {len(v)}" for k, v in experiment.scores.items()) or "none"
        sections.append(f"""## {experiment.task_names[0]} (trained on {name}; seeds finished: {done})

{scores_table(experiment)}

Per-seed paired differences against {baseline} (x100):

{paired_table(experiment, baseline)}

{reading(experiment, baseline)}
""")
    rerun = (
        "  # the tables, from the runs of:\n"
        "python benchmarks/domain_adaptation.py --resume  # trains any variant or seed still missing"
        if args.tables_only
        else ""
    )
    return f"""# Domain adaptation: in-batch only vs mined vs re-mined hard negatives

Generated by `benchmarks/domain_adaptation.py` (started {started:%Y-%m-%d %H:%M} UTC); do not edit by hand.

```bash
{command_line("domain_adaptation.py", argv)}{rerun}
```

- Machine: {host}.
- Setting: {args.steps} steps of batch {args.batch_size}, learning rate {args.learning_rate}, up to {args.rows} \
training rows per domain, {args.num_negatives} negatives from ranks {args.range_min}-{args.range_max}, \
{args.max_seq_length} tokens everywhere; {args.seeds} seeds. Main score: nDCG@10 (x100; mean ± std over seeds).
- Noise rule, fixed before the run: {NOISE_RULE}

{(__doc__ or "").split(chr(10) + chr(10), 2)[2].strip()}

{chr(10).join(sections)}"""


if __name__ == "__main__":
    sys.exit(main())
