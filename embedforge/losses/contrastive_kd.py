"""Contrastive knowledge distillation (KaLM-Embedding-V2): match the teacher's in-batch similarity distribution."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from sentence_transformers.base.losses.merged_forward import embed_columns
from sentence_transformers.util import all_gather, all_gather_with_grad, cos_sim, get_rank
from torch import Tensor, nn

from embedforge.errors import ConfigError
from embedforge.losses._checks import check as _check
from embedforge.losses._checks import is_number as _is_number

_MASKED = -1e9  # score of a document that is not a candidate of the anchor


class ContrastiveKDLoss(nn.Module):
    """Contrastive distillation: for each anchor, the student's softmax over the batch's documents must match
    the teacher's softmax over the same documents (KL divergence); teacher scores are the soft labels.

    In plain words: the contrastive loss asks "which document is this anchor's?" with a one-hot answer; here
    the answer is the teacher's soft ranking of every document in the batch (the anchor's positive, its hard
    negatives, and all other anchors' documents). Student and teacher each score with their *own* embeddings,
    so the widths never need to agree and no projection is learned: only the similarity structure is copied.

    Formula, for anchor ``a_i``, the batch's documents ``d_1..d_C`` (positives and hard negatives of all
    anchors; with ``in_batch_negatives=False`` only anchor ``i``'s own), cosine ``s``::

        P_T(j | i) = softmax_j( s(f_T(a_i), f_T(d_j)) / τ_T )
        P_S(j | i) = softmax_j( s(f_S(a_i), f_S(d_j)) / τ_S )
        L = mean_i  KL(P_T(· | i) || P_S(· | i))

    Differences from SEA's :class:`~embedforge.losses.sdm.SDMLoss`, which SEA's Table 3 compares with this
    ("Change to CKD"): SDM compares the student anchor with a 65k FIFO queue of *teacher* document embeddings
    (through a projection into the teacher's space) and uses a sharper student temperature; CKD compares student
    with student over one batch, with equal temperatures by default.

    Reading of the paper: KaLM-Embedding-V2 (Zhao et al., ICLR 2026; the version SEA cites) adds a contrastive
    distillation stage "with fine-grained soft signals" from a stronger teacher; the extracted text available to
    us does not print its equation. We implement the standard in-batch form above (RocketQAv2-style listwise
    distillation; Rao et al. 2023's contrastive distillation, which KaLM cites), with both temperatures 0.05
    (sentence-transformers' scale 20) as our default. ``KL`` is not multiplied by ``τ_S²`` (sentence-transformers'
    ``DistillKLDivLoss`` does), so its scale is comparable with SDM's.

    Teacher embeddings come in as the labels, ``(B, columns, teacher_dim)``: column 0 the anchor (encoded as a
    query), the others documents (a recipe ``train`` stage with ``teacher:`` computes them once). Rows need no
    hard negatives (pairs: the other anchors' positives are the candidates). Under Matryoshka the labels stay
    whole (``labels_are_teacher_embeddings``): the student's similarities at any truncated width are matched
    against the teacher's full-width ones, since only similarities are compared.

    Args:
        model: the student SentenceTransformer.
        teacher_dim: width of the teacher embeddings in the labels (None: not checked).
        student_temperature: ``τ_S``.
        teacher_temperature: ``τ_T``.
        in_batch_negatives: score every document of the batch (True) or only each anchor's own (False: then at
            least one hard-negative column is needed, or the softmax has one entry and the loss is 0).
        gather_across_devices: gather student (with gradients) and teacher documents from all ranks, so every
            anchor sees the global batch.

    References:
        - Zhao et al., KaLM-Embedding-V2: Superior Training Techniques and Data Inspire a Versatile Embedding
          Model, ICLR 2026 (contrastive distillation stage; https://arxiv.org/abs/2506.20923).
        - Rao et al., Dynamic Contrastive Distillation for Image-Text Retrieval, IEEE TMM 2023.
        - Ren et al., RocketQAv2, EMNLP 2021 (KL between listwise teacher and student distributions).
        - Limkonchotiwat et al., SEA-Embedding, 2026, Table 3 ("Change to CKD").

    Inputs:
        +-------------------------------------------------+-------------------------------------------------+
        | Inputs                                          | Labels                                          |
        +=================================================+=================================================+
        | (anchor, positive)                              | teacher embeddings, ``(B, 2, teacher_dim)``     |
        +-------------------------------------------------+-------------------------------------------------+
        | (anchor, positive, negative_1, ..., negative_n) | teacher embeddings, ``(B, 2 + n, teacher_dim)`` |
        +-------------------------------------------------+-------------------------------------------------+

    Relations:
        - With ``in_batch_negatives=False`` this is sentence-transformers' ``DistillKLDivLoss`` (cosine, teacher
          scores computed from the teacher embeddings) divided by ``τ_S²``.
        - :class:`~embedforge.losses.l2_kd.L2KDLoss` matches coordinates instead of similarities.

    Example:
        ::

            from embedforge.losses import ContrastiveKDLoss

            # dataset columns: anchor, positive, negative_1, label = teacher.encode of all three (3, 1024)
            loss = ContrastiveKDLoss(student, teacher_dim=1024)
    """

    labels_are_teacher_embeddings = True  # Matryoshka passes the labels whole (they are not the student's)

    def __init__(
        self,
        model: nn.Module,
        teacher_dim: int | None = None,
        student_temperature: float = 0.05,
        teacher_temperature: float = 0.05,
        in_batch_negatives: bool = True,
        gather_across_devices: bool = False,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        _check(
            teacher_dim is None
            or (isinstance(teacher_dim, int) and not isinstance(teacher_dim, bool) and teacher_dim > 0),
            name,
            "teacher_dim",
            teacher_dim,
            "an integer > 0 or null",
        )
        for argument, value in (
            ("student_temperature", student_temperature),
            ("teacher_temperature", teacher_temperature),
        ):
            _check(_is_number(value) and value > 0, name, argument, value, "a number > 0")
        for argument, value in (
            ("in_batch_negatives", in_batch_negatives),
            ("gather_across_devices", gather_across_devices),
        ):
            _check(isinstance(value, bool), name, argument, value, "true or false")
        self.model = model
        self.teacher_dim = teacher_dim
        self.student_temperature = float(student_temperature)
        self.teacher_temperature = float(teacher_temperature)
        self.in_batch_negatives = in_batch_negatives
        self.gather_across_devices = gather_across_devices

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor) -> Tensor:
        embeddings = embed_columns(self.model, sentence_features)
        return self.compute_loss_from_embeddings(embeddings, labels)

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor) -> Tensor:
        """The loss from the student's per-column ``(B, D_S)`` embeddings and the teacher labels."""
        anchors, *document_columns = embeddings
        batch = anchors.size(0)
        columns = len(embeddings)
        if (
            labels is None
            or labels.ndim != 3
            or labels.size(0) != batch
            or labels.size(1) != columns
            or (self.teacher_dim is not None and labels.size(2) != self.teacher_dim)
        ):
            shape = None if labels is None else tuple(labels.shape)
            raise ConfigError(
                f"{type(self).__name__}: labels must be teacher embeddings of shape (batch={batch}, "
                f"columns={columns}, teacher_dim={self.teacher_dim}), got {shape}; set the train stage's 'teacher' "
                "(a model), which puts teacher.encode() of every text column in the dataset's 'label' column."
            )
        if not document_columns:
            raise ConfigError(f"{type(self).__name__}: needs at least one document column after the anchor.")
        teacher = labels.detach().to(anchors.device, torch.float32)
        teacher_anchors = teacher[:, 0]  # (B, D_T)
        # documents laid out column by column: block c holds column c+1 of every row, row r at c * B' + r
        student_docs = torch.cat(document_columns, dim=0)  # ((n+1) * B, D_S)
        teacher_docs = teacher[:, 1:].transpose(0, 1).reshape(-1, teacher.size(2))  # ((n+1) * B, D_T)
        offset, world_batch = 0, batch
        if self.gather_across_devices:
            student_docs = torch.cat(
                [all_gather_with_grad(column) for column in document_columns], dim=0
            )  # ((n+1) * W, D_S), W = global batch
            teacher_docs = torch.cat([all_gather(teacher[:, c]) for c in range(1, columns)], dim=0)  # ((n+1) * W, D_T)
            world_batch = student_docs.size(0) // (columns - 1)
            offset = get_rank() * batch
        student_scores = cos_sim(anchors.float(), student_docs.float()) / self.student_temperature  # (B, C)
        teacher_scores = cos_sim(teacher_anchors, teacher_docs) / self.teacher_temperature  # (B, C)
        if not self.in_batch_negatives:
            owner = torch.arange(world_batch, device=anchors.device).repeat(columns - 1)  # (C,) row of each doc
            own = owner.unsqueeze(0) == (offset + torch.arange(batch, device=anchors.device)).unsqueeze(1)  # (B, C)
            # a large finite fill, not -inf: P_T = 0 there and the KL term (and its gradient) is exactly 0
            student_scores = student_scores.masked_fill(~own, _MASKED)
            teacher_scores = teacher_scores.masked_fill(~own, _MASKED)
        student_log_p = F.log_softmax(student_scores, dim=1)  # (B, C)
        teacher_log_p = F.log_softmax(teacher_scores, dim=1)  # (B, C)
        return F.kl_div(student_log_p, teacher_log_p, log_target=True, reduction="batchmean")

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "teacher_dim": self.teacher_dim,
            "student_temperature": self.student_temperature,
            "teacher_temperature": self.teacher_temperature,
            "in_batch_negatives": self.in_batch_negatives,
            "gather_across_devices": self.gather_across_devices,
        }

    @property
    def citation(self) -> str:
        return """
@inproceedings{zhao2026kalmembeddingv2,
    title={KaLM-Embedding-V2: Superior Training Techniques and Data Inspire A Versatile Embedding Model},
    author={Xinping Zhao and Xinshuo Hu and Zifei Shan and Shouzheng Huang and Yao Zhou and Xin Zhang and others},
    booktitle={The Fourteenth International Conference on Learning Representations},
    year={2026}
}
"""
