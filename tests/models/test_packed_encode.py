"""Packed (padding-free) encoding equals ``SentenceTransformer.encode`` up to float rounding.

For an encoder with mean pooling, a decoder with last-token pooling (left-padded by ``encode``), with and without
a prompt that pooling excludes, across several packed chunks, in the caller's order.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from embedforge.models.packed_encode import PackedEncoder, supports_packed_encode

TEXTS = [
    "the cat sat on the mat",
    "a",
    "volcanoes erupt molten rock from deep below the crust of the earth",
    "tides follow the moon",
    "quantum chromodynamics describes the strong interaction between quarks and gluons in hadrons",
    "hello world",
    "",
]


def test_packed_encode_equals_encode_for_an_encoder(tiny_model):
    expected = tiny_model.encode(TEXTS, batch_size=3, convert_to_numpy=True)
    encoder = PackedEncoder(tiny_model, max_tokens=24)  # several chunks
    chunks = encoder._chunks(list(range(len(TEXTS))), encoder.tokenize(TEXTS)[0])
    assert len(chunks) > 1
    rows = encoder.encode(TEXTS)
    assert rows.dtype == np.float32 and rows.shape == expected.shape
    np.testing.assert_allclose(rows, expected, atol=1e-5, rtol=0)
    assert not tiny_model.training  # eval mode was restored as found
    np.testing.assert_allclose(tiny_model.encode(TEXTS), expected, atol=1e-6)  # padded encode still works


def test_packed_encode_with_a_prompt_pooling_excludes(tiny_model):
    pooling = tiny_model[1]
    pooling.include_prompt = False
    tiny_model.prompts = {"query": "query: "}
    expected = tiny_model.encode(TEXTS, prompt_name="query", convert_to_numpy=True)
    plain = tiny_model.encode(TEXTS, convert_to_numpy=True)
    rows = PackedEncoder(tiny_model).encode(TEXTS, prompt="query: ")
    np.testing.assert_allclose(rows, expected, atol=1e-5, rtol=0)
    assert not np.allclose(rows, plain, atol=1e-3)  # the prompt reached the model


def test_packed_encode_for_a_decoder_with_last_token_pooling(tiny_decoder_dir):
    from sentence_transformers.sentence_transformer.modules import Pooling

    from embedforge.models import load_model

    model = load_model(tiny_decoder_dir("qwen2"), max_seq_length=64)
    model[1] = Pooling(model.get_embedding_dimension(), pooling_mode="lasttoken")
    texts = [t for t in TEXTS if t]
    expected = model.encode(texts, batch_size=4, convert_to_numpy=True)
    np.testing.assert_allclose(PackedEncoder(model, max_tokens=30).encode(texts), expected, atol=1e-5, rtol=0)


def test_models_without_pooling_are_refused(tiny_model):
    from sentence_transformers import SentenceTransformer

    assert supports_packed_encode(tiny_model)
    only_transformer = SentenceTransformer(modules=[tiny_model[0]])
    assert not supports_packed_encode(only_transformer)
    with pytest.raises(ValueError, match="cannot encode packed"):
        PackedEncoder(only_transformer)
    with pytest.raises(ValueError, match="max_tokens"):
        PackedEncoder(tiny_model, max_tokens=0)
    with pytest.raises(ValueError, match="nothing"):
        PackedEncoder(tiny_model).encode([])
    assert torch.is_inference_mode_enabled() is False
