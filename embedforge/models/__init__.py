"""Models: offline presets, loading any local model as a SentenceTransformer, saving in the widely-read format.

Decoder LLMs (bidirectional attention, pooling, LoRA, MoE router logits, GGUF conversion) live in
``decoder``, ``lora``, ``moe`` and ``gguf``; their main entry points are re-exported here.
"""

from embedforge.models.decoder import DECODER_FAMILIES, is_bidirectional, load_decoder, set_bidirectional
from embedforge.models.gguf import convert_gguf
from embedforge.models.loading import build_sentence_transformer, load_model
from embedforge.models.lora import add_lora, merge_lora
from embedforge.models.presets import PRESETS, Preset, cache_root, register_preset, resolve_model_path
from embedforge.models.saving import save_model

_LAZY = {"RouterAuxLossCollector", "is_moe"}  # embedforge.models.moe imports torch


def __getattr__(name: str):
    if name in _LAZY:
        from embedforge.models import moe

        return getattr(moe, name)
    raise AttributeError(f"module 'embedforge.models' has no attribute {name!r}")


__all__ = [
    "DECODER_FAMILIES",
    "PRESETS",
    "Preset",
    "RouterAuxLossCollector",
    "add_lora",
    "build_sentence_transformer",
    "cache_root",
    "convert_gguf",
    "is_bidirectional",
    "is_moe",
    "load_decoder",
    "load_model",
    "merge_lora",
    "register_preset",
    "resolve_model_path",
    "save_model",
    "set_bidirectional",
]
