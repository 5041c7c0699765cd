"""Batch samplers: homogeneous, weighted, duplicate-free, length-grouped batches (sentence-transformers classes).

Two samplers plug into ``SentenceTransformerTrainingArguments``:

* ``batch_sampler=`` :class:`LengthGroupedBatchSampler` (one per dataset): random batches with **no duplicate
  text** inside a batch (across all text columns; a duplicate is a false in-batch negative; datasets trained
  without in-batch negatives skip the check, see ``no_duplicates``) whose rows have **similar lengths**,
  which cuts padding (FIELD-NOTES: ~40% of CPU training compute is padding with random batches). Rows are
  shuffled, cut into groups of ``group_batches`` batches, sorted by length inside each group (token counts cut
  at the model's maximum length when the trainer provides the tokenizer, else characters; see
  ``_length_sorted`` for the multi-column order) and dealt into batches; the batches are then shuffled, so the
  order stays random *across* batches.
* ``multi_dataset_batch_sampler=`` :class:`WeightedMultiDatasetBatchSampler`: each batch comes from one
  dataset (**homogeneous**: one loss, one instruction, in-batch negatives of the same task), datasets chosen with
  probabilities proportional to size, temperature-scaled (``p_i ∝ n_i^(1/T)``) or given per dataset.

Why our own: sentence-transformers' ``NoDuplicatesBatchSampler`` does not group by length, and its
``ProportionalBatchSampler`` / ``RoundRobinBatchSampler`` have no weights and, under DDP, give different ranks
batches of different datasets at the same step (see below).

Determinism: every random choice comes from ``numpy.random.default_rng([seed, epoch, ...])``; the trainer's
shared ``torch.Generator`` is not used, so the batches depend only on the data, the seed and the epoch (the
trainer calls ``set_epoch``; resuming from a checkpoint replays the same epoch and skips its first batches).

DDP: accelerate wraps the sampler in ``BatchSamplerShard``: every rank runs the same sampler and keeps batches
``rank, rank + world, ...``. So the sampler must give all ranks the same sequence (it does: no rank-dependent
randomness) and, for a step to be homogeneous across ranks (needed for gathered in-batch negatives and for one
loss per step), the dataset is chosen once per group of ``world_size`` consecutive batches. Every batch is full
(``batch_size`` rows), because ``BatchSamplerShard`` skips a group whose last batch is short. The rows a pass
leaves over (fewer than a batch) are not lost for good: every epoch reshuffles.

Usage::

    from embedforge.data import LengthGroupedBatchSampler, multi_dataset_batch_sampler
    args = SentenceTransformerTrainingArguments(
        ..., batch_sampler=LengthGroupedBatchSampler,
        multi_dataset_batch_sampler=multi_dataset_batch_sampler(weights=info.weights, names=info.names),
    )
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from itertools import accumulate
from typing import TYPE_CHECKING, Any

import numpy as np
from sentence_transformers.base.sampler import DefaultBatchSampler, MultiDatasetDefaultBatchSampler

from embedforge.data.weights import apportion, sampling_probabilities
from embedforge.errors import ConfigError, DataError

if TYPE_CHECKING:
    import torch
    from datasets import Dataset
    from torch.utils.data import BatchSampler, ConcatDataset

logger = logging.getLogger(__name__)

_NOT_TEXT_COLUMNS = {"dataset_name", "score", "scores", "label", "labels"}
_MAX_PASSES = 4  # passes over a dataset in one epoch to fill the promised number of batches


class LengthGroupedBatchSampler(DefaultBatchSampler):
    """Random, duplicate-free, length-grouped batches over one dataset (always full batches).

    Args:
        dataset: the dataset (its string columns are the texts).
        batch_size: rows per batch; more than the dataset has is an error naming the dataset.
        drop_last: accepted for the trainer's interface; batches are always full (see the module docstring).
        valid_label_columns: label columns (never compared or measured).
        generator: accepted for the trainer's interface; unused (randomness comes from ``seed`` and the epoch).
        seed: base seed.
        group_batches: batches per length group; larger cuts more padding, smaller keeps batches more random.
            ``1`` (or ``length_grouping=False``) turns grouping off.
        no_duplicates: keep every text at most once per batch.
        length_grouping: group rows of similar length (total characters of the row's texts).
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        drop_last: bool = True,
        valid_label_columns: list[str] | None = None,
        generator: torch.Generator | None = None,
        seed: int = 0,
        *,
        group_batches: int = 32,
        no_duplicates: bool = True,
        length_grouping: bool = True,
    ) -> None:
        super().__init__(
            dataset,
            batch_size=batch_size,
            drop_last=drop_last,
            valid_label_columns=valid_label_columns,
            generator=generator,
            seed=seed,
        )
        if group_batches < 1:
            raise ConfigError(f"group_batches must be >= 1, got {group_batches}")
        self.dataset = dataset
        self.name = dataset_name(dataset)
        self.group_batches = group_batches if length_grouping else 1
        self.no_duplicates = no_duplicates
        self._lengths: np.ndarray | None = None
        self._row_values: list[tuple[int, ...]] | None = None
        self._measure: Callable[[list[str]], np.ndarray] | None = None  # None: characters
        if len(dataset) < batch_size:
            raise DataError(
                f"training dataset {self.name!r} has {len(dataset)} rows, fewer than the batch size {batch_size}",
                hint="lower the batch size, or add rows to (or drop) this dataset",
            )

    # ---------------------------------------------------------------------------------- public
    def set_no_duplicates(self, flag: bool) -> None:
        """Turn the duplicate-text check on or off (before iterating)."""
        if flag != self.no_duplicates:
            self.no_duplicates = flag
            self._lengths = self._row_values = None

    def set_token_lengths(self, tokenizer: Any, max_length: int | None) -> None:
        """Group by token counts (truncated at ``max_length``) instead of characters (before iterating).

        What a column costs is its longest *token* sequence, cut at the model's maximum length: characters
        misjudge code-like text, and every text past the cut costs the same, so the cut lets the sort order the
        other columns of those rows. On the bundled Debian pairs and SNLI triplets (MiniLM, 128 tokens) this
        pads ~15-20% fewer tokens than grouping by characters. The trainer sets it (see
        ``EmbedforgeTrainer.get_batch_sampler``); one tokenizer pass over the texts, once per run.
        """
        self._measure = functools.partial(token_lengths, tokenizer, max_length=max_length)
        self._lengths = self._row_values = None

    def set_length_function(self, measure: Callable[[list[str]], Sequence[int]]) -> None:
        """Group by ``measure(texts)`` (token counts, already cut at the maximum length) instead of characters.

        The trainer passes its token cache's counts (``PretokenizedCollator.token_counts``), so the texts are
        tokenized once for both the lengths and the batches.
        """
        self._measure = lambda texts: np.asarray(measure(texts), dtype=np.int64)
        self._lengths = self._row_values = None

    def __len__(self) -> int:
        return len(self.dataset) // self.batch_size

    def __iter__(self) -> Iterator[list[int]]:
        produced = 0
        for pass_index in range(_MAX_PASSES):
            for batch in self.batches(self.epoch, pass_index):
                yield batch
                produced += 1
                if produced == len(self):
                    return
        logger.warning(
            "dataset %r: only %d of %d duplicate-free batches could be formed", self.name, produced, len(self)
        )

    def batches(self, epoch: int, pass_index: int = 0, stream: int = 0) -> list[list[int]]:
        """One pass over the dataset: full, duplicate-free batches of row indices, in random order.

        Args:
            epoch: the epoch (part of the seed).
            pass_index: a further pass in the same epoch (when a multi-dataset sampler needs more batches).
            stream: distinguishes datasets that would otherwise share a seed (the dataset's index).
        """
        self._prepare()
        assert self._lengths is not None
        rng = np.random.default_rng([self.seed or 0, epoch, pass_index, stream])
        order = rng.permutation(len(self.dataset))
        group = self.batch_size * self.group_batches
        if self.group_batches > 1:
            order = np.concatenate(
                [
                    _length_sorted(chunk, self._lengths, self.batch_size)
                    for chunk in np.split(order, range(group, len(order), group))
                ]
            )
        batches = self._fill(order.tolist())
        return [batches[k] for k in rng.permutation(len(batches))]

    # --------------------------------------------------------------------------------- internals
    def _prepare(self) -> None:
        if self._lengths is not None:
            return
        import pandas as pd
        import pyarrow.compute as pc

        table = self.dataset.with_format("arrow")  # no transforms, respects select()/shuffle() indices
        skip = _NOT_TEXT_COLUMNS | set(self.valid_label_columns or [])
        columns = [
            name
            for name, feature in self.dataset.features.items()
            if name not in skip and getattr(feature, "dtype", None) in ("string", "large_string")
        ]
        lengths = np.zeros((len(self.dataset), max(len(columns), 1)), dtype=np.int64)  # (rows, text columns)
        hashes = []
        for index, column in enumerate(columns):
            values = table[column]
            texts = values.to_pylist() if self._measure is not None or self.no_duplicates else None
            if self._measure is not None:
                lengths[:, index] = self._measure([text or "" for text in texts])
            else:
                lengths[:, index] = np.nan_to_num(
                    pc.utf8_length(values).to_numpy(zero_copy_only=False).astype(float)
                ).astype(np.int64)
            if self.no_duplicates:
                # pandas' hash_array: vectorized, keyed (the same in every process, unlike hash())
                objects = np.asarray(texts, dtype=object)
                hashes.append(pd.util.hash_array(objects, categorize=False).astype(np.int64))
        self._lengths = lengths
        self._row_values = list(zip(*(h.tolist() for h in hashes), strict=True)) if hashes else None

    def _fill(self, order: list[int]) -> list[list[int]]:
        """Deal rows (in ``order``) into full batches; a row whose text is already in the batch waits for the next."""
        size = self.batch_size
        if self._row_values is None:
            return [order[i : i + size] for i in range(0, len(order) - size + 1, size)]
        values = self._row_values
        batches: list[list[int]] = []
        waiting: list[int] = []  # rows deferred because of a duplicate, oldest first
        position = 0
        while True:
            batch: list[int] = []
            seen: set[int] = set()
            still_waiting = []
            for index in waiting:  # deferred rows first: they came earlier in the (length-sorted) order
                row = values[index]
                if len(batch) < size and seen.isdisjoint(row):
                    batch.append(index)
                    seen.update(row)
                else:
                    still_waiting.append(index)
            while len(batch) < size and position < len(order):
                index = order[position]
                position += 1
                row = values[index]
                if seen.isdisjoint(row):
                    batch.append(index)
                    seen.update(row)
                else:
                    still_waiting.append(index)
            waiting = still_waiting
            if len(batch) < size:
                break  # fewer than a batch left (or only duplicates of each other): next epoch reshuffles
            batches.append(batch)
        return batches


class WeightedMultiDatasetBatchSampler(MultiDatasetDefaultBatchSampler):
    """Homogeneous batches from several datasets, datasets drawn by weight (see the module docstring).

    The epoch has ``num_batches`` batches (default: as many full batches as the datasets hold together,
    ``sum_i floor(n_i / batch_size)``), rounded down to a multiple of the world size. Dataset ``i`` gets
    ``round(p_i * groups)`` groups of ``world_size`` batches (largest remainder, so the counts add up), in a
    random order; a dataset that runs out starts a new shuffled pass (up-sampling), one that is not finished is
    continued next epoch from a fresh shuffle (down-sampling).

    Args:
        dataset: the ``ConcatDataset`` the trainer builds from the ``DatasetDict``.
        batch_samplers: one batch sampler per dataset (ideally :class:`LengthGroupedBatchSampler`).
        generator: accepted for the trainer's interface; unused.
        seed: base seed.
        weights: explicit weights, a list aligned with the datasets or a mapping name -> weight (needs ``names``);
            missing/``None`` entries use the size/temperature rule. See :func:`sampling_probabilities`.
        temperature: ``T`` in ``p_i ∝ n_i^(1/T)``; 1 = proportional to size, large = uniform.
        names: dataset names (in ``DatasetDict`` order), for messages and weight mappings.
        num_batches: batches per epoch (before rounding to the world size).
        world_size: number of DDP processes; ``None`` reads it from ``torch.distributed`` / ``WORLD_SIZE``.
        no_duplicates: per dataset (list or name mapping), whether its :class:`LengthGroupedBatchSampler` keeps
            texts unique within a batch. Only losses with in-batch negatives need it (a repeated text there is a
            false negative); :meth:`TrainingDataInfo.multi_dataset_batch_sampler` passes each dataset's
            ``in_batch_negatives``, so small label sets (few distinct texts) still fill their batches.
    """

    def __init__(
        self,
        dataset: ConcatDataset,
        batch_samplers: list[BatchSampler],
        generator: torch.Generator | None = None,
        seed: int = 0,
        *,
        weights: Sequence[float | None] | Mapping[str, float | None] | None = None,
        temperature: float = 1.0,
        names: Sequence[str] | None = None,
        num_batches: int | None = None,
        world_size: int | None = None,
        no_duplicates: Sequence[bool] | Mapping[str, bool] | None = None,
    ) -> None:
        super().__init__(dataset, batch_samplers=batch_samplers, generator=generator, seed=seed)
        sizes = [len(d) for d in dataset.datasets]
        self.names = list(names) if names is not None else [dataset_name(d) for d in dataset.datasets]
        if len(self.names) != len(sizes):
            raise ConfigError(f"{len(self.names)} dataset names for {len(sizes)} datasets")
        self.probabilities = sampling_probabilities(sizes, temperature, _align_weights(weights, self.names))
        for sampler, flag in zip(batch_samplers, _align_flags(no_duplicates, self.names), strict=True):
            if flag is not None and isinstance(sampler, LengthGroupedBatchSampler):
                sampler.set_no_duplicates(flag)
        self.world_size = world_size or _world_size()
        for name, size, sampler in zip(self.names, sizes, batch_samplers, strict=True):
            if size < sampler.batch_size:
                raise DataError(
                    f"training dataset {name!r} has {size} rows, fewer than the batch size {sampler.batch_size}",
                    hint="lower the batch size, or add rows to (or drop) this dataset",
                )
        full_batches = sum(s // b.batch_size for s, b in zip(sizes, batch_samplers, strict=True))
        total = num_batches if num_batches is not None else full_batches
        self.num_groups = max(1, total // self.world_size)
        self.group_counts = apportion(self.probabilities, self.num_groups)
        self._offsets = [0, *accumulate(sizes)]

    def __len__(self) -> int:
        return self.num_groups * self.world_size

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed or 0, self.epoch, 7919])
        plan = rng.permutation(np.repeat(np.arange(len(self.group_counts)), self.group_counts))
        streams = [self._stream(i) for i in range(len(self.batch_samplers))]
        for dataset_index in plan.tolist():
            offset = self._offsets[dataset_index]
            for _ in range(self.world_size):
                yield [offset + row for row in next(streams[dataset_index])]

    def _stream(self, index: int) -> Iterator[list[int]]:
        """Endless full batches of dataset ``index``: pass after pass, each freshly shuffled."""
        sampler = self.batch_samplers[index]
        pass_index = 0
        while True:
            if isinstance(sampler, LengthGroupedBatchSampler):
                batches = sampler.batches(self.epoch, pass_index, stream=index)
            else:  # any other sampler: its own epoch order, filtered to full batches
                batches = [b for b in sampler if len(b) == sampler.batch_size]
            if not batches:
                raise DataError(
                    f"training dataset {self.names[index]!r} yields no full batch of {sampler.batch_size} rows "
                    "without repeating a text inside the batch",
                    hint="lower the batch size, or turn off no_duplicates for this dataset",
                )
            yield from batches
            pass_index += 1


# ----------------------------------------------------------------------------------------- factories
def batch_sampler(
    *, group_batches: int = 32, no_duplicates: bool = True, length_grouping: bool = True
) -> Callable[..., LengthGroupedBatchSampler]:
    """A ``batch_sampler=`` value for the training arguments with non-default options."""
    return functools.partial(
        LengthGroupedBatchSampler,
        group_batches=group_batches,
        no_duplicates=no_duplicates,
        length_grouping=length_grouping,
    )


def multi_dataset_batch_sampler(
    *,
    weights: Sequence[float | None] | Mapping[str, float | None] | None = None,
    temperature: float = 1.0,
    names: Sequence[str] | None = None,
    num_batches: int | None = None,
    world_size: int | None = None,
    no_duplicates: Sequence[bool] | Mapping[str, bool] | None = None,
) -> Callable[..., WeightedMultiDatasetBatchSampler]:
    """A ``multi_dataset_batch_sampler=`` value: :class:`WeightedMultiDatasetBatchSampler` with these options."""
    return functools.partial(
        WeightedMultiDatasetBatchSampler,
        weights=weights,
        temperature=temperature,
        names=names,
        num_batches=num_batches,
        world_size=world_size,
        no_duplicates=no_duplicates,
    )


# ------------------------------------------------------------------------------------------- helpers
def dataset_name(dataset: Any) -> str:
    """The training dataset's name: set by :func:`load_training_datasets`, or the trainer's ``dataset_name``."""
    info = getattr(dataset, "info", None)
    if info is not None and getattr(info, "dataset_name", None):
        return str(info.dataset_name)
    try:
        return str(dataset[0].get("dataset_name", "<unnamed>"))
    except Exception:  # an empty or unusual dataset: the name is only for messages
        return "<unnamed>"


_SUPER_BATCHES = 4  # batches per bucket of the primary column, inside which the other columns are sorted


def _length_sorted(rows: np.ndarray, lengths: np.ndarray, batch_size: int) -> np.ndarray:
    """Order ``rows`` (one length group) so that consecutive ``batch_size`` slices pad little.

    Each text column is padded on its own, so a batch costs ``sum_c B * max(len_c)``. Sorting by one key cannot
    keep independent columns (an SNLI premise and its hypotheses) homogeneous at once, so: sort by the costliest
    column (longest on average), cut that order into buckets of ``_SUPER_BATCHES`` batches (close in that
    column), and inside each bucket sort by the other columns (their longest, then their total). On Debian pairs
    and SNLI triplets this pads ~5-10% fewer tokens than one sort by the row's longest column.
    """
    values = lengths[rows]  # (rows, columns)
    primary = int(np.argmax(values.mean(axis=0)))
    rows = rows[np.lexsort((-values.sum(axis=1), -values[:, primary]))]
    if values.shape[1] == 1:
        return rows
    others = np.delete(lengths[rows], primary, axis=1)  # (rows, columns - 1), in the primary order
    bucket = batch_size * _SUPER_BATCHES
    parts = []
    for start in range(0, len(rows), bucket):
        part = others[start : start + bucket]
        parts.append(rows[start : start + bucket][np.lexsort((-part.sum(axis=1), -part.max(axis=1)))])
    return np.concatenate(parts)


def token_lengths(tokenizer: Any, texts: list[str], max_length: int | None = None, chunk: int = 10_000) -> np.ndarray:
    """Token counts of ``texts`` (special tokens included), cut at ``max_length``: what padding sees."""
    counts = np.zeros(len(texts), dtype=np.int64)  # (texts,)
    for start in range(0, len(texts), chunk):
        encoded = tokenizer(
            texts[start : start + chunk],
            add_special_tokens=True,
            truncation=False,
            return_attention_mask=False,
            return_token_type_ids=False,
            verbose=False,  # no "longer than the maximum" warning: the cut below is the point
        )
        counts[start : start + chunk] = [len(ids) for ids in encoded["input_ids"]]
    return np.minimum(counts, max_length) if max_length else counts


def padding_fraction(lengths: np.ndarray, batches: Sequence[Sequence[int]]) -> float:
    """Share of the padded tokens that is padding, each column padded on its own.

    ``lengths`` is ``(rows,)`` or ``(rows, columns)``; a batch costs ``sum_c B * max(len_c)``.
    """
    lengths = lengths.reshape(len(lengths), -1)
    padded = used = 0
    for batch in batches:
        values = lengths[list(batch)]  # (B, columns)
        padded += len(batch) * int(values.max(axis=0).sum())
        used += int(values.sum())
    return (padded - used) / padded if padded else 0.0


def _align_weights(
    weights: Sequence[float | None] | Mapping[str, float | None] | None, names: list[str]
) -> list[float | None] | None:
    if weights is None:
        return None
    if isinstance(weights, Mapping):
        unknown = [key for key in weights if key not in names]
        if unknown:
            raise ConfigError(f"weights for unknown datasets {unknown}; datasets: {', '.join(names)}")
        return [weights.get(name) for name in names]
    return list(weights)


def _align_flags(flags: Sequence[bool] | Mapping[str, bool] | None, names: list[str]) -> list[bool | None]:
    if flags is None:
        return [None] * len(names)
    if isinstance(flags, Mapping):
        unknown = [key for key in flags if key not in names]
        if unknown:
            raise ConfigError(f"no_duplicates for unknown datasets {unknown}; datasets: {', '.join(names)}")
        return [flags.get(name) for name in names]
    if len(flags) != len(names):
        raise ConfigError(f"{len(flags)} no_duplicates flags for {len(names)} datasets")
    return list(flags)


def _world_size() -> int:
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_world_size()
    except ImportError:  # pragma: no cover - torch always present with sentence-transformers
        pass
    return int(os.environ.get("WORLD_SIZE", "1"))


__all__ = [
    "LengthGroupedBatchSampler",
    "WeightedMultiDatasetBatchSampler",
    "apportion",
    "batch_sampler",
    "dataset_name",
    "multi_dataset_batch_sampler",
    "padding_fraction",
    "sampling_probabilities",
]
