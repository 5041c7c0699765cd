"""Run ``embedforge`` but SIGKILL the process when a stage's trainer reaches a step (like ``kill -9``).

KILL_STAGE=finetune KILL_AT_STEP=3 python tests/training/kill_at_step.py train recipe.yaml
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
        os.environ["KILL_AT_STEP"]
    ):
        os.kill(os.getpid(), signal.SIGKILL)
    return _original(self, *args, **kwargs)


EmbedforgeTrainer.training_step = _training_step

if __name__ == "__main__":
    from embedforge.cli import main

    sys.exit(main(sys.argv[1:]))
