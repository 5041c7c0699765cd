"""Turn a task directory into an MTEB task object that mteb's own evaluator scores.

If the directory's ``name`` is an MTEB task of the same type, the task is a subclass of MTEB's own
class: same protocol (e.g. ``samples_per_label``, score ranges, ``ignore_identical_ids``), same
metadata and prompts; only the data comes from the directory. Otherwise it is a subclass of the
type's MTEB abstract task with metadata built from ``task.json``. Either way ``task.json``'s
``protocol`` overrides class attributes, and the data is set directly (no hub access).
"""

from __future__ import annotations

import logging
import warnings
from functools import cache
from typing import Any

from embedforge.errors import DataError
from embedforge.evaluation.spec import TaskSpec
from embedforge.evaluation.types import TaskType

logger = logging.getLogger(__name__)

# ISO 15924 script for ISO 639-3 codes whose main script is not Latin (MTEB wants "lang-Script")
_SCRIPTS = {
    "cmn": "Hans", "zho": "Hans", "yue": "Hant", "jpn": "Jpan", "kor": "Hang", "tha": "Thai", "ara": "Arab",
    "fas": "Arab", "urd": "Arab", "heb": "Hebr", "rus": "Cyrl", "ukr": "Cyrl", "bul": "Cyrl", "srp": "Cyrl",
    "hin": "Deva", "mar": "Deva", "nep": "Deva", "ben": "Beng", "tam": "Taml", "tel": "Telu", "kan": "Knda",
    "mal": "Mlym", "guj": "Gujr", "pan": "Guru", "ell": "Grek", "kat": "Geor", "hye": "Armn", "amh": "Ethi",
    "khm": "Khmr", "lao": "Laoo", "mya": "Mymr", "sin": "Sinh",
}  # fmt: skip


def eval_langs(languages: tuple[str, ...]) -> list[str]:
    """``("eng", "cmn")`` -> ``["eng-Latn", "cmn-Hans"]`` (codes that already name a script pass through)."""
    return [code if "-" in code else f"{code}-{_SCRIPTS.get(code, 'Latn')}" for code in languages]


@cache
def _registered_class(name: str) -> type | None:
    import mteb

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return type(mteb.get_task(name))
        except (KeyError, ValueError):
            return None


def build_mteb_task(spec: TaskSpec, task_type: TaskType, dataset: Any, *, plain: bool = False) -> Any:
    """An MTEB task instance for ``spec`` holding ``dataset``, restricted to ``spec.eval_split``.

    ``plain=True`` leaves out the type's :meth:`~embedforge.evaluation.types.TaskType.mteb_methods` (MTEB's
    code exactly as it ships: what benchmarks and tests compare us with).
    """
    from mteb.abstasks.task_metadata import TaskMetadata

    registered = _registered_class(spec.name)
    if registered is not None and registered.metadata.type != spec.type:
        logger.warning(
            "%s: MTEB's task of that name is a %s task, not %s; using a generic %s task",
            spec.task_json,
            registered.metadata.type,
            spec.type,
            spec.type,
        )
        registered = None
    protocol: dict[str, Any] = {}
    if registered is not None:
        base = registered
        metadata = registered.metadata
        if spec.main_score and spec.main_score != metadata.main_score:
            metadata = metadata.model_copy(update={"main_score": spec.main_score})
        if spec.eval_split not in metadata.eval_splits:
            metadata = metadata.model_copy(update={"eval_splits": [*metadata.eval_splits, spec.eval_split]})
    else:
        base = task_type.abstask_class()
        metadata = TaskMetadata(
            name=spec.name,
            description=spec.note or f"local {spec.type} task from {spec.directory}",
            reference=None,
            dataset={"path": str(spec.directory), "revision": "local"},
            type=spec.type,
            category="t2t",
            modalities=["text"],
            eval_splits=[spec.eval_split],
            eval_langs=eval_langs(spec.languages),
            main_score=spec.main_score or task_type.default_main_score,
            date=None,
            domains=None,
            task_subtypes=None,
            license=None,
            annotations_creators=None,
            dialect=None,
            sample_creation=None,
            bibtex_citation="",
        )
        protocol.update(task_type.protocol(spec, dataset))
    for key in spec.protocol:
        if key.startswith("_") or not hasattr(base, key) or callable(getattr(base, key)):
            raise DataError(
                f"protocol key {key!r} is not an attribute of MTEB's {base.__name__}",
                spec.task_json,
                hint="protocol overrides MTEB task attributes such as samples_per_label or ignore_identical_ids",
            )
    protocol.update(spec.protocol)
    if spec.type == "Classification":
        protocol.setdefault("train_split", spec.train_split)

    def load_data(self, *args: Any, **kwargs: Any) -> None:  # the data is already here
        self.data_loaded = True

    def dataset_transform(self, *args: Any, **kwargs: Any) -> None:  # our loaders emit MTEB's layout
        return None

    cls = type(
        f"Local{base.__name__}",
        (base,),
        {
            "metadata": metadata,
            "load_data": load_data,
            "dataset_transform": dataset_transform,
            **({} if plain else task_type.mteb_methods(base)),
            **protocol,
        },
    )
    task = cls()
    from mteb.abstasks.retrieval import AbsTaskRetrieval

    # retrieval-style data is always keyed by subset; other types only when the task is multilingual
    subset = spec.subset or (next(iter(task.hf_subsets)) if metadata.is_multilingual else "default")
    if metadata.is_multilingual and subset not in task.hf_subsets:
        raise DataError(f"subset {subset!r} is not one of {spec.name}'s subsets {task.hf_subsets}", spec.task_json)
    if issubclass(base, AbsTaskRetrieval) or metadata.is_multilingual:
        task.dataset = {subset: dataset}
    else:
        task.dataset = dataset
    task.hf_subsets = [subset]
    task.data_loaded = True
    task.filter_eval_splits([spec.eval_split])
    return task
