"""SDMLoss: FIFO queue, KL against a per-anchor reference, gradients only through the student anchor."""

from __future__ import annotations

import math

import pytest
import torch

from embedforge.errors import ConfigError
from embedforge.losses import SDMLoss, build_loss

BATCH, TEACHER_DIM, COLUMNS = 3, 6, 3


def teacher_labels(seed: int) -> torch.Tensor:
    return torch.randn(BATCH, COLUMNS, TEACHER_DIM, generator=torch.Generator().manual_seed(seed))


def reference_kl(student: torch.Tensor, teacher_anchor: torch.Tensor, queue: list[torch.Tensor], t_s, t_t) -> float:
    """mean over anchors of sum_j P_T(j) log(P_T(j) / P_S(j)), written out per entry."""
    total = 0.0
    for s, t in zip(student, teacher_anchor, strict=True):
        s_sims = [math.exp(float(torch.cosine_similarity(s, k, dim=0)) / t_s) for k in queue]
        t_sims = [math.exp(float(torch.cosine_similarity(t, k, dim=0)) / t_t) for k in queue]
        p_s = [x / sum(s_sims) for x in s_sims]
        p_t = [x / sum(t_sims) for x in t_sims]
        total += sum(pt * math.log(pt / ps) for pt, ps in zip(p_t, p_s, strict=True))
    return total / len(student)


def test_queue_is_fifo_and_loss_matches_the_reference():
    loss_fn = SDMLoss(None, teacher_dim=TEACHER_DIM, queue_size=8, student_temperature=0.5, teacher_temperature=1.0)
    pushed: list[torch.Tensor] = []
    for step in range(3):
        labels = teacher_labels(step)
        student = torch.randn(BATCH, TEACHER_DIM, generator=torch.Generator().manual_seed(100 + step))
        loss = loss_fn.compute_loss_from_embeddings([student], labels)
        pushed += list(labels[:, 1:].reshape(-1, TEACHER_DIM))  # 6 documents per step
        queue = pushed[-8:]  # the 8 newest, current batch included
        assert loss_fn.queue_filled == len(queue)
        assert sorted(map(tuple, loss_fn.queue[: loss_fn.queue_filled].tolist())) == sorted(
            tuple(k.tolist()) for k in queue
        )
        expected = reference_kl(student, labels[:, 0], queue, 0.5, 1.0)
        assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_a_batch_larger_than_the_queue_keeps_the_newest():
    loss_fn = SDMLoss(None, teacher_dim=TEACHER_DIM, queue_size=4)
    labels = teacher_labels(0)
    loss_fn.compute_loss_from_embeddings([torch.randn(BATCH, TEACHER_DIM)], labels)
    newest = labels[:, 1:].reshape(-1, TEACHER_DIM)[-4:]
    assert sorted(map(tuple, loss_fn.queue.tolist())) == sorted(map(tuple, newest.tolist()))


def test_zero_when_the_student_is_the_teacher():
    loss_fn = SDMLoss(None, teacher_dim=TEACHER_DIM, queue_size=16, student_temperature=0.05, teacher_temperature=0.05)
    labels = teacher_labels(1)
    assert loss_fn.compute_loss_from_embeddings([labels[:, 0] * 3.0], labels).abs().item() < 1e-6
    sharper = SDMLoss(None, teacher_dim=TEACHER_DIM, queue_size=16, student_temperature=0.02, teacher_temperature=0.05)
    assert sharper.compute_loss_from_embeddings([labels[:, 0]], labels).item() > 1e-3


def test_gradients_reach_the_model_and_projection_only(tiny_model):
    loss_fn = build_loss("sdm", tiny_model, {"teacher_dim": 48, "queue_size": 32})
    assert loss_fn.projection is not None and loss_fn.projection.in_features == 32
    anchors = ["how do cats sleep", "capital of france", "rain tomorrow"]
    features = [tiny_model.preprocess(anchors), tiny_model.preprocess(["a", "b", "c"])]
    labels = torch.randn(3, 2, 48, requires_grad=True)
    loss = loss_fn(features, labels)
    loss.backward()
    assert loss_fn.projection.weight.grad.abs().sum() > 0
    assert next(tiny_model.parameters()).grad is not None
    assert labels.grad is None  # the teacher is constant


def test_bad_arguments_and_labels():
    with pytest.raises(ConfigError, match="queue_size=0"):
        SDMLoss(None, teacher_dim=8, queue_size=0)
    with pytest.raises(ConfigError, match="student_temperature=-0.1"):
        SDMLoss(None, teacher_dim=8, student_temperature=-0.1)
    with pytest.raises(ConfigError, match="teacher_dim=None"):
        SDMLoss(None, teacher_dim=None)
    loss_fn = SDMLoss(None, teacher_dim=TEACHER_DIM)
    with pytest.raises(ConfigError, match=r"labels must be teacher embeddings of shape.*got \(3, 6\)"):
        loss_fn.compute_loss_from_embeddings([torch.randn(BATCH, TEACHER_DIM)], torch.randn(BATCH, TEACHER_DIM))


def test_projection_off_with_different_widths_is_refused(tiny_model):
    with pytest.raises(ConfigError, match="projection=False"):
        SDMLoss(tiny_model, teacher_dim=48, projection=False)
