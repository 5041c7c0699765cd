"""The base-loss registry: name -> class and what the objective needs to know about it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from sentence_transformers.sentence_transformer.losses import (
    CachedMultipleNegativesRankingLoss,
    CoSENTLoss,
    MultipleNegativesRankingLoss,
)
from torch import nn

from embedforge.errors import ConfigError
from embedforge.losses.cached_infonce import CachedInfoNCELoss
from embedforge.losses.contrastive_kd import ContrastiveKDLoss
from embedforge.losses.infonce import InfoNCELoss
from embedforge.losses.l2_kd import L2KDLoss
from embedforge.losses.objective import _MODIFIER_SPELLINGS, check_options, constructor_options
from embedforge.losses.sdm import SDMLoss
from embedforge.utils.registry import Registry

InBatch = Literal["option", "always", "never"]


@dataclass(frozen=True)
class LossEntry:
    """A registered base loss: its class and what the objective needs to know about it."""

    cls: type[nn.Module]  # constructor: cls(model, **options)
    in_batch_negatives: InBatch  # option: takes the dataset's flag | always: uses them | never: has none
    gradcache: type[nn.Module] | None = None  # its GradCache variant (None: GradCacheLoss wraps it)


# registry name -> base loss
LOSSES: Registry[LossEntry] = Registry("loss")


def register_loss(
    name: str,
    cls: type[nn.Module],
    *,
    in_batch_negatives: InBatch | None = None,
    gradcache: type[nn.Module] | None = None,
) -> LossEntry:
    """Add a base loss to :data:`LOSSES` (a duplicate name is an error).

    Args:
        name: the registry name (``loss: {name: ...}`` in a recipe).
        cls: the loss class, built as ``cls(model, **options)``.
        in_batch_negatives: ``option`` (the class takes ``in_batch_negatives``; the default when it does),
            ``always`` (it uses other rows as negatives and cannot stop; the default otherwise), ``never`` (it has
            no negatives from other rows: pairwise or distillation losses).
        gradcache: the class's own GradCache variant, taking the same options plus ``mini_batch_size``.
    """
    if in_batch_negatives is None:
        in_batch_negatives = "option" if "in_batch_negatives" in constructor_options(cls) else "always"
    return LOSSES.register(name, LossEntry(cls, in_batch_negatives, gradcache))


register_loss("infonce", InfoNCELoss, gradcache=CachedInfoNCELoss)
register_loss("cosent", CoSENTLoss, in_batch_negatives="never")
register_loss("mnrl", MultipleNegativesRankingLoss, gradcache=CachedMultipleNegativesRankingLoss)
register_loss("sdm", SDMLoss, in_batch_negatives="never")
register_loss("l2_kd", L2KDLoss, in_batch_negatives="never")
register_loss("contrastive_kd", ContrastiveKDLoss)  # in_batch_negatives: the dataset's flag


def loss_options(name: str) -> list[str]:
    """The option names :func:`build_loss` accepts for loss ``name`` (its constructor's arguments but ``model``)."""
    return list(constructor_options(LOSSES.lookup(name).cls))


def build_loss(name: str, model: nn.Module, options: Mapping[str, Any] | None = None) -> nn.Module:
    """Build the base loss registered as ``name`` for ``model`` with keyword ``options``.

    Args:
        name: a key of :data:`LOSSES`.
        model: the SentenceTransformer being trained.
        options: constructor arguments, checked against the constructor's names and annotations.

    Returns:
        The loss module.

    Raises:
        ConfigError: unknown loss or option name, or an option value the loss rejects.
    """

    if name in _MODIFIER_SPELLINGS:
        raise ConfigError(f"loss {name!r} is a modifier, not a base loss: {_MODIFIER_SPELLINGS[name]}")
    cls = LOSSES.lookup(name).cls
    try:
        options = check_options(name, dict(options or {}), "options")
        return cls(model, **options)
    except ConfigError:
        raise
    except (ValueError, TypeError) as error:
        raise ConfigError(f"loss {name!r}: {error}") from error
