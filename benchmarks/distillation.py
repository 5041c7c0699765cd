"""Distillation (SEA-Embedding §2.2.2, Table 3): SDM vs L2-KD vs contrastive KD, same student, data, steps and seeds.

    python benchmarks/distillation.py                       # CPU default (about 90 min on 2 cores): 3 seeds
    python benchmarks/distillation.py --resume              # after a kill: finished seeds are reused
    python benchmarks/distillation.py --steps 1000 --seeds 5 --rows 20000 --threads 0     # GPU scale
    python benchmarks/distillation.py --steps 4 --seeds 1 --rows 64 --tasks STSBenchmark  # smoke test

Teacher: all-MiniLM-L6-v2 (6 layers, 384 wide). Student: its first 3 layers (embeddings, layers 0-2, mean
pooling, normalize), cut offline by this script into ``<output>/student-L3`` — a real half-depth student
(the usual layer-dropping initialisation of DistilBERT-style distillation) that starts well below the teacher,
unlike a random tiny model, which no loss can bring near the teacher in minutes. Both have the same width and
tokenizer, so SDM needs no projection; L2-KD regresses directly onto the teacher's vectors.

Every variant is one ``train`` stage with ``teacher: all-MiniLM-L6-v2`` (the teacher's embeddings of every text
column become the ``label`` column, :mod:`embedforge.training.teacher`) on the same rows: Debian
(summary -> description) pairs and SNLI triplets, batch 32, 64 training tokens, learning rate 1e-4, the same
steps. Only the loss differs:

- **SDM** (SEA §2.2.2, ``sdm``): KL between teacher and student similarity distributions over a FIFO queue of
  teacher document embeddings (queue 65,536, student τ 0.02, teacher τ 0.05) — the baseline of the paired
  differences, as in SEA's Table 3;
- **L2-KD** (Reimers & Gurevych 2020, ``l2_kd``): MSE between student and teacher embeddings;
- **contrastive KD** (KaLM-Embedding-V2's CKD, ``contrastive_kd``): KL between teacher and student in-batch
  similarity distributions (τ 0.05 both);
- **InfoNCE, no teacher** (control): the same rows and steps with the contrastive loss on the hard labels only,
  to show what the teacher adds;
- **InfoNCE, then SDM / L2-KD / contrastive KD** (SEA's order: its SDM stage comes last, after symmetric
  contrastive training, §2.2 and Table 4): half the steps with SEA's SCL (symmetric InfoNCE, focal γ 0.5, no
  teacher), then half with the KD loss, the same total steps as every other variant.

Tasks: STSBenchmark, Banking77Classification, EmotionClassification, DebianPackageRetrievalDev (MTEB protocol,
embedforge's evaluation, every model at 128 tokens). Left out: DebianSectionClusteringDev, whose seed-to-seed
spread (6.3 points in docs/RESULTS.md) swamps every effect at this scale, and SciFact (5k long documents per
model). Pass ``--tasks`` to change that.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._experiments import (  # noqa: E402
    DATA,
    REPO,
    Experiment,
    command_line,
    machine,
    paired_table,
    result_sections,
    setup,
    task_dirs,
    write_doc,
)

TEACHER = "all-MiniLM-L6-v2"
STUDENT_LAYERS = 3
DEFAULT_TASKS = ["STSBenchmark", "Banking77Classification", "EmotionClassification", "DebianPackageRetrievalDev"]
BASELINE = "SDM"
VARIANTS = {  # label -> (loss options, with the teacher, after a contrastive stage)
    "SDM": ({"name": "sdm"}, True, False),
    "L2-KD": ({"name": "l2_kd"}, True, False),
    "contrastive KD": ({"name": "contrastive_kd"}, True, False),
    "InfoNCE, no teacher": ({"name": "infonce"}, False, False),
    # SEA's order: SCL first, then the KD stage (SEA §2.2, Table 4); half the steps each, the same total
    "InfoNCE, then SDM": ({"name": "sdm"}, True, True),
    "InfoNCE, then L2-KD": ({"name": "l2_kd"}, True, True),
    "InfoNCE, then contrastive KD": ({"name": "contrastive_kd"}, True, True),
}
SCL_LOSS = {"name": "infonce", "symmetric": True, "gamma": 0.5}  # SEA's SCL: symmetric InfoNCE, focal weight


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=150, help="optimizer steps per variant and seed")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per variant (42, 43, ...)")
    parser.add_argument("--rows", type=int, default=2400, help="rows per training dataset (Debian, SNLI)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--max-seq-length", type=int, default=64, help="training tokens per text")
    parser.add_argument("--eval-max-seq-length", type=int, default=128, help="evaluation tokens per text")
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--tasks", nargs="*", default=DEFAULT_TASKS, help="names under ../shared/data/eval or dirs")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    parser.add_argument("--output", default=str(REPO / "runs" / "distillation"))
    parser.add_argument("--doc", default=str(REPO / "docs" / "results" / "distillation.md"), help="'' = none")
    parser.add_argument("--resume", action="store_true", help="reuse finished seeds, continue interrupted ones")
    return parser.parse_args(argv)


def derive_student(folder: Path, layers: int = STUDENT_LAYERS) -> Path:
    """Save the teacher cut to its first ``layers`` transformer layers (deterministic; reused when present)."""
    from embedforge.models import load_model, save_model

    if (folder / "config_sentence_transformers.json").is_file() or (folder / "modules.json").is_file():
        return folder
    model = load_model(TEACHER)
    bert = model[0].auto_model
    bert.encoder.layer = bert.encoder.layer[:layers]  # embeddings + layers 0..layers-1
    bert.config.num_hidden_layers = layers
    return save_model(model, folder)


def recipe(label: str, student: Path, args: argparse.Namespace) -> dict:
    loss, with_teacher, after_scl = VARIANTS[label]

    def stage(stage_loss: dict, steps: int) -> dict:
        return {
            "datasets": [
                {
                    "name": "debian",
                    "path": str(DATA / "debian/pairs.jsonl.gz"),
                    "kind": "pairs",
                    "columns": {"anchor": "summary", "positive": "description"},
                    "max_rows": args.rows,
                },
                {"name": "snli", "path": str(DATA / "snli/triplets.jsonl"), "kind": "triplets", "max_rows": args.rows},
            ],
            "loss": dict(stage_loss),
            "batch_size": args.batch_size,
            "max_seq_length": args.max_seq_length,
            "max_steps": steps,
            "learning_rate": args.learning_rate,
            "warmup_ratio": 0.1,
            "save_steps": max(steps // 2, 1),
            "logging_steps": max(steps // 10, 1),
            "trainer_args": {"disable_tqdm": True},
        }

    stages = {}
    if after_scl:  # SEA: symmetric contrastive learning first, the distillation stage last
        stages["scl"] = stage(SCL_LOSS, args.steps // 2)
    stages["distill"] = stage(loss, args.steps - args.steps // 2 if after_scl else args.steps)
    if with_teacher:
        stages["distill"]["teacher"] = TEACHER
    return {"name": "distill", "model": {"base": str(student)}, "stages": stages}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup(args.threads)
    from embedforge.evaluation import load_tasks

    started = datetime.datetime.now(datetime.UTC)
    work = Path(args.output)
    host = machine()
    student = derive_student(work / f"student-L{STUDENT_LAYERS}")
    tasks = load_tasks(task_dirs(args.tasks))
    experiment = Experiment(work, tasks, resume=args.resume, eval_options={"max_seq_length": args.eval_max_seq_length})
    experiment.reference(f"teacher {TEACHER}", TEACHER, "teacher")
    experiment.reference(f"student {TEACHER} first {STUDENT_LAYERS} layers", str(student), "student")
    seeds = [42 + i for i in range(args.seeds)]
    for seed in seeds:  # seed-major: a partial run has every variant for its first seeds
        for label in args.variants:
            slug = label.lower().replace(",", "").replace(" ", "-")
            experiment.variant(label, seed, recipe(label, student, args), slug)
            experiment.save(work / "summary.json")
            if args.doc:
                write_doc(Path(args.doc), document(experiment, args, argv, host, started))
    return 0


def document(experiment: Experiment, args, argv, host: str, started) -> str:
    baseline = BASELINE if BASELINE in experiment.scores else next(iter(experiment.scores), BASELINE)
    seeds_done = {label: len(by_seed) for label, by_seed in experiment.scores.items()}
    return f"""# Distillation: SDM vs L2-KD vs contrastive KD (SEA-Embedding §2.2.2, Table 3)

Generated by `benchmarks/distillation.py` (started {started:%Y-%m-%d %H:%M} UTC); do not edit by hand.

```bash
{command_line("distillation.py", argv)}
```

- Machine: {host}.
- Setting: {args.steps} steps of batch {args.batch_size} at {args.max_seq_length} training tokens, learning rate \
{args.learning_rate}, {args.rows} rows each of Debian pairs and SNLI triplets; evaluation at \
{args.eval_max_seq_length} tokens. Seeds finished: {", ".join(f"{k} {v}" for k, v in seeds_done.items())} of \
{args.seeds}.
{result_sections(experiment, baseline, __doc__)}{sea_order_section(experiment)}"""


def sea_order_section(experiment) -> str:
    """The SEA-order variants paired against the contrastive control: what a last KD stage adds (or costs)."""
    control = "InfoNCE, no teacher"
    if control not in experiment.scores or not any(VARIANTS[label][2] for label in experiment.scores):
        return ""
    return f"""
## SEA's order (contrastive stage, then KD) paired against {control} (x100)

The control trains all its steps contrastively; the `InfoNCE, then …` rows spend the second half on their KD loss
instead, the other rows all their steps.

{paired_table(experiment, control)}
"""


if __name__ == "__main__":
    sys.exit(main())
