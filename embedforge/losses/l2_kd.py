"""L2 knowledge distillation (Reimers & Gurevych, 2020): the student's embedding must equal the teacher's."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch.nn.functional as F
from sentence_transformers.sentence_transformer.losses import MSELoss
from torch import Tensor, nn

from embedforge.errors import ConfigError
from embedforge.losses._checks import check as _check


class L2KDLoss(MSELoss):
    """Mean squared error between every student embedding and the frozen teacher's embedding of the same text.

    In plain words: the teacher's vectors are the targets, point by point. Nothing relates one text to another
    (no negatives, no similarity distribution); the student simply regresses onto the teacher's space, which is
    the "L2-KD" row SEA-Embedding's Table 3 compares its similarity distribution matching against.

    Formula, for text column ``c`` of row ``i``, student ``f_S``, teacher ``f_T`` and optional projection ``W``::

        L = mean_c  mean_{i, k}  ( (W f_S(x_ic))_k - f_T(x_ic)_k )^2        (Reimers & Gurevych 2020, Eq. 1)

    i.e. the squared L2 distance divided by the width ``D_T`` (``torch.nn.functional.mse_loss``), averaged over
    the rows and then over the columns (anchor, positive, negatives: every text the teacher encoded).

    The computation is sentence-transformers' own ``MSELoss`` (this class subclasses it; only the argument names,
    the checks and the error messages are embedforge's): ``teacher_dim`` names the teacher's width like
    :class:`~embedforge.losses.sdm.SDMLoss` does, and a learned projection ``W`` (``nn.Linear`` with bias, as in
    sentence-transformers) is added only when it differs from the student's.

    Teacher embeddings come in as the labels, ``(B, columns, teacher_dim)``, precomputed once with the frozen
    teacher (a recipe ``train`` stage with ``teacher:`` does it, see :mod:`embedforge.training.teacher`). Under
    Matryoshka the teacher labels stay whole (``labels_are_teacher_embeddings``) and a truncated student is
    compared with the teacher's first ``d`` dimensions (see :meth:`compute_loss_from_embeddings`).

    Args:
        model: the student SentenceTransformer.
        teacher_dim: width of the teacher embeddings in the labels (None: the student's own; then no projection).

    References:
        - Reimers & Gurevych, Making Monolingual Sentence Embeddings Multilingual using Knowledge Distillation,
          EMNLP 2020, Section 2 (https://arxiv.org/abs/2004.09813).
        - Limkonchotiwat et al., SEA-Embedding, 2026, Table 3 ("Change to L2-KD"): the baseline SDM replaces.

    Inputs:
        +-------------------------------------------------+-------------------------------------------------+
        | Inputs                                          | Labels                                          |
        +=================================================+=================================================+
        | (text_1, ..., text_n)                           | teacher embeddings, ``(B, n, teacher_dim)``     |
        +-------------------------------------------------+-------------------------------------------------+

    Relations:
        - :class:`~embedforge.losses.sdm.SDMLoss` matches the teacher's *similarity distribution* over a queue
          instead of its coordinates; :class:`~embedforge.losses.contrastive_kd.ContrastiveKDLoss` matches it
          over the batch. Neither needs the widths to agree beyond SDM's projection.
        - sentence-transformers' ``EmbedDistillLoss`` offers cosine and L2 distances on the same labels.

    Example:
        ::

            from embedforge.losses import L2KDLoss

            # dataset columns: anchor, positive, label = teacher.encode of both, shape (2, 384) per row
            loss = L2KDLoss(student, teacher_dim=384)
    """

    labels_are_teacher_embeddings = True  # Matryoshka passes the labels whole (they are not the student's)

    def __init__(self, model: nn.Module, teacher_dim: int | None = None) -> None:
        name = type(self).__name__
        _check(
            teacher_dim is None
            or (isinstance(teacher_dim, int) and not isinstance(teacher_dim, bool) and teacher_dim > 0),
            name,
            "teacher_dim",
            teacher_dim,
            "an integer > 0 or null (the student's width)",
        )
        student_dim = model.get_embedding_dimension() if model is not None else None
        if teacher_dim is not None and student_dim is None:
            # without a model (hand-made tensors in tests) the student is taken to be in the teacher's width
            projection_dim = None
        else:
            projection_dim = teacher_dim if teacher_dim not in (None, student_dim) else None
        super().__init__(model, projection_dim=projection_dim)
        self.teacher_dim = teacher_dim if teacher_dim is not None else student_dim
        self.student_dim = student_dim if student_dim is not None else self.teacher_dim

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None) -> Tensor:
        features = list(sentence_features)
        self._check_labels(labels, len(features))
        return super().forward(features, labels)

    def compute_loss_from_embeddings(
        self, embeddings: list[Tensor], teacher_embeddings: Tensor | list[Tensor]
    ) -> Tensor:
        """The loss from one student ``(B, D_S)`` tensor per column and the ``(B, columns, D_T)`` teacher labels.

        A student truncated by Matryoshka to ``d < D_S`` (re-normalized) is compared, without a projection, with
        the teacher's first ``d`` dimensions re-normalized the same way; with a projection it is zero-padded to
        ``D_S``, i.e. projected by ``W``'s first ``d`` columns (as :class:`~embedforge.losses.sdm.SDMLoss` does).
        """
        if isinstance(teacher_embeddings, Tensor):
            self._check_labels(teacher_embeddings, len(embeddings))
            teacher_embeddings = list(teacher_embeddings.detach().unbind(1))  # columns x (B, D_T)
        width = embeddings[0].size(-1)
        if width < (self.student_dim or width):  # Matryoshka-truncated student
            if self.projection is not None:
                embeddings = [F.pad(e, (0, self.student_dim - width)) for e in embeddings]  # (B, D_S) each
            else:
                teacher_embeddings = [F.normalize(t[..., :width], dim=-1) for t in teacher_embeddings]  # (B, d)
        return super().compute_loss_from_embeddings(embeddings, teacher_embeddings)

    def _check_labels(self, labels: Tensor | None, columns: int) -> None:
        width = self.teacher_dim
        if labels is None or labels.ndim != 3 or labels.size(1) != columns or (width and labels.size(2) != width):
            shape = None if labels is None else tuple(labels.shape)
            raise ConfigError(
                f"{type(self).__name__}: labels must be teacher embeddings of shape (batch, columns={columns}, "
                f"teacher_dim={width}), got {shape}; set the train stage's 'teacher' (a model), which puts "
                "teacher.encode() of every text column in the dataset's 'label' column."
            )

    def get_config_dict(self) -> dict[str, Any]:
        return {"teacher_dim": self.teacher_dim, "projection": self.projection is not None}
