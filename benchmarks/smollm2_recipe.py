"""Raw SmolLM2-135M-Instruct -> embedder: the full KaLM-style recipe vs MNRL vs plain InfoNCE, same data and steps.

    python benchmarks/smollm2_recipe.py                     # CPU default (about 90 min on 2 free cores): 3 seeds
    python benchmarks/smollm2_recipe.py --resume            # after a kill: finished seeds are reused
    python benchmarks/smollm2_recipe.py --pretrain-steps 300 --finetune-steps 600 --max-seq-length 256 \\
        --tasks STSBenchmark EmotionClassification DebianPackageRetrievalDev SciFact --threads 0    # GPU scale
    python benchmarks/smollm2_recipe.py --pretrain-steps 2 --finetune-steps 2 --seeds 1 --rows 64 \\
        --tasks STSBenchmark                                # smoke test

A decoder LLM that was never trained for embeddings starts near zero on every task, so training moves scores by
tens of points (docs/smollm2_bidirectional_vs_causal.md: +24.6 in 60 LoRA steps) and the recipe's techniques have
room to show. Every variant loads the same base (the ``SmolLM2-135M-Instruct`` preset made bidirectional, mean
pooling) with the same LoRA adapters, and trains on the same data schedule taken from
``recipes/smollm2-kalm.yaml``: stage 1 on Debian summary -> description pairs (batch 32), stage 2 on SNLI
triplets and STS-B pairs (score > 4/5 as positives; batch 16), the same optimizer steps per stage:

- **sentence-transformers MNRL**: ``MultipleNegativesRankingLoss`` (scale 20) in both stages, no task
  instructions — what a sentence-transformers script would train on this data;
- **embedforge plain InfoNCE**: the recipe's stages, instructions and temperature (0.02) with plain InfoNCE
  (γ 0, no mining, no mixing, no Matryoshka, no soup);
- **full KaLM-style recipe**: pretrain -> ``mine`` (3 negatives for the Debian pairs from ranks 10-50 of the
  pretrained model, false-negative filter) -> two fine-tuning ingredients from the pretrained model, each with
  half the stage-2 steps (one on the stage-2 mixture plus the mined Debian triplets, one weighted towards
  retrieval), with focal γ 0.5, pair-wise + list-wise hard-negative mixing and Matryoshka (576/256/128/64,
  weights 1/0.3/0.2/0.1) -> ``merge`` (uniform soup of the two). The soup's ingredients share the stage-2
  step budget, so the optimizer steps stay equal to the other variants'.

Why this scale: on 2 CPU cores SmolLM2 trains a 64-token LoRA step in ~8 s and encodes ~15 texts/s, so
evaluation dominates. LoRA (rank 16, alpha 32, KaLM-V2 §4.4) rather than full fine-tuning: it skips the weight
gradients and AdamW state of 135M frozen parameters and takes a ~10x larger learning rate, so 30 steps already
move the model. 10 + 20 steps at 64 tokens, 800 rows per dataset, and two tasks (STS-B, Debian retrieval: the
tasks where the bidirectional run moved most) keep 3 seeds x 3 variants near 90 minutes; pass more steps,
tokens and ``--tasks`` on a GPU.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._experiments import (  # noqa: E402
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

RECIPE = REPO / "recipes" / "smollm2-kalm.yaml"
BASE = "SmolLM2-135M-Instruct"
DEFAULT_TASKS = ["STSBenchmark", "DebianPackageRetrievalDev"]
BASELINE = "sentence-transformers MNRL"
VARIANTS = ("sentence-transformers MNRL", "embedforge plain InfoNCE", "full KaLM-style recipe")
MATRYOSHKA = {"dims": [576, 256, 128, 64], "weights": [1.0, 0.3, 0.2, 0.1]}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pretrain-steps", type=int, default=10)
    parser.add_argument("--finetune-steps", type=int, default=20, help="stage-2 steps (the soup splits them in two)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per variant (42, 43, ...)")
    parser.add_argument("--rows", type=int, default=800, help="rows per training dataset")
    parser.add_argument("--max-seq-length", type=int, default=64, help="tokens for training, mining and evaluation")
    parser.add_argument("--tasks", nargs="*", default=DEFAULT_TASKS, help="task names under ../shared/data/eval")
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    parser.add_argument("--output", default=str(REPO / "runs" / "smollm2-recipe"))
    parser.add_argument("--doc", default=str(REPO / "docs" / "results" / "smollm2_recipe.md"), help="'' = none")
    parser.add_argument("--resume", action="store_true", help="reuse finished seeds, continue interrupted ones")
    return parser.parse_args(argv)


def _resolved(dataset: dict) -> dict:
    """A dataset entry of the YAML with its path made absolute (the YAML's paths are relative to recipes/)."""
    path = dataset["path"]
    return {**dataset, "path": path if path.startswith("@") else str((RECIPE.parent / path).resolve())}


def source_stages(args: argparse.Namespace) -> tuple[dict, dict, dict]:
    """The model, pretrain and finetune stages of ``recipes/smollm2-kalm.yaml``, scaled to ``args``."""
    import yaml

    recipe = yaml.safe_load(RECIPE.read_text(encoding="utf-8"))
    model = {**recipe["model"], "max_seq_length": args.max_seq_length}
    stages = {}
    for name, steps in (("pretrain", args.pretrain_steps), ("finetune", args.finetune_steps)):
        stage = dict(recipe["stages"][name])
        stage["datasets"] = [{**_resolved(d), "max_rows": args.rows} for d in stage["datasets"]]
        stage["decontaminate_against"] = [
            str((RECIPE.parent / p).resolve()) for p in stage.get("decontaminate_against", [])
        ]
        stage.update(
            max_steps=steps,
            max_seq_length=args.max_seq_length,
            save_steps=steps,
            logging_steps=max(steps // 5, 1),
            trainer_args={"disable_tqdm": True},
        )
        stages[name] = stage
    return model, stages["pretrain"], stages["finetune"]


def recipe(label: str, args: argparse.Namespace) -> dict:
    model, pretrain, finetune = source_stages(args)
    if label == "sentence-transformers MNRL":
        stages = {}
        for name, stage in (("pretrain", pretrain), ("finetune", finetune)):
            datasets = [{k: v for k, v in d.items() if k != "instruction"} for d in stage["datasets"]]
            stages[name] = {**stage, "datasets": datasets, "loss": {"name": "mnrl"}}
    elif label == "embedforge plain InfoNCE":
        loss = {"name": "infonce", "temperature": finetune["loss"].get("temperature", 0.02)}
        stages = {"pretrain": pretrain, "finetune": {**finetune, "loss": loss}}
    else:
        debian = next(d for d in pretrain["datasets"] if d["name"] == "debian")
        mine = {
            "type": "mine",
            "datasets": [debian],
            "range_min": 10,
            "range_max": 50,
            "num_negatives": 3,
            "relative_margin": 0.05,
        }
        mined = {
            "name": "debian_mined",
            "path": "@mine/debian.jsonl",
            "kind": "triplets",
            "instruction": debian.get("instruction"),
        }
        half = max(args.finetune_steps // 2, 1)
        loss = {**finetune["loss"], "gamma": 0.5, "mix_pairwise": True, "mix_listwise": True}
        common = {
            **finetune,
            "init": "pretrain",
            "loss": loss,
            "matryoshka": MATRYOSHKA,
            "max_steps": half,
            "save_steps": half,
            "logging_steps": max(half // 5, 1),
        }
        general = [*finetune["datasets"], mined]
        retrieval = [{**mined, "weight": 0.7}, *({**d, "weight": 0.3 / len(general[:-1])} for d in general[:-1])]
        stages = {
            "pretrain": pretrain,
            "mine": mine,
            "finetune": {**common, "datasets": general},
            "finetune_retrieval": {**common, "datasets": retrieval},
            "soup": {"type": "merge", "models": ["finetune", "finetune_retrieval"]},
        }
    return {"name": "smollm2-" + label.split()[0].lower(), "model": model, "stages": stages}


def untrained():
    """The base with the evaluation prompts the instructed variants save (as benchmarks/smollm2_bidirectional_...)."""
    from embedforge.data.instructions import model_prompts
    from embedforge.models import load_model

    model = load_model(BASE, bidirectional=True, pooling="mean")
    model.prompts = model_prompts()
    return model


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup(args.threads)
    from embedforge.evaluation import load_tasks

    started = datetime.datetime.now(datetime.UTC)
    host = machine()
    work = Path(args.output)
    tasks = load_tasks(task_dirs(args.tasks))
    experiment = Experiment(work, tasks, resume=args.resume, eval_options={"max_seq_length": args.max_seq_length})
    experiment.reference(f"{BASE}, bidirectional, mean pooling", untrained, "base")
    for seed in [42 + i for i in range(args.seeds)]:  # seed-major: a partial run has every variant for its first seeds
        for label in args.variants:
            slug = label.lower().replace("-", "").replace(" ", "-")
            experiment.variant(label, seed, recipe(label, args), slug)
            experiment.save(work / "summary.json")
            if args.doc:
                write_doc(Path(args.doc), document(experiment, args, argv, host, started))
    return 0


def document(experiment: Experiment, args, argv, host: str, started) -> str:
    baseline = BASELINE if BASELINE in experiment.scores else next(iter(experiment.scores), BASELINE)
    done = ", ".join(f"{k} {len(v)}" for k, v in experiment.scores.items()) or "none"
    return f"""# Raw SmolLM2-135M-Instruct -> embedder: full KaLM-style recipe vs MNRL vs plain InfoNCE

Generated by `benchmarks/smollm2_recipe.py` (started {started:%Y-%m-%d %H:%M} UTC); do not edit by hand.

```bash
{command_line("smollm2_recipe.py", argv)}
```

- Machine: {host}.
- Setting: {args.pretrain_steps} + {args.finetune_steps} LoRA steps at {args.max_seq_length} tokens, {args.rows} \
rows per dataset, evaluation at {args.max_seq_length} tokens. Seeds finished: {done} (of {args.seeds}).
{result_sections(experiment, baseline, __doc__)}{techniques_section(experiment)}"""


def techniques_section(experiment: Experiment) -> str:
    """The full recipe against plain InfoNCE: what KaLM's techniques (mining, focal, mixing, Matryoshka, soup) add
    over embedforge's own stages, instructions and temperature."""
    control = "embedforge plain InfoNCE"
    if control not in experiment.scores or "full KaLM-style recipe" not in experiment.scores:
        return ""
    return f"""
## The KaLM techniques alone: paired against {control} (x100)

Both rows share the stages, instructions and temperature; the full recipe adds mined negatives, focal weighting,
hard-negative mixing, Matryoshka and the two-ingredient soup (each ingredient with half the stage-2 steps).

{paired_table(experiment, control)}
"""


if __name__ == "__main__":
    sys.exit(main())
