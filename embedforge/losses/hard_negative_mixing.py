"""Online hard-negative mixing (KaLM-Embedding-V2, Eq. 5-7): synthesize extra hard negatives from real ones.

In plain words: for each anchor we blend its own mined hard negatives into new, still-hard negatives and
add them to the contrastive denominator, instead of re-mining the corpus every few thousand steps.

Formulas (``p_{i,1..M}`` are anchor ``i``'s hard negatives, L2-normalized; ``q_i`` is the anchor):

- pair-wise:  ``h_i = normalize(λ p_{i,j} + (1 - λ) p_{i,k})``, ``λ ~ Beta(α, β)`` (paper: α = β = 2),
  ``j ≠ k`` drawn uniformly from the anchor's hard negatives (KaLM Eq. 5);
- list-wise:  ``s_i = normalize(Σ_k λ_k p_{i,k})``, ``λ_k = softmax_k(s(q_i, p_{i,k}) / t)`` with ``t = 1`` as
  printed in KaLM Eq. 6 (cosine similarity, no temperature).

Decisions (documented here because the paper is silent on them):

- **Detached.** Synthetic negatives are built from detached embeddings (as MoCHi, Kalantidis et al. 2020, does
  with its synthetic features): they act as extra constant points in the anchor's denominator, so the gradient
  reaches the anchor through ``s(q_i, h)`` only. Letting it flow through the mix would push the real hard
  negatives a second time and add a ``q → λ_k → s_i`` path the paper does not describe.
- **False negatives.** Only negatives that survive the false-negative filter (``valid``) are mixed: mixing in
  a false negative would manufacture another false negative.
- **Too few negatives.** Mixing needs at least two valid hard negatives for the anchor (with one, pair-wise
  cannot pick ``j ≠ k`` and list-wise would just duplicate it). Such anchors get no synthetic negative: the
  returned validity flag is ``False`` and the loss masks that column.

Randomness: :func:`sample_pairwise_mixing` takes an integer ``seed`` and draws everything from a forked CPU RNG
seeded with it (``torch.random.fork_rng``), so the global RNG stream is untouched and a loss that draws the
seed once per step from the global RNG is reproducible under ``torch.manual_seed``.

References:
    - Zhao et al., "KaLM-Embedding-V2: Superior Training Techniques and Data Inspire A Versatile Embedding
      Model", 2025, Section 3.2 (https://arxiv.org/abs/2506.20923).
    - Kalantidis et al., "Hard Negative Mixing for Contrastive Learning" (MoCHi), NeurIPS 2020.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def sample_pairwise_mixing(
    valid: Tensor, count: int, seed: int, alpha: float = 2.0, beta: float = 2.0
) -> tuple[Tensor, Tensor, Tensor]:
    """Draw ``count`` pair-wise mixing recipes ``(j, k, λ)`` per anchor.

    Args:
        valid: ``(batch, M)`` bool, which hard negatives of each anchor may be mixed.
        count: synthetic negatives per anchor.
        seed: seed of the forked CPU RNG every draw comes from.
        alpha: first Beta parameter of ``λ``.
        beta: second Beta parameter of ``λ``.

    Returns:
        ``(j, k, lam)``, each ``(batch, count)``, on ``valid``'s device: two distinct valid indices and the
        mixing weight of ``j``. Rows with fewer than two valid negatives get arbitrary distinct indices (the
        caller flags those synthetic negatives invalid).
    """
    batch, num_negatives = valid.shape
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        # (batch * count, M): one sampling distribution per synthetic negative
        weights = valid.detach().to("cpu", torch.float32).repeat_interleave(count, dim=0)
        weights[weights.sum(dim=1) < 2] = 1.0  # cannot mix: sample anything, the caller masks it
        pairs = torch.multinomial(weights, 2, replacement=False)  # (batch * count, 2), j != k
        lam = torch.distributions.Beta(float(alpha), float(beta)).sample((batch * count,))  # (batch * count,)
    pairs = pairs.view(batch, count, 2).to(valid.device)
    return pairs[..., 0], pairs[..., 1], lam.view(batch, count).to(valid.device)


def pairwise_mix(hard: Tensor, j: Tensor, k: Tensor, lam: Tensor) -> Tensor:
    """``normalize(λ p_j + (1 - λ) p_k)`` per anchor (KaLM Eq. 5).

    Args:
        hard: ``(batch, M, dim)`` L2-normalized hard negatives.
        j: ``(batch, count)`` index of the first negative.
        k: ``(batch, count)`` index of the second negative.
        lam: ``(batch, count)`` weight of the first negative.

    Returns:
        ``(batch, count, dim)`` synthetic negatives, L2-normalized.
    """
    dim = hard.size(-1)
    p_j = hard.gather(1, j.unsqueeze(-1).expand(-1, -1, dim))  # (batch, count, dim)
    p_k = hard.gather(1, k.unsqueeze(-1).expand(-1, -1, dim))  # (batch, count, dim)
    lam = lam.to(hard.dtype).unsqueeze(-1)  # (batch, count, 1)
    return F.normalize(lam * p_j + (1.0 - lam) * p_k, p=2, dim=-1)


def listwise_mix(anchors: Tensor, hard: Tensor, valid: Tensor, temperature: float = 1.0) -> Tensor:
    """``normalize(Σ_k softmax_k(s(q, p_k) / t) p_k)`` over each anchor's valid hard negatives (KaLM Eq. 6).

    Args:
        anchors: ``(batch, dim)`` anchor embeddings (any norm).
        hard: ``(batch, M, dim)`` L2-normalized hard negatives.
        valid: ``(batch, M)`` bool, which negatives take part.
        temperature: divides the cosine similarities before the softmax (1.0 = the paper as printed).

    Returns:
        ``(batch, 1, dim)`` synthetic negatives, L2-normalized (zero rows where no negative is valid).
    """
    anchors = F.normalize(anchors, p=2, dim=-1)
    sims = torch.einsum("bd,bmd->bm", anchors, hard) / temperature  # (batch, M) cosine / t
    sims = sims.masked_fill(~valid, -torch.inf)
    has_valid = valid.any(dim=1, keepdim=True)  # (batch, 1)
    # rows without a valid negative would give softmax(-inf, ...) = NaN: give them zero weights instead
    weights = torch.where(has_valid, torch.softmax(torch.where(has_valid, sims, 0.0), dim=1), 0.0)
    mixed = torch.einsum("bm,bmd->bd", weights, hard)  # (batch, dim)
    return F.normalize(mixed, p=2, dim=-1).unsqueeze(1)


def synthesize_hard_negatives(
    anchors: Tensor,
    hard_negatives: list[Tensor],
    valid: Tensor,
    *,
    pairwise: int,
    listwise: bool,
    seed: int | None,
    alpha: float = 2.0,
    beta: float = 2.0,
    listwise_temperature: float = 1.0,
    sampler=sample_pairwise_mixing,
) -> tuple[Tensor, Tensor]:
    """Build the synthetic negatives of every anchor, detached.

    Args:
        anchors: ``(batch, dim)`` anchor embeddings.
        hard_negatives: ``M`` tensors of shape ``(batch, dim)``, the hard-negative columns (``M >= 2``).
        valid: ``(batch, M)`` bool, negatives that survived false-negative filtering.
        pairwise: pair-wise synthetic negatives per anchor (0 = off).
        listwise: add one list-wise synthetic negative per anchor.
        seed: seed for the pair-wise draws (required when ``pairwise > 0``).
        alpha: first Beta parameter of the pair-wise ``λ``.
        beta: second Beta parameter of the pair-wise ``λ``.
        listwise_temperature: softmax temperature of the list-wise weights.
        sampler: ``(valid, count, seed, alpha, beta) -> (j, k, lam)``; tests inject fixed recipes here.

    Returns:
        ``(synthetic, synthetic_valid)``: ``(batch, S, dim)`` with ``S = pairwise + listwise`` (pair-wise first),
        and ``(batch, S)`` bool (False for anchors with fewer than two valid hard negatives).
    """
    with torch.no_grad():
        anchors = anchors.detach()
        hard = F.normalize(torch.stack([h.detach() for h in hard_negatives], dim=1), p=2, dim=-1)  # (batch, M, dim)
        enough = valid.sum(dim=1) >= 2  # (batch,)
        synthetic: list[Tensor] = []
        if pairwise > 0:
            if seed is None:
                raise ValueError("pair-wise mixing needs a seed")
            j, k, lam = sampler(valid, pairwise, seed, alpha, beta)
            synthetic.append(pairwise_mix(hard, j, k, lam))  # (batch, pairwise, dim)
        if listwise:
            synthetic.append(listwise_mix(anchors, hard, valid, listwise_temperature))  # (batch, 1, dim)
        out = torch.cat(synthetic, dim=1)  # (batch, S, dim)
        return out, enough.unsqueeze(1).expand(-1, out.size(1))
