"""LM-Cocktail weights: ingredients weighted by how well each does on a few examples of the target task.

Formula, for ingredient models ``M_1 ... M_n``, their loss ``L_i`` on a handful of target-task examples and a
temperature ``T``::

    w_i = exp(-L_i / T) / Σ_j exp(-L_j / T)        θ_soup = Σ_i w_i θ_i

For embedding models the loss is InfoNCE with temperature 0.05 over the examples' (query, positive, hard
negatives), all passages of a batch as candidates — what LM-Cocktail's reference code computes (its default
``T = 5``). The weights then go to :func:`~embedforge.merging.weighted.weighted_average`. LM-Cocktail can also
mix the result with a fine-tuned model at a fixed ratio; that is a ``weighted`` soup of the two.

References:
    - Xiao et al., LM-Cocktail: Resilient Tuning of Language Models via Model Merging, Findings of ACL 2024
      (https://arxiv.org/abs/2311.13534); KaLM-Embedding-V2 §3.3 builds its soup with it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from embedforge.errors import ConfigError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

DEFAULT_TEMPERATURE = 5.0  # LM-Cocktail's reference code
LOSS_TEMPERATURE = 0.05  # InfoNCE temperature of the example loss (LM-Cocktail's embedder loss)


def cocktail_weights(losses: Sequence[float], temperature: float = DEFAULT_TEMPERATURE) -> list[float]:
    """``softmax(-L / T)``: lower example loss, larger weight.

    Raises:
        ConfigError: a non-positive temperature or a non-finite loss.
    """
    if not temperature > 0:
        raise ConfigError(f"temperature: must be > 0, got {temperature}")
    for index, loss in enumerate(losses):
        if not math.isfinite(loss):
            raise ConfigError(f"model {index}: its example loss is {loss}; it cannot be weighted")
    if not losses:
        raise ConfigError("cocktail weights need at least one model")
    scaled = [-loss / temperature for loss in losses]
    top = max(scaled)
    exps = [math.exp(s - top) for s in scaled]  # shifted by the maximum: same softmax, no overflow
    total = sum(exps)
    return [e / total for e in exps]


def load_examples(configs: Sequence[Any], seed: int = 0) -> list[tuple[Any, dict[str, str]]]:
    """``(rows, prompts)`` per dataset config, read and converted as for training (InfoNCE rows).

    Keep the examples few (``max_rows``): LM-Cocktail uses about five per task.
    """
    import dataclasses

    from embedforge.data.config import DatasetConfig
    from embedforge.data.loading import load_training_datasets

    configs = [c if isinstance(c, DatasetConfig) else DatasetConfig.from_dict(c, "examples") for c in configs]
    configs = [dataclasses.replace(c, loss="infonce") for c in configs]
    datasets, info = load_training_datasets(configs, seed=seed)
    return [(datasets[c.name], info.prompts[c.name]) for c in configs]


def example_loss(
    model: SentenceTransformer,
    examples: Any,
    prompts: dict[str, str] | None = None,
    *,
    batch_size: int = 16,
    temperature: float = LOSS_TEMPERATURE,
) -> float:
    """Mean InfoNCE loss of ``model`` on ``examples`` (a ``Dataset`` with anchor, positive[, negative_*] columns).

    Args:
        model: the model to score.
        examples: the rows; the columns are embedded in order (anchor, positive, negatives), as in training.
        prompts: ``{column: prompt}`` (the training prompts of the examples' dataset).
        batch_size: rows per batch (the in-batch candidates are the batch's positives and negatives).
        temperature: the InfoNCE temperature.
    """
    import torch

    from embedforge.losses.infonce import InfoNCELoss

    prompts = prompts or {}
    columns = [c for c in examples.column_names if c in ("anchor", "positive") or c.startswith("negative_")]
    loss_fn = InfoNCELoss(model, temperature=temperature)
    total, rows = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(examples), batch_size):
            batch = examples[start : start + batch_size]
            embeddings = [
                model.encode(
                    batch[column],
                    prompt=prompts.get(column, ""),
                    batch_size=batch_size,
                    convert_to_tensor=True,
                    normalize_embeddings=True,
                )
                for column in columns
            ]
            count = len(batch[columns[0]])
            total += float(loss_fn.compute_loss_from_embeddings(embeddings)) * count
            rows += count
    return total / rows
