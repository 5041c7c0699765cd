"""The trainer: sentence-transformers' ``SentenceTransformerTrainer`` plus a loss guard.

Everything distributed (DDP via ``torchrun`` / ``accelerate launch``, FSDP, DeepSpeed through
``trainer_args``) is the Hugging Face Trainer's; this subclass only adds what it lacks:

* a non-finite loss stops the run at once with :class:`TrainingDiverged` (before the bad update is
  applied or saved), naming the step, the dataset and the last good checkpoint;
* length-grouped batch samplers measure texts in the model's tokens (cut at its maximum length).
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from sentence_transformers import SentenceTransformerTrainer

from embedforge.errors import EmbedforgeError

logger = logging.getLogger(__name__)


class TrainingDiverged(EmbedforgeError):
    """The loss became NaN or infinite."""


class EmbedforgeTrainer(SentenceTransformerTrainer):
    """``SentenceTransformerTrainer`` that refuses non-finite losses."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        dataset_name = inputs.get("dataset_name")
        output = super().compute_loss(
            model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch
        )
        loss = output[0] if return_outputs else output
        if model.training:
            self._check_finite(loss, dataset_name)
        return (loss, output[1]) if return_outputs else loss

    def get_batch_sampler(self, dataset, *args: Any, **kwargs: Any):
        sampler = super().get_batch_sampler(dataset, *args, **kwargs)
        tokenizer = getattr(self.model, "tokenizer", None)
        if hasattr(sampler, "set_token_lengths") and callable(tokenizer):
            sampler.set_token_lengths(tokenizer, getattr(self.model, "max_seq_length", None))
        return sampler

    def _check_finite(self, loss: torch.Tensor, dataset_name: Any) -> None:
        finite = torch.isfinite(loss.detach()).all().to(torch.float32).reshape(1)
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():  # stop every rank together, or the others hang
            finite = finite.to(self.args.device)
            dist.all_reduce(finite, op=dist.ReduceOp.MIN)
        if finite.item() == 1.0:
            return
        from embedforge.training.checkpoints import last_complete_checkpoint

        last = last_complete_checkpoint(self.args.output_dir, remove_incomplete=False)
        name = dataset_name[0] if isinstance(dataset_name, list | tuple) else dataset_name
        raise TrainingDiverged(
            f"the loss is {loss.detach().float().item()} at step {self.state.global_step + 1}"
            f"{f' (dataset {name!r})' if name else ''}; training stopped before applying it. "
            f"Last good checkpoint: {last or 'none yet'}. Lower the learning rate, raise the temperature, "
            "or check the data; continue with --resume."
        )
