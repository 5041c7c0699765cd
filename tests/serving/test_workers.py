"""Horizontal scale with uvicorn's own workers: ``embedforge serve --workers 2`` runs two processes on one port.

Each process loads the model and runs its own dynamic batcher; the kernel hands each new connection to
one of them. The test starts the real CLI in a subprocess, sees both process ids answer on the one port,
and checks that answers from either equal ``encode``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

httpx2 = pytest.importorskip("httpx2")

REPO = Path(__file__).resolve().parents[2]
TEXTS = ["two processes behind one port", "each with its own batcher"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def two_workers(prompted_model_dir):
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "embedforge", "serve", str(prompted_model_dir), "--port", str(port)]
    process = subprocess.Popen(
        [*command, "--workers", "2", "--log-level", "warning", "--no-access-log"], env=env, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            assert process.poll() is None, f"the server exited with {process.returncode}"
            try:
                if httpx2.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx2.HTTPError:
                pass
            time.sleep(0.5)
        yield url, process
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def test_two_processes_answer_on_one_port(two_workers, reference_model):
    url, server = two_workers
    pids = set()
    give_up = time.monotonic() + 120  # both workers start in parallel; the second may still be loading
    while len(pids) < 2 and time.monotonic() < give_up:
        with httpx2.Client(timeout=10) as client:  # a fresh connection each time
            response = client.get(url + "/health")
        if response.status_code == 200:
            pids.add(response.json()["pid"])
    assert len(pids) == 2 and server.pid not in pids  # two worker processes, neither the supervisor
    expected = reference_model.encode(TEXTS)
    for _ in range(6):
        with httpx2.Client(timeout=60) as client:
            body = {"model": "tiny-embed", "input": TEXTS, "encoding_format": "float"}
            response = client.post(url + "/v1/embeddings", json=body)
        assert response.status_code == 200, response.text
        rows = np.array([item["embedding"] for item in response.json()["data"]], dtype=np.float32)
        np.testing.assert_allclose(rows, expected, atol=1e-5, rtol=0)


def test_workers_need_a_path_not_a_model_object(_tiny_st_session):
    from embedforge.serving.server import _json_source

    with pytest.raises(ValueError, match="workers > 1 needs model folders or preset names"):
        _json_source(_tiny_st_session)
    assert _json_source({"a": Path("x")}) == {"a": "x"}
