"""Run ``embedforge`` but SIGKILL the process when a stage's trainer reaches a step (like ``kill -9``).

KILL_STAGE=finetune KILL_AT_STEP=3 python tests/training/kill_at_step.py train recipe.yaml
KILL_STAGE=finetune KILL_IN_FINAL_SAVE=1 ...: kill when the stage's ``final/`` is written but not yet in place
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from embedforge.training.trainer import EmbedforgeTrainer

_original = EmbedforgeTrainer.training_step


def _training_step(self, *args, **kwargs):
    if Path(self.args.output_dir).name == os.environ["KILL_STAGE"] and self.state.global_step == int(
        os.environ.get("KILL_AT_STEP", "-1")
    ):
        os.kill(os.getpid(), signal.SIGKILL)
    return _original(self, *args, **kwargs)


EmbedforgeTrainer.training_step = _training_step

if os.environ.get("KILL_IN_FINAL_SAVE"):
    from embedforge.models import saving

    _swap_in = saving._swap_in

    def _killing_swap_in(staging, target):
        if target.name == "final" and target.parent.name == os.environ["KILL_STAGE"]:
            os.kill(os.getpid(), signal.SIGKILL)  # the staged folder is complete, final/ not yet renamed
        return _swap_in(staging, target)

    saving._swap_in = _killing_swap_in

if __name__ == "__main__":
    from embedforge.cli import main

    sys.exit(main(sys.argv[1:]))
