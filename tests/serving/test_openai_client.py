"""The official ``openai`` client, over real HTTP, gets what ``SentenceTransformer.encode`` gives."""

from __future__ import annotations

import base64

import numpy as np
import pytest

TEXTS = [
    "A man is playing a guitar on the street.",
    "The cat sat on the mat.",
    "Quantum chromodynamics describes the strong interaction between quarks and gluons.",
    "ok",
    # longer than the model's 64 tokens: truncated like encode() does
    " ".join(["embedding servers batch requests that arrive together"] * 12),
]
TOL = 1e-5


def _rows(response) -> np.ndarray:
    return np.array([item.embedding for item in sorted(response.data, key=lambda item: item.index)], dtype=np.float32)


def _matryoshka(rows: np.ndarray, dims: int) -> np.ndarray:
    kept = rows[:, :dims]
    return kept / np.linalg.norm(kept, axis=1, keepdims=True)


def test_default_client_call_equals_encode(openai_client, reference_model):
    # without encoding_format the client asks for base64 and decodes little-endian float32 itself
    response = openai_client.embeddings.create(model="tiny-embed", input=TEXTS)
    assert response.model == "tiny-embed" and response.object == "list"
    assert [item.index for item in response.data] == list(range(len(TEXTS)))
    np.testing.assert_allclose(_rows(response), reference_model.encode(TEXTS), atol=TOL, rtol=0)


@pytest.mark.parametrize("dims", [None, 32, 16, 1])
@pytest.mark.parametrize("encoding_format", ["float", None])
def test_dimensions_truncate_and_renormalize(openai_client, reference_model, dims, encoding_format):
    kwargs = {"dimensions": dims} if dims else {}
    if encoding_format:
        kwargs["encoding_format"] = encoding_format
    rows = _rows(openai_client.embeddings.create(model="tiny-embed", input=TEXTS, **kwargs))
    expected = reference_model.encode(TEXTS)
    if dims:
        expected = _matryoshka(expected, dims)
        np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)
    assert rows.shape == expected.shape
    np.testing.assert_allclose(rows, expected, atol=TOL, rtol=0)


@pytest.mark.parametrize("dims", [None, 8])
def test_explicit_base64_is_little_endian_float32(openai_client, reference_model, dims):
    kwargs = {"dimensions": dims} if dims else {}
    response = openai_client.embeddings.create(model="tiny-embed", input=TEXTS, encoding_format="base64", **kwargs)
    rows = np.stack([np.frombuffer(base64.b64decode(item.embedding), dtype="<f4") for item in response.data])
    expected = reference_model.encode(TEXTS)
    expected = _matryoshka(expected, dims) if dims else expected
    np.testing.assert_allclose(rows, expected, atol=TOL, rtol=0)


@pytest.mark.parametrize("input_type", ["query", "document"])
@pytest.mark.parametrize("dims", [None, 16])
def test_input_type_applies_saved_prompts(openai_client, reference_model, input_type, dims):
    kwargs = {"dimensions": dims} if dims else {}
    response = openai_client.embeddings.create(
        model="tiny-embed", input=TEXTS, extra_body={"input_type": input_type}, **kwargs
    )
    encode = {"query": reference_model.encode_query, "document": reference_model.encode_document}[input_type]
    expected = encode(TEXTS)
    plain = reference_model.encode(TEXTS)
    assert np.abs(expected - plain).max() > 1e-3  # the prompt changes the vectors, so the check below means something
    if dims:
        expected = _matryoshka(expected, dims)
    np.testing.assert_allclose(_rows(response), expected, atol=TOL, rtol=0)


def test_single_string_input(openai_client, reference_model):
    response = openai_client.embeddings.create(model="tiny-embed", input=TEXTS[1], encoding_format="float")
    assert len(response.data) == 1
    np.testing.assert_allclose(_rows(response)[0], reference_model.encode(TEXTS[1]), atol=TOL, rtol=0)


@pytest.mark.parametrize("input_type", [None, "query"])
def test_usage_counts_tokens_with_prompt_and_truncation(openai_client, reference_model, input_type):
    extra = {"input_type": input_type} if input_type else {}
    response = openai_client.embeddings.create(model="tiny-embed", input=TEXTS, extra_body=extra)
    prefix = reference_model.prompts[input_type] if input_type else ""
    assert prefix or not input_type
    tokenizer, limit = reference_model.tokenizer, reference_model.max_seq_length
    expected = sum(min(len(tokenizer(prefix + text)["input_ids"]), limit) for text in TEXTS)
    assert len(tokenizer(TEXTS[-1])["input_ids"]) > limit  # the long text really is truncated
    assert response.usage.prompt_tokens == expected
    assert response.usage.total_tokens == expected


def test_models_list_and_retrieve(openai_client, reference_model):
    models = openai_client.models.list()
    # the model and its per-role aliases (it has both saved prompts)
    assert [model.id for model in models.data] == ["tiny-embed", "tiny-embed-query", "tiny-embed-document"]
    assert models.data[1].model_extra == {"root": "tiny-embed", "input_type": "query"}
    model = openai_client.models.retrieve("tiny-embed")
    assert model.id == "tiny-embed" and model.owned_by == "embedforge"
    extra = model.model_extra
    assert extra["dimensions"] == 32 and extra["max_seq_length"] == reference_model.max_seq_length == 64
    assert extra["prompts"] == {"query": "query: ", "document": "passage: "}


def test_unknown_model_raises_not_found_in_client(openai_client):
    import openai

    with pytest.raises(openai.NotFoundError) as info:
        openai_client.embeddings.create(model="text-embedding-3-small", input="hi")
    assert info.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        openai_client.models.retrieve("text-embedding-3-small")


def test_health_and_metrics(server, openai_client):
    import httpx2

    openai_client.embeddings.create(model="tiny-embed", input=["metrics please", "two"])
    health = httpx2.get(server.url + "/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    metrics = httpx2.get(server.url + "/metrics")
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    values = _parse_metrics(metrics.text)
    assert values['embedforge_requests_total{route="/v1/embeddings",status="200"}'] >= 1
    assert values["embedforge_inputs_encoded_total"] >= 2
    assert values["embedforge_tokens_encoded_total"] >= 2
    assert values["embedforge_batches_total"] >= 1
    assert "embedforge_queue_inputs" in values and "embedforge_batch_requests_count" in values


def _parse_metrics(text: str) -> dict[str, float]:
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            values[key] = float(value)
    return values
