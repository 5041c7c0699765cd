"""Trainer callbacks: start-of-run summary, samples/s in the logs, a loss-curve PNG."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

logger = logging.getLogger(__name__)


class ThroughputCallback(TrainerCallback):
    """Adds ``samples_per_second`` (anchors per second, all ranks) to every log line and the progress bar."""

    def __init__(self, global_batch: int):
        self.global_batch = global_batch
        self._last_time: float | None = None
        self._last_step = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self._last_time, self._last_step = time.perf_counter(), state.global_step

    def on_log(self, args, state, control, logs: dict[str, Any] | None = None, **kwargs):
        if logs is None or self._last_time is None or "loss" not in logs:
            return
        now = time.perf_counter()
        steps = state.global_step - self._last_step
        if steps > 0 and now > self._last_time:
            logs["samples_per_second"] = round(steps * self.global_batch / (now - self._last_time), 2)
        self._last_time, self._last_step = now, state.global_step


class RunSummaryCallback(TrainerCallback):
    """Logs what a reader needs to trust the run, once the Trainer knows the number of steps."""

    def __init__(self, summary: dict[str, Any], datasets_table: str):
        self.summary = summary
        self.datasets_table = datasets_table

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            facts = {**self.summary, "steps": state.max_steps, "start_step": state.global_step}
            logger.info("training: %s", ", ".join(f"{k}={v}" for k, v in facts.items()))
            logger.info("datasets and sampling weights:\n%s", self.datasets_table)


def plot_loss_curve(log_history: list[dict[str, Any]], path: str | Path, title: str = "training loss") -> bool:
    """Write a loss-vs-step PNG from the Trainer's ``log_history``; False when there is nothing to plot."""
    points = [(entry["step"], entry["loss"]) for entry in log_history if "loss" in entry and "step" in entry]
    if not points:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps, losses = zip(*points, strict=True)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, losses, marker="o", markersize=2, linewidth=1)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True
