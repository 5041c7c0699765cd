"""Matryoshka representation learning over any loss here (Kusupati et al., 2022): sentence-transformers' modifier."""

from __future__ import annotations

import random
from collections.abc import Iterable

from sentence_transformers.sentence_transformer.losses import MatryoshkaLoss as _STMatryoshkaLoss
from sentence_transformers.sentence_transformer.losses.matryoshka import ForwardDecorator
from torch import Tensor, nn

from embedforge.losses._wrapped import ForwardsWrappedOptions


class MatryoshkaLoss(ForwardsWrappedOptions, _STMatryoshkaLoss):
    """sentence-transformers' ``MatryoshkaLoss`` that forwards the wrapped loss's options and keeps teacher
    labels whole.

    In plain words: the wrapped loss is computed on the embeddings truncated to each of ``matryoshka_dims``
    (and re-normalized), and the weighted losses are summed, so every prefix of the embedding is trained to
    work on its own.

    Formula: ``L = Σ_k w_k · loss(normalize(E[:, :d_k]), labels)``.

    Two differences from sentence-transformers' class, both for losses whose labels are *teacher* embeddings
    (``labels_are_teacher_embeddings = True``, e.g. :class:`~embedforge.losses.sdm.SDMLoss`):

    - sentence-transformers truncates label tensors as wide as the model's embedding (they are taken to be the
      model's own targets, as in ``MSELoss`` distillation); teacher embeddings live in the teacher's space and
      are passed whole at every dimension;
    - the wrapped loss's options read and write through (``loss.temperature``), as in the cached losses.

    Args:
        model: the SentenceTransformer being trained.
        loss: the loss to apply at every dimension (plain or GradCache).
        matryoshka_dims: the nested dimensions, e.g. ``[896, 512, 256, 128, 64]``.
        matryoshka_weights: one weight per dimension (None: all 1).
        n_dims_per_step: train a random subset of this many dimensions per step (-1: all).

    References:
        - Kusupati et al., Matryoshka Representation Learning, NeurIPS 2022 (https://arxiv.org/abs/2205.13147).

    Inputs:
        +---------------------------------+---------------------------------+
        | Inputs                          | Labels                          |
        +=================================+=================================+
        | the wrapped loss's              | the wrapped loss's              |
        +---------------------------------+---------------------------------+

    Relations:
        - Over a GradCache loss it truncates the cached embeddings (sentence-transformers decorates
          ``calculate_loss``); otherwise it truncates the model's output for each dimension.

    Example:
        ::

            loss = MatryoshkaLoss(model, InfoNCELoss(model, temperature=0.01), [896, 512, 256, 128, 64],
                                  [1.0, 0.3, 0.2, 0.1, 0.1])
    """

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor) -> Tensor:
        if self.uses_gradient_cache or not _labels_are_teacher_embeddings(self.loss):
            return super().forward(sentence_features, labels)
        sentence_features = list(sentence_features)
        indices = list(range(len(self.matryoshka_dims)))
        if 0 < self.n_dims_per_step < len(indices):
            indices = sorted(random.sample(indices, self.n_dims_per_step))
        original_forward = self.model.forward
        decorated = ForwardDecorator(original_forward)  # embeds once, truncates per dimension
        self.model.forward = decorated
        try:
            loss: Tensor | float = 0.0
            for index in indices:
                decorated.set_dim(self.matryoshka_dims[index])
                loss = loss + self.matryoshka_weights[index] * self.loss(sentence_features, labels)
        finally:
            self.model.forward = original_forward
        return loss


def _labels_are_teacher_embeddings(loss: nn.Module) -> bool:
    while loss is not None:
        if getattr(type(loss), "labels_are_teacher_embeddings", False):
            return True
        loss = loss.__dict__.get("_modules", {}).get("loss")
    return False
