"""Write evaluation records as mteb's own result files, so mteb and leaderboard tooling read them.

Layout (mteb's ``ResultCache``, written with mteb's own classes)::

    <output>/mteb/results/<model name, "/" as "__">/<revision>/<TaskName>.json
    <output>/mteb/results/<model name>/<revision>/model_meta.json

Read back with mteb::

    import mteb
    results = mteb.ResultCache("<output>/mteb").load_results(include_remote=False)
    # or, the older entry point: MTEB_CACHE=<output>/mteb, mteb.load_results(download_latest=False)

Matryoshka dimensions below the full one are written as their own model, ``<name>-dim<D>`` (mteb's
files have no notion of an embedding dimension).
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

MTEB_FOLDER = "mteb"
REVISION = "embedforge"  # the revision folder: a trained model folder has no Hub revision


def write_mteb_results(
    records: Sequence[Mapping[str, Any]],
    output_dir: str | os.PathLike[str],
    model_name: str,
    *,
    revision: str = REVISION,
    n_parameters: int | None = None,
) -> list[Path]:
    """Write ``records`` (``results.json`` rows) as mteb ``TaskResult`` files under ``output_dir``.

    Returns:
        The task result files written.
    """
    import mteb
    from mteb.models.model_meta import ModelMeta
    from mteb.results import TaskResult

    from embedforge.evaluation.mteb_tasks import eval_langs

    cache = mteb.ResultCache(cache_path=Path(output_dir))
    full = max((int(r["dim"]) for r in records), default=0)
    by_dim: dict[int, list[Mapping[str, Any]]] = defaultdict(list)
    for record in records:
        by_dim[int(record["dim"])].append(record)
    written = []
    for dim, rows in sorted(by_dim.items(), reverse=True):
        name = model_name if dim == full else f"{model_name}-dim{dim}"
        meta = ModelMeta.create_empty(
            {"name": _hub_style(name), "revision": revision, "embed_dim": dim, "n_parameters": n_parameters}
        )
        for record in rows:
            if record["main_score"] is None:  # undefined (NaN) scores are null in results.json; mteb has no null
                continue
            scores = {
                **record["metrics"],
                "main_score": float(record["main_score"]),
                "hf_subset": record.get("subset") or "default",
                "languages": eval_langs(tuple(record.get("languages") or ("eng",))),
            }
            result = TaskResult(
                dataset_revision=_dataset_revision(record),
                task_name=record["task"],
                mteb_version=mteb.__version__,
                scores={record.get("split", "test"): [scores]},
                evaluation_time=float(record.get("seconds", 0.0)),
                kg_co2_emissions=None,
            )
            cache.save_to_cache(result, meta)
            written.append(cache.get_task_result_path(record["task"], meta))
    return written


def _hub_style(name: str) -> str:
    """mteb model names look like Hub ids (``org/name``); a bare name gets the ``embedforge/`` organisation."""
    name = name.strip().replace(" ", "_")
    return name if "/" in name else f"embedforge/{name}"


def _dataset_revision(record: Mapping[str, Any]) -> str:
    if record.get("same_data_as_mteb"):
        from embedforge.evaluation.mteb_tasks import _registered_class

        registered = _registered_class(record["task"])
        if registered is not None:
            return str(registered.metadata.dataset.get("revision", "local"))
    return "local"
