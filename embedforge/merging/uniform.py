"""Uniform model soup: the plain average of fine-tuned models' parameters.

Formula, for ``n`` ingredient models with parameters ``θ_1 ... θ_n``::

    θ_soup = (1/n) Σ_i θ_i

KaLM-Embedding-V2 (§3.3, §4.3) averages fine-tuned (and LoRA-tuned, merged) checkpoints with weight ``1/n``
each. This is :func:`~embedforge.merging.weighted.weighted_average` with equal weights.

References:
    - Wortsman et al., Model soups: averaging weights of multiple fine-tuned models improves accuracy without
      increasing inference time, ICML 2022 ("uniform soup").
    - Zhao et al., KaLM-Embedding-V2, 2025, §3.3 "Model Soup" (https://arxiv.org/abs/2506.20923).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor

from embedforge.errors import ConfigError
from embedforge.merging.weighted import weighted_average


def uniform_weights(count: int) -> list[float]:
    """``[1/n] * n``."""
    if count < 1:
        raise ConfigError("a soup needs at least one model")
    return [1.0 / count] * count


def uniform_average(
    state_dicts: Sequence[Mapping[str, Tensor]], *, names: Sequence[str] | None = None
) -> dict[str, Tensor]:
    """``(1/n) Σ_i θ_i`` tensor by tensor (same keys and shapes required; integer tensors must be equal).

    Raises:
        ConfigError: different keys or shapes, naming the model and the key.
    """
    return weighted_average(state_dicts, uniform_weights(len(state_dicts)), names=names)
