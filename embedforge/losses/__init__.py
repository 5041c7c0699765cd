"""Training objectives: one loss per file, all following the sentence-transformers loss interface.

Base losses are registered by name in :data:`LOSSES`; :func:`build_loss` builds one::

    build_loss("infonce", model, {"temperature": 0.01, "gamma": 0.5, "mix_pairwise": True, "mix_listwise": True})
    build_loss("cosent", model, {"scale": 20.0})

A recipe's dataset gets its loss from :func:`~embedforge.losses.objective.build_objective`, which builds the base
loss and applies the stage's modifiers in one fixed order — GradCache
(:class:`~embedforge.losses.cached_infonce.CachedInfoNCELoss`, sentence-transformers'
``CachedMultipleNegativesRankingLoss``, or :class:`~embedforge.losses.gradcache.GradCacheLoss` for any other
loss), Matryoshka (:class:`~embedforge.losses.matryoshka.MatryoshkaLoss`), the MoE router loss
(:class:`~embedforge.losses.router_aux.RouterAuxLoss`) — see :mod:`embedforge.losses.objective`.

Where sentence-transformers already has the loss we register it instead of rewriting it: CoSENT (Seed1.5 uses
it for STS) is ``CoSENTLoss``; ``mnrl`` is the plain baseline. ``sdm`` is SEA's similarity-distribution
distillation (teacher embeddings in the label column); ``l2_kd`` (Reimers & Gurevych 2020, sentence-transformers'
``MSELoss``) and ``contrastive_kd`` (KaLM-V2's in-batch contrastive distillation) are the distillation baselines of
SEA's Table 3.
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> module (imported on first use: the loss modules import torch and sentence-transformers, ~10 s,
# while recipe loading only needs the light config classes of embedforge.losses.objective)
_EXPORTS = {
    "LOSSES": "registry",
    "LossEntry": "registry",
    "build_loss": "registry",
    "loss_options": "registry",
    "register_loss": "registry",
    "CoSENTLoss": "registry",
    "CachedInfoNCELoss": "cached_infonce",
    "ContrastiveKDLoss": "contrastive_kd",
    "GradCacheLoss": "gradcache",
    "InfoNCELoss": "infonce",
    "L2KDLoss": "l2_kd",
    "MatryoshkaLoss": "matryoshka",
    "RouterAuxLoss": "router_aux",
    "SDMLoss": "sdm",
    "MatryoshkaConfig": "objective",
    "ObjectiveConfig": "objective",
    "build_objective": "objective",
    "build_objectives": "objective",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"embedforge.losses.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'embedforge.losses' has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
