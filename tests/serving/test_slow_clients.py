"""A client that stalls while sending its body, or never reads its response, does not block anyone else."""

from __future__ import annotations

import json
import socket

import numpy as np
import pytest

httpx2 = pytest.importorskip("httpx2")

TEXTS = ["others are still served", "while one client stalls"]


def _valid_request_works(server, reference_model) -> None:
    response = httpx2.post(
        server.url + "/v1/embeddings",
        json={"model": "tiny-embed", "input": TEXTS, "encoding_format": "float"},
        timeout=30,
    )
    assert response.status_code == 200
    rows = np.array([item["embedding"] for item in response.json()["data"]], dtype=np.float32)
    np.testing.assert_allclose(rows, reference_model.encode(TEXTS), atol=1e-5, rtol=0)


def _connect(server, rcvbuf: int | None = None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect((server.host, server.port))
    return sock


def _head(server, length: int) -> bytes:
    return (
        f"POST /v1/embeddings HTTP/1.1\r\nHost: {server.host}:{server.port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


def test_client_sending_half_a_body_does_not_block_others(server, reference_model):
    body = json.dumps({"model": "tiny-embed", "input": ["a slow client's text"] * 4}).encode()
    stalled = [_connect(server) for _ in range(3)]
    try:
        for sock in stalled:
            sock.sendall(_head(server, len(body)) + body[: len(body) // 2])  # ... and then nothing
        for _ in range(3):
            _valid_request_works(server, reference_model)
        # the stalled client can still finish and gets a correct answer
        stalled[0].sendall(body[len(body) // 2 :])
        stalled[0].settimeout(30)
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
            chunk = stalled[0].recv(65536)
            if not chunk:
                break
            reply += chunk
        head, _, payload = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        assert len(json.loads(payload)["data"]) == 4
    finally:
        for sock in stalled:
            sock.close()
    _valid_request_works(server, reference_model)
    assert httpx2.get(server.url + "/health").status_code == 200


def test_client_that_never_reads_its_large_response_does_not_block_others(server, reference_model):
    # ~2,000 float rows make a response of over a megabyte, far more than a 4 KiB receive buffer
    body = json.dumps(
        {"model": "tiny-embed", "input": [f"row {i}" for i in range(2000)], "encoding_format": "float"}
    ).encode()
    readers = [_connect(server, rcvbuf=4096) for _ in range(2)]
    try:
        for sock in readers:
            sock.sendall(_head(server, len(body)) + body)  # and never read the answer
        for _ in range(3):
            _valid_request_works(server, reference_model)
    finally:
        for sock in readers:
            sock.close()
    _valid_request_works(server, reference_model)


def test_client_disconnecting_mid_body_is_harmless(server, reference_model):
    sock = _connect(server)
    sock.sendall(_head(server, 1000) + b'{"model": "tiny-embed", "inp')
    sock.close()
    _valid_request_works(server, reference_model)
    assert httpx2.get(server.url + "/health").status_code == 200
