"""Training objectives: one loss per file, all following the sentence-transformers loss interface.

Pick a loss by name from :data:`LOSSES` with :func:`build_loss`, which is what recipes do::

    build_loss("infonce", model, {"temperature": 0.01, "gamma": 0.5, "mix_pairwise": True, "mix_listwise": True})
    build_loss("cosent", model, {"scale": 20.0})
    build_loss(
        "matryoshka",
        model,
        {
            "loss": {"name": "cached_infonce", "mini_batch_size": 32, "temperature": 0.01},
            "matryoshka_dims": [896, 512, 256, 128, 64],
            "matryoshka_weights": [1.0, 0.3, 0.2, 0.1, 0.1],
        },
    )

In YAML the last one reads::

    loss:
      name: matryoshka
      loss: {name: infonce, temperature: 0.01, gamma: 0.5}
      matryoshka_dims: [896, 512, 256, 128, 64]
      matryoshka_weights: [1.0, 0.3, 0.2, 0.1, 0.1]

Where sentence-transformers already has the loss we register it instead of rewriting it: CoSENT (Seed1.5 uses
it for STS) is ``CoSENTLoss``; Matryoshka is ``MatryoshkaLoss``, which wraps any loss here (cached ones
included) by truncating and re-normalizing the embeddings and summing the weighted losses; ``mnrl`` and
``cached_mnrl`` are the plain baselines. ``sdm`` is SEA's similarity-distribution distillation (teacher
embeddings in the label column); ``l2_kd`` (Reimers & Gurevych 2020, sentence-transformers' ``MSELoss``) and
``contrastive_kd`` (KaLM-V2's in-batch contrastive distillation) are the distillation baselines of SEA's Table 3.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from sentence_transformers.sentence_transformer.losses import (
    CachedMultipleNegativesRankingLoss,
    CoSENTLoss,
    MatryoshkaLoss,
    MultipleNegativesRankingLoss,
)
from torch import nn

from embedforge.errors import ConfigError, did_you_mean
from embedforge.losses.cached_infonce import CachedInfoNCELoss
from embedforge.losses.contrastive_kd import ContrastiveKDLoss
from embedforge.losses.infonce import InfoNCELoss
from embedforge.losses.l2_kd import L2KDLoss
from embedforge.losses.sdm import SDMLoss

# registry name -> loss class (constructor: ``cls(model, **options)``)
LOSSES: dict[str, type[nn.Module]] = {
    "infonce": InfoNCELoss,
    "cached_infonce": CachedInfoNCELoss,
    "cosent": CoSENTLoss,
    "matryoshka": MatryoshkaLoss,
    "mnrl": MultipleNegativesRankingLoss,
    "cached_mnrl": CachedMultipleNegativesRankingLoss,
    "sdm": SDMLoss,
    "l2_kd": L2KDLoss,
    "contrastive_kd": ContrastiveKDLoss,
}

# Options that hold another loss (a wrapper's inner loss): given as a name or a {"name": ..., **options} mapping.
_NESTED_LOSS_OPTIONS = ("loss",)


def register_loss(name: str, cls: type[nn.Module]) -> None:
    """Add a loss class to :data:`LOSSES` under ``name`` (a duplicate name is an error)."""
    if name in LOSSES:
        raise ConfigError(f"a loss named {name!r} is already registered ({LOSSES[name].__name__})")
    LOSSES[name] = cls


def loss_options(name: str) -> list[str]:
    """The option names :func:`build_loss` accepts for loss ``name`` (its constructor's arguments but ``model``)."""
    cls = _loss_class(name)
    parameters = inspect.signature(cls.__init__).parameters
    return [
        p for p in parameters if p not in ("self", "model") and parameters[p].kind is not inspect.Parameter.VAR_KEYWORD
    ]


def build_loss(name: str, model: nn.Module, options: Mapping[str, Any] | None = None) -> nn.Module:
    """Build the loss registered as ``name`` for ``model`` with keyword ``options``.

    Args:
        name: a key of :data:`LOSSES`.
        model: the SentenceTransformer being trained.
        options: constructor arguments; a wrapper's inner ``loss`` is a name or ``{"name": ..., **options}``.

    Returns:
        The loss module.

    Raises:
        ConfigError: unknown loss or option name, or an option value the loss rejects.
    """
    cls = _loss_class(name)
    options = dict(options or {})
    valid = loss_options(name)
    for option in options:
        if option not in valid:
            raise ConfigError(f"unknown option {option!r} for loss {name!r}.{did_you_mean(option, valid)}")
    for option in _NESTED_LOSS_OPTIONS:
        if option in options and not isinstance(options[option], nn.Module):
            options[option] = _build_nested(name, options[option], model)
    try:
        return cls(model, **options)
    except ConfigError:
        raise
    except (ValueError, TypeError) as error:
        raise ConfigError(f"loss {name!r}: {error}") from error


def _loss_class(name: str) -> type[nn.Module]:
    if name not in LOSSES:
        raise ConfigError(f"unknown loss {name!r}.{did_you_mean(str(name), LOSSES)}")
    return LOSSES[name]


def _build_nested(outer: str, spec: Any, model: nn.Module) -> nn.Module:
    if isinstance(spec, str):
        return build_loss(spec, model)
    if isinstance(spec, Mapping) and isinstance(spec.get("name"), str):
        inner = dict(spec)
        return build_loss(inner.pop("name"), model, inner)
    raise ConfigError(
        f"loss {outer!r}: option 'loss' must be a loss name or a mapping with a 'name' key "
        f"(e.g. {{name: infonce, temperature: 0.02}}), got {spec!r}"
    )


__all__ = [
    "LOSSES",
    "CachedInfoNCELoss",
    "CoSENTLoss",
    "ContrastiveKDLoss",
    "InfoNCELoss",
    "L2KDLoss",
    "MatryoshkaLoss",
    "SDMLoss",
    "build_loss",
    "loss_options",
    "register_loss",
]
