"""GradCache version of :class:`~embedforge.losses.infonce.InfoNCELoss`: batch size independent of memory."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import tqdm
from sentence_transformers.base.losses.gradcache import CachedLossMixin, has_static_embedding_input
from torch import Tensor, nn

from embedforge.errors import ConfigError
from embedforge.losses._wrapped import ForwardsWrappedOptions
from embedforge.losses.infonce import CITATION, InfoNCELoss

GRADCACHE_CITATION = """
@inproceedings{gao2021scaling,
    title={Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup},
    author={Luyu Gao and Yunyi Zhang and Jiawei Han and Jamie Callan},
    booktitle={Proceedings of the 6th Workshop on Representation Learning for NLP},
    year={2021},
    url={https://arxiv.org/abs/2101.06983}
}
"""


class CachedInfoNCELoss(ForwardsWrappedOptions, CachedLossMixin, nn.Module):
    """:class:`InfoNCELoss` with gradient caching (GradCache), so the number of in-batch negatives is not
    limited by memory.

    In plain words: the same loss and the same gradients as :class:`InfoNCELoss`, computed in three steps
    (sentence-transformers' ``CachedLossMixin``): (1) embed every column in mini-batches without a graph,
    (2) compute the loss on the whole batch and back-propagate it to the embeddings only, caching their
    gradients, (3) re-embed mini-batch by mini-batch with a graph and push the cached gradients through.
    Only one mini-batch of activations is alive at a time. Step (2) is itself chunked over anchors
    (``mini_batch_size`` rows of the score matrix at a time), so the ``B x C`` score matrix never exists whole.

    Formula: identical to :class:`InfoNCELoss` (InfoNCE with focal weights, symmetric, false-negative masking,
    hard-negative mixing). The loss is a mean over anchors, so it splits exactly into per-chunk sums.

    Randomness: the pair-wise mixing seed is drawn from the global torch RNG at the start of ``forward``,
    before any embedding, exactly where :class:`InfoNCELoss` draws it, so under the same ``torch.manual_seed``
    both variants mix the same negatives with the same ``λ``. (Inside ``MatryoshkaLoss`` every dimension of
    one step reuses that seed.) Dropout masks differ between the variants because the forward passes are
    chunked differently; with dropout off (``model.eval()``) loss and gradients match to float precision.

    Args:
        model: the SentenceTransformer being trained.
        mini_batch_size: rows per embedding forward pass and per loss chunk (memory vs. speed).
        mini_batch_num_tokens: if set, pack embedding mini-batches by token count instead (see
            sentence-transformers' ``CachedMultipleNegativesRankingLoss``).
        show_progress_bar: show the mini-batch progress.
        temperature: see :class:`InfoNCELoss`.
        gamma: see :class:`InfoNCELoss`.
        symmetric: see :class:`InfoNCELoss`.
        in_batch_negatives: see :class:`InfoNCELoss`.
        mask_same_class: see :class:`InfoNCELoss`.
        false_negative_margin: see :class:`InfoNCELoss`.
        mix_pairwise: see :class:`InfoNCELoss`.
        mix_listwise: see :class:`InfoNCELoss`.
        mix_alpha: see :class:`InfoNCELoss`.
        mix_beta: see :class:`InfoNCELoss`.
        listwise_temperature: see :class:`InfoNCELoss`.
        gather_across_devices: see :class:`InfoNCELoss`.

    References:
        - Gao et al., Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup, 2021
          (https://arxiv.org/abs/2101.06983).
        - The references of :class:`InfoNCELoss`.

    Inputs:
        +-------------------------------------------------+--------+
        | Inputs                                          | Labels |
        +=================================================+========+
        | (anchor, positive) pairs                        | none   |
        +-------------------------------------------------+--------+
        | (anchor, positive, negative_1, ..., negative_n) | none   |
        +-------------------------------------------------+--------+

    Relations:
        - Same loss and gradients as :class:`InfoNCELoss` (tested), roughly 20-40% slower per sample.
        - With default options it matches sentence-transformers' ``CachedMultipleNegativesRankingLoss``.
        - Works inside ``MatryoshkaLoss``, which then shrinks the cached embeddings per dimension.
        - Forwards the :class:`InfoNCELoss` options it wraps: ``cached.gamma`` reads (and assigning it sets)
          the wrapped loss's ``gamma``, as sentence-transformers' cached losses do.
        - :class:`~embedforge.losses.gradcache.GradCacheLoss` is the same three steps for any loss with
          ``compute_loss_from_embeddings``; this class adds the anchor-chunked score matrix and the mixing seed.

    Example:
        ::

            from embedforge.losses import CachedInfoNCELoss
            from embedforge.models import load_model

            model = load_model("all-MiniLM-L6-v2")
            loss = CachedInfoNCELoss(model, mini_batch_size=32, temperature=0.01, gamma=0.5)
            # per_device_train_batch_size can now be 1024 or more at the memory cost of 32
    """

    def __init__(
        self,
        model: nn.Module,
        mini_batch_size: int = 32,
        mini_batch_num_tokens: int | None = None,
        show_progress_bar: bool = False,
        temperature: float = 0.05,
        gamma: float = 0.0,
        symmetric: bool = False,
        in_batch_negatives: bool = True,
        false_negative_margin: float | None = None,
        mix_pairwise: bool | int = False,
        mix_listwise: bool = False,
        mix_alpha: float = 2.0,
        mix_beta: float = 2.0,
        listwise_temperature: float = 1.0,
        mask_same_class: bool = True,
        gather_across_devices: bool = False,
    ) -> None:
        super().__init__()
        if not (isinstance(mini_batch_size, int) and not isinstance(mini_batch_size, bool) and mini_batch_size > 0):
            raise ConfigError(
                f"{type(self).__name__}: mini_batch_size={mini_batch_size!r} is invalid; it must be an integer > 0."
            )
        tokens = mini_batch_num_tokens
        if not (tokens is None or (isinstance(tokens, int) and not isinstance(tokens, bool) and tokens > 0)):
            raise ConfigError(
                f"{type(self).__name__}: mini_batch_num_tokens={mini_batch_num_tokens!r} is invalid; "
                "it must be an integer > 0 or null."
            )
        if model is not None and has_static_embedding_input(model):
            raise ConfigError(
                f"{type(self).__name__} cannot split a StaticEmbedding model's inputs into mini-batches."
            )
        self.model = model
        # The wrapped loss owns and validates every loss option and does the math; this class adds GradCache.
        self.loss = InfoNCELoss(
            model,
            temperature=temperature,
            gamma=gamma,
            symmetric=symmetric,
            in_batch_negatives=in_batch_negatives,
            false_negative_margin=false_negative_margin,
            mix_pairwise=mix_pairwise,
            mix_listwise=mix_listwise,
            mix_alpha=mix_alpha,
            mix_beta=mix_beta,
            listwise_temperature=listwise_temperature,
            mask_same_class=mask_same_class,
            gather_across_devices=gather_across_devices,
        )
        self.mini_batch_size = mini_batch_size
        self.mini_batch_num_tokens = mini_batch_num_tokens
        self.show_progress_bar = show_progress_bar
        self._step_seed: int | None = None

    @property
    def last_stats(self) -> dict[str, Tensor]:
        """Detached figures of the last call (see :attr:`InfoNCELoss.last_stats`)."""
        return self.loss.last_stats

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None = None) -> Tensor:
        sentence_features = list(sentence_features)
        if len(sentence_features) < 2:
            raise ValueError(f"{type(self).__name__} needs at least (anchor, positive) columns")
        # Drawn where InfoNCELoss draws it (before embedding), and shared by every calculate_loss of this step.
        self._step_seed = self.loss.draw_seed()
        try:
            return self.forward_cached(sentence_features, labels)
        finally:
            self._step_seed = None

    def calculate_loss(
        self, reps: list[list[Tensor]], labels: Tensor | None = None, *, with_backward: bool = False
    ) -> Tensor:
        """The loss from the cached mini-batch embeddings, chunked over anchors.

        With ``with_backward`` each chunk is back-propagated at once (into ``reps``' ``.grad``) and the
        detached total is returned.
        """
        embeddings = [torch.cat(column) for column in reps]  # one (B, D) tensor per column
        seed = self._step_seed if self._step_seed is not None else self.loss.draw_seed()
        batch = self.loss.prepare(embeddings, seed, labels)
        batch_size = batch.anchors.size(0)
        total: Tensor | float = 0.0
        stats: dict[str, Tensor] = {}
        for begin in tqdm.trange(
            0, batch_size, self.mini_batch_size, desc="Calculating loss", disable=not self.show_progress_bar
        ):
            end = min(begin + self.mini_batch_size, batch_size)
            per_row, chunk_stats = self.loss.row_losses(batch, begin, end)
            chunk = per_row.sum() / batch_size
            if with_backward:
                # The chunks share the graph of `prepare` (concatenation, gather), so keep it for the next chunk.
                chunk.backward(retain_graph=end < batch_size)
                chunk = chunk.detach()
            total = total + chunk
            for key, value in chunk_stats.items():
                stats[key] = stats.get(key, 0.0) + value * (end - begin) / batch_size
        self.loss.last_stats = stats
        return total

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "mini_batch_size": self.mini_batch_size,
            "mini_batch_num_tokens": self.mini_batch_num_tokens,
            **self.loss.get_config_dict(),
        }

    @property
    def citation(self) -> str:
        return CITATION + GRADCACHE_CITATION
