"""The trainer: sentence-transformers' ``SentenceTransformerTrainer`` plus a loss guard.

Everything distributed (DDP via ``torchrun`` / ``accelerate launch``, FSDP, DeepSpeed through
``trainer_args``) is the Hugging Face Trainer's; this subclass only adds what it lacks:

* a non-finite loss stops the run at once with :class:`TrainingDiverged` (before the bad update is
  applied or saved), naming the step, the dataset and the last good checkpoint;
* length-grouped batch samplers measure texts in the model's tokens (cut at its maximum length);
* the speed options of :class:`~embedforge.training.speed.TrainingSpeed`: texts tokenized once (cached) instead
  of in every step, padding-free (packed) batches, cheap dropout masks on CPU,
  bf16 weights with fp32 master weights instead of autocast,
  fused AdamW, ``torch.compile`` and Liger kernels as options.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch
from sentence_transformers import SentenceTransformerTrainer

from embedforge.errors import EmbedforgeError
from embedforge.training.speed import TrainingSpeed

logger = logging.getLogger(__name__)


class TrainingDiverged(EmbedforgeError):
    """The loss became NaN or infinite."""


class EmbedforgeTrainer(SentenceTransformerTrainer):
    """``SentenceTransformerTrainer`` that refuses non-finite losses, tells observers every batch's loss and applies
    the speed options."""

    def __init__(
        self,
        *args: Any,
        speed: TrainingSpeed | None = None,
        **kwargs: Any,
    ):
        from embedforge.training import speed as speed_lib

        self.speed = speed or TrainingSpeed()
        model = kwargs["model"] if "model" in kwargs else args[0]
        training_args = kwargs["args"] if "args" in kwargs else args[1]
        self.packing = self.speed.pretokenize and speed_lib.resolve_packing(self.speed, model)
        self.bf16_weights = speed_lib.resolve_bf16_weights(self.speed, bool(training_args.bf16))
        self._attention_before = None
        if self.packing:
            from embedforge.models.packed_attention import enable_packed_attention

            self._attention_before = enable_packed_attention(model)
        self._fast_dropout = None
        if speed_lib.resolve_fast_dropout(self.speed, model):
            from embedforge.models.fast_dropout import enable_fast_dropout

            self._fast_dropout = enable_fast_dropout(model)
        self._merged_embedding = None
        if speed_lib.resolve_merged_embedding_grad(self.speed, training_args.world_size):
            from embedforge.models.embedding_grad import enable_merged_embedding_grad

            self._merged_embedding = enable_merged_embedding_grad(model)
        if self.bf16_weights:
            model.to(torch.bfloat16)
            training_args.bf16 = False  # the weights are bf16: no autocast (it would only re-cast)
            training_args.mixed_precision = "no"
        if speed_lib.resolve_fused(self.speed) and not self.bf16_weights and training_args.optim == "adamw_torch":
            training_args.optim = "adamw_torch_fused"
        self.kernels = speed_lib.apply_kernels(model, self.speed)
        super().__init__(*args, **kwargs)
        self._warmed = False
        # callables(dataset_name, loss) told every training micro-batch's loss (per-dataset loss curves)
        self.loss_observers: list[Callable[[Any, torch.Tensor], None]] = []
        logger.info(
            "speed: pretokenize=%s packing=%s fast_dropout=%s merged_embedding_grad=%s bf16_weights=%s optimizer=%s "
            "kernels=%s",
            self.speed.pretokenize,
            self.packing,
            self._fast_dropout is not None,
            self._merged_embedding is not None,
            self.bf16_weights,
            "MasterWeightAdamW" if self.bf16_weights else training_args.optim,
            self.kernels or "none",
        )

    def get_data_collator(self, model, args, processing_class=None):
        """The pre-tokenizing (and, when packing, padding-free) collator; sentence-transformers' otherwise."""
        speed = getattr(self, "speed", None)
        if speed is None or not speed.pretokenize or args.router_mapping or model.tokenizer is None:
            return super().get_data_collator(model, args, processing_class)
        from embedforge.data.collator import pretokenized_collator

        return pretokenized_collator(model, prompts=args.prompts, packing=self.packing)

    def get_train_dataloader(self):
        from embedforge.data.collator import PretokenizedCollator

        if isinstance(self.data_collator, PretokenizedCollator) and not self._warmed:
            count = self.data_collator.warm(self.train_dataset)
            logger.info("tokenized %d training texts once, before the first step", count)
            self._warmed = True
        return super().get_train_dataloader()

    def create_optimizer(self, model=None):
        """AdamW over fp32 master weights when the weights are bf16; the Trainer's optimizer otherwise."""
        if not self.bf16_weights or self.optimizer is not None:
            return super().create_optimizer(model)
        from embedforge.training.speed import MasterWeightAdamW, resolve_fused

        model = model or self.model
        decay = set(self.get_decay_parameter_names(model))
        trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        groups = [
            {"params": [p for n, p in trainable if n in decay], "weight_decay": self.args.weight_decay},
            {"params": [p for n, p in trainable if n not in decay], "weight_decay": 0.0},
        ]
        self.optimizer = MasterWeightAdamW(
            [g for g in groups if g["params"]],
            fused=resolve_fused(self.speed) or None,
            lr=self.args.learning_rate,
            betas=(self.args.adam_beta1, self.args.adam_beta2),
            eps=self.args.adam_epsilon,
        )
        return self.optimizer

    def train(self, *args: Any, **kwargs: Any):
        try:
            return super().train(*args, **kwargs)
        finally:  # the saved/served model uses its usual attention, dropout and embedding modules
            if self._merged_embedding is not None:
                from embedforge.models.embedding_grad import disable_merged_embedding_grad

                disable_merged_embedding_grad(self._merged_embedding)
            if self._fast_dropout is not None:
                from embedforge.models.fast_dropout import disable_fast_dropout

                disable_fast_dropout(self.model, self._fast_dropout)
            if self._attention_before is not None:
                from embedforge.models.packed_attention import disable_packed_attention

                disable_packed_attention(self.model, self._attention_before)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        dataset_name = inputs.get("dataset_name")
        output = super().compute_loss(
            model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch
        )
        loss = output[0] if return_outputs else output
        if model.training:
            self._check_finite(loss, dataset_name)
            for observer in self.loss_observers:
                observer(dataset_name, loss)
        return (loss, output[1]) if return_outputs else loss

    def get_batch_sampler(self, dataset, *args: Any, **kwargs: Any):
        sampler = super().get_batch_sampler(dataset, *args, **kwargs)
        tokenizer = getattr(self.model, "tokenizer", None)
        from embedforge.data.collator import PretokenizedCollator

        if hasattr(sampler, "set_length_function") and isinstance(self.data_collator, PretokenizedCollator):
            sampler.set_length_function(self.data_collator.token_counts)  # the batches' own token cache
        elif hasattr(sampler, "set_token_lengths") and callable(tokenizer):
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
