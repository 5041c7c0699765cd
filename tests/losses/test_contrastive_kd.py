"""ContrastiveKDLoss: KL between teacher and student in-batch similarity distributions, against a float64 loop."""

from __future__ import annotations

import pytest
import torch
from sentence_transformers.sentence_transformer.losses import DistillKLDivLoss
from sentence_transformers.util import pairwise_cos_sim

from embedforge.errors import ConfigError
from embedforge.losses import ContrastiveKDLoss, build_loss
from tests.losses.loss_reference import reference_contrastive_kd

BATCH, STUDENT_DIM, TEACHER_DIM, COLUMNS = 4, 5, 7, 3


def batch(seed: int):
    generator = torch.Generator().manual_seed(seed)
    student = [
        torch.randn(BATCH, STUDENT_DIM, generator=generator, dtype=torch.float64, requires_grad=True)
        for _ in range(COLUMNS)
    ]
    labels = torch.randn(BATCH, COLUMNS, TEACHER_DIM, generator=generator, dtype=torch.float64)
    return student, labels


@pytest.mark.parametrize("in_batch", [True, False])
def test_loss_and_gradients_match_the_reference(in_batch):
    student, labels = batch(0)
    loss_fn = ContrastiveKDLoss(
        None, teacher_dim=TEACHER_DIM, student_temperature=0.3, teacher_temperature=0.5, in_batch_negatives=in_batch
    )
    loss = loss_fn.compute_loss_from_embeddings(student, labels)
    ours = torch.autograd.grad(loss, student)
    expected = reference_contrastive_kd(student, labels, 0.3, 0.5, in_batch=in_batch)
    theirs = torch.autograd.grad(expected, student)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5) and loss.item() > 0
    for mine, reference in zip(ours, theirs, strict=True):
        torch.testing.assert_close(mine.double(), reference, rtol=1e-4, atol=1e-6)


def test_in_batch_scores_every_document_of_the_batch():
    student, labels = batch(1)
    in_batch = ContrastiveKDLoss(None).compute_loss_from_embeddings(student, labels)
    own = ContrastiveKDLoss(None, in_batch_negatives=False).compute_loss_from_embeddings(student, labels)
    assert in_batch.item() != pytest.approx(own.item(), rel=1e-3)


def test_own_candidates_only_is_sentence_transformers_distill_kl_div():
    """in_batch_negatives=False = DistillKLDivLoss on teacher cosine scores, without its τ_S² factor."""
    student, labels = batch(2)
    teacher_scores = torch.stack([pairwise_cos_sim(labels[:, 0], labels[:, c]) for c in (1, 2)], dim=1)
    theirs = DistillKLDivLoss(
        None, similarity_fct=pairwise_cos_sim, student_temperature=0.2, teacher_temperature=0.4
    ).compute_loss_from_embeddings([s.float() for s in student], teacher_scores.float())
    ours = ContrastiveKDLoss(
        None, student_temperature=0.2, teacher_temperature=0.4, in_batch_negatives=False
    ).compute_loss_from_embeddings(student, labels)
    assert ours.item() * 0.2**2 == pytest.approx(theirs.item(), rel=1e-5)


def test_zero_when_the_student_scores_like_the_teacher():
    _, labels = batch(3)
    same = [labels[:, c] * 2.0 for c in range(COLUMNS)]  # scaled: cosine is unchanged
    assert ContrastiveKDLoss(None).compute_loss_from_embeddings(same, labels).abs().item() < 1e-6


def test_gradients_reach_the_model_without_a_projection(tiny_model):
    loss_fn = build_loss("contrastive_kd", tiny_model, {"teacher_dim": 48})  # student 32 wide, teacher 48
    assert not list(loss_fn.parameters(recurse=False))
    columns = [["how do cats sleep", "capital of france"], ["cats nap", "paris"], ["dogs bark", "lyon"]]
    labels = torch.randn(2, 3, 48, requires_grad=True)
    loss_fn([tiny_model.preprocess(c) for c in columns], labels).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in tiny_model.parameters())
    assert labels.grad is None  # the teacher is constant


def test_bad_arguments_and_labels():
    with pytest.raises(ConfigError, match="student_temperature=0"):
        ContrastiveKDLoss(None, student_temperature=0)
    with pytest.raises(ConfigError, match="in_batch_negatives='yes'"):
        ContrastiveKDLoss(None, in_batch_negatives="yes")
    student, labels = batch(4)
    with pytest.raises(ConfigError, match=r"columns=3, teacher_dim=8\), got \(4, 3, 7\).*'teacher'"):
        ContrastiveKDLoss(None, teacher_dim=8).compute_loss_from_embeddings(student, labels)
    with pytest.raises(ConfigError, match=r"got \(4, 7\)"):
        ContrastiveKDLoss(None).compute_loss_from_embeddings(student, labels[:, 0])
