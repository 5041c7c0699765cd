"""Fixtures for the serving tests: a tiny model saved with prompts, and real servers on loopback ports."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

PROMPTS = {"query": "query: ", "document": "passage: "}


@pytest.fixture(scope="session")
def prompted_model_dir(_tiny_st_session, tmp_path_factory) -> Path:
    """The tiny SentenceTransformer saved with query / document prompts; served as ``tiny-embed``."""
    from embedforge.models import save_model

    return save_model(
        copy.deepcopy(_tiny_st_session), tmp_path_factory.mktemp("serving") / "tiny-embed", prompts=PROMPTS
    )


@pytest.fixture(scope="session")
def reference_model(prompted_model_dir):
    """The same folder loaded by plain sentence-transformers, the reference for every comparison."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(prompted_model_dir), device="cpu", local_files_only=True)


@pytest.fixture(scope="module")
def server(prompted_model_dir):
    """A real uvicorn server (truncation on, defaults otherwise) on a free loopback port."""
    from embedforge.serving import ServerThread, create_app

    with ServerThread(create_app(prompted_model_dir, device="cpu")) as running:
        yield running


@pytest.fixture(scope="module")
def strict_server(prompted_model_dir):
    """A server that rejects long texts, with small request limits, for the error tests."""
    from embedforge.serving import ServerThread, create_app

    app = create_app(prompted_model_dir, device="cpu", truncate=False, max_inputs=8, max_body_bytes=64 * 1024)
    with ServerThread(app) as running:
        yield running


@pytest.fixture
def openai_client(server):
    """The official ``openai`` client pointed at :func:`server`."""
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=60)
    yield client
    client.close()
