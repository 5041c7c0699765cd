"""Checkpoints that are safe to resume from.

The Hugging Face Trainer writes ``checkpoint-N/`` file by file; a run killed while saving leaves a
folder that looks like a checkpoint but is not. :class:`CompleteCheckpointCallback` drops a marker
into each checkpoint once every file (model, optimizer, scheduler, RNG states, trainer state) is
written, and :func:`last_complete_checkpoint` resumes only from marked ones.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path

from transformers import TrainerCallback

logger = logging.getLogger(__name__)

COMPLETE_MARKER = ".embedforge-complete"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def checkpoints(directory: str | os.PathLike[str]) -> list[Path]:
    """``checkpoint-N`` folders in ``directory``, oldest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if p.is_dir() and (m := _CHECKPOINT.match(p.name))]
    return [p for _, p in sorted(found)]


def last_complete_checkpoint(directory: str | os.PathLike[str], *, remove_incomplete: bool = True) -> Path | None:
    """The newest fully written checkpoint in ``directory`` (incomplete newer ones are removed)."""
    complete = None
    for path in checkpoints(directory):
        if (path / COMPLETE_MARKER).is_file():
            complete = path
        elif remove_incomplete:
            logger.warning("removing incomplete checkpoint %s (the run stopped while saving it)", path)
            shutil.rmtree(path, ignore_errors=True)
    return complete


class CompleteCheckpointCallback(TrainerCallback):
    """Marks ``checkpoint-N`` complete after the Trainer has written all of it (on every rank's behalf)."""

    def on_save(self, args, state, control, **kwargs):
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.barrier()  # every rank has written its RNG state
        if state.is_world_process_zero:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if folder.is_dir():
                (folder / COMPLETE_MARKER).write_text(f"{state.global_step}\n")
        return control
