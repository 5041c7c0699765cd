"""``load_training_datasets``: dataset configs -> a ``DatasetDict`` of training rows + what the trainer needs.

For each :class:`~embedforge.data.config.DatasetConfig`: read the source (:mod:`.readers`), map its columns,
remove rows whose texts occur in evaluation data (:mod:`.decontaminate`, when evaluation task directories or an
index are given), convert it by kind (:mod:`.converters`), cap it at ``max_rows`` (a seeded random subset), and
record its loss, in-batch-negatives flag, prompts (:mod:`.instructions`) and sampling probability
(:func:`~embedforge.data.sampler.sampling_probabilities`). Randomness is seeded per dataset from the global seed
(or the dataset's own ``seed``) and the dataset's name, so adding a dataset does not change the others' rows.

Example::

    datasets, info = load_training_datasets(configs, seed=42, eval_dirs=["shared/data/eval"])
    args = SentenceTransformerTrainingArguments(
        ..., prompts=info.prompts, batch_sampler=LengthGroupedBatchSampler,
        multi_dataset_batch_sampler=info.multi_dataset_batch_sampler(),
    )
    trainer = SentenceTransformerTrainer(model, args, train_dataset=datasets, loss={n: ... for n in info.names})
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from embedforge.data.config import DatasetConfig, check_unique_names
from embedforge.data.converters import CLASS_COLUMN, REQUIRED_COLUMNS, Source, convert
from embedforge.data.decontaminate import EvalTextIndex, contaminated_rows
from embedforge.data.instructions import dataset_prompts
from embedforge.data.readers import LINE_COLUMN, detect_format, location_file, read_dataset
from embedforge.data.weights import sampling_probabilities
from embedforge.errors import DataError

if TYPE_CHECKING:
    from datasets import DatasetDict

logger = logging.getLogger(__name__)

# source columns that hold texts, per kind (decontamination looks at these only, not at ids/labels/metadata)
_CLASS_KINDS = ("classification", "clustering")  # rows carry class ids (converters.CLASS_COLUMN)
_TEXT_COLUMNS = {
    "pairs": ("anchor", "positive"),
    "triplets": ("anchor", "positive", "negative", "negatives"),
    "nli": ("premise", "hypothesis"),
    "sts": ("sentence1", "sentence2"),
    "classification": ("text",),
    "clustering": ("text",),
    "retrieval": ("query", "positives", "positive", "negatives", "negative"),
}


@dataclass
class DatasetInfo:
    """What was loaded for one training dataset."""

    name: str  # dataset name (DatasetDict key)
    kind: str  # source kind
    path: str  # source path
    format: str  # format read
    loss: str  # infonce | cosent
    in_batch_negatives: bool  # whether the loss should use other rows of the batch as negatives
    symmetric: bool  # instruction on every text column
    num_negatives: int  # hard-negative columns per row (0 for cosent)
    rows: int  # training rows
    source_rows: int  # rows read from the source
    columns: list[str]  # training columns, in order
    prompts: dict[str, str]  # column -> prompt
    weight: float  # sampling probability
    counts: dict[str, int] = field(default_factory=dict)  # skipped / dropped / filled / decontaminated counts

    @property
    def unique_texts_per_batch(self) -> bool:
        """Whether a batch must not repeat a text: with in-batch negatives, a repeated text is a false negative —
        unless the rows carry class ids (classification/clustering), with which the loss masks it anyway."""
        return self.in_batch_negatives and not (self.kind in _CLASS_KINDS and CLASS_COLUMN in self.columns)


@dataclass
class TrainingDataInfo:
    """Per-dataset info plus the trainer arguments derived from it."""

    datasets: dict[str, DatasetInfo]
    seed: int
    temperature: float

    def __getitem__(self, name: str) -> DatasetInfo:
        return self.datasets[name]

    @property
    def names(self) -> list[str]:
        """Dataset names, in ``DatasetDict`` order."""
        return list(self.datasets)

    @property
    def weights(self) -> dict[str, float]:
        """Sampling probability per dataset."""
        return {name: info.weight for name, info in self.datasets.items()}

    @property
    def prompts(self) -> dict[str, dict[str, str]]:
        """The trainer's ``prompts`` argument (every dataset present, ``{}`` without instruction)."""
        return {name: dict(info.prompts) for name, info in self.datasets.items()}

    @property
    def losses(self) -> dict[str, str]:
        """Loss family per dataset."""
        return {name: info.loss for name, info in self.datasets.items()}

    def multi_dataset_batch_sampler(self, **options: Any) -> Any:
        """A ``multi_dataset_batch_sampler=`` value: datasets drawn with :attr:`weights`, and texts kept unique
        within a batch exactly for the datasets trained with in-batch negatives and without class ids. ``options``
        go to :func:`~embedforge.data.sampler.multi_dataset_batch_sampler` (e.g. ``num_batches``, ``world_size``)."""
        from embedforge.data.sampler import multi_dataset_batch_sampler  # imports sentence-transformers (~10 s)

        options.setdefault("weights", [self.datasets[n].weight for n in self.names])
        options.setdefault("names", self.names)
        options.setdefault("no_duplicates", [self.datasets[n].unique_texts_per_batch for n in self.names])
        return multi_dataset_batch_sampler(**options)

    def summary(self) -> str:
        """A short table: one line per dataset."""
        lines = [
            f"{'dataset':<24} {'kind':<14} {'rows':>8} {'loss':<8} {'in-batch':<8} {'negs':>4} {'weight':>7} prompt"
        ]
        for info in self.datasets.values():
            prompt = next(iter(info.prompts.values()), "")
            prompt_text = (repr(prompt[:40]) + ("…" if len(prompt) > 40 else "")) if prompt else "-"
            if info.prompts:
                prompt_text += " (all columns)" if info.symmetric else " (anchor)"
            in_batch = "yes" if info.in_batch_negatives else "no"
            lines.append(
                f"{info.name:<24} {info.kind:<14} {info.rows:>8} {info.loss:<8} "
                f"{in_batch:<8} {info.num_negatives:>4} {info.weight:>7.3f} {prompt_text}"
            )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (for the resolved config / model card)."""
        return {
            "seed": self.seed,
            "temperature": self.temperature,
            "datasets": [asdict(i) for i in self.datasets.values()],
        }


def load_training_datasets(
    configs: Iterable[DatasetConfig | Mapping[str, Any]],
    seed: int = 0,
    *,
    temperature: float = 1.0,
    eval_dirs: Sequence[str | Path] | None = None,
    decontamination: EvalTextIndex | None = None,
    retrieval_documents: str = "none",
) -> tuple[DatasetDict, TrainingDataInfo]:
    """Load, decontaminate and convert training datasets.

    Args:
        configs: dataset configs (or their YAML mappings).
        seed: global seed (a dataset's own ``seed`` overrides it).
        temperature: dataset sampling temperature, ``p_i ∝ n_i^(1/T)`` (explicit ``weight`` s override).
        eval_dirs: evaluation task directories (or folders of them) to decontaminate against.
        decontamination: a prebuilt index instead of ``eval_dirs``.
        retrieval_documents: which retrieval documents of ``eval_dirs`` to index (see :mod:`.decontaminate`).

    Returns:
        ``(DatasetDict name -> Dataset, TrainingDataInfo)``.

    Raises:
        DataError / ConfigError: bad configs or data, naming the dataset, file and line.
    """
    from datasets import Dataset, DatasetDict

    configs = [
        c if isinstance(c, DatasetConfig) else DatasetConfig.from_dict(c, f"datasets[{i}]")
        for i, c in enumerate(configs)
    ]
    if not configs:
        raise DataError("no training datasets given")
    check_unique_names(configs)
    index = decontamination
    if index is None and eval_dirs:
        index = EvalTextIndex.from_task_dirs(eval_dirs, retrieval_documents=retrieval_documents)

    loaded: dict[str, Dataset] = {}
    infos: dict[str, DatasetInfo] = {}
    for config in configs:
        dataset, info = _load_one(config, seed, index)
        loaded[config.name] = dataset
        infos[config.name] = info
    probabilities = sampling_probabilities(
        [infos[c.name].rows for c in configs], temperature, [c.weight for c in configs]
    )
    for config, probability in zip(configs, probabilities, strict=True):
        infos[config.name].weight = probability
    info = TrainingDataInfo(infos, seed, temperature)
    logger.info("training data (seed %d, temperature %g):\n%s", seed, temperature, info.summary())
    return DatasetDict(loaded), info


def _load_one(config: DatasetConfig, global_seed: int, index: EvalTextIndex | None):
    from datasets import Dataset

    fmt = config.format or detect_format(config.path)
    raw = read_dataset(
        config.path,
        fmt,
        columns=config.columns,
        required=REQUIRED_COLUMNS[config.kind],
        split=config.split,
        line_numbers=True,
    )
    data = raw.to_dict()
    lines = data.pop(LINE_COLUMN)
    source = Source(
        location_file(config.path, fmt, config.split), data, lines, numbered_rows=fmt in ("parquet", "disk")
    )
    source_rows = len(source)
    counts: dict[str, int] = {}

    if index is not None and config.decontaminate:
        text_columns = [c for c in _TEXT_COLUMNS[config.kind] if c in source.columns]
        text_columns += [c for c in source.columns if c.startswith("negative_")]
        keep, items_removed = contaminated_rows(source.columns, text_columns, index)
        counts["decontaminated_rows"] = len(source) - len(keep)
        if items_removed:
            counts["decontaminated_list_items"] = items_removed
        if len(keep) < len(source):
            source = source.select(keep)

    seed = config.seed if config.seed is not None else global_seed
    rng = np.random.default_rng([seed, zlib.crc32(config.name.encode("utf-8"))])
    converted = convert(source, config, rng)
    counts.update(converted.counts)
    columns = converted.columns
    total = len(converted)
    if total == 0:
        raise DataError(
            f"dataset {config.name!r} has no training rows left (read {source_rows}; {_format_counts(counts)})",
            config.path,
        )
    if config.max_rows is not None and total > config.max_rows:
        keep = np.sort(rng.choice(total, size=config.max_rows, replace=False)).tolist()
        columns = {name: [values[i] for i in keep] for name, values in columns.items()}
        counts["capped_by_max_rows"] = total - config.max_rows
    dataset = Dataset.from_dict(columns)
    dataset.info.dataset_name = config.name
    if counts:
        logger.info("%s: %s", config.name, _format_counts(counts))
    info = DatasetInfo(
        name=config.name,
        kind=config.kind,
        path=str(config.path),
        format=fmt,
        loss=config.loss_name,
        in_batch_negatives=config.uses_in_batch_negatives,
        symmetric=config.is_symmetric,
        num_negatives=sum(1 for c in dataset.column_names if c.startswith("negative_")),
        rows=len(dataset),
        source_rows=source_rows,
        columns=list(dataset.column_names),
        prompts=dataset_prompts(config, dataset.column_names),
        weight=0.0,
        counts=dict(counts),
    )
    return dataset, info


def _format_counts(counts: Mapping[str, int]) -> str:
    return (
        ", ".join(f"{key.replace('_', ' ')}: {value}" for key, value in counts.items() if value) or "nothing skipped"
    )
