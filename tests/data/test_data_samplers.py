"""Batch samplers: homogeneous, weighted, duplicate-free, length-grouped, deterministic, DDP-sharded."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from datasets import Dataset
from torch.utils.data import ConcatDataset

from embedforge.data.sampler import (
    LengthGroupedBatchSampler,
    WeightedMultiDatasetBatchSampler,
    padding_fraction,
)
from embedforge.data.weights import apportion, sampling_probabilities
from embedforge.errors import DataError


def make_dataset(name: str, size: int, seed: int = 0, vocabulary: int | None = None) -> Dataset:
    """Pairs whose lengths vary widely (log-uniform, 5-400 chars); optionally drawn from a small vocabulary."""
    rng = np.random.default_rng(seed)
    pool = vocabulary or size
    lengths = np.exp(rng.uniform(np.log(5), np.log(400), size=2 * pool)).astype(int)
    texts = [f"{name}-{i}-" + "x" * int(n) for i, n in enumerate(lengths)]
    anchors = [texts[i] for i in rng.integers(0, pool, size=size)] if vocabulary else texts[:size]
    positives = [texts[pool + i] for i in rng.integers(0, pool, size=size)] if vocabulary else texts[size : 2 * size]
    dataset = Dataset.from_dict({"anchor": anchors, "positive": positives})
    dataset.info.dataset_name = name
    return dataset


def row_texts(dataset: Dataset, index: int) -> list[str]:
    row = dataset[index]
    return [row["anchor"], row["positive"]]


def column_lengths(dataset: Dataset) -> np.ndarray:
    """(rows, 2): characters of the anchor and of the positive (each column is padded on its own)."""
    return np.array([[len(a), len(p)] for a, p in zip(dataset["anchor"], dataset["positive"], strict=True)])


def multi(datasets, batch_size=8, seed=0, **options):
    concat = ConcatDataset(datasets)
    samplers = [LengthGroupedBatchSampler(d, batch_size, True, seed=seed) for d in datasets]
    return concat, WeightedMultiDatasetBatchSampler(concat, samplers, seed=seed, **options)


def test_full_duplicate_free_batches_cover_rows_once_per_pass():
    dataset = make_dataset("a", 203)
    sampler = LengthGroupedBatchSampler(dataset, 16, False, seed=1)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 203 // 16
    assert all(len(b) == 16 for b in batches)
    flat = [i for b in batches for i in b]
    assert len(flat) == len(set(flat))  # no row twice in one epoch


def test_no_duplicate_texts_inside_a_batch():
    # 400 rows drawn from 60 anchors and 60 positives: random batches of 16 would repeat texts often
    dataset = make_dataset("dup", 400, vocabulary=60)
    sampler = LengthGroupedBatchSampler(dataset, 16, True, seed=0)
    batches = sampler.batches(epoch=0)
    assert len(batches) >= 15
    for batch in batches:
        texts = [t for i in batch for t in row_texts(dataset, i)]
        assert len(texts) == len(set(texts))
    # the same data without the check does repeat texts: the property above is not an accident
    unchecked = LengthGroupedBatchSampler(dataset, 16, True, seed=0, no_duplicates=False).batches(epoch=0)
    assert any(len({t for i in b for t in row_texts(dataset, i)}) < 32 for b in unchecked)


def test_length_grouping_cuts_padding():
    dataset = make_dataset("len", 2048)
    lengths = column_lengths(dataset)
    grouped = LengthGroupedBatchSampler(dataset, 32, True, seed=0).batches(epoch=0)
    random = LengthGroupedBatchSampler(dataset, 32, True, seed=0, length_grouping=False).batches(epoch=0)
    grouped_padding, random_padding = padding_fraction(lengths, grouped), padding_fraction(lengths, random)
    assert grouped_padding < 0.5 * random_padding, (grouped_padding, random_padding)
    # still random across batches: batch order is not sorted by length
    batch_means = [lengths[b].sum(axis=1).mean() for b in grouped]
    assert batch_means != sorted(batch_means) and batch_means != sorted(batch_means, reverse=True)


def test_deterministic_given_seed_and_epoch():
    dataset = make_dataset("det", 300)
    first = LengthGroupedBatchSampler(dataset, 16, True, seed=7)
    second = LengthGroupedBatchSampler(dataset, 16, True, seed=7)
    assert list(first) == list(second)
    first.set_epoch(1)
    assert list(first) != list(second)
    second.set_epoch(1)
    assert list(first) == list(second)
    assert list(LengthGroupedBatchSampler(dataset, 16, True, seed=8)) != list(second)


def test_batch_size_larger_than_dataset_names_it():
    with pytest.raises(DataError, match="training dataset 'small' has 10 rows, fewer than the batch size 16"):
        LengthGroupedBatchSampler(make_dataset("small", 10), 16, True)


def test_multi_dataset_batches_are_homogeneous():
    datasets = [make_dataset("a", 100), make_dataset("b", 300, seed=1), make_dataset("c", 50, seed=2)]
    concat, sampler = multi(datasets)
    bounds = np.cumsum([0] + [len(d) for d in datasets])
    batches = list(sampler)
    assert len(batches) == len(sampler) == 100 // 8 + 300 // 8 + 50 // 8
    for batch in batches:
        owners = {int(np.searchsorted(bounds, i, side="right")) - 1 for i in batch}
        assert len(owners) == 1
        texts = [t for i in batch for t in (concat[i]["anchor"], concat[i]["positive"])]
        assert len(texts) == len(set(texts))


def test_sampling_probabilities_size_temperature_and_overrides():
    assert sampling_probabilities([100, 300]) == pytest.approx([0.25, 0.75])
    # T = 2: p ∝ sqrt(n) = 10, 20, 40
    assert sampling_probabilities([100, 400, 1600], temperature=2) == pytest.approx([1 / 7, 2 / 7, 4 / 7])
    assert sampling_probabilities([1, 1, 1], overrides=[None, None, 2 / 3]) == pytest.approx([0.25, 0.25, 0.5])
    assert apportion([0.5, 0.3, 0.2], 7) == [4, 2, 1] and sum(apportion([1 / 3] * 3, 10)) == 10


def test_empirical_dataset_frequencies_match_weights():
    datasets = [make_dataset("a", 64), make_dataset("b", 640, seed=1), make_dataset("c", 160, seed=2)]
    concat, sampler = multi(datasets, weights={"a": 0.5, "b": 0.3, "c": 0.2}, num_batches=1000)
    bounds = np.cumsum([0] + [len(d) for d in datasets])
    counts = Counter(int(np.searchsorted(bounds, b[0], side="right")) - 1 for b in sampler)
    frequencies = [counts[i] / 1000 for i in range(3)]
    assert frequencies == pytest.approx([0.5, 0.3, 0.2], abs=0.01)
    # 'a' has 8 batches per pass, so 500 batches of it mean ~62 passes: up-sampled, every batch still full
    assert counts[0] == 500


def test_temperature_frequencies_over_epochs():
    datasets = [make_dataset("a", 80), make_dataset("b", 320, seed=1), make_dataset("c", 1280, seed=2)]
    concat, sampler = multi(datasets, temperature=2.0)
    bounds = np.cumsum([0] + [len(d) for d in datasets])
    counts: Counter = Counter()
    for epoch in range(3):
        sampler.set_epoch(epoch)
        counts.update(int(np.searchsorted(bounds, b[0], side="right")) - 1 for b in sampler)
    total = sum(counts.values())
    assert [counts[i] / total for i in range(3)] == pytest.approx([1 / 7, 2 / 7, 4 / 7], abs=0.01)


def test_multi_sampler_deterministic_and_epoch_dependent():
    datasets = [make_dataset("a", 100), make_dataset("b", 200, seed=1)]
    _, first = multi(datasets, seed=3)
    _, second = multi(datasets, seed=3)
    assert list(first) == list(second)
    second.set_epoch(1)
    assert list(first) != list(second)


def test_multi_sampler_names_a_too_small_dataset():
    concat = ConcatDataset([make_dataset("big", 100), make_dataset("tiny", 5, seed=1)])
    samplers = [LengthGroupedBatchSampler(make_dataset("big", 100), 8, True)]
    from sentence_transformers.base.sampler import DefaultBatchSampler

    samplers.append(DefaultBatchSampler(range(5), batch_size=8, drop_last=True))
    with pytest.raises(DataError, match="'tiny' has 5 rows, fewer than the batch size 8"):
        WeightedMultiDatasetBatchSampler(concat, samplers, names=["big", "tiny"])


def test_ddp_shards_get_the_same_dataset_at_each_step():
    """accelerate's BatchSamplerShard (what the trainer uses under DDP) over our sampler, 2 ranks."""
    from accelerate.data_loader import BatchSamplerShard

    datasets = [make_dataset("a", 96), make_dataset("b", 200, seed=1), make_dataset("c", 64, seed=2)]
    _, sampler = multi(datasets, world_size=2)
    bounds = np.cumsum([0] + [len(d) for d in datasets])
    ranks = [list(BatchSamplerShard(sampler, num_processes=2, process_index=r, even_batches=False)) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == len(sampler) // 2 > 0
    for batch_0, batch_1 in zip(*ranks, strict=True):
        owner_0 = {int(np.searchsorted(bounds, i, side="right")) - 1 for i in batch_0}
        owner_1 = {int(np.searchsorted(bounds, i, side="right")) - 1 for i in batch_1}
        assert owner_0 == owner_1 and len(owner_0) == 1  # one dataset per step across ranks
        assert not set(batch_0) & set(batch_1)


def test_duplicate_check_only_where_in_batch_negatives_need_it():
    # 40 rows over 12 distinct anchors and 12 positives: 8 duplicate-free rows per batch is impossible
    dataset = make_dataset("few", 40, vocabulary=12)
    other = make_dataset("many", 80, seed=1)
    concat = ConcatDataset([dataset, other])

    def sampler(flags):
        children = [LengthGroupedBatchSampler(d, 16, True) for d in (dataset, other)]
        return WeightedMultiDatasetBatchSampler(concat, children, names=["few", "many"], no_duplicates=flags)

    with pytest.raises(DataError, match="'few' yields no full batch of 16 rows without repeating a text"):
        list(sampler({"few": True}))
    batches = list(sampler({"few": False, "many": True}))
    assert len(batches) == 40 // 16 + 80 // 16 and all(len(b) == 16 for b in batches)


def _debian_pairs(rows: int) -> Dataset:
    import gzip
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "data" / "train" / "debian" / "pairs.jsonl.gz"
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        records = [json.loads(line) for _, line in zip(range(rows), handle, strict=False)]
    dataset = Dataset.from_dict(
        {"anchor": [r["summary"] for r in records], "positive": [r["description"] for r in records]}
    )
    dataset.info.dataset_name = "debian"
    return dataset


def test_token_lengths_are_the_tokenizers_counts_cut_at_max_length():
    from transformers import AutoTokenizer

    from embedforge.data.sampler import token_lengths
    from embedforge.models import resolve_model_path

    tokenizer = AutoTokenizer.from_pretrained(str(resolve_model_path("all-MiniLM-L6-v2")))
    texts = ["a", "hello world", "word " * 300, ""]
    full = [len(ids) for ids in tokenizer(texts)["input_ids"]]
    assert token_lengths(tokenizer, texts).tolist() == full
    assert token_lengths(tokenizer, texts, max_length=64, chunk=3).tolist() == [min(n, 64) for n in full]


def test_grouping_by_tokens_pads_less_than_by_characters_on_real_pairs():
    """Debian package summaries + descriptions (the bundled training data), MiniLM's tokenizer, 128 tokens."""
    from transformers import AutoTokenizer

    from embedforge.data.sampler import token_lengths
    from embedforge.models import resolve_model_path

    tokenizer = AutoTokenizer.from_pretrained(str(resolve_model_path("all-MiniLM-L6-v2")))
    dataset = _debian_pairs(2048)
    tokens = np.stack([token_lengths(tokenizer, dataset[c], 128) for c in ("anchor", "positive")], axis=1)

    def padded(batches):  # tokens the model sees, each column padded on its own
        return sum(len(b) * int(tokens[b].max(axis=0).sum()) for b in batches)

    by_chars = LengthGroupedBatchSampler(dataset, 32, True, seed=0, group_batches=64)
    by_tokens = LengthGroupedBatchSampler(dataset, 32, True, seed=0, group_batches=64)
    by_tokens.set_token_lengths(tokenizer, 128)
    random = LengthGroupedBatchSampler(dataset, 32, True, seed=0, length_grouping=False)
    chars_cost, tokens_cost = padded(by_chars.batches(0)), padded(by_tokens.batches(0))
    random_cost = padded(random.batches(0))
    assert tokens_cost < 0.92 * chars_cost, (tokens_cost, chars_cost)
    assert random_cost > 1.4 * tokens_cost, (random_cost, tokens_cost)
    # every row still used once per pass
    assert sorted(i for b in by_tokens.batches(0) for i in b) == sorted(i for b in by_chars.batches(0) for i in b)


def test_trainer_gives_samplers_the_models_tokenizer(tiny_model, tmp_path):
    from sentence_transformers import SentenceTransformerTrainingArguments

    from embedforge.data.sampler import batch_sampler
    from embedforge.training.trainer import EmbedforgeTrainer

    dataset = make_dataset("tok", 64)
    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path), batch_sampler=batch_sampler(), report_to=[], use_cpu=True
    )
    trainer = EmbedforgeTrainer(model=tiny_model, args=args, train_dataset=dataset)
    sampler = trainer.get_batch_sampler(dataset, batch_size=8, drop_last=True)
    sampler.batches(0)
    expected = np.minimum(
        [len(ids) for ids in tiny_model.tokenizer(list(dataset["anchor"]))["input_ids"]], tiny_model.max_seq_length
    )
    assert sampler._lengths[:, 0].tolist() == expected.tolist()
