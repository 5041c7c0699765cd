"""Malformed requests get a 4xx with an OpenAI-style error body, and the server keeps serving."""

from __future__ import annotations

import json

import numpy as np
import pytest

httpx2 = pytest.importorskip("httpx2")

VALID_TEXTS = ["a valid request right after", "still answered correctly"]
LONG_TEXT = " ".join(["tokens"] * 100)  # > 64 tokens; the strict server rejects it


def _json(body: dict) -> bytes:
    return json.dumps(body).encode()


def _req(**overrides) -> bytes:
    body = {"model": "tiny-embed", "input": ["hello"], **overrides}
    return _json({key: value for key, value in body.items() if value is not ...})


TOKEN_IDS = "token_ids_not_supported"

# id -> (method, path, raw body, expected status, expected param, expected code)
MALFORMED = {
    "invalid-json": ("POST", "/v1/embeddings", b'{"model": "tiny-embed", "input": [', 400, None, "invalid_json"),
    "not-utf8": ("POST", "/v1/embeddings", b'{"model": "tiny-embed", "input": "\xff\xfe"}', 400, None, "invalid_json"),
    "deeply-nested-json": ("POST", "/v1/embeddings", b"[" * 20_000, 400, None, "invalid_json"),
    "lone-surrogate": (
        "POST",
        "/v1/embeddings",
        b'{"model": "tiny-embed", "input": ["ok", "a\\ud800b"]}',
        400,
        "input[1]",
        "invalid_value",
    ),
    "body-is-array": ("POST", "/v1/embeddings", b'["hello"]', 400, None, "invalid_type"),
    "empty-body": ("POST", "/v1/embeddings", b"", 400, None, "invalid_json"),
    "missing-input": ("POST", "/v1/embeddings", _req(input=...), 400, "input", "missing_required_parameter"),
    "missing-model": ("POST", "/v1/embeddings", _req(model=...), 400, "model", "missing_required_parameter"),
    "model-not-string": ("POST", "/v1/embeddings", _req(model=7), 400, "model", "invalid_value"),
    "input-number": ("POST", "/v1/embeddings", _req(input=42.5), 400, "input", "invalid_type"),
    "input-object": ("POST", "/v1/embeddings", _req(input={"text": "hi"}), 400, "input", "invalid_type"),
    "input-null-item": ("POST", "/v1/embeddings", _req(input=["ok", None]), 400, "input[1]", "invalid_type"),
    "input-token-ids": (
        "POST",
        "/v1/embeddings",
        _req(input=[101, 7592, 102]),
        400,
        "input[0]",
        "token_ids_not_supported",
    ),
    "input-token-arrays": (
        "POST",
        "/v1/embeddings",
        _req(input=[[101, 102]]),
        400,
        "input[0]",
        "token_ids_not_supported",
    ),
    "empty-string": ("POST", "/v1/embeddings", _req(input=""), 400, "input", "empty_input"),
    "empty-string-item": ("POST", "/v1/embeddings", _req(input=["ok", ""]), 400, "input[1]", "empty_input"),
    "empty-list": ("POST", "/v1/embeddings", _req(input=[]), 400, "input", "empty_input"),
    "too-many-inputs": ("POST", "/v1/embeddings", _req(input=["x"] * 9), 400, "input", "too_many_inputs"),
    "text-too-long": (
        "POST",
        "/v1/embeddings",
        _req(input=["ok", LONG_TEXT]),
        400,
        "input[1]",
        "context_length_exceeded",
    ),
    "unknown-model": ("POST", "/v1/embeddings", _req(model="text-embedding-3-large"), 404, "model", "model_not_found"),
    "dimensions-zero": ("POST", "/v1/embeddings", _req(dimensions=0), 400, "dimensions", "invalid_value"),
    "dimensions-negative": ("POST", "/v1/embeddings", _req(dimensions=-3), 400, "dimensions", "invalid_value"),
    "dimensions-too-big": ("POST", "/v1/embeddings", _req(dimensions=33), 400, "dimensions", "invalid_value"),
    "dimensions-string": ("POST", "/v1/embeddings", _req(dimensions="16"), 400, "dimensions", "invalid_value"),
    "dimensions-float": ("POST", "/v1/embeddings", _req(dimensions=16.5), 400, "dimensions", "invalid_value"),
    "dimensions-bool": ("POST", "/v1/embeddings", _req(dimensions=True), 400, "dimensions", "invalid_value"),
    "encoding-format": (
        "POST",
        "/v1/embeddings",
        _req(encoding_format="hex"),
        400,
        "encoding_format",
        "invalid_value",
    ),
    "input-type": ("POST", "/v1/embeddings", _req(input_type="passage"), 400, "input_type", "invalid_value"),
    "quantization": ("POST", "/v1/embeddings", _req(quantization="int4"), 400, "quantization", "invalid_value"),
    "unknown-field": ("POST", "/v1/embeddings", _req(dimension=16), 400, "dimension", "unknown_parameter"),
    "user-not-string": ("POST", "/v1/embeddings", _req(user=["me"]), 400, "user", "invalid_value"),
    "body-too-large": ("POST", "/v1/embeddings", _req(input=["word " * 2000] * 8), 413, None, "request_too_large"),
    "wrong-method": ("GET", "/v1/embeddings", b"", 405, None, "method_not_allowed"),
    "unknown-route": ("POST", "/v1/embedding", _req(), 404, None, "not_found"),
}


@pytest.fixture(scope="module")
def http(strict_server):
    with httpx2.Client(base_url=strict_server.url, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def expected_valid(reference_model):
    return reference_model.encode(VALID_TEXTS)


@pytest.mark.parametrize("case", list(MALFORMED), ids=list(MALFORMED))
def test_malformed_request_is_4xx_then_valid_request_works(http, expected_valid, case):
    method, path, body, status, param, code = MALFORMED[case]
    response = http.request(method, path, content=body, headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert isinstance(error["message"], str) and error["message"]
    assert error["param"] == param
    assert error["code"] == code

    valid = http.post("/v1/embeddings", json={"model": "tiny-embed", "input": VALID_TEXTS, "encoding_format": "float"})
    assert valid.status_code == 200, valid.text
    rows = np.array([item["embedding"] for item in valid.json()["data"]], dtype=np.float32)
    np.testing.assert_allclose(rows, expected_valid, atol=1e-5, rtol=0)


def test_at_least_ten_kinds_of_malformed_requests():
    assert len({code for *_, code in MALFORMED.values()}) >= 10
    assert len(MALFORMED) >= 10


def test_long_text_is_truncated_not_rejected_by_default(server, reference_model):
    response = httpx2.post(
        server.url + "/v1/embeddings",
        json={"model": "tiny-embed", "input": LONG_TEXT, "encoding_format": "float"},
        timeout=60,
    )
    assert response.status_code == 200
    assert response.json()["usage"]["prompt_tokens"] == reference_model.max_seq_length
    np.testing.assert_allclose(response.json()["data"][0]["embedding"], reference_model.encode(LONG_TEXT), atol=1e-5)


def test_encoder_failure_is_500_with_error_body_and_server_keeps_serving(strict_server, http, expected_valid):
    # fault injection around the real encoder: texts containing BOOM make it raise
    batcher = strict_server.app.state.batcher
    real_encode = batcher.encode_fn

    def failing_encode(texts, key):
        if any("BOOM" in text for text in texts):
            raise RuntimeError("simulated device failure")
        return real_encode(texts, key)

    batcher.encode_fn = failing_encode
    try:
        response = http.post("/v1/embeddings", json={"model": "tiny-embed", "input": ["BOOM"]})
        assert response.status_code == 500
        error = response.json()["error"]
        assert error["type"] == "server_error" and "simulated device failure" in error["message"]
        assert http.get("/health").status_code == 200
        valid = http.post(
            "/v1/embeddings", json={"model": "tiny-embed", "input": VALID_TEXTS, "encoding_format": "float"}
        )
        assert valid.status_code == 200
        rows = np.array([item["embedding"] for item in valid.json()["data"]], dtype=np.float32)
        np.testing.assert_allclose(rows, expected_valid, atol=1e-5, rtol=0)
    finally:
        batcher.encode_fn = real_encode


def test_errors_are_counted_by_status_in_metrics(http):
    http.post("/v1/embeddings", content=b"not json")
    text = http.get("/metrics").text
    line = next(
        line
        for line in text.splitlines()
        if line.startswith('embedforge_requests_total{route="/v1/embeddings",status="400"}')
    )
    assert float(line.rsplit(" ", 1)[1]) >= 1


# values of every JSON type, odd strings and numbers included
_ODD_VALUES = [
    None,
    True,
    False,
    0,
    -1,
    1,
    7,
    33,
    2**70,
    1.5,
    -0.0,
    "",
    " ",
    "tiny-embed",
    "float",
    "base64",
    "query",
    "int8",
    "binary",
    "\u0000",
    "a\ud800",
    "ünïcödé ✓",
    "x" * 5000,
    [],
    [""],
    ["ok"],
    ["ok", 3],
    [[1, 2]],
    [None],
    {},
    {"a": 1},
    [["nested"]],
    ["ok"] * 9,
]
_FIELDS = ["input", "model", "dimensions", "encoding_format", "input_type", "quantization", "user", "extra"]


def test_randomized_bodies_never_get_a_5xx(http):
    """Seeded random mixes of fields and values: every answer is 2xx or 4xx with an error body."""
    import random

    rng = random.Random(1234)
    statuses = set()
    for _ in range(150):
        body = {"model": "tiny-embed", "input": "a"} if rng.random() < 0.5 else {}
        for field in rng.sample(_FIELDS, rng.randint(1, 4)):
            body[field] = rng.choice(_ODD_VALUES)
        raw = json.dumps(body).encode() if rng.random() < 0.9 else json.dumps(body).encode()[: rng.randint(0, 40)]
        response = http.post("/v1/embeddings", content=raw)
        statuses.add(response.status_code)
        assert response.status_code < 500, (raw[:200], response.text)
        if response.status_code >= 400:
            assert set(response.json()["error"]) == {"message", "type", "param", "code"}
        else:
            assert len(response.json()["data"]) >= 1
    assert 200 in statuses and 400 in statuses  # both paths were exercised
    assert http.get("/health").status_code == 200


def test_not_started_batcher_gives_503_health_and_error_body(prompted_model_dir):
    """Without its lifespan (batcher not running) the app says so: 503 on /health and on embeddings."""
    import asyncio

    from embedforge.serving import create_app

    app = create_app(prompted_model_dir, device="cpu")

    async def scenario():
        transport = httpx2.ASGITransport(app=app)  # does not run the lifespan
        async with httpx2.AsyncClient(transport=transport, base_url="http://test") as client:
            health = await client.get("/health")
            embed = await client.post("/v1/embeddings", json={"model": "tiny-embed", "input": "hi"})
        return health, embed

    health, embed = asyncio.run(scenario())
    assert health.status_code == 503 and health.json()["status"] == "unavailable"
    assert embed.status_code == 503
    assert embed.json()["error"]["type"] == "server_error" and embed.json()["error"]["code"] == "unavailable"
