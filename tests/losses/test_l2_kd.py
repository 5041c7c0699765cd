"""L2KDLoss: sentence-transformers' MSELoss under embedforge's names, checked against a float64 loop."""

from __future__ import annotations

import pytest
import torch
from sentence_transformers.sentence_transformer.losses import MSELoss

from embedforge.errors import ConfigError
from embedforge.losses import L2KDLoss, build_loss
from tests.losses.loss_reference import reference_l2_kd

BATCH, DIM, COLUMNS = 4, 6, 3


def test_loss_matches_the_reference_formula():
    generator = torch.Generator().manual_seed(0)
    student = [torch.randn(BATCH, DIM, generator=generator, dtype=torch.float64) for _ in range(COLUMNS)]
    labels = torch.randn(BATCH, COLUMNS, DIM, generator=generator, dtype=torch.float64)
    loss = L2KDLoss(None, teacher_dim=DIM).compute_loss_from_embeddings(student, labels)
    assert loss.item() == pytest.approx(reference_l2_kd(student, labels).item(), rel=1e-12)
    assert loss.item() > 0
    assert L2KDLoss(None).compute_loss_from_embeddings(list(labels.unbind(1)), labels).item() == 0.0


def test_same_width_is_sentence_transformers_mse_with_the_same_gradients(tiny_model):
    loss_fn = build_loss("l2_kd", tiny_model, {"teacher_dim": 32})
    assert isinstance(loss_fn, MSELoss) and loss_fn.projection is None
    texts = [["how do cats sleep", "capital of france"], ["cats sleep a lot", "paris"]]
    features = [tiny_model.preprocess(column) for column in texts]
    labels = torch.randn(2, 2, 32, generator=torch.Generator().manual_seed(1))
    ours = loss_fn(features, labels)
    ours.backward()
    grads = [p.grad.clone() for p in tiny_model.parameters() if p.grad is not None]
    tiny_model.zero_grad()
    theirs = MSELoss(tiny_model)(features, labels)
    theirs.backward()
    torch.testing.assert_close(ours, theirs)
    for mine, st in zip(grads, [p.grad for p in tiny_model.parameters() if p.grad is not None], strict=True):
        torch.testing.assert_close(mine, st)


def test_a_wider_teacher_gets_a_trained_projection(tiny_model):
    loss_fn = build_loss("l2_kd", tiny_model, {"teacher_dim": 48})
    assert loss_fn.projection.in_features == 32 and loss_fn.projection.out_features == 48
    features = [tiny_model.preprocess(["a b c", "d e"])]
    labels = torch.randn(2, 1, 48, requires_grad=True)
    loss_fn(features, labels).backward()
    assert loss_fn.projection.weight.grad.abs().sum() > 0
    assert labels.grad is None  # the teacher is constant
    assert loss_fn.get_config_dict() == {"teacher_dim": 48, "projection": True}


def test_bad_arguments_and_labels(tiny_model):
    with pytest.raises(ConfigError, match="teacher_dim=0"):
        L2KDLoss(None, teacher_dim=0)
    loss_fn = L2KDLoss(tiny_model)
    features = [tiny_model.preprocess(["a", "b"]), tiny_model.preprocess(["c", "d"])]
    with pytest.raises(ConfigError, match=r"shape \(batch, columns=2, teacher_dim=32\), got \(2, 32\).*'teacher'"):
        loss_fn(features, torch.randn(2, 32))
    with pytest.raises(ConfigError, match=r"got None"):
        loss_fn(features, None)
