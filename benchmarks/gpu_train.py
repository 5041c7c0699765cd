"""GPU training speed: embedforge vs sentence-transformers, the pretrain and the finetune shape, one command.

Shapes (issue 15; KaLM-Embedding-V2 on a Qwen2-0.5B-shaped decoder):

* ``pretrain``: 256 (summary, description) Debian pairs per step, in-batch negatives, <= 256 tokens, bf16.
  Peer: ``SentenceTransformerTrainer`` + ``MultipleNegativesRankingLoss``, ``NO_DUPLICATES`` batches, bf16 autocast.
  embedforge: ``EmbedforgeTrainer`` + InfoNCE (focal), length-grouped batches, default speed options (texts
  tokenized once, packed batches, bf16 weights with fp32 master AdamW, fused AdamW).
* ``finetune``: 64 queries per step with 7 hard negatives each (other rows' descriptions: the FLOPs of mined
  negatives), GradCache mini-batches of 32, Matryoshka (5 dims), gradient checkpointing. Peer: ST's
  ``MatryoshkaLoss(CachedMultipleNegativesRankingLoss)``; embedforge: Matryoshka over cached InfoNCE with
  KaLM's focal weighting and pair-/list-wise hard-negative mixing.

Each run trains ``--steps`` optimizer steps from a fresh copy of the model; the first ``--warmup`` steps are not
timed. Printed per run: pairs/s, real (non-padding) tokens/s, MFU = 6 x N x real tokens/s / peak (N:
non-embedding parameters, from ``nonemb_params.txt`` beside the model when present; GradCache's and
checkpointing's extra forward passes are not counted: model FLOPs, not hardware FLOPs), peak memory, and the
ratio to the peer measured in the same process.

    # GPU machine (see docs/gpu.md), < 10 minutes:
    source .gpu-kit/install-on-device.sh && python3 .gpu-kit/random_decoder.py /tmp/qwen05 \\
        && python3 benchmarks/gpu_train.py --model /tmp/qwen05 --output $OUT/gpu_train.json
    # CPU dry run with a tiny random decoder:
    SMALL=1 .venv/bin/python .gpu-kit/random_decoder.py .gpu-kit/tiny
    .venv/bin/python benchmarks/gpu_train.py --model .gpu-kit/tiny --steps 2 --warmup 1 --scale 0.125 --rows 200 \\
        --packing true
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import sys
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SHAPES = {
    # batch, hard negatives, GradCache mini-batch, Matryoshka dims, gradient checkpointing
    "pretrain": {"batch": 256, "negatives": 0, "mini_batch": None, "matryoshka": None, "checkpointing": False},
    "finetune": {
        "batch": 64,
        "negatives": 7,
        "mini_batch": 32,
        "matryoshka": [896, 512, 256, 128, 64],
        "checkpointing": True,
    },
}


def training_data(shape: dict, rows: int, seed: int = 42):
    """Debian (summary, description) pairs, plus ``negatives`` columns of other rows' descriptions."""
    import numpy as np
    from datasets import Dataset

    from embedforge.data import load_training_datasets

    data, _ = load_training_datasets(
        [
            {
                "name": "debian",
                "path": str(REPO / "data/train/debian/pairs.jsonl.gz"),
                "kind": "pairs",
                "columns": {"anchor": "summary", "positive": "description"},
                "max_rows": rows,
            }
        ],
        seed=seed,
    )
    table = data["debian"].remove_columns([c for c in data["debian"].column_names if c == "dataset_name"])
    columns = {"anchor": table["anchor"], "positive": table["positive"]}
    positives = np.asarray(columns["positive"], dtype=object)
    for k in range(shape["negatives"]):
        columns[f"negative_{k + 1}"] = np.roll(positives, 7919 * (k + 1) % len(positives) or 1).tolist()
    return Dataset.from_dict(columns)


class TokenCounter:
    """Wraps a data collator; counts the real (non-padding) tokens of every batch it builds."""

    def __init__(self, collator):
        self.collator = collator
        self.batches = 0
        self.tokens = 0

    def __getattr__(self, name):
        return getattr(self.collator, name)

    def __call__(self, features):
        batch = self.collator(features)
        for key, value in batch.items():
            if key.endswith("_attention_mask"):
                self.tokens += int(value.sum())
            elif key.endswith("_input_ids") and key.replace("_input_ids", "_attention_mask") not in batch:
                self.tokens += int(value.numel())  # packed: every position is a real token
        self.batches += 1
        return batch


def step_clock(warmup: int):
    from transformers import TrainerCallback

    class Clock(TrainerCallback):
        """Wall time of the steps after ``warmup`` (CUDA synchronized at both ends)."""

        def __init__(self):
            self.start = self.end = None
            self.steps = 0

        def _now(self):
            import torch

            if torch.cuda.is_available():
                torch.cuda.synchronize()
            return time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == warmup:
                self.start = self._now()
            elif state.global_step > warmup:
                self.end = self._now()
                self.steps = state.global_step - warmup

    return Clock()


def run_one(side: str, shape_name: str, args, dataset) -> dict:
    import torch
    from sentence_transformers import SentenceTransformerTrainingArguments

    from embedforge.models import load_model

    shape = SHAPES[shape_name]
    batch = max(2, int(shape["batch"] * args.scale))
    mini_batch = max(1, int(shape["mini_batch"] * args.scale)) if shape["mini_batch"] else None
    cuda = torch.cuda.is_available()
    model = load_model(args.model, max_seq_length=args.max_seq_length)
    dim = model.get_embedding_dimension()
    dims = [d for d in (shape["matryoshka"] or []) if d <= dim] or ([dim] if shape["matryoshka"] else None)
    if dims and dims[0] != dim:
        dims = [dim, *dims]
    common = {
        "output_dir": str(Path(args.work) / f"{side}-{shape_name}"),
        "per_device_train_batch_size": batch,
        "learning_rate": 2e-5,
        "warmup_steps": 0.1,
        "max_steps": args.steps,
        "save_strategy": "no",
        "report_to": [],
        "disable_tqdm": True,
        "logging_steps": 1000,
        "bf16": cuda,
        "gradient_checkpointing": shape["checkpointing"],
        "dataloader_drop_last": True,
        "seed": 42,
        "use_cpu": not cuda,
    }
    clock = step_clock(args.warmup)
    if side == "sentence-transformers":
        from sentence_transformers import SentenceTransformerTrainer
        from sentence_transformers.base.sampler import BatchSamplers
        from sentence_transformers.sentence_transformer import losses

        if mini_batch:
            loss = losses.CachedMultipleNegativesRankingLoss(model, scale=20.0, mini_batch_size=mini_batch)
        else:
            loss = losses.MultipleNegativesRankingLoss(model, scale=20.0)
        if dims:
            loss = losses.MatryoshkaLoss(model, loss, matryoshka_dims=dims)
        training_args = SentenceTransformerTrainingArguments(batch_sampler=BatchSamplers.NO_DUPLICATES, **common)
        trainer = SentenceTransformerTrainer(
            model=model, args=training_args, train_dataset=dataset, loss=loss, callbacks=[clock]
        )
    else:
        from embedforge.data.sampler import batch_sampler
        from embedforge.losses import CachedInfoNCELoss, MatryoshkaLoss, build_loss
        from embedforge.training.speed import TrainingSpeed
        from embedforge.training.trainer import EmbedforgeTrainer

        options = {"temperature": 0.05, "gamma": 0.5}
        if shape["negatives"] >= 2:
            options.update(mix_pairwise=True, mix_listwise=True)
        if mini_batch:
            loss = CachedInfoNCELoss(model, mini_batch_size=mini_batch, **options)
        else:
            loss = build_loss("infonce", model, options)
        if dims:
            loss = MatryoshkaLoss(model, loss, dims, [1.0] + [0.3] * (len(dims) - 1))
        training_args = SentenceTransformerTrainingArguments(batch_sampler=batch_sampler(group_batches=64), **common)
        packing = {"auto": "auto", "true": True, "false": False}[args.packing]
        speed = TrainingSpeed(packing=packing, compile=args.compile, liger=args.liger)
        trainer = EmbedforgeTrainer(
            model=model, args=training_args, train_dataset=dataset, loss=loss, callbacks=[clock], speed=speed
        )
    counter = TokenCounter(trainer.data_collator)
    trainer.data_collator = counter
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    trainer.train()
    total = time.perf_counter() - started
    seconds = (clock.end - clock.start) if clock.steps else total
    steps = clock.steps or args.steps
    tokens_per_step = counter.tokens / max(counter.batches, 1)
    result = {
        "side": side,
        "shape": shape_name,
        "batch": batch,
        "steps_timed": steps,
        "seconds": round(seconds, 3),
        "wall_with_warmup": round(total, 1),
        "pairs_per_s": batch * steps / seconds,
        "real_tokens_per_s": tokens_per_step * steps / seconds,
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
        "packing": getattr(trainer, "packing", False),
        "bf16_weights": getattr(trainer, "bf16_weights", False),
    }
    del trainer, model, loss
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    return result


def nonembedding_parameters(path: str) -> int:
    marker = Path(path) / "nonemb_params.txt"
    if marker.is_file():
        return int(marker.read_text().strip())
    from transformers import AutoModel

    model = AutoModel.from_pretrained(path)
    return sum(p.numel() for p in model.parameters()) - model.get_input_embeddings().weight.numel()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a model folder (random_decoder.py writes one)")
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--sides", nargs="+", default=["sentence-transformers", "embedforge"])
    parser.add_argument("--steps", type=int, default=16, help="optimizer steps per run")
    parser.add_argument("--warmup", type=int, default=3, help="first steps not timed")
    parser.add_argument("--scale", type=float, default=1.0, help="batch sizes x this (CPU dry runs: 0.125)")
    parser.add_argument("--rows", type=int, default=10000, help="Debian pairs to draw batches from")
    parser.add_argument("--max-seq-length", type=int, default=256)
    parser.add_argument("--peak-tflops", type=float, default=None, help="default: 989 (H100/H200 bf16) on CUDA")
    parser.add_argument("--compile", action="store_true", help="embedforge side: torch.compile the transformer")
    parser.add_argument("--liger", action="store_true", help="embedforge side: Liger kernels (liger-kernel)")
    parser.add_argument("--packing", choices=["auto", "true", "false"], default="auto", help="true: CPU dry runs")
    parser.add_argument("--work", default="/tmp/gpu-train-bench")
    parser.add_argument("--output", default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("embedforge.training.trainer").setLevel(logging.INFO)
    warnings.filterwarnings("ignore")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    cuda = torch.cuda.is_available()
    peak = (args.peak_tflops or (989.0 if cuda else 0.156)) * 1e12  # CPU: this project's 2-core box, fp32
    device = torch.cuda.get_device_name() if cuda else "CPU"
    n = nonembedding_parameters(args.model)
    print(f"device {device} | torch {torch.__version__} | model {args.model} ({n / 1e6:.1f}M non-embedding)")
    print(f"peak for MFU {peak / 1e12:g} TFLOP/s | steps {args.steps} (first {args.warmup} untimed)", flush=True)
    results = []
    for shape_name in args.shapes:
        dataset = training_data(SHAPES[shape_name], args.rows)
        for side in args.sides:
            result = run_one(side, shape_name, args, dataset)
            result["mfu"] = 6 * n * result["real_tokens_per_s"] / peak
            results.append(result)
            memory = f"{result['peak_memory_gib']:.1f} GiB" if result["peak_memory_gib"] is not None else "-"
            print(
                f"{shape_name:9s} {side:22s} batch {result['batch']:4d}  {result['pairs_per_s']:8.1f} pairs/s  "
                f"{result['real_tokens_per_s'] / 1e3:8.1f}k tokens/s  MFU {100 * result['mfu']:5.1f}%  peak {memory}"
                f"  (packing={result['packing']}, bf16 weights={result['bf16_weights']})",
                flush=True,
            )
        by_side = {r["side"]: r for r in results if r["shape"] == shape_name}
        if {"sentence-transformers", "embedforge"} <= set(by_side):
            ratio = by_side["embedforge"]["pairs_per_s"] / by_side["sentence-transformers"]["pairs_per_s"]
            print(f"{shape_name}: embedforge / sentence-transformers pairs/s = {ratio:.2f}x", flush=True)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps({"device": device, "nonembedding": n, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
