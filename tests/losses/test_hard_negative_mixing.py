"""The pair-wise sampler's contract: distinct valid indices, Beta(α, β) weights, seeded, global RNG untouched."""

from __future__ import annotations

import torch

from embedforge.losses.hard_negative_mixing import listwise_mix, sample_pairwise_mixing


def test_pairs_are_distinct_and_valid():
    valid = torch.tensor([[True, True, True, True], [False, True, False, True], [True, False, True, False]])
    j, k, lam = sample_pairwise_mixing(valid, count=200, seed=3)
    assert j.shape == k.shape == lam.shape == (3, 200)
    assert (j != k).all()
    rows = torch.arange(3).unsqueeze(1).expand(-1, 200)
    assert valid[rows, j].all() and valid[rows, k].all()
    assert {j[1].min().item(), j[1].max().item()} == {1, 3}
    assert set(j[0].tolist()) == {0, 1, 2, 3}  # all valid indices get drawn


def test_lambda_follows_beta_2_2():
    _, _, lam = sample_pairwise_mixing(torch.ones(1, 2, dtype=torch.bool), count=20000, seed=0)
    assert 0.0 < lam.min() and lam.max() < 1.0
    # Beta(2, 2): mean 1/2, variance αβ / ((α+β)^2 (α+β+1)) = 1/20; uniform would give 1/12
    assert abs(lam.mean().item() - 0.5) < 0.01
    assert abs(lam.var().item() - 0.05) < 0.003
    _, _, skewed = sample_pairwise_mixing(torch.ones(1, 2, dtype=torch.bool), count=20000, seed=0, alpha=2, beta=6)
    assert abs(skewed.mean().item() - 0.25) < 0.01


def test_seeded_and_leaves_the_global_rng_alone():
    valid = torch.ones(4, 5, dtype=torch.bool)
    state = torch.get_rng_state()
    first = sample_pairwise_mixing(valid, count=2, seed=42)
    assert torch.equal(state, torch.get_rng_state())
    again = sample_pairwise_mixing(valid, count=2, seed=42)
    other = sample_pairwise_mixing(valid, count=2, seed=43)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, other, strict=True))


def test_listwise_weights_follow_the_anchor_similarity():
    hard = torch.eye(3).unsqueeze(0)  # (1, 3, 3): three orthogonal unit negatives
    anchor = torch.tensor([[1.0, 0.5, 0.0]])
    mixed = listwise_mix(anchor, hard, torch.ones(1, 3, dtype=torch.bool), temperature=0.1)
    cosines = torch.tensor([1.0, 0.5, 0.0]) / torch.tensor([1.0, 0.5, 0.0]).norm()
    expected = torch.softmax(cosines / 0.1, dim=0)
    torch.testing.assert_close(mixed[0, 0], expected / expected.norm())
    masked = listwise_mix(anchor, hard, torch.tensor([[False, True, True]]), temperature=0.1)
    assert masked[0, 0, 0] == 0.0  # an invalid negative gets no weight
