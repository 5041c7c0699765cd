"""Under a real 2-process DDP run (torchrun, gloo, CPU) every step gives both ranks a batch of the same dataset."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SCRIPT = textwrap.dedent(
    """
    import json, os, sys, tempfile
    from embedforge.models import load_model
    from embedforge.data import load_training_datasets, LengthGroupedBatchSampler
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.sentence_transformer.losses import CoSENTLoss, MultipleNegativesRankingLoss

    model = load_model(sys.argv[1], max_seq_length=32)
    datasets, info = load_training_datasets(json.loads(sys.argv[2]), seed=0)
    args = SentenceTransformerTrainingArguments(
        output_dir=tempfile.mkdtemp(), per_device_train_batch_size=8, prompts=info.prompts,
        batch_sampler=LengthGroupedBatchSampler, multi_dataset_batch_sampler=info.multi_dataset_batch_sampler(),
        report_to=[], use_cpu=True, seed=0,
    )
    losses = {n: CoSENTLoss(model) if l == "cosent" else MultipleNegativesRankingLoss(model)
              for n, l in info.losses.items()}
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=datasets, loss=losses)
    steps = []
    for batch in trainer.get_train_dataloader():
        column = "sentence1" if batch["dataset_name"] == "sts" else "anchor"
        steps.append([batch["dataset_name"], batch[column + "_input_ids"].sum(dim=1).tolist()])
    rank = int(os.environ["RANK"])
    with open(os.path.join(sys.argv[3], f"rank{rank}.json"), "w") as f:  # one file per rank: printed lines interleave
        json.dump({"rank": rank, "world": args.world_size, "steps": steps}, f)
    """
)


def write_jsonl(path: Path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def test_ddp_steps_are_homogeneous_across_ranks(tiny_bert_dir, tmp_path):
    words = ["apple", "river", "stone", "cloud", "green", "music", "table", "light", "paper", "glass"]
    texts = [f"{a} {b} {c}" for a in words for b in words for c in words[:3]]
    configs = [
        {
            "name": "pairs",
            "path": write_jsonl(tmp_path / "p.jsonl", [{"anchor": t, "positive": t[::-1]} for t in texts[:96]]),
            "kind": "pairs",
        },
        {
            "name": "sts",
            "path": write_jsonl(
                tmp_path / "s.jsonl",
                [{"sentence1": t, "sentence2": t.upper(), "score": i % 5} for i, t in enumerate(texts[96:160])],
            ),
            "kind": "sts",
            "instruction": "Retrieve semantically similar text",
        },
    ]
    script = tmp_path / "ddp_script.py"
    script.write_text(SCRIPT, encoding="utf-8")
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", str(script)]
    completed = subprocess.run(
        [*command, str(tiny_bert_dir), json.dumps(configs), str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    results = [json.loads((tmp_path / f"rank{rank}.json").read_text(encoding="utf-8")) for rank in (0, 1)]
    by_rank = {r["rank"]: r for r in results}
    assert sorted(by_rank) == [0, 1] and by_rank[0]["world"] == 2
    steps_0, steps_1 = by_rank[0]["steps"], by_rank[1]["steps"]
    assert len(steps_0) == len(steps_1) == (96 // 8 + 64 // 8) // 2
    assert [s[0] for s in steps_0] == [s[0] for s in steps_1]  # the same dataset at every step
    assert {s[0] for s in steps_0} == {"pairs", "sts"}
    assert any(a[1] != b[1] for a, b in zip(steps_0, steps_1, strict=True))  # but different rows
