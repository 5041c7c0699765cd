"""``SentenceTransformer.encode`` without padding: a batch's texts as packed rows of real tokens only.

``encode`` sorts texts by length and pads each forward pass of ``batch_size`` texts to its longest, so every
linear layer also computes on padding. Here the texts are tokenized exactly as ``encode`` tokenizes them (the
model's own ``preprocess``: prompt, truncation, special tokens, ``prompt_length``), sorted by length, cut into
chunks of at most ``max_tokens`` real tokens, and each chunk runs as one packed row
(:func:`embedforge.models.packed_attention.pack_token_ids`) through the whole model (``Pooling`` pools each
text's own tokens, ``Normalize`` / ``Dense`` act on the pooled rows as usual). Attention pads only inside the
regrouped attention (a small share of the FLOPs for short texts; none with flash-attention varlen on GPU).

The rows equal ``encode``'s up to float rounding (a text's numbers no longer depend on which other texts share
its padded batch; ``tests/models/test_packed_encode.py`` bounds the difference). The server uses it for the
torch backend (``embedforge serve --packed``, the default); ``model.encode`` itself is untouched.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from embedforge.models.packed_attention import PACKED_ATTENTION, enable_packed_attention, hf_model, pack_token_ids


def supports_packed_encode(model: Any) -> bool:
    """Whether ``model`` (a SentenceTransformer) can encode packed: a text model whose first module is a
    transformers model with SDPA, eager or packed attention, pooled by sentence-transformers' ``Pooling``."""
    from sentence_transformers.sentence_transformer.modules import Pooling

    try:
        inner = hf_model(model)
    except ValueError:
        return False
    if getattr(inner.config, "_attn_implementation", None) not in ("sdpa", "eager", PACKED_ATTENTION):
        return False
    modules = list(model.children()) if isinstance(model, torch.nn.Sequential) else []
    return len(modules) >= 2 and isinstance(modules[1], Pooling) and callable(getattr(model, "preprocess", None))


class PackedEncoder:
    """Encode texts with ``model`` in packed rows (see the module docstring).

    Args:
        model: a SentenceTransformer (:func:`supports_packed_encode`); its attention is switched to the packed-capable
            implementation, which runs padded calls (``model.encode``, training with padding) as SDPA, unchanged.
        max_tokens: real tokens per forward pass.
    """

    def __init__(self, model: Any, max_tokens: int = 4096) -> None:
        if not supports_packed_encode(model):
            raise ValueError("this model cannot encode packed (needs a transformers model pooled by Pooling)")
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be positive, got {max_tokens}")
        from embedforge.data.collator import position_offset

        self.model = model
        self.max_tokens = max_tokens
        enable_packed_attention(model)
        self.position_offset = position_offset(model)

    def tokenize(self, texts: Sequence[str], prompt: str | None = None) -> tuple[list[list[int]], Any, Any]:
        """Token ids per text as ``encode`` makes them, the token types (or None) and the prompt length."""
        from embedforge.data.collator import UNPADDED

        out = self.model.preprocess(list(texts), prompt=prompt, processing_kwargs=UNPADDED)
        return [list(ids) for ids in out["input_ids"]], out.get("token_type_ids"), out.get("prompt_length")

    @torch.inference_mode()
    def encode(self, texts: Sequence[str], prompt: str | None = None) -> np.ndarray:
        """``(len(texts), dim)`` float32 embeddings, in the order of ``texts``."""
        if not texts:
            raise ValueError("nothing to encode")
        ids, types, prompt_length = self.tokenize(texts, prompt)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        device = self.model.device
        was_training = self.model.training
        self.model.eval()
        rows: np.ndarray | None = None
        try:
            for chunk in self._chunks(order, ids):
                features = pack_token_ids([ids[i] for i in chunk], position_offset=self.position_offset, device=device)
                if types is not None:
                    flat = [t for i in chunk for t in types[i]]
                    features["token_type_ids"] = torch.tensor([flat], dtype=torch.long, device=device)
                features["modality"] = "text"
                if prompt_length is not None:
                    features["prompt_length"] = prompt_length
                embedded = self.model(features)["sentence_embedding"].float().cpu().numpy()
                if rows is None:
                    rows = np.empty((len(ids), embedded.shape[-1]), dtype=np.float32)
                rows[chunk] = embedded
        finally:
            self.model.train(was_training)
        assert rows is not None
        return rows

    def _chunks(self, order: list[int], ids: list[list[int]]) -> list[list[int]]:
        chunks: list[list[int]] = [[]]
        used = 0
        for index in order:
            cost = len(ids[index])
            if chunks[-1] and used + cost > self.max_tokens:
                chunks.append([])
                used = 0
            chunks[-1].append(index)
            used += cost
        return chunks
