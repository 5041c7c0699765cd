"""Published reference scores and the per-task comparison with ours.

Accepted files:

* ``scores_long.json`` from ``shared/data/reference_scores`` (records with ``model``, ``task``,
  ``split``, ``subset``, ``main_score``), e.g. the published MTEB results;
* an embedforge ``results.json`` (compare two runs);
* a plain ``{"task": score}`` object.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from embedforge.errors import DataError, did_you_mean
from embedforge.utils.io import read_json

# (task, split or None, subset or None) -> score
Scores = dict[tuple[str, str | None, str | None], float]


def load_reference(path: str | os.PathLike[str], model: str | None = None, our_model: str | None = None) -> Scores:
    """Read reference scores; with several models in the file, pick ``model`` (or the one named like ours)."""
    path = Path(path)
    raw = read_json(path)
    if isinstance(raw, dict):
        return {(str(task), None, None): float(score) for task, score in raw.items()}
    if not isinstance(raw, list) or not all(isinstance(r, dict) for r in raw):
        raise DataError("reference must be a list of score records or a {task: score} object", path)
    if raw and "model" in raw[0]:
        models = sorted({r["model"] for r in raw})
        if model is None:
            matches = [m for m in models if our_model and (m == our_model or m.endswith(f"__{our_model}"))]
            if len(models) == 1:
                model = models[0]
            elif len(matches) == 1:
                model = matches[0]
            else:
                raise DataError(
                    f"reference holds several models; choose one with --reference-model: {', '.join(models)}", path
                )
        if model not in models:
            raise DataError(f"reference has no model {model!r}.{did_you_mean(model, models)}", path)
        raw = [r for r in raw if r["model"] == model]
    scores: Scores = {}
    dims: dict[tuple[str, str | None, str | None], int] = {}
    for record in raw:
        if "task" not in record or "main_score" not in record:
            raise DataError("every reference record needs 'task' and 'main_score'", path)
        key = (record["task"], record.get("split"), record.get("subset"))
        dim = int(record.get("dim", 0))  # an embedforge results.json: keep the largest dimension per task
        if key in scores and dim < dims[key]:
            continue
        dims[key] = dim
        scores[key] = float(record["main_score"])
    return scores


def lookup(scores: Scores, task: str, split: str, subset: str) -> float | None:
    """The reference score for a task (matching split and subset where the reference has them)."""
    for key in ((task, split, subset), (task, split, None), (task, None, None)):
        if key in scores:
            return scores[key]
    candidates = [
        v for (t, s, sub), v in scores.items() if t == task and s in (split, None) and sub in (None, "default")
    ]
    return candidates[0] if subset == "default" and len(candidates) == 1 else None


def compare(records: list[dict[str, Any]], scores: Scores, dim: int) -> list[dict[str, Any]]:
    """Rows ``{task, split, ours, reference, delta}`` for the records at ``dim``."""
    rows = []
    for record in records:
        if record["dim"] != dim:
            continue
        ref = lookup(scores, record["task"], record["split"], record["subset"])
        rows.append(
            {
                "task": record["task"],
                "type": record["type"],
                "split": record["split"],
                "main_metric": record["main_metric"],
                "same_data_as_mteb": record.get("same_data_as_mteb", False),
                "ours": record["main_score"],
                "reference": ref,
                "delta": None if ref is None or record["main_score"] is None else record["main_score"] - ref,
            }
        )
    return rows
