"""``evaluate``: score a model on task directories with MTEB's evaluators, every text encoded once.

Flow: read and validate every task directory first (bad data fails before any encoding, and
nothing is written) -> load the model -> for each task, for each Matryoshka dimension (largest
first), let MTEB's task score our :class:`~embedforge.evaluation.encoder.CachedEncoder` -> write
``results.json``, ``leaderboard.md`` and ``scores.png`` into the output folder in one step.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embedforge.errors import ConfigError, DataError
from embedforge.evaluation.spec import TaskSpec, find_task_dirs, load_task_spec
from embedforge.evaluation.types import get_task_type

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    from embedforge.models.presets import cache_root

    return cache_root() / "embeddings"


@dataclass
class LoadedTask:
    """A validated task directory with its data in MTEB's layout."""

    spec: TaskSpec
    data: Any


@dataclass
class EvalReport:
    """What :func:`evaluate` returns: the records of ``results.json`` and where things were written."""

    model: str
    records: list[dict[str, Any]]
    output_dir: Path | None = None
    texts_encoded: int = 0
    texts_requested: int = 0
    seconds: float = 0.0
    reference_rows: list[dict[str, Any]] = field(default_factory=list)

    def main_scores(self, dim: int | None = None) -> dict[str, float]:
        """``{task: main_score}`` at ``dim`` (default: the largest dimension evaluated)."""
        dim = dim or max(r["dim"] for r in self.records)
        return {r["task"]: r["main_score"] for r in self.records if r["dim"] == dim}


def load_tasks(
    tasks: Sequence[str | os.PathLike[str]] = (), task_root: str | os.PathLike[str] | None = None
) -> list[LoadedTask]:
    """Read and validate task directories (``tasks`` plus every task under ``task_root``)."""
    directories = [Path(t) for t in tasks]
    if task_root is not None:
        directories += find_task_dirs(task_root)
    if not directories:
        raise ConfigError("no tasks given: pass --tasks DIR [DIR ...] and/or --task-root DIR")
    loaded, seen = [], {}
    for directory in directories:
        spec = load_task_spec(directory)
        if spec.name in seen:
            if seen[spec.name] == directory.resolve():
                continue
            raise DataError(f"task name {spec.name!r} is also used by {seen[spec.name]}", spec.task_json)
        seen[spec.name] = directory.resolve()
        task_type = get_task_type(spec)
        logger.info("loading task %s (%s) from %s", spec.name, spec.type, directory)
        loaded.append(LoadedTask(spec=spec, data=task_type.load(spec)))
    return loaded


def load_task(directory: str | os.PathLike[str]) -> LoadedTask:
    """Read and validate one task directory."""
    return load_tasks([directory])[0]


def evaluate(
    model: str | os.PathLike[str] | SentenceTransformer,
    tasks: Sequence[str | os.PathLike[str] | LoadedTask] = (),
    output_dir: str | os.PathLike[str] | None = None,
    *,
    task_root: str | os.PathLike[str] | None = None,
    dims: Sequence[int] | None = None,
    batch_size: int = 32,
    max_seq_length: int | None = None,
    device: str | None = None,
    cache_dir: str | os.PathLike[str] | None = "default",
    reference: str | os.PathLike[str] | None = None,
    reference_model: str | None = None,
    model_name: str | None = None,
    show_progress_bar: bool = False,
) -> EvalReport:
    """Evaluate ``model`` on task directories the way the MTEB leaderboard does.

    Args:
        model: a SentenceTransformer, a local model folder, or an offline preset name.
        tasks: task directories (or already loaded tasks).
        output_dir: where ``results.json``, ``leaderboard.md`` and ``scores.png`` go (``None``: write nothing).
        task_root: also evaluate every task directory under this folder.
        dims: Matryoshka dimensions (default: the model's full dimension); one encoding pass serves all.
        batch_size: encoding batch size.
        max_seq_length: override the model's maximum tokens per text.
        device: torch device for the model.
        cache_dir: on-disk embedding cache folder; ``"default"`` = ``~/.cache/embedforge/embeddings``,
            ``None`` = memory only.
        reference: published scores to compare with (``scores_long.json``, a ``results.json``, or ``{task: score}``).
        reference_model: which model's scores in ``reference`` (default: matched by name).
        model_name: label used in tables (default: the folder or preset name).
        show_progress_bar: show encoding progress bars.

    Returns:
        The records written to ``results.json`` (``task``, ``type``, ``dim``, ``main_score``,
        ``metrics``, plus ``split``, ``subset``, ``main_metric``, ``seconds``).
    """
    from embedforge.evaluation.cache import EmbeddingCache, model_fingerprint
    from embedforge.evaluation.encoder import CachedEncoder
    from embedforge.evaluation.mteb_tasks import build_mteb_task
    from embedforge.models import load_model

    started = time.perf_counter()
    if batch_size <= 0:
        raise ConfigError(f"--batch-size must be a positive integer, got {batch_size}")
    if output_dir is not None:
        check_output_dir(output_dir)  # before any work: a bad --output must not cost the whole evaluation
    loaded = [t for t in tasks if isinstance(t, LoadedTask)]
    paths = [t for t in tasks if not isinstance(t, LoadedTask)]
    if paths or task_root is not None:
        loaded += load_tasks(paths, task_root)
    if not loaded:
        raise ConfigError("no tasks given: pass --tasks DIR [DIR ...] and/or --task-root DIR")
    reference_scores = None
    if reference is not None:
        from embedforge.evaluation.reference import load_reference

        reference_scores = load_reference(reference, reference_model, model_name or _label(model))

    if isinstance(model, str | os.PathLike):
        label = model_name or _label(model)
        st_model = load_model(model, device=device, max_seq_length=max_seq_length)
    else:
        label = model_name or "model"
        st_model = model
        if max_seq_length is not None:
            st_model.max_seq_length = max_seq_length
    full_dim = st_model.get_embedding_dimension()
    dims = sorted({int(d) for d in (dims or [full_dim])}, reverse=True)
    for dim in dims:
        if not 0 < dim <= full_dim:
            raise ConfigError(f"--dims: {dim} is not between 1 and the model's dimension {full_dim}")

    cache_path = default_cache_dir() if cache_dir == "default" else cache_dir
    cache = EmbeddingCache(model_fingerprint(st_model), cache_path)
    encoder = CachedEncoder(st_model, cache, batch_size=batch_size, show_progress_bar=show_progress_bar)
    records: list[dict[str, Any]] = []
    import datasets

    bars_were_on = not datasets.are_progress_bars_disabled()
    if not show_progress_bar:  # mteb's dataset.map calls would draw a bar per task and dimension
        datasets.disable_progress_bars()
    try:
        for task in loaded:
            records += _evaluate_task(task, encoder, dims, full_dim, batch_size, build_mteb_task)
    finally:
        cache.close()
        if bars_were_on:
            datasets.enable_progress_bars()

    report = EvalReport(
        model=label,
        records=records,
        texts_encoded=encoder.texts_encoded,
        texts_requested=encoder.texts_requested,
        seconds=time.perf_counter() - started,
    )
    if reference_scores is not None:
        from embedforge.evaluation.reference import compare

        report.reference_rows = compare(records, reference_scores, dim=dims[0])
    logger.info(
        "evaluated %d task(s) x %d dim(s) in %.1f s; %d texts encoded for %d requested",
        len(loaded),
        len(dims),
        report.seconds,
        report.texts_encoded,
        report.texts_requested,
    )
    if output_dir is not None:
        from embedforge.evaluation.report import write_outputs
        from embedforge.utils.io import reporting_full_disk

        with reporting_full_disk(output_dir):
            report.output_dir = write_outputs(report, output_dir)
    return report


def check_output_dir(output_dir: str | os.PathLike[str]) -> None:
    """The output folder must be a folder (or creatable as one) that this user can write.

    Raises:
        ConfigError: naming the path and what is wrong with it.
    """
    path = Path(output_dir)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--output {path}: is a file; name a folder (results.json, leaderboard.md, scores.png)")
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError(f"--output {path}: {probe} is a file, so the folder cannot be created there")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"--output {path}: {probe} is not writable by this user")


def _evaluate_task(task: LoadedTask, encoder, dims, full_dim, batch_size, build_mteb_task) -> list[dict[str, Any]]:
    spec = task.spec
    records = []
    for dim in dims:
        # A fresh MTEB task per dimension: tasks keep their random state (clustering's bootstrap samples,
        # seeded in the task's __init__) and advance it with each evaluate, so a reused task would score
        # the second dimension on other samples than a separate MTEB run at that dimension does.
        mteb_task = build_mteb_task(spec, get_task_type(spec), task.data)
        main_metric = mteb_task.metadata.main_score
        encoder.dim = None if dim == full_dim else dim
        started = time.perf_counter()
        scores = mteb_task.evaluate(
            encoder,
            split=spec.eval_split,
            subsets_to_run=mteb_task.hf_subsets,
            encode_kwargs={"batch_size": batch_size, "show_progress_bar": False},
        )
        ((subset, metrics),) = scores.items()
        metrics = _plain(metrics)  # NaN/inf -> None: results.json stays valid JSON
        if main_metric not in metrics:
            raise DataError(
                f"main_score {main_metric!r} is not a metric of {spec.type} tasks; available: "
                f"{sorted(k for k, v in metrics.items() if isinstance(v, float))}",
                spec.task_json,
            )
        seconds = time.perf_counter() - started
        score = metrics[main_metric]
        if score is None:
            logger.warning(
                "%s [dim %d]: %s is undefined (NaN: e.g. every embedding or every gold score the same); "
                "written as null and left out of the means",
                spec.name,
                dim,
                main_metric,
            )
        else:
            logger.info("%s [dim %d]: %s = %.4f (%.1f s)", spec.name, dim, main_metric, score, seconds)
        records.append(
            {
                "task": spec.name,
                "type": spec.type,
                "dim": dim,
                "main_score": score,
                "metrics": metrics,
                "split": spec.eval_split,
                "subset": subset,
                "main_metric": main_metric,
                "languages": list(spec.languages),
                "same_data_as_mteb": spec.same_data_as_mteb,
                "seconds": round(seconds, 3),
            }
        )
    return records


def _plain(value: Any) -> Any:
    """JSON-ready metrics: numpy scalars as floats, MTEB bookkeeping keys dropped."""
    if isinstance(value, dict):
        return {
            str(k): _plain(v)
            for k, v in value.items()
            if k not in ("hf_subset", "languages", "mteb_version", "main_score")
        }
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return _finite(float(value))
    if hasattr(value, "item"):
        return _finite(float(value.item())) if getattr(value, "ndim", 0) == 0 else _plain(value.tolist())
    return str(value)


def _finite(value: float) -> float | None:
    """JSON has no NaN or infinity: an undefined metric is ``None`` (null)."""
    return value if math.isfinite(value) else None


def _label(model: Any) -> str:
    text = str(model).rstrip("/")
    return Path(text).name if os.sep in text else text
