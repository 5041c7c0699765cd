"""InfoNCE with the training-objective options of KaLM-Embedding-V2, Seed1.5-Embedding and SEA-Embedding."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from sentence_transformers.base.losses.merged_forward import embed_columns
from sentence_transformers.util import all_gather, all_gather_with_grad, cos_sim, get_rank, pairwise_cos_sim
from torch import Tensor, nn

from embedforge.errors import ConfigError
from embedforge.losses._checks import check as _check
from embedforge.losses._checks import is_number as _is_number
from embedforge.losses.hard_negative_mixing import sample_pairwise_mixing, synthesize_hard_negatives

logger = logging.getLogger(__name__)

_HALF = (torch.float16, torch.bfloat16)


@dataclass
class PreparedBatch:
    """Everything the per-row loss needs, built once per batch (see :meth:`InfoNCELoss.prepare`)."""

    anchors: Tensor  # (B, D) this rank's anchors
    positives: Tensor  # (B, D) this rank's positives
    candidates: Tensor  # (C, D) all ranks' candidates: blocks of W rows = positives, hard negs, synthetic negs
    owner: Tensor  # (C,) global index of the anchor each candidate belongs to
    usable: Tensor | None  # (C,) False for synthetic negatives that could not be built; None = all usable
    all_anchors: Tensor  # (W, D) all ranks' anchors (the d->q candidates)
    offset: int  # global index of this rank's first anchor
    anchor_classes: Tensor | None = None  # (W,) class id of each anchor (and its positive); None = no classes
    candidate_classes: Tensor | None = None  # (C,) class id of each candidate, -1 = unknown (never masked)


class InfoNCELoss(nn.Module):
    """InfoNCE over in-batch and hard negatives, with focal reweighting, symmetry, false-negative masking and
    online hard-negative mixing as options.

    In plain words: each anchor must pick its own positive out of a candidate set (its hard negatives, the
    other anchors' positives and hard negatives, and optionally synthetic negatives mixed from its hard
    negatives); the loss is the cross-entropy of that choice, optionally weighted towards hard anchors.

    Formula, for anchor ``q_i`` with positive ``d_i^+``, cosine similarity ``s`` and temperature ``τ``::

        Z_i = e^{s(q_i, d_i^+)/τ} + Σ_{d ∈ N_i} e^{s(q_i, d)/τ}              (KaLM Eq. 3, Eq. 7 with mixing)
        p_i = e^{s(q_i, d_i^+)/τ} / Z_i,     w_i = (1 - p_i)^γ                (KaLM Eq. 4)
        L_q→d = mean_i  -w_i log p_i
        L = L_q→d                          or  (L_q→d + L_d→q) / 2 if symmetric (SEA Eq. 1)

    ``N_i`` (the negatives of anchor ``i``):

    - ``in_batch_negatives=True``: all hard negatives of all anchors, the other anchors' positives and all
      synthetic negatives (KaLM Eq. 3 and 7 sum the hard and synthetic negatives over the whole batch);
      ``False``: only anchor ``i``'s own hard and synthetic negatives (Seed1.5 task-aware negatives: retrieval
      uses in-batch + hard, other tasks hard only). Hard negatives are always used when the columns exist.
    - ``false_negative_margin=m``: any candidate with ``s(q_i, d) > s(q_i, d_i^+) - m`` is dropped (Seed1.5
      filters negatives "excessively similar to positives" in-batch and hard alike; it gives no rule or
      value). ``m > 0`` also drops negatives slightly below the positive (and exact duplicates of it);
      ``m < 0`` only drops those clearly above it (Qwen3-Embedding's rule ``s > s^+ + 0.1`` is ``m = -0.1``).
    - ``mask_same_class`` (default on): when the batch carries integer class labels (the ``label`` column that
      embedforge's classification/clustering rows hold: the class id of the anchor, then of each hard negative,
      ``-1`` = unknown), a candidate of the anchor's own class is never a negative — the other rows' positives
      and hard negatives of that class are false negatives by construction (the supervised-contrastive view of
      Khosla et al. 2020; KaLM-V2 §3.4.2 and Seed1.5 avoid them by turning in-batch negatives off for such data,
      which also throws away every true in-batch negative). A candidate of a known *other* class is a true
      negative by its label, so the false-negative margin (a similarity guess) does not drop it. Float labels
      (scores, teacher embeddings) are ignored.
    - mixing (KaLM Eq. 5-7, :mod:`embedforge.losses.hard_negative_mixing`): ``mix_pairwise`` synthetic
      negatives ``normalize(λ p_j + (1-λ) p_k)``, ``λ ~ Beta(mix_alpha, mix_beta)``, and with ``mix_listwise``
      one ``normalize(Σ_k softmax_k(s(q_i, p_k)/listwise_temperature) p_k)`` per anchor, built from the
      anchor's hard negatives that pass the false-negative filter, *detached* (as MoCHi), then treated as
      extra hard-negative columns (shared in-batch like the real ones; the filter applies to them too).

    Decisions:

    - **Focal weight keeps its gradient** (not detached), as in the focal loss of Lin et al. (2017) that KaLM
      adapts; with ``γ = 0`` the weight is exactly 1 and the loss is plain InfoNCE (identical to
      ``MultipleNegativesRankingLoss(scale=1/τ)``). ``1 - p_i`` is computed as ``exp(logsumexp(negatives) -
      log Z_i)``, stable even when ``p_i`` rounds to 1.
    - **Symmetric** follows the symmetric InfoNCE that SEA adopts from Günther et al. (2024): the d→q term
      scores each positive ``d_i^+`` against all anchors ``{q_j}`` (hard negatives are documents, so they
      only appear in q→d), with its own focal weight and the same false-negative rule; the two directions are
      averaged (Günther et al. add them; the factor 1/2 only rescales the learning rate, and keeps the loss
      comparable to the one-directional one, as ``MultipleNegativesRankingLoss(partition_mode="per_direction")``).
      SEA's Eq. 1 did not survive text extraction, so the averaging is our reading.
    - Rows left without any negative (e.g. in-batch off, no hard negatives) contribute zero loss.
    - Pair-wise mixing draws one seed per step from the global torch RNG, before embedding; nothing else
      touches the RNG, so runs are reproducible under ``torch.manual_seed`` and the cached variant sees the
      same draws as this one.

    Args:
        model: the SentenceTransformer being trained.
        temperature: ``τ`` in ``s/τ`` (KaLM 0.01, SEA 0.03; default 0.05 = sentence-transformers' scale 20).
        gamma: focal focusing parameter ``γ >= 0`` (KaLM and SEA: 0.5; 0 = plain InfoNCE).
        symmetric: add the d→q direction (SEA).
        in_batch_negatives: use other anchors' candidates as negatives (False: own hard negatives only).
        false_negative_margin: drop negatives with ``s > s^+ - margin`` (None = keep all).
        mix_pairwise: pair-wise synthetic negatives per anchor (True = 1, KaLM uses 1; needs >= 2 hard negatives).
        mix_listwise: add one list-wise synthetic negative per anchor (KaLM: yes; needs >= 2 hard negatives).
        mix_alpha: ``α`` of the pair-wise ``Beta(α, β)`` (KaLM: 2).
        mix_beta: ``β`` of the pair-wise ``Beta(α, β)`` (KaLM: 2).
        listwise_temperature: divides ``s(q, p_k)`` in the list-wise softmax (1.0 = KaLM Eq. 6 as printed).
        mask_same_class: with integer class labels in the batch, candidates of the anchor's class are not
            negatives (False: labels are ignored).
        gather_across_devices: gather anchors and candidates from all ranks, with gradients, so every rank
            sees the global batch as in-batch negatives.

    With fewer than two hard-negative columns the mixing options are skipped with a one-time warning (a recipe
    may mix datasets with and without hard negatives); anchors whose hard negatives are mostly filtered as
    false negatives silently get no synthetic negative.

    References:
        - Zhao et al., KaLM-Embedding-V2, 2025, Section 3.2, Eq. 3-7 (https://arxiv.org/abs/2506.20923).
        - ByteDance Seed, Seed1.5-Embedding, 2025 (false-negative filtering, task-aware negatives).
        - Limkonchotiwat et al., SEA-Embedding, 2026, Section 2.2.1.
        - Günther et al., Jina Embeddings 2, 2023 (symmetric InfoNCE, https://arxiv.org/abs/2310.19923).
        - Lin et al., Focal Loss for Dense Object Detection, ICCV 2017.

    Inputs:
        +-------------------------------------------------+--------+
        | Inputs                                          | Labels |
        +=================================================+========+
        | (anchor, positive) pairs                        | none   |
        +-------------------------------------------------+--------+
        | (anchor, positive, negative_1, ..., negative_n) | none   |
        +-------------------------------------------------+--------+
        | (anchor, positive, negative_1, ..., negative_n) | class  |
        |                                                 | ids    |
        +-------------------------------------------------+--------+

    Class ids: ``(B,)`` (the anchor's class, shared by its positive; hard negatives unknown) or ``(B, 1 + n)``
    (the anchor's class, then each hard negative's), integers, ``-1`` = unknown.

    Relations:
        - With every option at its default it equals sentence-transformers' ``MultipleNegativesRankingLoss``
          with ``scale = 1/temperature``; ``symmetric=True`` (γ = 0) equals MNRL with
          ``directions=("query_to_doc", "doc_to_query"), partition_mode="per_direction"``.
        - :class:`~embedforge.losses.cached_infonce.CachedInfoNCELoss` computes the same loss and gradients
          with GradCache, so the batch size no longer depends on memory.
        - Wrap in ``MatryoshkaLoss`` (registry name ``"matryoshka"``) for nested dimensions.

    Example:
        ::

            from datasets import Dataset
            from sentence_transformers import SentenceTransformerTrainer
            from embedforge.losses import InfoNCELoss
            from embedforge.models import load_model

            model = load_model("all-MiniLM-L6-v2")
            train = Dataset.from_dict({
                "anchor": ["how do cats sleep", "capital of France"],
                "positive": ["Cats sleep up to 16 hours a day.", "Paris is the capital of France."],
                "negative_1": ["Dogs bark at night.", "Lyon is a city in France."],
                "negative_2": ["Cats are mammals.", "France borders Spain."],
            })
            loss = InfoNCELoss(model, temperature=0.01, gamma=0.5, mix_pairwise=True, mix_listwise=True)
            SentenceTransformerTrainer(model=model, train_dataset=train, loss=loss).train()
    """

    def __init__(
        self,
        model: nn.Module,
        temperature: float = 0.05,
        gamma: float = 0.0,
        symmetric: bool = False,
        in_batch_negatives: bool = True,
        false_negative_margin: float | None = None,
        mix_pairwise: bool | int = False,
        mix_listwise: bool = False,
        mix_alpha: float = 2.0,
        mix_beta: float = 2.0,
        listwise_temperature: float = 1.0,
        mask_same_class: bool = True,
        gather_across_devices: bool = False,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        _check(_is_number(temperature) and temperature > 0, name, "temperature", temperature, "a number > 0")
        _check(_is_number(gamma) and gamma >= 0, name, "gamma", gamma, "a number >= 0")
        for flag, value in (
            ("symmetric", symmetric),
            ("in_batch_negatives", in_batch_negatives),
            ("mask_same_class", mask_same_class),
            ("gather_across_devices", gather_across_devices),
        ):
            _check(isinstance(value, bool), name, flag, value, "true or false")
        _check(
            false_negative_margin is None or _is_number(false_negative_margin),
            name,
            "false_negative_margin",
            false_negative_margin,
            "a number (cosine units) or null to disable",
        )
        _check(
            isinstance(mix_pairwise, int) and mix_pairwise >= 0,
            name,
            "mix_pairwise",
            mix_pairwise,
            "true/false or a count >= 0 of pair-wise synthetic negatives per anchor",
        )
        _check(
            isinstance(mix_listwise, bool) or mix_listwise in (0, 1),
            name,
            "mix_listwise",
            mix_listwise,
            "true or false (list-wise mixing is deterministic, so more than one would be duplicates)",
        )
        for param, value in (("mix_alpha", mix_alpha), ("mix_beta", mix_beta)):
            _check(_is_number(value) and value > 0, name, param, value, "a Beta parameter > 0")
        _check(
            _is_number(listwise_temperature) and listwise_temperature > 0,
            name,
            "listwise_temperature",
            listwise_temperature,
            "a number > 0",
        )
        if symmetric and not in_batch_negatives:
            raise ConfigError(
                f"{name}: symmetric=True needs in_batch_negatives=True: the d->q direction scores each positive "
                "against the other anchors, so without in-batch negatives it has nothing to contrast."
            )
        self.model = model
        self.temperature = float(temperature)
        self.gamma = float(gamma)
        self.symmetric = symmetric
        self.in_batch_negatives = in_batch_negatives
        self.false_negative_margin = None if false_negative_margin is None else float(false_negative_margin)
        self.mix_pairwise = int(mix_pairwise)
        self.mix_listwise = bool(mix_listwise)
        self.mix_alpha = float(mix_alpha)
        self.mix_beta = float(mix_beta)
        self.listwise_temperature = float(listwise_temperature)
        self.mask_same_class = mask_same_class
        self.gather_across_devices = gather_across_devices
        # Injection point for the pair-wise (j, k, λ) draws; tests replace it with fixed recipes.
        self.pairwise_sampler = sample_pairwise_mixing
        # Detached figures of the last call, for logging: mean focal weight, negatives per anchor, ...
        self.last_stats: dict[str, Tensor] = {}
        self._warned: set[str] = set()

    @property
    def scale(self) -> float:
        """``1 / temperature`` (read from the temperature, so assigning one keeps both in step)."""
        return 1.0 / self.temperature

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None = None) -> Tensor:
        seed = self.draw_seed()  # before embedding, so that the cached variant sees the same RNG state
        embeddings = embed_columns(self.model, sentence_features)
        return self.compute_loss_from_embeddings(embeddings, labels, seed=seed)

    def compute_loss_from_embeddings(
        self, embeddings: list[Tensor], labels: Tensor | None = None, seed: int | None = None
    ) -> Tensor:
        """The loss from per-column embeddings ``[anchor, positive, negative_1, ...]``, each ``(B, D)``.

        ``seed`` seeds the pair-wise mixing draws; None draws one from the global torch RNG.
        """
        batch = self.prepare(embeddings, seed, labels)
        per_row, stats = self.row_losses(batch, 0, batch.anchors.size(0))
        self.last_stats = stats
        return per_row.mean()

    def draw_seed(self) -> int | None:
        """One seed for this step's pair-wise mixing, from the global torch RNG (None when it is off)."""
        if self.mix_pairwise == 0:
            return None
        return int(torch.randint(0, 2**62, (1,)).item())

    def prepare(
        self, embeddings: list[Tensor], seed: int | None = None, labels: Tensor | None = None
    ) -> PreparedBatch:
        """Synthesize the mixed negatives, gather across ranks and lay the candidates out in one matrix.

        ``labels``: the batch's labels; integer ones are class ids (see ``mask_same_class``), others are ignored.
        """
        if len(embeddings) < 2:
            raise ValueError(f"{type(self).__name__} needs at least (anchor, positive) columns, got {len(embeddings)}")
        anchors, positives, *hard = embeddings
        batch_size = anchors.size(0)
        columns = [positives, *hard]
        classes = self._class_ids(labels, batch_size, len(hard), anchors.device)  # (B, 1 + M) or None
        synthetic_usable = None  # (B, S) bool
        if (self.mix_pairwise or self.mix_listwise) and len(hard) < 2:
            self._warn_once(
                "mixing",
                f"{type(self).__name__}: hard-negative mixing needs at least 2 hard-negative columns, the batch "
                f"has {len(hard)}; mixing is skipped for such batches.",
            )
        elif self.mix_pairwise or self.mix_listwise:
            with torch.no_grad():
                valid = torch.ones(batch_size, len(hard), dtype=torch.bool, device=anchors.device)  # (B, M)
                if self.false_negative_margin is not None:
                    positive_sims = pairwise_cos_sim(anchors, positives)  # (B,)
                    hard_sims = torch.stack([pairwise_cos_sim(anchors, h) for h in hard], dim=1)  # (B, M)
                    too_similar = hard_sims > positive_sims.unsqueeze(1) - self.false_negative_margin
                    if classes is not None:  # a negative of a known other class is a true negative
                        too_similar &= ~_other_class(classes[:, :1], classes[:, 1:])
                    valid = ~too_similar
                if classes is not None:
                    valid &= ~_same_class(classes[:, :1], classes[:, 1:])
            if seed is None:
                seed = self.draw_seed()
            synthetic, synthetic_usable = synthesize_hard_negatives(
                anchors,
                hard,
                valid,
                pairwise=self.mix_pairwise,
                listwise=self.mix_listwise,
                seed=seed,
                alpha=self.mix_alpha,
                beta=self.mix_beta,
                listwise_temperature=self.listwise_temperature,
                sampler=self.pairwise_sampler,
            )
            columns.extend(synthetic.to(positives.dtype).unbind(dim=1))  # S tensors of (B, D)
        num_real = 1 + len(hard)
        if not self.in_batch_negatives and num_real == len(columns) == 1:
            self._warn_once(
                "no-negatives",
                f"{type(self).__name__}: in_batch_negatives=False and the batch has no hard-negative columns, so "
                "no anchor has a negative and the loss is 0. Add hard negatives or enable in-batch negatives.",
            )

        all_anchors, offset = anchors, 0
        if self.gather_across_devices:
            # Every rank scores its own anchors against all ranks' candidates (and, for d->q, its own positives
            # against all anchors); the gradients flow back to the rank that embedded each text.
            all_anchors = all_gather_with_grad(anchors)  # (W, D)
            real = [all_gather_with_grad(column) for column in columns[:num_real]]  # (W, D) each
            columns = real + [all_gather(column) for column in columns[num_real:]]  # synthetic: no gradient
            if synthetic_usable is not None:
                synthetic_usable = all_gather(synthetic_usable.float()) > 0.5  # (W, S)
            offset = get_rank() * batch_size
            if classes is not None:
                classes = all_gather(classes)  # (W, 1 + M)
        world_batch = all_anchors.size(0)

        candidates = torch.cat(columns, dim=0)  # (W * (1 + M + S), D), column-major blocks of W rows
        owner = torch.arange(world_batch, device=anchors.device).repeat(len(columns))  # (W * (1 + M + S),)
        usable = None
        if synthetic_usable is not None:
            real_usable = torch.ones(world_batch * num_real, dtype=torch.bool, device=anchors.device)
            usable = torch.cat([real_usable, synthetic_usable.T.reshape(-1)])  # block order: synthetic s, then row
        anchor_classes = candidate_classes = None
        if classes is not None:
            anchor_classes = classes[:, 0]
            synthetic_classes = classes.new_full((world_batch * (len(columns) - num_real),), -1)  # mixtures: unknown
            candidate_classes = torch.cat([classes.T.reshape(-1), synthetic_classes])  # same block order as columns
        return PreparedBatch(
            anchors, positives, candidates, owner, usable, all_anchors, offset, anchor_classes, candidate_classes
        )

    def _class_ids(self, labels: Tensor | None, batch_size: int, num_hard: int, device) -> Tensor | None:
        """``(B, 1 + M)`` class ids (anchor/positive, then each hard negative; -1 = unknown), or None."""
        if not self.mask_same_class or labels is None or not isinstance(labels, Tensor):
            return None
        if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
            return None  # scores or teacher embeddings, not classes
        labels = labels.to(device=device, dtype=torch.long)
        if labels.dim() == 1:
            labels = labels.unsqueeze(1)
        if labels.dim() != 2 or labels.size(0) != batch_size or labels.size(1) > 1 + num_hard:
            raise ValueError(
                f"{type(self).__name__}: class labels must have shape (batch,) or (batch, 1 + hard negatives) = "
                f"({batch_size}, <= {1 + num_hard}), got {tuple(labels.shape)}"
            )
        unknown = labels.new_full((batch_size, 1 + num_hard - labels.size(1)), -1)
        return torch.cat([labels, unknown], dim=1)

    def row_losses(self, batch: PreparedBatch, begin: int, end: int) -> tuple[Tensor, dict[str, Tensor]]:
        """Per-anchor losses of this rank's anchors ``begin:end`` (shape ``(end - begin,)``) and their stats."""
        rows = torch.arange(end - begin, device=batch.anchors.device)
        positive_columns = batch.offset + begin + rows  # (R,) column of each anchor's positive (block 0)
        sims = cos_sim(batch.anchors[begin:end], batch.candidates)  # (R, C)
        own_classes = None if batch.anchor_classes is None else batch.anchor_classes[positive_columns]  # (R,)
        negatives = self._negative_mask(
            sims, positive_columns, batch.owner, batch.usable, own_classes, batch.candidate_classes
        )  # (R, C)
        losses, weights = self._focal_cross_entropy(sims, positive_columns, negatives)
        stats = {"focal_weight": weights.detach(), "negatives": negatives.sum(dim=1).float()}
        if self.symmetric:
            sims_d2q = cos_sim(batch.positives[begin:end], batch.all_anchors)  # (R, W)
            # another anchor of the positive's class is not a negative either
            negatives_d2q = self._negative_mask(
                sims_d2q, positive_columns, None, None, own_classes, batch.anchor_classes
            )  # (R, W)
            losses_d2q, weights_d2q = self._focal_cross_entropy(sims_d2q, positive_columns, negatives_d2q)
            stats.update(loss_q2d=losses.detach(), loss_d2q=losses_d2q.detach(), focal_weight_d2q=weights_d2q.detach())
            losses = (losses + losses_d2q) / 2
        return losses, {key: value.mean() for key, value in stats.items()}

    def _negative_mask(
        self,
        sims: Tensor,
        positive_columns: Tensor,
        owner: Tensor | None,
        usable: Tensor | None,
        row_classes: Tensor | None = None,
        candidate_classes: Tensor | None = None,
    ) -> Tensor:
        """``(R, C)`` bool: which candidates count as negatives of each row.

        With classes: a candidate of the row's class is never a negative, and one of a known other class is
        always kept by the false-negative margin (the labels say it is a true negative; the margin is a guess
        for candidates whose class is unknown).
        """
        rows = torch.arange(sims.size(0), device=sims.device)
        negatives = torch.ones_like(sims, dtype=torch.bool)
        negatives[rows, positive_columns] = False
        if usable is not None:
            negatives &= usable.unsqueeze(0)
        if owner is not None and not self.in_batch_negatives:
            negatives &= owner.unsqueeze(0) == positive_columns.unsqueeze(1)  # own hard (+ synthetic) only
        known = row_classes is not None and candidate_classes is not None
        if known:
            negatives &= ~_same_class(row_classes.unsqueeze(1), candidate_classes.unsqueeze(0))
        if self.false_negative_margin is not None:
            positive_sims = sims[rows, positive_columns].detach().unsqueeze(1)  # (R, 1)
            too_similar = sims.detach() > positive_sims - self.false_negative_margin
            if known:
                too_similar &= ~_other_class(row_classes.unsqueeze(1), candidate_classes.unsqueeze(0))
            negatives &= ~too_similar
        return negatives

    def _focal_cross_entropy(self, sims: Tensor, positive_columns: Tensor, negatives: Tensor) -> tuple[Tensor, Tensor]:
        """Per-row ``-w log p`` and ``w`` over the positive + ``negatives`` columns of ``sims``."""
        logits = sims * self.scale
        if logits.dtype in _HALF:
            logits = logits.float()
        rows = torch.arange(logits.size(0), device=logits.device)
        allowed = negatives.clone()
        allowed[rows, positive_columns] = True
        log_z = torch.logsumexp(logits.masked_fill(~allowed, -torch.inf), dim=1)  # (R,)
        cross_entropy = log_z - logits[rows, positive_columns]  # (R,) -log p
        if self.gamma == 0:
            return cross_entropy, torch.ones_like(cross_entropy)
        has_negative = negatives.any(dim=1, keepdim=True)  # (R, 1)
        # Rows without negatives get 0 instead of -inf, so that logsumexp's gradient stays finite there.
        negative_logits = torch.where(has_negative, logits.masked_fill(~negatives, -torch.inf), 0.0)
        log_one_minus_p = torch.logsumexp(negative_logits, dim=1) - log_z  # (R,) log(1 - p)
        weights = torch.where(has_negative.squeeze(1), torch.exp(self.gamma * log_one_minus_p), 0.0)
        return weights * cross_entropy, weights

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            logger.warning(message)

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "temperature": self.temperature,
            "gamma": self.gamma,
            "symmetric": self.symmetric,
            "in_batch_negatives": self.in_batch_negatives,
            "false_negative_margin": self.false_negative_margin,
            "mix_pairwise": self.mix_pairwise,
            "mix_listwise": self.mix_listwise,
            "mix_alpha": self.mix_alpha,
            "mix_beta": self.mix_beta,
            "listwise_temperature": self.listwise_temperature,
            "mask_same_class": self.mask_same_class,
            "gather_across_devices": self.gather_across_devices,
        }

    @property
    def citation(self) -> str:
        return CITATION


def _same_class(rows: Tensor, candidates: Tensor) -> Tensor:
    """Bool, broadcast: candidate and row share a class (unknown classes, ``-1``, match nothing)."""
    return (rows == candidates) & (candidates >= 0) & (rows >= 0)


def _other_class(rows: Tensor, candidates: Tensor) -> Tensor:
    """Bool, broadcast: both classes known and different (a true negative by its label)."""
    return (rows != candidates) & (candidates >= 0) & (rows >= 0)


CITATION = """
@inproceedings{zhao2026kalmv2,
    title={KaLM-Embedding-V2: Superior Training Techniques and Data Inspire A Versatile Embedding Model},
    author={Xinping Zhao and Xinshuo Hu and Zifei Shan and Shouzheng Huang and Yao Zhou and Xin Zhang and
            Zetian Sun and Zhenyu Liu and Dongfang Li and Xinyuan Wei and Youcheng Pan and Yang Xiang and
            Meishan Zhang and Haofen Wang and Jun Yu and Baotian Hu and Min Zhang},
    booktitle={The Fourteenth International Conference on Learning Representations},
    year={2026},
    url={https://arxiv.org/abs/2506.20923}
}
@misc{seed2025seed15embedding,
    title={Seed1.5-Embedding},
    author={{ByteDance Seed}},
    year={2025},
    url={https://seed1-5-embedding.github.io/}
}
@misc{limkonchotiwat2026seaembedding,
    title={SEA-Embedding: Open and Reproducible Text Embeddings for Southeast Asia},
    author={Peerat Limkonchotiwat and Raymond Ng and Sarana Nutanong and Jian Gang Ngui},
    year={2026}
}
"""
