"""build_objective: YAML dataset entry -> loss module; every base loss under GradCache and under Matryoshka."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from sentence_transformers.sentence_transformer.losses import CoSENTLoss, MultipleNegativesRankingLoss

from embedforge.data.config import DatasetConfig
from embedforge.errors import ConfigError
from embedforge.losses import CachedInfoNCELoss, GradCacheLoss, InfoNCELoss, MatryoshkaLoss, SDMLoss
from embedforge.losses.objective import (
    MatryoshkaConfig,
    ObjectiveConfig,
    build_objective,
    check_objective,
    describe_loss,
)

ANCHORS = ["how do cats sleep", "capital of france", "rain tomorrow", "best pizza"]
POSITIVES = ["cats nap all day", "paris is the capital", "showers expected", "naples pizza"]
NEGATIVES = ["dogs bark", "lyon is a city", "sunny all week", "sushi rolls"]


def dataset(kind: str = "triplets", **options) -> DatasetConfig:
    return DatasetConfig(name=options.pop("name", kind), path="unused.jsonl", kind=kind, **options).resolved()


def features(model, *columns):
    return [model.preprocess(list(column)) for column in columns]


def loss_and_grads(model, loss, inputs, labels):
    model.zero_grad()
    value = loss(inputs, labels)
    value.backward()
    grads = [p.grad.detach().clone() for p in model.parameters() if p.grad is not None]
    return value.detach(), grads


def assert_same(model, plain, cached, inputs, labels):
    torch.manual_seed(0)
    value, grads = loss_and_grads(model, plain, inputs, labels)
    torch.manual_seed(0)
    value_cached, grads_cached = loss_and_grads(model, cached, inputs, labels)
    torch.testing.assert_close(value_cached, value, atol=1e-5, rtol=1e-5)
    assert len(grads) == len(grads_cached) > 0
    for a, b in zip(grads, grads_cached, strict=True):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-4)


# ---------------------------------------------------------------- the dataset's flags reach the loss


def test_matryoshka_keeps_the_dataset_flags_and_the_gather(tiny_model):
    """The old registry form `loss: {name: matryoshka, loss: {...}}` built the inner InfoNCE without the
    dataset's in_batch_negatives flag and without the cross-device gather."""
    config = ObjectiveConfig(loss={"temperature": 0.02}, matryoshka=MatryoshkaConfig(dims=[32, 16]))
    labelled = dataset("classification", num_negatives=1, in_batch_negatives=False)
    loss = build_objective(labelled, config, tiny_model, world_size=2)
    assert isinstance(loss, MatryoshkaLoss) and isinstance(loss.loss, InfoNCELoss)
    assert loss.loss.in_batch_negatives is False and loss.loss.gather_across_devices is True
    assert loss.temperature == 0.02  # Matryoshka forwards its inner loss's options


def test_the_old_registry_spellings_are_refused_with_the_key_to_use():
    stage = [dataset()]
    nested = ObjectiveConfig(loss={"name": "matryoshka", "loss": {"name": "infonce"}, "matryoshka_dims": [16]})
    with pytest.raises(ConfigError, match=r"r\.yaml: stages\.s\.loss\.name: 'matryoshka' is a modifier.*`matryoshka:"):
        check_objective(stage, nested, "r.yaml: stages.s")
    cached = ObjectiveConfig(loss={"name": "cached_infonce", "mini_batch_size": 8})
    with pytest.raises(ConfigError, match=r"'cached_infonce' is a modifier.*gradcache_mini_batch: N"):
        check_objective(stage, cached, "r.yaml: stages.s")


def test_option_types_are_checked_at_load():
    with pytest.raises(ConfigError, match=r"s\.loss\.temperature: expected float, got str 'hot'"):
        check_objective([dataset()], ObjectiveConfig(loss={"temperature": "hot"}), "s")
    with pytest.raises(ConfigError, match=r"s\.loss_overrides\.triplets\.gama: unknown option.*'gamma'"):
        check_objective([dataset()], ObjectiveConfig(loss_overrides={"triplets": {"gama": 0.5}}), "s")


def test_a_loss_that_always_uses_in_batch_negatives_is_refused_for_data_without():
    hard_only = dataset("classification", in_batch_negatives=False)  # Seed1.5: hard negatives only
    with pytest.raises(ConfigError, match=r"dataset 'classification' \(classification\) trains without in-batch"):
        check_objective([hard_only], ObjectiveConfig(loss={"name": "mnrl"}), "s")
    # the flag is honoured where the loss has it, and irrelevant where the loss has no in-batch negatives
    check_objective([dataset("classification"), dataset("sts")], ObjectiveConfig(), "s")


def test_teacher_losses_need_a_teacher_and_a_teacher_stage_needs_teacher_losses():
    with pytest.raises(ConfigError, match=r"loss 'sdm' distils a teacher.*set the stage's `teacher`"):
        check_objective([dataset()], ObjectiveConfig(loss={"name": "sdm"}), "s")
    with pytest.raises(ConfigError, match=r"s\.teacher:.*dataset 'sts' trains with loss 'cosent'"):
        check_objective([dataset(), dataset("sts")], ObjectiveConfig(loss={"name": "sdm"}), "s", teacher=True)


# ---------------------------------------------------------------- every loss under GradCache


def test_cosent_under_gradcache_is_cached_and_exact(tiny_model):
    """CoSENT in a GradCache stage used to train uncached, silently."""
    tiny_model.eval()
    config = ObjectiveConfig(gradcache_mini_batch=2, cosent={"scale": 20.0})
    cached = build_objective(dataset("sts"), config, tiny_model)
    assert isinstance(cached, GradCacheLoss) and isinstance(cached.loss, CoSENTLoss)
    assert cached.scale == 20.0  # forwarded
    scores = torch.tensor([4.5, 1.0, 0.2, 3.0])
    assert_same(
        tiny_model, CoSENTLoss(tiny_model, scale=20.0), cached, features(tiny_model, ANCHORS, POSITIVES), scores
    )


def test_sdm_under_gradcache_embeds_the_anchors_only_and_is_exact(tiny_model):
    tiny_model.eval()
    teacher = F.normalize(torch.randn(4, 3, 48, generator=torch.Generator().manual_seed(1)), dim=-1)
    config = ObjectiveConfig(loss={"name": "sdm", "queue_size": 64}, gradcache_mini_batch=2)
    cached = build_objective(dataset(), config, tiny_model, teacher_dim=48)
    assert isinstance(cached, GradCacheLoss) and isinstance(cached.loss, SDMLoss)
    plain = SDMLoss(tiny_model, teacher_dim=48, queue_size=64)
    plain.projection.load_state_dict(cached.loss.projection.state_dict())
    inputs = features(tiny_model, ANCHORS, POSITIVES, NEGATIVES)
    assert_same(tiny_model, plain, cached, inputs, teacher)
    assert cached.loss.queue_filled == plain.queue_filled == 8


def test_infonce_and_mnrl_take_their_own_cached_variants(tiny_model):
    config = ObjectiveConfig(loss={"gamma": 0.5}, gradcache_mini_batch=2)
    cached = build_objective(dataset("classification", in_batch_negatives=False), config, tiny_model)
    assert isinstance(cached, CachedInfoNCELoss) and cached.mini_batch_size == 2
    assert cached.in_batch_negatives is False and cached.gamma == 0.5
    mnrl = build_objective(dataset(), ObjectiveConfig(loss={"name": "mnrl"}, gradcache_mini_batch=2), tiny_model)
    assert type(mnrl).__name__ == "CachedMultipleNegativesRankingLoss"


def test_cached_infonce_forwards_the_options_of_the_loss_it_wraps(tiny_model):
    """`cached.gamma` raised AttributeError; sentence-transformers' cached losses forward their options."""
    cached = CachedInfoNCELoss(tiny_model, mini_batch_size=2, gamma=0.5, temperature=0.05)
    assert cached.gamma == 0.5 and cached.temperature == 0.05
    cached.temperature = 0.02
    assert cached.loss.temperature == 0.02 and cached.loss.scale == pytest.approx(50.0)
    assert "temperature" not in cached.__dict__
    cached.mini_batch_size = 4  # its own option stays its own
    assert cached.mini_batch_size == 4 and not hasattr(cached.loss, "mini_batch_size")
    with pytest.raises(AttributeError):
        _ = cached.no_such_option


# ---------------------------------------------------------------- every loss under Matryoshka


def test_sdm_inside_matryoshka_trains_every_prefix_and_enqueues_once(tiny_model):
    """SDM inside Matryoshka was a shape error (the truncated student met the full-width projection)."""
    tiny_model.eval()
    teacher = F.normalize(torch.randn(4, 3, 32, generator=torch.Generator().manual_seed(2)), dim=-1)
    config = ObjectiveConfig(
        loss={"name": "sdm", "queue_size": 64, "projection": True},
        matryoshka=MatryoshkaConfig(dims=[32, 8], weights=[1.0, 0.5]),
    )
    loss = build_objective(dataset(), config, tiny_model, teacher_dim=32)  # teacher as wide as the student
    inputs = features(tiny_model, ANCHORS, POSITIVES, NEGATIVES)
    value = loss(inputs, teacher)
    assert loss.loss.queue_filled == 8  # one batch of 4 x (positive + negative), not once per dimension
    sdm = loss.loss
    with torch.no_grad():
        student = tiny_model(inputs[0])["sentence_embedding"]
        queue = teacher[:, 1:].reshape(-1, 32)
        expected = 0.0
        for dim, weight in ((32, 1.0), (8, 0.5)):
            truncated = F.normalize(student[:, :dim], dim=-1)
            projected = truncated @ sdm.projection.weight[:, :dim].T  # W's first d columns
            s = F.log_softmax(F.normalize(projected, dim=-1) @ queue.T / sdm.student_temperature, dim=1)
            t = F.log_softmax(teacher[:, 0] @ queue.T / sdm.teacher_temperature, dim=1)
            expected += weight * F.kl_div(s, t, log_target=True, reduction="batchmean")
    torch.testing.assert_close(value.detach(), expected, atol=1e-5, rtol=1e-5)
    value.backward()
    assert sdm.projection.weight.grad is not None


def test_sdm_inside_matryoshka_over_gradcache(tiny_model):
    teacher = F.normalize(torch.randn(4, 3, 48, generator=torch.Generator().manual_seed(3)), dim=-1)
    config = ObjectiveConfig(
        loss={"name": "sdm", "queue_size": 64}, gradcache_mini_batch=2, matryoshka=MatryoshkaConfig(dims=[32, 16])
    )
    loss = build_objective(dataset(), config, tiny_model, teacher_dim=48)
    assert describe_loss(loss).startswith("MatryoshkaLoss(") and " over GradCacheLoss(" in describe_loss(loss)
    value = loss(features(tiny_model, ANCHORS, POSITIVES, NEGATIVES), teacher)
    value.backward()
    assert torch.isfinite(value) and loss.loss.loss.queue_filled == 8
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in tiny_model.parameters())


@pytest.mark.parametrize("kind", ["triplets", "sts", "classification"])
def test_every_dataset_kind_under_both_modifiers(tiny_model, kind):
    config = ObjectiveConfig(gradcache_mini_batch=2, matryoshka=MatryoshkaConfig(dims=[32, 16]))
    loss = build_objective(dataset(kind, num_negatives=1 if kind != "sts" else None), config, tiny_model)
    inputs = features(tiny_model, ANCHORS, POSITIVES) + ([] if kind == "sts" else features(tiny_model, NEGATIVES))
    labels = torch.tensor([4.5, 1.0, 0.2, 3.0]) if kind == "sts" else None
    value = loss(inputs, labels)
    value.backward()
    assert torch.isfinite(value)


def test_matryoshka_wider_than_the_model_is_a_config_error(tiny_model):
    with pytest.raises(ConfigError, match=r"MatryoshkaLoss:.*embedding dimension"):
        build_objective(dataset(), ObjectiveConfig(matryoshka=MatryoshkaConfig(dims=[64])), tiny_model)


def test_plain_mnrl_is_mnrl(tiny_model):
    assert type(build_objective(dataset(), ObjectiveConfig(loss={"name": "mnrl"}), tiny_model)) is (
        MultipleNegativesRankingLoss
    )


# ---------------------------------------------------------------- the library does not import the program


def test_no_library_module_imports_the_recipe_program():
    """training/backbones.py imported recipes.schema; the library must not import `recipes` or `cli`."""
    root = Path(__file__).resolve().parents[2] / "embedforge"
    offenders = []
    for path in root.rglob("*.py"):
        package = path.relative_to(root).parts[0]
        if package in ("recipes", "cli") or path.name == "__main__.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            names += [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            if any(n.startswith(("embedforge.recipes", "embedforge.cli")) for n in names):
                offenders.append(f"{path.relative_to(root)}:{node.lineno}")
    assert offenders == []
