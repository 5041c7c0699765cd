"""The model as MTEB sees it: a SentenceTransformer wrapper that encodes each text once.

:class:`CachedEncoder` is mteb's own ``SentenceTransformerEncoderWrapper`` (same prompt resolution:
task-name/type × query/document prompts saved with the model; same similarity function) with its
``encode`` routed through an :class:`~embedforge.evaluation.cache.EmbeddingCache`, and a settable
Matryoshka dimension: embeddings are computed once at full size, and a smaller ``dim`` is served by
truncating and L2-renormalizing them, so several dimensions cost one encoding pass.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np
from mteb.models.abs_encoder import get_prompt
from mteb.models.sentence_transformer_wrapper import SentenceTransformerEncoderWrapper

from embedforge.evaluation.cache import EmbeddingCache, text_key
from embedforge.utils.matryoshka import truncate_and_renormalize

if TYPE_CHECKING:
    from mteb.abstasks.task_metadata import TaskMetadata
    from mteb.types import PromptType
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)


class CachedEncoder(SentenceTransformerEncoderWrapper):
    """mteb encoder over a SentenceTransformer with an embedding cache and a Matryoshka dimension."""

    def __init__(
        self,
        model: SentenceTransformer,
        cache: EmbeddingCache,
        *,
        batch_size: int = 32,
        show_progress_bar: bool = False,
    ):
        super().__init__(model)
        self.cache = cache
        self.batch_size = batch_size
        self.show_progress_bar = show_progress_bar
        self.dim: int | None = None  # None = the model's full dimension
        self.texts_encoded = 0  # texts the model actually ran on
        self.texts_requested = 0  # texts mteb asked for

    def encode(
        self,
        inputs: Any,
        *,
        task_metadata: TaskMetadata,
        hf_split: str,
        hf_subset: str,
        prompt_type: PromptType | None = None,
        **kwargs: Any,
    ) -> np.ndarray:
        texts = [text for batch in inputs for text in batch["text"]]
        prompt = get_prompt(self.model_prompts, task_metadata, prompt_type)
        return truncate_and_renormalize(self.embed(texts, prompt=prompt, prompt_type=prompt_type), self.dim)

    def embed(self, texts: list[str], *, prompt: str | None, prompt_type: PromptType | None) -> np.ndarray:
        """Full-size embeddings of ``texts`` (cached ones reused, the rest encoded once each)."""
        role = prompt_type.value if prompt_type is not None else ""
        keys = [text_key(role, prompt, text) for text in texts]
        found = self.cache.get_many(dict.fromkeys(keys))
        todo: dict[bytes, str] = {}
        for key, text in zip(keys, texts, strict=True):
            if key not in found and key not in todo:
                todo[key] = text
        self.texts_requested += len(texts)
        if todo:
            encode = self._encode_function(prompt_type)
            vectors = encode(
                list(todo.values()),
                prompt=prompt,
                batch_size=self.batch_size,
                convert_to_numpy=True,
                normalize_embeddings=False,
                show_progress_bar=self.show_progress_bar,
            )
            new = dict(zip(todo, np.asarray(vectors, dtype=np.float32), strict=True))
            self.cache.put_many(new)
            found.update(new)
            self.texts_encoded += len(todo)
        return np.stack([found[key] for key in keys])

    def _encode_function(self, prompt_type: PromptType | None):
        # the same choice mteb makes: encode_query / encode_document route asymmetric (Router) models
        if prompt_type is not None and prompt_type.value == "query":
            return self.model.encode_query
        if prompt_type is not None and prompt_type.value == "document":
            return self.model.encode_document
        return self.model.encode
