"""One input-embedding gradient per backward pass instead of one per column, for single-process training.

A contrastive step runs the model once per column (anchor, positive, negatives) and every one of those forward
passes looks up the input-embedding matrix. On the way back, ``nn.Embedding`` builds a dense gradient for each
lookup (a zero-filled ``vocab x hidden`` tensor plus the scattered rows) and autograd's ``AccumulateGrad`` adds
the second and third into the first: for all-MiniLM-L6-v2 (30,522 x 384 = 11.7 M weights, half the model) three
fills and two full additions of 47 MB per step, 58 ms of a ~760 ms step on this project's 2-core CPU, while the
rows actually touched are a few thousand.

:func:`enable_merged_embedding_grad` changes the class of the model's input ``nn.Embedding`` to
:class:`MergedGradEmbedding`: its forward is the same lookup, its backward records ``(token ids, output
gradient)`` and returns no weight gradient; at the end of the backward pass (a callback queued on autograd's
engine, the hook DDP's reducer also uses) all recorded rows are ``index_add_``-ed into ``weight.grad`` at once,
zero-filling a new gradient only when there is none yet. The gradient is the same sum of the same rows
(``padding_idx`` rows stay zero); gradient accumulation and GradCache's chunked backward passes add into the
existing gradient as ``AccumulateGrad`` would.

Single process only: DDP, FSDP and DeepSpeed find a parameter's gradient through its ``AccumulateGrad`` hooks,
which this bypasses (the trainer's ``auto`` never enables it with more than one process, and refuses ``true``).
Not for embeddings with ``max_norm``, ``scale_grad_by_freq`` or ``sparse`` (left as they are). The gradient
lands in ``weight.grad`` only: ``torch.autograd.grad(..., inputs=[weight])`` would see none (training only
calls ``backward``).
:func:`disable_merged_embedding_grad` restores ``nn.Embedding`` (the trainer calls it when training ends).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F


class _Lookup(torch.autograd.Function):
    """``F.embedding`` whose weight gradient is handed to the module's pending list instead of autograd."""

    @staticmethod
    def forward(ctx: Any, ids: torch.Tensor, weight: torch.Tensor, module: MergedGradEmbedding) -> torch.Tensor:
        ctx.save_for_backward(ids)
        ctx.module = module
        return F.embedding(ids, weight, module.padding_idx)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, None, None]:
        (ids,) = ctx.saved_tensors
        ctx.module.record(ids, grad)
        return None, None, None


class MergedGradEmbedding(torch.nn.Embedding):
    """``nn.Embedding`` whose weight gradient is built once per backward pass from all of its lookups."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002 (nn.Embedding's own argument name)
        if not (torch.is_grad_enabled() and self.weight.requires_grad):
            return super().forward(input)
        return _Lookup.apply(input, self.weight, self)

    def record(self, ids: torch.Tensor, grad: torch.Tensor) -> None:
        """Keep one lookup's rows; the first of a backward pass queues :meth:`flush` for its end."""
        pending = self.__dict__.setdefault("_pending", [])
        if not pending:
            torch.autograd.Variable._execution_engine.queue_callback(self.flush)
        pending.append((ids.reshape(-1), grad.reshape(-1, grad.shape[-1])))

    def flush(self) -> None:
        """Add every recorded row into ``weight.grad`` (zero-filled first only when there is none)."""
        pending = self.__dict__.pop("_pending", [])
        if not pending:
            return
        weight = self.weight
        total = weight.grad if weight.grad is not None else torch.zeros_like(weight)
        for ids, grad in pending:
            if self.padding_idx is not None:
                grad = grad.masked_fill((ids == self.padding_idx).unsqueeze(-1), 0)
            total.index_add_(0, ids, grad.to(total.dtype))
        weight.grad = total


def input_embedding(model: torch.nn.Module) -> torch.nn.Embedding | None:
    """The input ``nn.Embedding`` of ``model`` (SentenceTransformer or transformers) that this can merge, or None."""
    from embedforge.models.packed_attention import hf_model

    try:
        embedding = hf_model(model).get_input_embeddings()
    except (ValueError, AttributeError, NotImplementedError):
        return None
    if type(embedding) not in (torch.nn.Embedding, MergedGradEmbedding):
        return None
    if embedding.max_norm is not None or embedding.scale_grad_by_freq or embedding.sparse:
        return None
    return embedding if embedding.weight.requires_grad else None


def enable_merged_embedding_grad(model: torch.nn.Module) -> torch.nn.Embedding | None:
    """Give ``model``'s input embedding a merged gradient; returns the module (to restore), or None if unsupported."""
    embedding = input_embedding(model)
    if embedding is None:
        return None
    embedding.__class__ = MergedGradEmbedding
    return embedding


def disable_merged_embedding_grad(embedding: torch.nn.Embedding | None) -> None:
    """Undo :func:`enable_merged_embedding_grad` (dropping the rows of an unfinished backward pass)."""
    if isinstance(embedding, MergedGradEmbedding):
        embedding.__dict__.pop("_pending", None)
        embedding.__class__ = torch.nn.Embedding
