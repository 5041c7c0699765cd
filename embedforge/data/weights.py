"""Dataset sampling weights: size-proportional, temperature-scaled or explicit (no heavy imports)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from embedforge.errors import ConfigError


def sampling_probabilities(
    sizes: Sequence[int], temperature: float = 1.0, overrides: Sequence[float | None] | None = None
) -> list[float]:
    """Dataset sampling probabilities.

    ``p_i ∝ n_i^(1/T)``: ``T = 1`` samples in proportion to size (every row equally often), ``T > 1`` flattens
    toward uniform (up-samples small datasets), ``T -> inf`` is uniform. An explicit weight replaces the
    dataset's computed probability (so it is on the probability scale) before renormalizing: with three
    datasets of equal size and ``overrides=[None, None, 1/3]`` nothing changes; ``[None, None, 2/3]`` doubles the
    third one's share before renormalizing (to 1/2).

    Raises:
        ConfigError: for a temperature <= 0 or a weight <= 0.
    """
    if not temperature > 0:
        raise ConfigError(f"sampling temperature must be > 0, got {temperature}")
    raw = np.asarray(sizes, dtype=float) ** (1.0 / temperature)
    probabilities = raw / raw.sum()
    if overrides is not None:
        if len(overrides) != len(sizes):
            raise ConfigError(f"{len(overrides)} weights for {len(sizes)} datasets")
        for i, weight in enumerate(overrides):
            if weight is not None:
                if not weight > 0:
                    raise ConfigError(f"dataset weight must be > 0, got {weight}")
                probabilities[i] = weight
        probabilities = probabilities / probabilities.sum()
    return probabilities.tolist()


def apportion(probabilities: Sequence[float], total: int) -> list[int]:
    """Integer counts summing to ``total``, proportional to ``probabilities`` (largest remainder method)."""
    exact = np.asarray(probabilities, dtype=float) * total
    counts = np.floor(exact).astype(int)
    remainder = total - int(counts.sum())
    if remainder > 0:
        for i in np.argsort(-(exact - counts), kind="stable")[:remainder]:
            counts[i] += 1
    return counts.tolist()
