"""embedforge: pretrained language model -> text embedding model, evaluated MTEB-style, served OpenAI-style.

Public API (imported lazily so ``import embedforge`` and ``embedforge --help`` stay instant)::

    from embedforge import load_model, save_model, evaluate

Nothing in embedforge downloads from a model hub: ``HF_HUB_OFFLINE`` defaults to ``1`` (set it to
``0`` yourself to allow hub access).
"""

from __future__ import annotations

import os

from embedforge.utils.lazy import lazy_exports

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "EmbedforgeError": "embedforge.errors",
    "DataError": "embedforge.errors",
    "ConfigError": "embedforge.errors",
    "load_model": "embedforge.models",
    "save_model": "embedforge.models",
    "resolve_model_path": "embedforge.models",
    "evaluate": "embedforge.evaluation",
    "load_task": "embedforge.evaluation",
    "train": "embedforge.recipes.runner",
    "load_recipe": "embedforge.recipes.loader",
}

# sub-packages reachable as attributes after a bare ``import embedforge`` (``embedforge.serving.create_app``)
_SUBPACKAGES = ("data", "evaluation", "losses", "merging", "mining", "models", "serving", "training")

_exported, __all__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted([*__all__, *_SUBPACKAGES])


def __getattr__(name: str):
    if name in _SUBPACKAGES:
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    return _exported(name)
