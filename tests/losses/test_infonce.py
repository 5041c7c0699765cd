"""InfoNCELoss against the naive reference (tests/losses/loss_reference.py) on hand-made tensors."""

from __future__ import annotations

import pytest
import torch
from loss_reference import reference_infonce
from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

from embedforge.errors import ConfigError
from embedforge.losses import InfoNCELoss

BATCH, DIM, NEGATIVES = 5, 8, 3


def make_embeddings(seed: int = 0, negatives: int = NEGATIVES) -> list[torch.Tensor]:
    """Anchors near their positives, hard negatives near the anchors: a realistic spread of similarities."""
    generator = torch.Generator().manual_seed(seed)
    anchors = torch.randn(BATCH, DIM, generator=generator)
    columns = [anchors, anchors + 0.8 * torch.randn(BATCH, DIM, generator=generator)]
    columns += [anchors + 1.2 * torch.randn(BATCH, DIM, generator=generator) for _ in range(negatives)]
    return [c.double().requires_grad_() for c in columns]


def loss_and_grads(loss_fn, embeddings):
    embeddings = [e.detach().clone().requires_grad_() for e in embeddings]
    loss = loss_fn(embeddings)
    loss.backward()
    return loss.detach(), [e.grad for e in embeddings]


def assert_matches_reference(options: dict, reference_options: dict, embeddings=None) -> torch.Tensor:
    embeddings = embeddings if embeddings is not None else make_embeddings()
    ours = InfoNCELoss(None, **options)
    if "sampler" in reference_options:
        ours.pairwise_sampler = reference_options.pop("sampler")
    loss, grads = loss_and_grads(ours.compute_loss_from_embeddings, embeddings)
    ref_loss, ref_grads = loss_and_grads(lambda e: reference_infonce(e, **reference_options), embeddings)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-9, atol=1e-9)
    for grad, ref_grad in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(grad, ref_grad, rtol=1e-8, atol=1e-9)
    return loss


def test_plain_matches_reference():
    assert_matches_reference({"temperature": 0.05}, {"temperature": 0.05})


def test_pairs_without_hard_negatives_match_reference():
    embeddings = make_embeddings(negatives=0)
    assert_matches_reference({"temperature": 0.1}, {"temperature": 0.1}, embeddings)


def test_in_batch_negatives_off_uses_own_hard_negatives_only():
    loss = assert_matches_reference(
        {"temperature": 0.05, "in_batch_negatives": False}, {"temperature": 0.05, "in_batch": False}
    )
    # Changing another anchor's positive must not change an in-batch-off loss.
    embeddings = make_embeddings()
    embeddings[1] = embeddings[1].detach().clone()
    embeddings[1][3] += 5.0
    loss_fn = InfoNCELoss(None, temperature=0.05, in_batch_negatives=False)
    per_row = loss_fn.row_losses(loss_fn.prepare(embeddings), 0, BATCH)[0]
    base = InfoNCELoss(None, temperature=0.05, in_batch_negatives=False)
    base_rows = base.row_losses(base.prepare(make_embeddings()), 0, BATCH)[0]
    torch.testing.assert_close(per_row[[0, 1, 2, 4]], base_rows[[0, 1, 2, 4]])
    assert loss.item() > 0


def test_focal_matches_reference_with_gradient_through_the_weight():
    loss = assert_matches_reference({"temperature": 0.05, "gamma": 0.5}, {"temperature": 0.05, "gamma": 0.5})
    plain = InfoNCELoss(None, temperature=0.05).compute_loss_from_embeddings(make_embeddings())
    assert loss < plain  # every weight (1 - p)^γ is < 1


def test_symmetric_matches_reference():
    assert_matches_reference(
        {"temperature": 0.05, "symmetric": True, "gamma": 0.5},
        {"temperature": 0.05, "symmetric": True, "gamma": 0.5},
    )


@pytest.mark.parametrize("margin", [0.0, 0.1, -0.05])
def test_false_negative_masking_matches_reference(margin):
    embeddings = make_embeddings(seed=3)
    # Make anchor 0's first hard negative and anchor 2's positive near-copies of anchor 0's positive.
    with torch.no_grad():
        embeddings[2][0] = embeddings[1][0] + 0.01
        embeddings[1][2] = embeddings[1][0] - 0.01
    assert_matches_reference(
        {"temperature": 0.05, "false_negative_margin": margin, "symmetric": True},
        {"temperature": 0.05, "margin": margin, "symmetric": True},
        embeddings,
    )


def test_false_negative_masking_removes_the_planted_duplicate():
    embeddings = make_embeddings(seed=3)
    with torch.no_grad():
        embeddings[2][0] = embeddings[1][0]  # exact duplicate of the positive as a hard negative
    plain = InfoNCELoss(None, temperature=0.05)
    masked = InfoNCELoss(None, temperature=0.05, false_negative_margin=0.05)
    plain_rows = plain.row_losses(plain.prepare(embeddings), 0, BATCH)[0]
    masked_rows = masked.row_losses(masked.prepare(embeddings), 0, BATCH)[0]
    assert plain_rows[0] > masked_rows[0] + 0.5  # the duplicate took about half the probability mass


def fixed_sampler(recipes):
    """A pair-wise sampler returning the given (j, k, λ) per anchor, recording it was called."""

    def sampler(valid, count, seed, alpha, beta):
        j = torch.tensor([[r[0] for r in row] for row in recipes])
        k = torch.tensor([[r[1] for r in row] for row in recipes])
        lam = torch.tensor([[r[2] for r in row] for row in recipes], dtype=torch.float64)
        assert j.shape == (valid.size(0), count)
        return j, k, lam

    return sampler


RECIPES = [[(0, 1, 0.3)], [(2, 0, 0.5)], [(1, 2, 0.9)], [(0, 2, 0.1)], [(2, 1, 0.65)]]
RECIPES_2 = [row + [(row[0][1], row[0][0], 0.2)] for row in RECIPES]


@pytest.mark.parametrize("in_batch", [True, False])
def test_pairwise_mixing_with_fixed_lambda_matches_reference(in_batch):
    loss = assert_matches_reference(
        {"temperature": 0.05, "mix_pairwise": 2, "in_batch_negatives": in_batch},
        {"temperature": 0.05, "pairwise": RECIPES_2, "in_batch": in_batch, "sampler": fixed_sampler(RECIPES_2)},
    )
    unmixed = InfoNCELoss(None, temperature=0.05, in_batch_negatives=in_batch)
    assert loss > unmixed.compute_loss_from_embeddings(make_embeddings())  # more negatives, higher loss


def test_listwise_mixing_matches_reference():
    assert_matches_reference(
        {"temperature": 0.05, "mix_listwise": True, "gamma": 0.5},
        {"temperature": 0.05, "listwise": True, "gamma": 0.5},
    )
    assert_matches_reference(
        {"temperature": 0.05, "mix_listwise": True, "listwise_temperature": 0.05},
        {"temperature": 0.05, "listwise": True, "listwise_temperature": 0.05},
    )


def test_all_options_together_match_reference():
    embeddings = make_embeddings(seed=5)
    with torch.no_grad():
        embeddings[3][1] = embeddings[1][1] + 0.01  # a false negative the mixing must leave out
    assert_matches_reference(
        {
            "temperature": 0.05,
            "gamma": 0.5,
            "symmetric": True,
            "false_negative_margin": 0.02,
            "mix_pairwise": True,
            "mix_listwise": True,
        },
        {
            "temperature": 0.05,
            "gamma": 0.5,
            "symmetric": True,
            "margin": 0.02,
            "pairwise": [[(0, 2, 0.4)], [(0, 2, 0.7)], [(0, 1, 0.5)], [(1, 2, 0.2)], [(2, 0, 0.35)]],
            "listwise": True,
            "sampler": fixed_sampler([[(0, 2, 0.4)], [(0, 2, 0.7)], [(0, 1, 0.5)], [(1, 2, 0.2)], [(2, 0, 0.35)]]),
        },
        embeddings,
    )


def test_mixing_with_one_hard_negative_is_skipped_with_a_warning(caplog):
    embeddings = make_embeddings(negatives=1)
    mixed = InfoNCELoss(None, mix_pairwise=True, mix_listwise=True)
    with caplog.at_level("WARNING", logger="embedforge.losses.infonce"):
        loss = mixed.compute_loss_from_embeddings(embeddings)
        mixed.compute_loss_from_embeddings(embeddings)
    assert sum("at least 2 hard-negative columns" in r.message for r in caplog.records) == 1
    torch.testing.assert_close(loss, InfoNCELoss(None).compute_loss_from_embeddings(embeddings))


def test_pairwise_mixing_is_reproducible_under_manual_seed():
    embeddings = make_embeddings()
    loss_fn = InfoNCELoss(None, mix_pairwise=3)
    torch.manual_seed(11)
    first = loss_fn.compute_loss_from_embeddings(embeddings)
    torch.manual_seed(11)
    again = loss_fn.compute_loss_from_embeddings(embeddings)
    other = loss_fn.compute_loss_from_embeddings(embeddings)  # the RNG moved on: other draws
    assert first.item() == again.item()
    assert first.item() != other.item()


@pytest.mark.parametrize("negatives", [0, 2])
@pytest.mark.parametrize("symmetric", [False, True])
def test_gamma_zero_equals_sentence_transformers_mnrl(negatives, symmetric):
    embeddings = [e.float() for e in make_embeddings(negatives=negatives)]
    ours = InfoNCELoss(None, temperature=0.05, gamma=0.0, symmetric=symmetric)
    directions = ("query_to_doc", "doc_to_query") if symmetric else ("query_to_doc",)
    mnrl = MultipleNegativesRankingLoss(None, scale=20.0, directions=directions, partition_mode="per_direction")
    loss, grads = loss_and_grads(ours.compute_loss_from_embeddings, embeddings)
    ref_loss, ref_grads = loss_and_grads(lambda e: mnrl.compute_loss_from_embeddings(e, None), embeddings)
    if not symmetric:
        assert loss.item() == ref_loss.item()  # same layout and ops: bit-identical
    torch.testing.assert_close(loss, ref_loss, rtol=1e-6, atol=1e-6)
    for grad, ref_grad in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(grad, ref_grad, rtol=1e-5, atol=1e-6)


def test_forward_on_a_model_equals_mnrl(tiny_model):
    tiny_model.eval()
    texts = [["a cat sleeps", "stocks fell", "rain today"], ["the cat naps", "markets drop", "wet weather"]]
    texts.append(["dogs bark", "bonds rose", "sunny skies"])
    features = [tiny_model.preprocess(column) for column in texts]
    ours = InfoNCELoss(tiny_model, temperature=0.05)(features, None)
    theirs = MultipleNegativesRankingLoss(tiny_model, scale=20.0)(features, None)
    torch.testing.assert_close(ours, theirs)


def test_last_stats_report_the_focal_weight():
    loss_fn = InfoNCELoss(None, gamma=0.5, false_negative_margin=0.1)
    loss_fn.compute_loss_from_embeddings(make_embeddings())
    assert 0.0 < loss_fn.last_stats["focal_weight"].item() < 1.0
    assert 0.0 < loss_fn.last_stats["negatives"].item() <= BATCH * (1 + NEGATIVES) - 1


@pytest.mark.parametrize(
    ("argument", "value"),
    [
        ("temperature", 0.0),
        ("temperature", -1),
        ("temperature", "0.05"),
        ("gamma", -0.5),
        ("gamma", float("nan")),
        ("symmetric", "yes"),
        ("in_batch_negatives", 1),
        ("false_negative_margin", "0.1"),
        ("mix_pairwise", -1),
        ("mix_pairwise", 1.5),
        ("mix_listwise", 2),
        ("mix_alpha", 0),
        ("mix_beta", -2.0),
        ("listwise_temperature", 0),
        ("gather_across_devices", None),
    ],
)
def test_bad_arguments_name_the_argument(argument, value):
    with pytest.raises(ValueError, match=rf"{argument}={value!r}".replace("(", r"\(").replace(")", r"\)")) as info:
        InfoNCELoss(None, **{argument: value})
    assert isinstance(info.value, ConfigError)


def test_symmetric_without_in_batch_negatives_is_refused():
    with pytest.raises(ConfigError, match="in_batch_negatives"):
        InfoNCELoss(None, symmetric=True, in_batch_negatives=False)


# ------------------------------------------------------------------ same-class masking (labelled rows)
CLASSES = [[0, 1, 2, 1], [1, 0, 2, 3], [0, 2, 1, 3], [2, 0, 1, -1], [1, 2, 0, 3]]  # anchor, then each negative


def class_loss_and_grads(options: dict, embeddings, labels):
    embeddings = [e.detach().clone().requires_grad_() for e in embeddings]
    loss = InfoNCELoss(None, **options).compute_loss_from_embeddings(embeddings, labels)
    loss.backward()
    return loss.detach(), [e.grad for e in embeddings]


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("gamma", [0.0, 0.5])
def test_same_class_candidates_are_not_negatives_matches_reference(symmetric, gamma):
    """Rows 0 and 2 share class 0, rows 1 and 4 class 1: their positives and same-class hard negatives drop out."""
    embeddings = make_embeddings(seed=7)
    options = {"temperature": 0.05, "gamma": gamma, "symmetric": symmetric}
    loss, grads = class_loss_and_grads(options, embeddings, torch.tensor(CLASSES))
    ref = [e.detach().clone().requires_grad_() for e in embeddings]
    ref_loss = reference_infonce(ref, temperature=0.05, gamma=gamma, symmetric=symmetric, classes=CLASSES)
    ref_loss.backward()
    torch.testing.assert_close(loss, ref_loss.detach(), rtol=1e-9, atol=1e-9)
    for grad, r in zip(grads, ref, strict=True):
        torch.testing.assert_close(grad, r.grad, rtol=1e-8, atol=1e-9)
    unlabelled = InfoNCELoss(None, **options).compute_loss_from_embeddings(make_embeddings(seed=7))
    assert not torch.isclose(loss, unlabelled)  # the masking changed something


def test_one_class_per_row_labels_mask_only_the_positives_of_the_anchors_class():
    """(B,) labels: the anchor's class; hard negatives' classes are unknown and stay negatives."""
    embeddings = make_embeddings(seed=8)
    anchor_classes = [row[0] for row in CLASSES]
    loss, _ = class_loss_and_grads({"temperature": 0.05}, embeddings, torch.tensor(anchor_classes))
    known = [[c] + [-1] * NEGATIVES for c in anchor_classes]
    ref = reference_infonce([e.detach() for e in embeddings], temperature=0.05, classes=known)
    torch.testing.assert_close(loss, ref, rtol=1e-9, atol=1e-9)


def test_distinct_classes_float_labels_or_the_flag_off_change_nothing():
    embeddings = make_embeddings(seed=9)
    plain = InfoNCELoss(None, temperature=0.05).compute_loss_from_embeddings(embeddings)
    distinct = torch.tensor([[i, -1, -1, -1] for i in range(BATCH)])
    same = torch.zeros(BATCH, 1 + NEGATIVES, dtype=torch.long)
    cases = [
        (InfoNCELoss(None, temperature=0.05), distinct),
        (InfoNCELoss(None, temperature=0.05), torch.rand(BATCH)),  # scores / teacher embeddings: not classes
        (InfoNCELoss(None, temperature=0.05, mask_same_class=False), same),
    ]
    for loss_fn, labels in cases:
        torch.testing.assert_close(loss_fn.compute_loss_from_embeddings(embeddings, labels), plain)
    # one class everywhere with every class known: nothing is a negative, every row contributes 0
    masked = InfoNCELoss(None, temperature=0.05).compute_loss_from_embeddings(embeddings, same)
    assert masked.item() == 0.0


def test_class_labels_of_the_wrong_shape_are_refused():
    with pytest.raises(ValueError, match=r"class labels must have shape \(batch,\) or \(batch, 1 \+ hard negatives\)"):
        InfoNCELoss(None).compute_loss_from_embeddings(make_embeddings(), torch.zeros(BATCH, 9, dtype=torch.long))


@pytest.mark.parametrize("margin", [0.0, 0.1])
def test_known_other_class_negatives_survive_the_false_negative_margin(margin):
    """Labels outrank the similarity guess: a hard negative of another class scoring above the positive stays."""
    embeddings = make_embeddings(seed=3)
    with torch.no_grad():
        # anchor 0's first hard negative: closer to the anchor than its positive is (the margin's target)
        embeddings[2][0] = 0.9 * embeddings[0][0] + 0.1 * embeddings[1][0]
    options = {"temperature": 0.05, "false_negative_margin": margin, "gamma": 0.5, "mix_listwise": True}
    loss, grads = class_loss_and_grads(options, embeddings, torch.tensor(CLASSES))
    ref = [e.detach().clone().requires_grad_() for e in embeddings]
    ref_loss = reference_infonce(ref, temperature=0.05, gamma=0.5, margin=margin, listwise=True, classes=CLASSES)
    ref_loss.backward()
    torch.testing.assert_close(loss, ref_loss.detach(), rtol=1e-9, atol=1e-9)
    for grad, r in zip(grads, ref, strict=True):
        torch.testing.assert_close(grad, r.grad, rtol=1e-8, atol=1e-9)
    # the same batch with that negative's class unknown: the margin drops it, and the loss changes
    unknown = [row[:] for row in CLASSES]
    unknown[0][1] = -1
    without, _ = class_loss_and_grads(options, embeddings, torch.tensor(unknown))
    assert not torch.isclose(loss, without)
