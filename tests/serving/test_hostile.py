"""Hostile clients (issue 12, items 1 and 11): huge texts, and sockets that never finish a head or a body.

Each test fails on the server before the fix: it tokenized a 10 MB text whole, and it had no
head or body read deadline (a half-sent head or a Content-Length larger than the body held the
connection open forever; here the socket's own 30 s timeout would fire instead of the server closing).
"""

from __future__ import annotations

import json
import socket
import time

import numpy as np
import pytest

httpx2 = pytest.importorskip("httpx2")

SENTENCE = "Serving stacks bound the work one request can cause before they start on it. "
VALID = ["a valid request right after", "still answered correctly"]


@pytest.fixture(scope="module")
def guarded_server(prompted_model_dir):
    """Short deadlines so that the tests do not wait long."""
    from embedforge.serving import ServerThread, create_app

    app = create_app(prompted_model_dir, device="cpu", body_timeout=1.0)
    with ServerThread(app, head_timeout=1.0) as running:
        yield running


@pytest.fixture
def longest_text_seen(monkeypatch):
    """Record the longest string the served model's tokenizers and encoder were handed."""
    from embedforge.serving.app import EmbeddingService

    seen = {"count_tokens": 0, "encode": 0}
    count_tokens, encode = EmbeddingService.count_tokens, EmbeddingService.encode

    def spy_count(self, texts, prompt):
        seen["count_tokens"] = max(seen["count_tokens"], *map(len, texts))
        return count_tokens(self, texts, prompt)

    def spy_encode(self, texts, input_type):
        seen["encode"] = max(seen["encode"], *map(len, texts))
        return encode(self, texts, input_type)

    monkeypatch.setattr(EmbeddingService, "count_tokens", spy_count)
    monkeypatch.setattr(EmbeddingService, "encode", spy_encode)
    return seen


def _assert_valid_request_works(server, reference_model) -> None:
    response = httpx2.post(
        server.url + "/v1/embeddings", json={"model": "tiny-embed", "input": VALID, "encoding_format": "float"}
    )
    assert response.status_code == 200, response.text
    rows = np.array([item["embedding"] for item in response.json()["data"]], dtype=np.float32)
    np.testing.assert_allclose(rows, reference_model.encode(VALID), atol=1e-5, rtol=0)


def test_ten_megabyte_text_is_cut_before_tokenizing(server, reference_model, longest_text_seen):
    huge = (SENTENCE * (10_000_000 // len(SENTENCE) + 1))[:10_000_000]
    limit = server.app.state.service.max_text_chars
    assert limit == 32 * 64  # CHARS_PER_TOKEN x the tiny model's max_seq_length
    response = httpx2.post(
        server.url + "/v1/embeddings",
        json={"model": "tiny-embed", "input": ["short one", huge], "encoding_format": "float"},
        timeout=120,
    )
    assert response.status_code == 200, response.text
    assert longest_text_seen["count_tokens"] <= limit and longest_text_seen["encode"] <= limit
    rows = np.array([item["embedding"] for item in response.json()["data"]], dtype=np.float32)
    # the cut keeps the model's whole 64-token window, so the answer is what encode() gives for the whole text
    np.testing.assert_allclose(rows[1], reference_model.encode(huge[: 20 * limit]), atol=1e-5, rtol=0)
    assert reference_model.tokenizer(huge[:limit], truncation=False)["input_ids"].__len__() > 64
    _assert_valid_request_works(server, reference_model)


def test_too_many_characters_rejected_without_tokenizing_when_truncation_is_off(strict_server, longest_text_seen):
    huge = "word " * 10_000  # 50,000 characters, under the strict server's 64 KiB body limit
    response = httpx2.post(
        strict_server.url + "/v1/embeddings", json={"model": "tiny-embed", "input": ["ok", huge]}, timeout=60
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["param"], error["code"]) == ("input[1]", "context_length_exceeded")
    assert "50000 characters" in error["message"] and "at most 2048 characters" in error["message"]
    assert longest_text_seen["count_tokens"] == 0  # nothing was tokenized


def test_max_text_chars_option_is_checked(prompted_model_dir):
    from embedforge.errors import ConfigError
    from embedforge.serving import create_app

    with pytest.raises(ConfigError, match="max_text_chars must be a positive integer, got 0"):
        create_app(prompted_model_dir, device="cpu", max_text_chars=0)
    app = create_app(prompted_model_dir, device="cpu", max_text_chars=100)
    assert app.state.service.max_text_chars == 100


def _connect(server) -> socket.socket:
    sock = socket.create_connection((server.host, server.port))
    sock.settimeout(30)  # far above the server's 1 s deadlines: hitting it means the server never closed
    return sock


def _read_until_closed(sock: socket.socket) -> bytes:
    reply = b""
    while chunk := sock.recv(65536):
        reply += chunk
    return reply


def test_half_sent_head_gets_408_and_close(guarded_server, reference_model):
    sock = _connect(guarded_server)
    try:
        sock.sendall(b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: appl")
        reply = _read_until_closed(sock)
    finally:
        sock.close()
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), reply[:200]
    assert json.loads(body)["error"]["code"] == "request_timeout"
    _assert_valid_request_works(guarded_server, reference_model)


def test_slowloris_head_is_not_kept_alive_by_trickled_bytes(guarded_server):
    sock = _connect(guarded_server)
    sent = 0
    try:
        sock.sendall(b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\n")
        give_up = time.monotonic() + 30
        while time.monotonic() < give_up:
            try:
                sock.sendall(b"X-Slow-%d: y\r\n" % sent)  # one header line every 0.1 s, never the blank line
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += 1
            time.sleep(0.1)
        reply = _read_until_closed(sock)
    finally:
        sock.close()
    assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
    assert sent < 290  # closed by the server, not by the test giving up


def test_idle_new_connection_is_closed(guarded_server):
    sock = _connect(guarded_server)
    try:
        assert _read_until_closed(sock) == b""  # closed by the server without a word
    finally:
        sock.close()


def test_content_length_larger_than_body_gets_408_and_close(guarded_server, reference_model):
    body = json.dumps({"model": "tiny-embed", "input": ["hello"]}).encode()
    sock = _connect(guarded_server)
    try:
        sock.sendall(
            b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % (len(body) + 100) + body
        )
        reply = _read_until_closed(sock)
    finally:
        sock.close()
    head, _, payload = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), reply[:200]
    assert b"connection: close" in head.lower()
    error = json.loads(payload)["error"]
    assert error["code"] == "request_timeout" and "body" in error["message"]
    _assert_valid_request_works(guarded_server, reference_model)


def test_head_larger_than_the_h11_limit_gets_400(guarded_server, reference_model):
    sock = _connect(guarded_server)
    try:
        # h11 judges a head still incomplete: 40 KB of it without the closing blank line
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 40_000)
        reply = _read_until_closed(sock)
    finally:
        sock.close()
    assert reply.startswith(b"HTTP/1.1 400"), reply[:200]
    _assert_valid_request_works(guarded_server, reference_model)


def test_keep_alive_connection_serves_several_requests_within_the_deadlines(guarded_server):
    # the head deadline is per request: a client that answers promptly keeps its connection
    with httpx2.Client(base_url=guarded_server.url, timeout=30) as client:
        for _ in range(3):
            assert client.get("/health").status_code == 200


def test_connection_limits_are_checked():
    from embedforge.serving.server import uvicorn_config

    with pytest.raises(ValueError, match="head_timeout must be > 0 seconds or None, got 0"):
        uvicorn_config(object(), head_timeout=0)
    with pytest.raises(ValueError, match="max_head_bytes must be >= 1024"):
        uvicorn_config(object(), max_head_bytes=10)


def test_uvicorn_internals_the_head_deadline_relies_on():
    """HeadTimeoutH11Protocol subclasses uvicorn's h11 protocol (read from uvicorn 0.54.0, h11 0.16.0)."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    for name in ("connection_made", "on_response_complete", "timeout_keep_alive_handler"):
        assert callable(getattr(H11Protocol, name, None)), name
    assert isinstance(h11.Connection(h11.SERVER).trailing_data, tuple)
    assert h11.Connection(h11.SERVER).their_state is h11.IDLE
