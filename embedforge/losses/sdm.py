"""Similarity Distribution Matching (SEA-Embedding, Section 2.2.2): distil a teacher's similarity distribution."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from sentence_transformers.util import all_gather, cos_sim
from torch import Tensor, nn

from embedforge.errors import ConfigError
from embedforge.losses._checks import check as _check
from embedforge.losses._checks import is_number as _is_number

logger = logging.getLogger(__name__)


class SDMLoss(nn.Module):
    """Similarity Distribution Matching: the student's similarity distribution over a large FIFO memory queue
    of teacher-encoded documents must match the teacher's (KL divergence).

    In plain words: a strong frozen teacher says how similar each query is to each of the last 65,536
    training documents; the student (through a linear projection into the teacher's space when the
    widths differ) must reproduce that whole soft ranking, with a sharper temperature, which spreads the
    teacher's global geometry beyond what one batch's contrastive loss can see.

    Formula, for anchor ``a`` and queue ``Q = {k_1, ..., k_K}`` of teacher embeddings::

        P_T(j | a) = softmax_j( cos(f_T(a), k_j) / τ_T )
        P_S(j | a) = softmax_j( cos(W f_S(a), k_j) / τ_S ),     τ_S < τ_T (sharper student)
        L = mean_a  KL(P_T(· | a) || P_S(· | a))

    Each step first pushes the teacher embeddings of the batch's positives and negatives into ``Q`` (dropping
    the oldest entries), then scores the anchors against ``Q`` (SEA: "update ... adding them to the queue,
    and removing the oldest entries. We then compute ..."). Gradients reach the student (and ``W``) through
    the anchor only; the queue is constant.

    Reading of the paper: SEA's Eq. 2 and the SDM temperatures did not survive text extraction. We read the
    queue as holding *teacher* embeddings (the teacher encodes the positives and negatives) and the student
    anchor as compared with them after the linear projection, which is why SEA needs that projection "to match
    the teacher embedding size". The default temperatures (0.02 student, 0.05 teacher) are ours; SEA only says
    the student's is lower.

    Teacher embeddings come in as the labels (as in sentence-transformers' ``MSELoss`` distillation):
    precompute them once with the frozen teacher, which also lets teacher and student use different
    tokenizers.

    Under modifiers: GradCache embeds the anchors only (``embedded_columns = 1``). Matryoshka hands in the
    student anchors truncated to ``d < D_S`` (re-normalized) and the teacher labels whole
    (``labels_are_teacher_embeddings``); the truncated student is zero-padded to ``D_S`` before ``W``, i.e.
    dimension ``d`` is projected by ``W``'s first ``d`` columns (without a projection: compared with the
    teacher's first ``d`` dimensions). A modifier that calls the loss several times per step on the same labels
    (Matryoshka: once per dimension) enqueues the batch once.

    Args:
        model: the student SentenceTransformer.
        teacher_dim: width of the teacher embeddings in the labels.
        queue_size: FIFO memory queue length (SEA: 65,536).
        student_temperature: ``τ_S``.
        teacher_temperature: ``τ_T`` (should exceed ``τ_S``).
        projection: learn ``W: student_dim -> teacher_dim`` (None = only when the widths differ). The trainer
            optimizes it with the model (sentence-transformers includes loss parameters); it is not saved with
            the model.
        gather_across_devices: enqueue the teacher embeddings of all ranks, so every rank keeps the same queue.

    References:
        - Limkonchotiwat et al., SEA-Embedding: Open and Reproducible Text Embeddings for Southeast Asia, 2026,
          Section 2.2.2.
        - He et al., Momentum Contrast (MoCo), CVPR 2020 (the FIFO queue).

    Inputs:
        +-------------------------------------------------+-------------------------------------------------+
        | Inputs                                          | Labels                                          |
        +=================================================+=================================================+
        | (anchor, positive, negative_1, ..., negative_n) | teacher embeddings, ``(B, 2 + n, teacher_dim)`` |
        +-------------------------------------------------+-------------------------------------------------+

    Relations:
        - Trained after :class:`~embedforge.losses.infonce.InfoNCELoss` (symmetric, focal) in SEA's last stage;
          SEA finds it must complement, not replace, the contrastive loss.
        - sentence-transformers' ``DistillKLDivLoss`` matches distributions over each example's own candidates;
          SDM matches them over a 65k-entry queue shared by all anchors.

    Example:
        ::

            from embedforge.losses import SDMLoss

            # dataset columns: anchor, positive, negative_1, label = teacher.encode of all three (3, 1024)
            loss = SDMLoss(student, teacher_dim=1024, queue_size=65536)
    """

    labels_are_teacher_embeddings = True  # Matryoshka passes the labels whole (they are not the student's)
    embedded_columns = 1  # only the anchors are embedded by the student (GradCache embeds no more)

    def __init__(
        self,
        model: nn.Module,
        teacher_dim: int,
        queue_size: int = 65536,
        student_temperature: float = 0.02,
        teacher_temperature: float = 0.05,
        projection: bool | None = None,
        gather_across_devices: bool = False,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        for argument, value in (("teacher_dim", teacher_dim), ("queue_size", queue_size)):
            _check(
                isinstance(value, int) and not isinstance(value, bool) and value > 0,
                name,
                argument,
                value,
                "an integer > 0",
            )
        for argument, value in (
            ("student_temperature", student_temperature),
            ("teacher_temperature", teacher_temperature),
        ):
            _check(_is_number(value) and value > 0, name, argument, value, "a number > 0")
        _check(
            projection is None or isinstance(projection, bool), name, "projection", projection, "true, false or null"
        )
        _check(
            isinstance(gather_across_devices, bool),
            name,
            "gather_across_devices",
            gather_across_devices,
            "true or false",
        )
        if student_temperature >= teacher_temperature:
            logger.warning(
                f"{name}: student_temperature={student_temperature} >= teacher_temperature={teacher_temperature}; "
                "SEA makes the student distribution sharper (lower temperature)."
            )
        student_dim = model.get_embedding_dimension() if model is not None else None
        # Without a model (hand-made tensors) the student embeddings are taken to be in the teacher's width.
        use_projection = projection if projection is not None else student_dim not in (None, teacher_dim)
        if use_projection and student_dim is None:
            raise ConfigError(f"{name}: a projection needs the model's embedding dimension, which is unknown.")
        if not use_projection and student_dim is not None and student_dim != teacher_dim:
            raise ConfigError(
                f"{name}: projection=False but the student ({student_dim}) and teacher ({teacher_dim}) widths "
                "differ; enable the projection."
            )
        self.model = model
        self.teacher_dim = teacher_dim
        self.queue_size = queue_size
        self.student_temperature = float(student_temperature)
        self.teacher_temperature = float(teacher_temperature)
        self.gather_across_devices = gather_across_devices
        self.projection = nn.Linear(student_dim, teacher_dim, bias=False) if use_projection else None
        self.student_dim = student_dim if student_dim is not None else teacher_dim
        # Allocated on the first batch (device and 65,536 x teacher_dim floats); not part of any checkpoint.
        self.register_buffer("queue", torch.empty(0), persistent=False)
        self.queue_pointer = 0  # next slot to overwrite
        self.queue_filled = 0  # valid entries
        self._enqueued_labels: Tensor | None = None  # the labels of the last enqueued batch (enqueue once each)

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor) -> Tensor:
        anchor_features = next(iter(sentence_features))  # only the anchors are embedded by the student
        anchors = self.model(anchor_features)["sentence_embedding"]
        return self.compute_loss_from_embeddings([anchors], labels)

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor) -> Tensor:
        """The loss from the student anchor embeddings ``embeddings[0]`` ``(B, D_S)`` and the teacher labels."""
        student = embeddings[0]
        if (
            labels is None
            or labels.ndim != 3
            or labels.size(0) != student.size(0)
            or labels.size(2) != self.teacher_dim
        ):
            shape = None if labels is None else tuple(labels.shape)
            raise ConfigError(
                f"{type(self).__name__}: labels must be teacher embeddings of shape (batch={student.size(0)}, "
                f"columns >= 2, teacher_dim={self.teacher_dim}), got {shape}; put teacher.encode() of the anchor, "
                "positive and negatives in the dataset's 'label' column."
            )
        if labels.size(1) < 2:
            raise ConfigError(f"{type(self).__name__}: labels need the teacher embeddings of at least one document.")
        teacher = labels.detach().float()
        if labels is not self._enqueued_labels:  # a new batch (Matryoshka calls once per dimension)
            documents = teacher[:, 1:].reshape(-1, self.teacher_dim)  # (B * (1 + n), D_T)
            if self.gather_across_devices:
                documents = all_gather(documents)  # (W * B * (1 + n), D_T), no gradient needed
            self.enqueue(documents)
            self._enqueued_labels = labels
        queue = self.queue[: self.queue_filled]  # (K, D_T)
        if student.size(1) < self.student_dim:  # Matryoshka-truncated: W's first d columns
            student = F.pad(student, (0, self.student_dim - student.size(1)))  # (B, D_S)
        if self.projection is not None:
            student = self.projection(student)  # (B, D_T)
        student_log_p = F.log_softmax(cos_sim(student.float(), queue) / self.student_temperature, dim=1)  # (B, K)
        teacher_log_p = F.log_softmax(cos_sim(teacher[:, 0], queue) / self.teacher_temperature, dim=1)  # (B, K)
        return F.kl_div(student_log_p, teacher_log_p, log_target=True, reduction="batchmean")

    @torch.no_grad()
    def enqueue(self, documents: Tensor) -> None:
        """Push ``(N, D_T)`` teacher embeddings into the FIFO queue, overwriting the oldest entries."""
        if self.queue.numel() == 0:
            self.queue = documents.new_zeros(self.queue_size, self.teacher_dim)
        documents = documents.to(self.queue.device, self.queue.dtype)[-self.queue_size :]  # the newest fit
        slots = (self.queue_pointer + torch.arange(documents.size(0), device=self.queue.device)) % self.queue_size
        self.queue[slots] = documents
        self.queue_pointer = (self.queue_pointer + documents.size(0)) % self.queue_size
        self.queue_filled = min(self.queue_filled + documents.size(0), self.queue_size)

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "teacher_dim": self.teacher_dim,
            "queue_size": self.queue_size,
            "student_temperature": self.student_temperature,
            "teacher_temperature": self.teacher_temperature,
            "projection": self.projection is not None,
            "gather_across_devices": self.gather_across_devices,
        }

    @property
    def citation(self) -> str:
        return """
@misc{limkonchotiwat2026seaembedding,
    title={SEA-Embedding: Open and Reproducible Text Embeddings for Southeast Asia},
    author={Peerat Limkonchotiwat and Raymond Ng and Sarana Nutanong and Jian Gang Ngui},
    year={2026}
}
"""
