"""Trainer callbacks: start-of-run summary, samples/s, per-dataset loss curves, evaluation during training.

* :class:`LossCurvesCallback` averages the loss of each dataset (and of each loss class, for stages that
  mix objectives) over every logging interval; the averages go into the Trainer's ``log_history`` (so
  ``trainer_state.json`` keeps them across ``--resume``) and into TensorBoard as ``loss/<dataset>`` and
  ``loss_by_objective/<LossClass>``. :func:`plot_loss_curve` draws them, smoothed, with the learning rate.
* :class:`EvaluationCallback` scores the model every ``eval_steps`` (and at the end) on task directories
  with :func:`embedforge.evaluation.evaluate` (MTEB's evaluators, every text encoded once per evaluation),
  logs ``eval/<task>@<dim>`` and ``eval/mean@<dim>`` the same way, and keeps the best model in ``best/``.
  :func:`plot_eval_curve` draws the scores.

TensorBoard scalars go through the Trainer's own ``TensorBoardCallback`` writer (one event file per run):
call :meth:`connect` with the trainer after building it.
"""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transformers import TrainerCallback

from embedforge.errors import ConfigError

if TYPE_CHECKING:
    from embedforge.evaluation.runner import LoadedTask

logger = logging.getLogger(__name__)

LOSS_PREFIX = "loss/"
OBJECTIVE_PREFIX = "loss_by_objective/"
EVAL_PREFIX = "eval/"


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


class _ScalarLogger(TrainerCallback):
    """Base: writes scalars to the Trainer's TensorBoard writer and into ``log_history``."""

    _writer_source: Callable[[], Any] | None = None

    def connect(self, trainer: Any) -> None:
        """Use ``trainer``'s TensorBoard writer (when ``report_to`` includes tensorboard)."""
        from transformers.integrations import TensorBoardCallback

        for callback in trainer.callback_handler.callbacks:
            if isinstance(callback, TensorBoardCallback):
                self._writer_source = lambda callback=callback: callback.tb_writer
                return

    def _write(self, state: Any, scalars: dict[str, float], *, new_entry: bool) -> None:
        if not scalars:
            return
        if new_entry or not state.log_history or state.log_history[-1].get("step") != state.global_step:
            state.log_history.append({"step": state.global_step})
        state.log_history[-1].update(scalars)
        writer = self._writer_source() if self._writer_source is not None else None
        if writer is not None:
            for tag, value in scalars.items():
                writer.add_scalar(tag, value, state.global_step)
            writer.flush()


class LossCurvesCallback(_ScalarLogger):
    """Per-dataset (and per-objective) training loss, averaged over each logging interval.

    The trainer calls :meth:`observe` with every training micro-batch's dataset name and loss
    (``EmbedforgeTrainer.loss_observers``). On a multi-process run each rank averages its own batches;
    rank 0's are logged.

    Args:
        objectives: dataset name -> the name of its loss (e.g. ``InfoNCELoss``); datasets sharing a loss
            class are averaged together under ``loss_by_objective/<name>`` when there is more than one class.
    """

    def __init__(self, objectives: dict[str, str] | None = None):
        self.objectives = dict(objectives or {})
        self._sums: dict[str, float] = defaultdict(float)
        self._counts: dict[str, int] = defaultdict(int)

    def observe(self, dataset_name: Any, loss: Any) -> None:
        name = dataset_name[0] if isinstance(dataset_name, list | tuple) else dataset_name
        value = float(loss.detach().float().item()) if hasattr(loss, "detach") else float(loss)
        if name is None or not math.isfinite(value):
            return
        self._sums[str(name)] += value
        self._counts[str(name)] += 1

    def on_log(self, args, state, control, logs: dict[str, Any] | None = None, **kwargs):
        if logs is None or "loss" not in logs or not self._counts:
            return
        scalars = {f"{LOSS_PREFIX}{name}": round(self._sums[name] / n, 5) for name, n in sorted(self._counts.items())}
        if len(set(self.objectives.values())) > 1:
            by_objective: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
            for name, n in self._counts.items():
                objective = self.objectives.get(name, "other")
                by_objective[objective][0] += self._sums[name]
                by_objective[objective][1] += n
            scalars.update({f"{OBJECTIVE_PREFIX}{k}": round(s / n, 5) for k, (s, n) in sorted(by_objective.items())})
        self._sums.clear()
        self._counts.clear()
        if state.is_world_process_zero:
            self._write(state, scalars, new_entry=False)


def parse_metric(metric: str, task_names: Sequence[str], dims: Sequence[int]) -> tuple[str, int]:
    """``"mean"``, ``"mean@128"``, ``"STSBenchmark"`` or ``"STSBenchmark@128"`` -> (task or mean, dim).

    Without ``@dim`` the largest evaluated dimension is meant.
    """
    name, _, dim_text = metric.partition("@")
    if name != "mean" and name not in task_names:
        from embedforge.errors import did_you_mean

        raise ConfigError(
            f"metric_for_best_model: {metric!r} names no evaluated task; use 'mean' or one of "
            f"{sorted(task_names)} (optionally with @DIM).{did_you_mean(name, ['mean', *task_names])}"
        )
    if not dim_text:
        return name, max(dims)
    if not dim_text.isdigit() or int(dim_text) not in dims:
        raise ConfigError(f"metric_for_best_model: {metric!r}: the dimension must be one of {sorted(dims)}")
    return name, int(dim_text)


class EvaluationCallback(_ScalarLogger):
    """Evaluate every ``eval_steps`` optimizer steps (and after the last), log the scores, keep the best model.

    Runs on the main process only (the model must be whole there: DDP yes, FSDP / DeepSpeed ZeRO-3 no).
    Scores are computed by :func:`embedforge.evaluation.evaluate` with an in-memory embedding cache (texts
    shared between tasks and dimensions are encoded once; weights change every step, so an on-disk cache
    would never hit). The model is evaluated at its inference ``max_seq_length`` and put back in training
    mode afterwards.

    Args:
        tasks: loaded task directories (:func:`embedforge.evaluation.load_tasks`).
        eval_steps: evaluate every this many optimizer steps.
        dims: Matryoshka dimensions (``None``: the model's full dimension).
        metric_for_best_model: ``mean`` (Mean(Task)), a task name, either with an optional ``@DIM``.
        best_dir: where the best model is saved (``None``: not saved; the best step is still reported).
        batch_size: encoding batch size.
        max_seq_length: tokens per text while evaluating (``None``: the model's current setting).
    """

    def __init__(
        self,
        tasks: Sequence[LoadedTask],
        *,
        eval_steps: int,
        dims: Sequence[int] | None = None,
        metric_for_best_model: str = "mean",
        best_dir: str | Path | None = None,
        batch_size: int = 32,
        max_seq_length: int | None = None,
    ):
        if eval_steps < 1:
            raise ConfigError(f"eval_steps: must be >= 1, got {eval_steps}")
        if not tasks:
            raise ConfigError("eval_tasks: evaluation during training needs at least one task directory")
        self.tasks = list(tasks)
        self.eval_steps = eval_steps
        self.dims = list(dims) if dims else None
        self.metric_for_best_model = metric_for_best_model
        self.best_dir = Path(best_dir) if best_dir is not None else None
        self.batch_size = batch_size
        self.max_seq_length = max_seq_length
        self.best: dict[str, Any] | None = None  # {"step", "metric", "value", "path"}
        self._last_evaluated = -1
        if self.dims is not None or "@" not in metric_for_best_model:  # check it now, before any training
            parse_metric(metric_for_best_model, self.task_names, self.dims or [0])

    @property
    def task_names(self) -> list[str]:
        return [task.spec.name for task in self.tasks]

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if model is not None and self.dims is None:
            self.dims = [model.get_embedding_dimension()]
            parse_metric(self.metric_for_best_model, self.task_names, self.dims)
        if self.best is None and self.best_dir is not None and (self.best_dir / "best.json").is_file():
            import json

            self.best = json.loads((self.best_dir / "best.json").read_text())  # resumed run: the best so far

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.eval_steps == 0:
            self.evaluate_now(state, model)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if self._last_evaluated != state.global_step:
            self.evaluate_now(state, model)
        if self.best is not None and state.is_world_process_zero:
            logger.info(
                "best %s = %.4f at step %d (%s)",
                self.best["metric"],
                self.best["value"],
                self.best["step"],
                self.best.get("path") or "not saved",
            )

    def evaluate_now(self, state: Any, model: Any) -> dict[str, float]:
        """Score ``model`` now, log ``eval/...`` scalars at ``state.global_step``; returns them."""
        self._last_evaluated = state.global_step
        if model is None or not state.is_world_process_zero:
            return {}
        from embedforge.evaluation import evaluate

        was_training, train_length = model.training, model.max_seq_length
        model.eval()
        try:
            report = evaluate(
                model,
                self.tasks,
                None,
                dims=self.dims,
                batch_size=self.batch_size,
                max_seq_length=self.max_seq_length,
                cache_dir=None,
                model_name=f"step {state.global_step}",
            )
            scalars = score_scalars(report.records)
            name, dim = parse_metric(self.metric_for_best_model, self.task_names, self.dims or [])
            value = scalars[f"{EVAL_PREFIX}{name}@{dim}"]
            improved = self.best is None or value > self.best["value"]
            if improved:
                self.best = {"step": state.global_step, "metric": f"{name}@{dim}", "value": value, "path": None}
                if self.best_dir is not None:
                    self._save_best(model)
        finally:
            model.max_seq_length = train_length
            if was_training:
                model.train()
        logger.info(
            "step %d: %s%s",
            state.global_step,
            ", ".join(f"{k[len(EVAL_PREFIX) :]}={v:.4f}" for k, v in scalars.items()),
            " (best so far)" if improved else "",
        )
        scalars[f"{EVAL_PREFIX}best_step"] = float(self.best["step"])
        self._write(state, scalars, new_entry=True)
        return scalars

    def _save_best(self, model: Any) -> None:
        from embedforge.models.lora import has_lora
        from embedforge.models.saving import save_model
        from embedforge.utils.io import atomic_write_json

        assert self.best is not None and self.best_dir is not None
        if has_lora(model):  # adapters are merged only when the stage ends; a copy would hold adapters alone
            logger.warning("best model not saved while LoRA adapters are attached (step %d)", self.best["step"])
            return
        save_model(model, self.best_dir)
        self.best["path"] = str(self.best_dir)
        atomic_write_json(self.best_dir / "best.json", self.best)


def score_scalars(records: Sequence[dict[str, Any]]) -> dict[str, float]:
    """``results.json`` records -> ``{"eval/<task>@<dim>": score, "eval/mean@<dim>": Mean(Task)}``."""
    scalars: dict[str, float] = {}
    by_dim: dict[int, list[float]] = defaultdict(list)
    for record in records:
        scalars[f"{EVAL_PREFIX}{record['task']}@{record['dim']}"] = round(float(record["main_score"]), 6)
        by_dim[record["dim"]].append(float(record["main_score"]))
    for dim, scores in sorted(by_dim.items(), reverse=True):
        scalars[f"{EVAL_PREFIX}mean@{dim}"] = round(sum(scores) / len(scores), 6)
    return scalars


def smooth(values: Sequence[float], weight: float = 0.6) -> list[float]:
    """TensorBoard's smoothing: a debiased exponential moving average (``weight`` in [0, 1))."""
    smoothed, last, debias = [], 0.0, 1.0
    for value in values:
        last = weight * last + (1 - weight) * value
        debias *= weight
        smoothed.append(last / (1 - debias))
    return smoothed


def _series(log_history: list[dict[str, Any]], prefix: str) -> dict[str, list[tuple[int, float]]]:
    series: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for entry in log_history:
        for key, value in entry.items():
            if key.startswith(prefix) and isinstance(value, int | float) and "step" in entry:
                series[key[len(prefix) :]].append((entry["step"], float(value)))
    return dict(series)


def plot_loss_curve(log_history: list[dict[str, Any]], path: str | Path, title: str = "training loss") -> bool:
    """Write ``loss.png``: loss per dataset (faint: raw, bold: smoothed), overall loss, learning rate.

    Reads the Trainer's ``log_history`` (with :class:`LossCurvesCallback`'s ``loss/<dataset>`` entries when
    present); False when there is no loss to plot.
    """
    overall = [(e["step"], e["loss"]) for e in log_history if "loss" in e and "step" in e]
    if not overall:
        return False
    per_dataset = _series(log_history, LOSS_PREFIX)
    lr = [(e["step"], e["learning_rate"]) for e in log_history if "learning_rate" in e and "step" in e]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    lines = {"all batches": overall, **per_dataset} if len(per_dataset) != 1 else {"loss": overall}
    for index, (name, points) in enumerate(lines.items()):
        steps, values = zip(*points, strict=True)
        color = "black" if index == 0 else colors[(index - 1) % len(colors)]
        ax.plot(steps, values, color=color, alpha=0.25, linewidth=1)
        ax.plot(steps, smooth(values), color=color, linewidth=2 if index else 1.5, label=name)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (smoothed; faint: raw)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if lr:
        axis = ax.twinx()
        steps, values = zip(*lr, strict=True)
        (line,) = axis.plot(steps, values, color="grey", linestyle="--", linewidth=1, label="learning rate")
        axis.set_ylabel("learning rate")
        axis.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
        handles, labels = [*handles, line], [*labels, "learning rate"]
    ax.legend(handles, labels, fontsize=7, loc="upper right")
    _save(fig, path)
    return True


def plot_eval_curve(log_history: list[dict[str, Any]], path: str | Path, title: str = "evaluation") -> bool:
    """Write ``eval.png``: each ``eval/<task>@<dim>`` score against the step; False when nothing was evaluated."""
    series = {k: v for k, v in _series(log_history, EVAL_PREFIX).items() if k != "best_step"}
    if not series:
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, points in sorted(series.items(), key=lambda item: (not item[0].startswith("mean@"), item[0])):
        steps, values = zip(*points, strict=True)
        ax.plot(steps, values, marker="o", markersize=3, linewidth=2 if name.startswith("mean@") else 1, label=name)
    ax.set_xlabel("step")
    ax.set_ylabel("main score")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best", ncol=2 if len(series) > 8 else 1)
    _save(fig, path)
    return True


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
