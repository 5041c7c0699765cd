"""Resuming a run whose recipe changed, or that was killed after its last step.

* :class:`ResumedLearningRateCallback`: a learning rate changed for ``--resume`` reaches the restored optimizer
  and scheduler (the Trainer restores the checkpoint's own).
* :func:`restore_finished_training`: a run killed after its last step (while saving ``final/``) loads that
  checkpoint instead of training one step more.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from transformers import TrainerCallback

logger = logging.getLogger(__name__)


class ResumedLearningRateCallback(TrainerCallback):
    """On resume, the recipe's learning rate replaces the one restored with the optimizer and scheduler.

    The Trainer builds its scheduler from the current arguments but then loads the checkpoint's optimizer and
    scheduler states, whose ``lr``/``initial_lr``/``base_lrs`` are the old peak: a lowered learning rate (the advice
    after a NaN) would not take effect. This rescales the peak of every parameter group to ``learning_rate`` and
    sets the current rate to what the (current) schedule gives at the resumed step. A no-op when nothing changed.
    """

    def __init__(self, learning_rate: float):
        self.learning_rate = learning_rate

    def on_train_begin(self, args, state, control, optimizer=None, lr_scheduler=None, **kwargs):
        scheduler = getattr(lr_scheduler, "scheduler", lr_scheduler)  # accelerate wraps it
        base_lrs = list(getattr(scheduler, "base_lrs", None) or [])
        if state.global_step == 0 or not base_lrs or not base_lrs[0] > 0:
            return control
        ratio = self.learning_rate / base_lrs[0]
        if abs(ratio - 1.0) < 1e-9:
            return control
        scheduler.base_lrs = [lr * ratio for lr in base_lrs]
        groups = scheduler.optimizer.param_groups
        lambdas = getattr(scheduler, "lr_lambdas", None)
        if lambdas is not None and len(lambdas) == len(groups):  # LambdaLR (every transformers schedule)
            current = [base * fn(scheduler.last_epoch) for base, fn in zip(scheduler.base_lrs, lambdas, strict=True)]
        else:
            current = [group["lr"] * ratio for group in groups]
        for group, base, lr in zip(groups, scheduler.base_lrs, current, strict=True):
            group["initial_lr"], group["lr"] = base, lr
        scheduler._last_lr = current  # what get_last_lr() (the logged learning_rate) reports until the next step
        if state.is_world_process_zero:
            logger.warning(
                "resumed at step %d with learning_rate %g (the checkpoint's run used %g)",
                state.global_step,
                self.learning_rate,
                base_lrs[0],
            )
        return control


def restore_finished_training(trainer, checkpoint: str | os.PathLike[str], max_steps: int | None):
    """If ``checkpoint`` already holds the last step, load it into ``trainer`` instead of training on.

    A run killed after its last step (while saving ``final/``) resumes from a checkpoint at the end of training;
    the Trainer resumed there still runs one more optimizer step before it checks the step count, which changes
    the weights. Returns a ``TrainOutput`` (no metrics) when restored, else ``None`` (train as usual).
    """
    from transformers.trainer_callback import TrainerState
    from transformers.trainer_utils import TrainOutput

    state_file = Path(checkpoint) / "trainer_state.json"
    if not state_file.is_file():
        return None
    state = TrainerState.load_from_json(str(state_file))
    planned = max_steps if max_steps is not None else state.max_steps
    if not planned or state.global_step < planned:
        return None
    if state.global_step > planned:
        logger.warning("%s is at step %d, past max_steps %d: using it", checkpoint, state.global_step, planned)
    logger.info("%s holds the last step (%d): training had finished, loading it", checkpoint, state.global_step)
    # the Trainer's own resume loads weights this way (no public call does it without training)
    trainer._load_from_checkpoint(str(checkpoint))
    trainer.state = state
    return TrainOutput(state.global_step, 0.0, {})
