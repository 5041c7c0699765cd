"""The real all-MiniLM-L6-v2 preset through the official openai client (slow tier)."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.slow


def test_minilm_preset_through_openai_client_equals_encode():
    openai = pytest.importorskip("openai")
    from embedforge.models import load_model
    from embedforge.serving import ServerThread, create_app

    model = load_model("all-MiniLM-L6-v2", device="cpu")
    texts = [
        "A man is playing a guitar.",
        "A woman is slicing an onion.",
        "The stock market fell sharply today.",
        "Embeddings map text to vectors.",
    ]
    reference = model.encode(texts)
    with ServerThread(create_app(model, model_name="all-MiniLM-L6-v2")) as server:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
        full = client.embeddings.create(model="all-MiniLM-L6-v2", input=texts)
        reduced = client.embeddings.create(model="all-MiniLM-L6-v2", input=texts, dimensions=128)
    np.testing.assert_allclose([item.embedding for item in full.data], reference, atol=1e-5, rtol=0)
    kept = reference[:, :128] / np.linalg.norm(reference[:, :128], axis=1, keepdims=True)
    np.testing.assert_allclose([item.embedding for item in reduced.data], kept, atol=1e-5, rtol=0)
    similarity = np.array([item.embedding for item in full.data]) @ np.array([item.embedding for item in full.data]).T
    assert similarity[0, 1] > similarity[0, 2]  # guitar/onion (both people doing things) closer than stock market
    assert full.usage.prompt_tokens == sum(len(model.tokenizer(text)["input_ids"]) for text in texts)
