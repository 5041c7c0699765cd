"""Weighted parameter averaging of fine-tuned models with one architecture (a weighted model soup).

Formula, for ingredient models with parameters ``θ_1 ... θ_n`` and weights ``w_i >= 0``::

    θ_soup = Σ_i  w_i θ_i / Σ_j w_j

applied tensor by tensor to floating-point parameters and buffers. Integer tensors (token-type ids, position
ids) cannot be averaged: they must be equal in every ingredient and are copied. Accumulation is in float32 (or
float64 for float64 tensors) and the result is cast back to the first ingredient's dtype, so bf16 checkpoints
average without bf16 round-off building up.

References:
    - Wortsman et al., Model soups: averaging weights of multiple fine-tuned models improves accuracy without
      increasing inference time, ICML 2022 (https://proceedings.mlr.press/v162/wortsman22a.html).
    - Xiao et al., LM-Cocktail: Resilient Tuning of Language Models via Model Merging, Findings of ACL 2024
      (the same weighted sum with data-driven weights, see :mod:`embedforge.merging.cocktail`).

The state dicts are consumed one at a time (a generator works), so merging ``n`` models holds two in memory,
not ``n``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import torch
from torch import Tensor

from embedforge.errors import ConfigError


def normalize_weights(weights: Sequence[float]) -> list[float]:
    """``w_i / Σ w_j``; every weight finite and >= 0, the sum > 0.

    Raises:
        ConfigError: naming the bad weight.
    """
    weights = [float(w) for w in weights]
    for index, weight in enumerate(weights):
        if not math.isfinite(weight) or weight < 0:
            raise ConfigError(f"weights[{index}]: a soup weight must be a finite number >= 0, got {weight}")
    total = sum(weights)
    if total <= 0:
        raise ConfigError(f"weights: at least one weight must be > 0, got {weights}")
    return [w / total for w in weights]


def weighted_average(
    state_dicts: Iterable[Mapping[str, Tensor]],
    weights: Sequence[float],
    *,
    names: Sequence[str] | None = None,
) -> dict[str, Tensor]:
    """``Σ_i w_i θ_i / Σ_j w_j`` over the state dicts, tensor by tensor (see the module docstring).

    Args:
        state_dicts: the ingredients' state dicts (same keys, shapes); consumed lazily, one at a time.
        weights: one weight per state dict (normalized to sum to 1).
        names: ingredient names for error messages (default ``model 0``, ``model 1``, ...).

    Returns:
        The averaged state dict, tensors with the first ingredient's dtypes and devices.

    Raises:
        ConfigError: different keys, shapes or integer tensors (naming the ingredient and the key), or a number
            of state dicts different from the number of weights.
    """
    weights = normalize_weights(weights)

    def name(index: int) -> str:
        return repr(names[index]) if names is not None and index < len(names) else f"model {index}"

    sums: dict[str, Tensor] = {}
    reference: dict[str, Tensor] = {}
    count = 0
    for index, state in enumerate(state_dicts):
        if index >= len(weights):
            raise ConfigError(f"more models than weights ({len(weights)}): give one weight per model")
        weight = weights[index]
        if index == 0:
            reference = {key: tensor.detach() for key, tensor in state.items()}
            for key, tensor in reference.items():
                if tensor.is_floating_point():
                    # (shape of the tensor) accumulator in float32/float64, a new tensor (never a view of the input)
                    sums[key] = tensor.to(_accumulator_dtype(tensor.dtype)) * weight
        else:
            _check_same_layout(reference, state, name(index), name(0))
            for key, tensor in state.items():
                if key in sums:
                    sums[key].add_(tensor.detach().to(device=sums[key].device, dtype=sums[key].dtype), alpha=weight)
                elif not torch.equal(tensor.detach().cpu(), reference[key].cpu()):
                    raise ConfigError(
                        f"cannot merge {name(index)}: integer tensor {key!r} differs from {name(0)}'s "
                        "(integer tensors cannot be averaged; the models must share them)"
                    )
        count += 1
    if count != len(weights):
        raise ConfigError(f"{len(weights)} weights for {count} models: give one weight per model")
    return {key: sums[key].to(tensor.dtype) if key in sums else tensor.clone() for key, tensor in reference.items()}


def _accumulator_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _check_same_layout(reference: Mapping[str, Tensor], state: Mapping[str, Tensor], name: str, first: str) -> None:
    missing = [key for key in reference if key not in state]
    extra = [key for key in state if key not in reference]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {_few(missing)}")
        if extra:
            parts.append(f"unexpected {_few(extra)}")
        raise ConfigError(
            f"cannot merge {name}: its parameters differ from {first}'s ({'; '.join(parts)}); "
            "a soup needs models of one architecture"
        )
    for key, tensor in state.items():
        if tensor.shape != reference[key].shape:
            raise ConfigError(
                f"cannot merge {name}: {key!r} has shape {tuple(tensor.shape)}, {first} has "
                f"{tuple(reference[key].shape)}; a soup needs models of one architecture"
            )
        if tensor.is_floating_point() != reference[key].is_floating_point():
            raise ConfigError(f"cannot merge {name}: {key!r} is {tensor.dtype}, {first}'s is {reference[key].dtype}")


def _few(keys: list[str]) -> str:
    return ", ".join(repr(k) for k in keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")
