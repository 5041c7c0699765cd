"""GradCache for any loss that computes from embeddings: CoSENT, SDM, ... (Gao et al., 2021)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from sentence_transformers.base.losses.gradcache import CachedLossMixin, has_static_embedding_input
from torch import Tensor, nn

from embedforge.errors import ConfigError
from embedforge.losses._checks import check as _check
from embedforge.losses._wrapped import ForwardsWrappedOptions


class GradCacheLoss(ForwardsWrappedOptions, CachedLossMixin, nn.Module):
    """Wrap a loss so that it embeds with gradient caching: same loss and gradients, one mini-batch of
    activations alive at a time.

    In plain words: sentence-transformers' three GradCache steps (``CachedLossMixin``) around any loss that
    has ``compute_loss_from_embeddings(embeddings, labels)``: (1) embed every column in mini-batches without a
    graph, (2) compute the wrapped loss on the concatenated embeddings and back-propagate it to them, caching
    their gradients, (3) re-embed mini-batch by mini-batch with a graph and push the cached gradients through.

    Formula: the wrapped loss's, ``L = loss.compute_loss_from_embeddings([E_1, ..., E_c], labels)`` with
    ``E_j = concat_m f(x_{j, m})`` the column's mini-batch embeddings; ``∂L/∂θ = Σ_m (∂L/∂E_{j,m}) ∂f(x_{j,m})/∂θ``
    (the chain rule GradCache splits in two).

    The wrapped loss decides how many columns are embedded: ``embedded_columns`` (SDM: 1, the anchors only; the
    other texts' teacher embeddings are in the labels); all columns when it does not say. Its parameters (SDM's
    projection) get their gradients in step (2).

    Args:
        model: the SentenceTransformer being trained.
        loss: the loss to cache (needs ``compute_loss_from_embeddings``).
        mini_batch_size: rows per embedding forward pass (memory vs. speed).
        mini_batch_num_tokens: if set, pack embedding mini-batches by token count instead.
        show_progress_bar: show the mini-batch progress.

    References:
        - Gao et al., Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup, 2021
          (https://arxiv.org/abs/2101.06983).

    Inputs:
        +---------------------------------+---------------------------------+
        | Inputs                          | Labels                          |
        +=================================+=================================+
        | the wrapped loss's              | the wrapped loss's              |
        +---------------------------------+---------------------------------+

    Relations:
        - :class:`~embedforge.losses.cached_infonce.CachedInfoNCELoss` is the InfoNCE-specific version (it also
          chunks the score matrix over anchors); ``build_objective`` picks it for InfoNCE and this class for the
          rest.
        - Reads and writes the wrapped loss's options (``cached.scale`` is the CoSENT scale).

    Example:
        ::

            from sentence_transformers.sentence_transformer.losses import CoSENTLoss
            from embedforge.losses.gradcache import GradCacheLoss

            loss = GradCacheLoss(model, CoSENTLoss(model, scale=20.0), mini_batch_size=32)
    """

    def __init__(
        self,
        model: nn.Module,
        loss: nn.Module,
        mini_batch_size: int = 32,
        mini_batch_num_tokens: int | None = None,
        show_progress_bar: bool = False,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        _check(
            isinstance(mini_batch_size, int) and not isinstance(mini_batch_size, bool) and mini_batch_size > 0,
            name,
            "mini_batch_size",
            mini_batch_size,
            "an integer > 0",
        )
        _check(
            mini_batch_num_tokens is None or (isinstance(mini_batch_num_tokens, int) and mini_batch_num_tokens > 0),
            name,
            "mini_batch_num_tokens",
            mini_batch_num_tokens,
            "an integer > 0 or null",
        )
        if not callable(getattr(loss, "compute_loss_from_embeddings", None)):
            raise ConfigError(
                f"{name}: {type(loss).__name__} has no compute_loss_from_embeddings(embeddings, labels), so its "
                "embeddings cannot be cached; train it without GradCache."
            )
        if model is not None and has_static_embedding_input(model):
            raise ConfigError(f"{name} cannot split a StaticEmbedding model's inputs into mini-batches.")
        self.model = model
        self.loss = loss
        self.mini_batch_size = mini_batch_size
        self.mini_batch_num_tokens = mini_batch_num_tokens
        self.show_progress_bar = show_progress_bar

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None = None) -> Tensor:
        sentence_features = list(sentence_features)
        columns = getattr(self.loss, "embedded_columns", None)
        return self.forward_cached(sentence_features[:columns] if columns else sentence_features, labels)

    def calculate_loss(
        self, reps: list[list[Tensor]], labels: Tensor | None = None, *, with_backward: bool = False
    ) -> Tensor:
        """The wrapped loss on the cached embeddings; with ``with_backward``, back-propagated into ``reps``."""
        embeddings = [torch.cat(column) for column in reps]  # one (B, D) tensor per column
        loss = self.loss.compute_loss_from_embeddings(embeddings, labels)
        if with_backward:
            loss.backward()
            loss = loss.detach()
        return loss

    def get_config_dict(self) -> dict[str, Any]:
        inner = self.loss.get_config_dict() if hasattr(self.loss, "get_config_dict") else {}
        return {"mini_batch_size": self.mini_batch_size, "mini_batch_num_tokens": self.mini_batch_num_tokens, **inner}

    @property
    def citation(self) -> str:
        from embedforge.losses.cached_infonce import GRADCACHE_CITATION

        return GRADCACHE_CITATION
