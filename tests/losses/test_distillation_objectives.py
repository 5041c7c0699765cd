"""L2-KD and contrastive KD under the stage's modifiers: Matryoshka keeps teacher labels whole, GradCache is exact."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from embedforge.losses import ContrastiveKDLoss, GradCacheLoss, L2KDLoss, MatryoshkaLoss
from embedforge.losses.objective import MatryoshkaConfig, ObjectiveConfig, build_objective, check_objective
from tests.losses.test_objective import ANCHORS, NEGATIVES, POSITIVES, assert_same, dataset, features

DIMS = ((32, 1.0), (8, 0.5))


def teacher_labels(seed: int, width: int = 32) -> torch.Tensor:
    return F.normalize(torch.randn(4, 3, width, generator=torch.Generator().manual_seed(seed)), dim=-1)


def matryoshka(name: str) -> ObjectiveConfig:
    return ObjectiveConfig(loss={"name": name}, matryoshka=MatryoshkaConfig(dims=[32, 8], weights=[1.0, 0.5]))


def test_l2_kd_inside_matryoshka_compares_each_prefix_with_the_teachers_prefix(tiny_model):
    tiny_model.eval()
    teacher = teacher_labels(0)
    loss = build_objective(dataset(), matryoshka("l2_kd"), tiny_model, teacher_dim=32)
    assert isinstance(loss, MatryoshkaLoss) and isinstance(loss.loss, L2KDLoss)
    inputs = features(tiny_model, ANCHORS, POSITIVES, NEGATIVES)
    value = loss(inputs, teacher)
    with torch.no_grad():
        student = [tiny_model(f)["sentence_embedding"] for f in inputs]
        expected = sum(
            weight
            * torch.stack(
                [
                    F.mse_loss(F.normalize(s[:, :dim], dim=-1), F.normalize(teacher[:, c, :dim], dim=-1))
                    for c, s in enumerate(student)
                ]
            ).mean()
            for dim, weight in DIMS
        )
    torch.testing.assert_close(value.detach(), expected, atol=1e-6, rtol=1e-5)


def test_contrastive_kd_inside_matryoshka_matches_the_full_width_teacher(tiny_model):
    tiny_model.eval()
    teacher = teacher_labels(1, width=48)  # a wider teacher: only similarities are compared
    loss = build_objective(dataset(), matryoshka("contrastive_kd"), tiny_model, teacher_dim=48)
    assert isinstance(loss.loss, ContrastiveKDLoss) and loss.loss.in_batch_negatives is True
    inputs = features(tiny_model, ANCHORS, POSITIVES, NEGATIVES)
    value = loss(inputs, teacher)
    plain = ContrastiveKDLoss(None, teacher_dim=48)
    with torch.no_grad():
        student = [tiny_model(f)["sentence_embedding"] for f in inputs]
        expected = sum(
            weight * plain.compute_loss_from_embeddings([F.normalize(s[:, :dim], dim=-1) for s in student], teacher)
            for dim, weight in DIMS
        )
    torch.testing.assert_close(value.detach(), expected, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize(("name", "cls"), [("l2_kd", L2KDLoss), ("contrastive_kd", ContrastiveKDLoss)])
def test_under_gradcache_the_loss_and_gradients_are_the_plain_ones(tiny_model, name, cls):
    tiny_model.eval()
    teacher = teacher_labels(2)
    config = ObjectiveConfig(loss={"name": name}, gradcache_mini_batch=2)
    cached = build_objective(dataset(), config, tiny_model, teacher_dim=32)
    assert isinstance(cached, GradCacheLoss) and isinstance(cached.loss, cls)
    inputs = features(tiny_model, ANCHORS, POSITIVES, NEGATIVES)
    assert_same(tiny_model, cls(tiny_model, teacher_dim=32), cached, inputs, teacher)


@pytest.mark.parametrize("name", ["l2_kd", "contrastive_kd"])
def test_a_distillation_loss_needs_the_stages_teacher(name):
    from embedforge.errors import ConfigError

    with pytest.raises(ConfigError, match=rf"loss '{name}' distils a teacher.*set the stage's `teacher`"):
        check_objective([dataset()], ObjectiveConfig(loss={"name": name}), "s")
    check_objective([dataset()], ObjectiveConfig(loss={"name": name}), "s", teacher=True)
