"""Models: offline presets, loading any local model as a SentenceTransformer, saving in the widely-read format."""

from embedforge.models.loading import build_sentence_transformer, load_model
from embedforge.models.presets import PRESETS, Preset, cache_root, register_preset, resolve_model_path
from embedforge.models.saving import save_model

__all__ = [
    "PRESETS",
    "Preset",
    "build_sentence_transformer",
    "cache_root",
    "load_model",
    "register_preset",
    "resolve_model_path",
    "save_model",
]
