"""Helpers shared by the benchmark scripts: the plain sentence-transformers peer, resumable records, paired
statistics with an explicit noise rule, and generated sections of a markdown file.

Benchmarks are scripts (``python benchmarks/x.py``), so this module is imported as ``_common`` from the
benchmarks folder, which Python puts first on ``sys.path`` when it runs a script there.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from statistics import mean, stdev
from typing import Any


def train_mnrl_peer(
    base: str,
    data: Any,
    output: Path,
    *,
    steps: int,
    batch_size: int,
    max_seq_length: int,
    learning_rate: float,
    warmup_ratio: float,
    scheduler: str,
    weight_decay: float,
    seed: int,
    temperature: float = 0.05,
) -> tuple[float, str]:
    """A plain sentence-transformers script: ``SentenceTransformerTrainer`` + ``MultipleNegativesRankingLoss``.

    ``BatchSamplers.NO_DUPLICATES`` (what sentence-transformers recommends for MNRL) and its default
    proportional multi-dataset sampler; one MNRL (scale ``1 / temperature``) for every dataset, which reads its
    columns positionally as (anchor, positive, negatives...). Returns (the Trainer's training seconds, the
    saved model folder ``output/final``).
    """
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.base.sampler import BatchSamplers
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    from embedforge.models import resolve_model_path

    model = SentenceTransformer(str(resolve_model_path(base)))
    saved_length = model.max_seq_length
    model.max_seq_length = max_seq_length
    loss = MultipleNegativesRankingLoss(model, scale=1 / temperature)
    training_args = SentenceTransformerTrainingArguments(
        output_dir=str(output),
        per_device_train_batch_size=batch_size,
        learning_rate=learning_rate,
        warmup_steps=warmup_ratio,  # transformers 5: a float < 1 is a ratio of the steps
        lr_scheduler_type=scheduler,
        weight_decay=weight_decay,
        max_steps=steps,
        seed=seed,
        data_seed=seed,
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        save_strategy="no",
        logging_steps=25,
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
    )
    trainer = SentenceTransformerTrainer(model=model, args=training_args, train_dataset=data, loss=loss)
    seconds = trainer.train().metrics["train_runtime"]
    model.max_seq_length = saved_length  # inference keeps the base's length, as embedforge's saved models do
    model.save(str(output / "final"))
    return seconds, str(output / "final")


def load_record(path: Path, settings: Any) -> dict | None:
    """The record at ``path`` if it was written for exactly these ``settings`` (JSON-compared), else None."""
    if not path.is_file():
        return None
    record = json.loads(path.read_text(encoding="utf-8"))
    return record if record.get("settings") == json.loads(json.dumps(settings, default=str)) else None


@functools.cache
def code_version(repo: Path | None = None) -> str | None:
    """The checkout's commit (short hash), ``+dirty`` when tracked files differ from it; None outside a git checkout.

    ``--resume`` compares settings, not code: a record carries the code it was made with, so a table built from
    records of several sessions can say which commit each row was trained at. Asked once per process: the code a
    run imported is the code it ran, whatever is edited while it runs.
    """
    import subprocess

    repo = repo or Path(__file__).resolve().parents[1]
    try:
        git = ["git", "-C", str(repo)]
        commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=30)
        status = subprocess.run(
            [*git, "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if commit.returncode or status.returncode:
        return None
    return commit.stdout.strip() + ("+dirty" if status.stdout.strip() else "")


def save_record(path: Path, settings: Any, **fields: Any) -> dict:
    """Write ``{"settings": ..., **fields}`` atomically (last, so a present record means a finished step), with
    the ``code`` it was made with (:func:`code_version`) unless ``fields`` gives it."""
    from embedforge.utils.io import atomic_write_text

    fields.setdefault("code", code_version())
    record = json.loads(json.dumps({"settings": settings, **fields}, default=str))
    atomic_write_text(path, json.dumps(record, indent=1))
    return record


NOISE_RULE = (
    "a difference is called **real** only when, over at least 3 seeds, every per-seed paired difference has "
    "the same sign and the mean paired difference is larger than twice the standard deviation of the paired "
    "differences (|mean| > 2 × std, std with n − 1); with fewer than 3 seeds nothing is called. With 3 seeds this is "
    "a t-statistic above 3.5 (two-sided p < 0.08 with 2 degrees of freedom): a screen against seed noise, not a proof"
)


@dataclass
class Paired:
    """Per-seed paired differences ``ours - baseline`` and the verdict of :data:`NOISE_RULE`."""

    differences: list[float]

    @property
    def mean(self) -> float:
        return mean(self.differences)

    @property
    def std(self) -> float:
        return stdev(self.differences) if len(self.differences) > 1 else float("nan")

    @property
    def verdict(self) -> str:
        d = self.differences
        if len(d) < 3:
            return f"too few seeds ({len(d)})"
        same_sign = all(x > 0 for x in d) or all(x < 0 for x in d)
        if same_sign and abs(self.mean) > 2 * self.std:
            return "real gain" if self.mean > 0 else "real loss"
        return "within noise"


def mean_std(values: list[float]) -> str:
    """``"m ± s"`` (x100 already applied by the caller), or just ``m`` for one value."""
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{mean(values):.2f} ± {stdev(values):.2f}"


def replace_section(path: Path, key: str, text: str) -> None:
    """Replace (or append) the generated section ``key`` of a markdown file, leaving the rest as it is.

    A section sits between ``<!-- generated:key -->`` and ``<!-- /generated:key -->``.
    """
    from embedforge.utils.io import atomic_write_text

    start, end = f"<!-- generated:{key} -->", f"<!-- /generated:{key} -->"
    block = f"{start}\n{text.strip()}\n{end}"
    old = path.read_text(encoding="utf-8") if path.is_file() else ""
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if pattern.search(old):
        new = pattern.sub(lambda _: block, old)
    else:
        new = (old.rstrip() + "\n\n" if old.strip() else "") + block
    atomic_write_text(path, new.rstrip() + "\n")
