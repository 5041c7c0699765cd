"""Progress bars: on when stderr is a terminal, off in CI logs and pipes; ``--progress/--no-progress`` decide.

The choice is an environment variable (``EMBEDFORGE_PROGRESS=1|0``) so that it reaches every library that
draws bars (the Trainer, sentence-transformers' ``encode``, datasets, huggingface_hub, tqdm) and the
processes ``torchrun`` starts.
"""

from __future__ import annotations

import os
import sys

_ON = ("1", "true", "yes", "on")


def progress_enabled() -> bool:
    """``EMBEDFORGE_PROGRESS`` when set; else off under CI (``$CI``) and when stderr is not a terminal."""
    value = os.environ.get("EMBEDFORGE_PROGRESS")
    if value is not None and value.strip():
        return value.strip().lower() in _ON
    if os.environ.get("CI", "").strip().lower() in (*_ON, "1"):
        return False
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


def set_progress(enabled: bool | None) -> bool:
    """Decide once for this process and its children (``None``: automatic); returns the decision."""
    if enabled is not None:
        os.environ["EMBEDFORGE_PROGRESS"] = "1" if enabled else "0"
    on = progress_enabled()
    os.environ["EMBEDFORGE_PROGRESS"] = "1" if on else "0"
    if not on:  # libraries that read their own switch when imported
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TQDM_DISABLE", "1")
    return on
