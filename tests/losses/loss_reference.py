"""Naive per-anchor reference implementations of the losses, written from the papers' formulas.

Everything is a Python loop over anchors and candidates in float64 on scalar torch ops, so autograd gives
reference gradients too. Nothing here is shared with embedforge's vectorized code.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def cos(a: Tensor, b: Tensor) -> Tensor:
    return torch.dot(a, b) / (a.norm() * b.norm())


def unit(v: Tensor) -> Tensor:
    return v / v.norm()


def pairwise_synthetic(negatives: list[Tensor], i: int, j: int, k: int, lam: float) -> Tensor:
    """KaLM Eq. 5 for anchor i, from detached, normalized hard negatives."""
    p_j = unit(negatives[j][i].detach())
    p_k = unit(negatives[k][i].detach())
    return unit(lam * p_j + (1 - lam) * p_k)


def listwise_synthetic(anchor: Tensor, negatives: list[Tensor], i: int, valid: list[bool], t: float = 1.0) -> Tensor:
    """KaLM Eq. 6 for anchor i: softmax over valid negatives of cos(q, p_k) / t."""
    q = anchor.detach()
    ks = [k for k in range(len(negatives)) if valid[k]]
    exps = [math.exp(float(cos(q, negatives[k][i].detach())) / t) for k in ks]
    total = sum(exps)
    mixed = sum((e / total) * unit(negatives[k][i].detach()) for e, k in zip(exps, ks, strict=True))
    return unit(mixed)


def infonce_direction(
    anchors: list[Tensor],
    candidates: list[tuple[Tensor, int, bool]],
    temperature: float,
    gamma: float,
    in_batch: bool,
    margin: float | None,
    anchor_classes: list[int] | None = None,
) -> Tensor:
    """mean_i -w_i log p_i, candidates = (vector, owner anchor, is_positive_of_owner[, class id]).

    With ``anchor_classes``, a candidate whose class equals anchor i's (both known, >= 0) is not a negative.
    """
    total = torch.zeros((), dtype=torch.float64)
    for i, q in enumerate(anchors):
        positive = next(c[0] for c in candidates if c[1] == i and c[2])
        s_pos = cos(q, positive)
        terms = [s_pos / temperature]
        for vector, owner, is_pos, *cls in candidates:
            if owner == i and is_pos:
                continue
            if not in_batch and owner != i:
                continue
            known = anchor_classes is not None and cls and cls[0] >= 0 and anchor_classes[i] >= 0
            if known and cls[0] == anchor_classes[i]:
                continue  # same class: not a negative
            s = cos(q, vector)
            if margin is not None and float(s.detach()) > float(s_pos.detach()) - margin and not known:
                continue  # the margin only guesses for candidates of unknown class
            terms.append(s / temperature)
        z = sum(torch.exp(t) for t in terms)
        p = torch.exp(terms[0]) / z
        weight = (1 - p) ** gamma
        total = total - weight * torch.log(p)
    return total / len(anchors)


def reference_infonce(
    embeddings: list[Tensor],
    temperature: float = 0.05,
    gamma: float = 0.0,
    symmetric: bool = False,
    in_batch: bool = True,
    margin: float | None = None,
    pairwise: list[list[tuple[int, int, float]]] | None = None,
    listwise: bool = False,
    listwise_temperature: float = 1.0,
    classes: list[list[int]] | None = None,
) -> Tensor:
    """The InfoNCE family on per-column (B, D) float64 embeddings [anchor, positive, negative_1, ...].

    ``pairwise[i]`` lists anchor i's (j, k, λ) recipes. Mixing uses only negatives passing the false-negative
    rule, and an anchor with fewer than two such negatives gets no synthetic negative. ``classes[i]`` = class ids
    of row i's anchor (and positive), then of its negatives (-1 unknown; synthetic negatives are unknown).
    """
    anchor_col, positive_col, *negative_cols = embeddings
    batch = anchor_col.size(0)
    anchors = [anchor_col[i] for i in range(batch)]
    cls = classes or [[-1] * (1 + len(negative_cols))] * batch
    anchor_classes = [row[0] for row in cls] if classes is not None else None
    candidates: list[tuple] = [(positive_col[j], j, True, cls[j][0]) for j in range(batch)]
    for c, column in enumerate(negative_cols):
        candidates += [(column[j], j, False, cls[j][1 + c]) for j in range(batch)]
    for i in range(batch):
        valid = [True] * len(negative_cols)
        known = [cls[i][0] >= 0 and cls[i][1 + c] >= 0 for c in range(len(negative_cols))]
        if margin is not None:
            s_pos = float(cos(anchors[i], positive_col[i]).detach())
            valid = [
                float(cos(anchors[i], col[i]).detach()) <= s_pos - margin or (known[c] and cls[i][1 + c] != cls[i][0])
                for c, col in enumerate(negative_cols)
            ]
        valid = [v and not (known[c] and cls[i][1 + c] == cls[i][0]) for c, v in enumerate(valid)]
        if sum(valid) < 2:
            continue
        for j, k, lam in (pairwise or [[]] * batch)[i]:
            candidates.append((pairwise_synthetic(negative_cols, i, j, k, lam), i, False))
        if listwise:
            candidates.append(
                (listwise_synthetic(anchors[i], negative_cols, i, valid, listwise_temperature), i, False)
            )
    loss = infonce_direction(anchors, candidates, temperature, gamma, in_batch, margin, anchor_classes)
    if symmetric:
        # d->q: each positive against all anchors
        reverse = [(anchors[j], j, True, cls[j][0]) for j in range(batch)]
        positives = [positive_col[i] for i in range(batch)]
        d2q = infonce_direction(positives, reverse, temperature, gamma, True, margin, anchor_classes)
        loss = (loss + d2q) / 2
    return loss


def reference_l2_kd(student: list[Tensor], teacher: Tensor) -> Tensor:
    """Reimers & Gurevych 2020: mean over columns of mean over rows and coordinates of (s - t)^2."""
    columns = []
    for c, column in enumerate(student):
        total = torch.zeros((), dtype=torch.float64)
        for i in range(column.size(0)):
            for k in range(column.size(1)):
                total = total + (column[i, k] - teacher[i, c, k]) ** 2
        columns.append(total / (column.size(0) * column.size(1)))
    return sum(columns) / len(columns)


def reference_contrastive_kd(
    student: list[Tensor], teacher: Tensor, t_s: float, t_t: float, in_batch: bool = True
) -> Tensor:
    """KL(P_T || P_S) per anchor over the documents (all columns after the anchor, every row or only its own)."""
    batch = student[0].size(0)
    documents = [(c, j) for c in range(1, len(student)) for j in range(batch)]
    total = torch.zeros((), dtype=torch.float64)
    for i in range(batch):
        candidates = [(c, j) for c, j in documents if in_batch or j == i]
        s_logits = [cos(student[0][i], student[c][j]) / t_s for c, j in candidates]
        t_logits = [cos(teacher[i, 0], teacher[j, c]) / t_t for c, j in candidates]
        s_z = sum(torch.exp(x) for x in s_logits)
        t_z = sum(torch.exp(x) for x in t_logits)
        for s_logit, t_logit in zip(s_logits, t_logits, strict=True):
            p_t = torch.exp(t_logit) / t_z
            p_s = torch.exp(s_logit) / s_z
            total = total + p_t * torch.log(p_t / p_s)
    return total / batch
