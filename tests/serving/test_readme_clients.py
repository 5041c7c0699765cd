"""The README's client snippets (openai, LangChain, LlamaIndex, TEI) run against a live server with an API key.

Each snippet is taken from README.md as written; only the base URL, the model name and the key are
replaced with the test server's. Its results must equal ``SentenceTransformer.encode_*`` with the
right prompt. LangChain is also run with its defaults (token ids): the 400 names the flag to set.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
KEY = "sk-test-key-1234"
DOCS = ["Paris is the capital of France."]
QUERY = "What is the capital of France?"


def snippet(name: str) -> str:
    match = re.search(rf"<!-- serving-snippet: {name} -->\n```python\n(.*?)```", README.read_text(), re.S)
    assert match, f"README.md has no serving snippet {name!r}"
    return match.group(1)


@pytest.fixture(scope="module")
def keyed_server(prompted_model_dir):
    from embedforge.serving import ServerThread, create_app

    with ServerThread(create_app(prompted_model_dir, device="cpu", api_keys=[KEY])) as running:
        yield running


def run_snippet(name: str, server) -> dict:
    code = (
        snippet(name)
        .replace("http://127.0.0.1:8000", server.url)
        .replace("my-embedder", "tiny-embed")
        .replace("sk-my-key", KEY)
    )
    namespace: dict = {}
    exec(compile(code, f"README.md:{name}", "exec"), namespace)  # noqa: S102 - the README's own snippet
    return namespace


def test_openai_snippet(keyed_server, reference_model):
    pytest.importorskip("openai")
    out = run_snippet("openai", keyed_server)
    expected = reference_model.encode_query(["how do I install a package?"])
    np.testing.assert_allclose(np.array(out["vectors"]), expected, atol=1e-5, rtol=0)


@pytest.fixture
def tiktoken_offline(monkeypatch):
    """LangChain counts tokens with tiktoken; its cl100k_base file ships inside llama-index-core (no download)."""
    core = pytest.importorskip("llama_index.core")
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(Path(core.__file__).parent / "_static" / "tiktoken_cache"))


def test_langchain_snippet(keyed_server, reference_model, tiktoken_offline):
    pytest.importorskip("langchain_openai")
    out = run_snippet("langchain", keyed_server)
    np.testing.assert_allclose(np.array(out["vectors"]), reference_model.encode_document(DOCS), atol=1e-5, rtol=0)
    np.testing.assert_allclose(out["query_vector"], reference_model.encode_query([QUERY])[0], atol=1e-5, rtol=0)


def test_langchain_defaults_get_a_400_naming_the_flag(keyed_server, tiktoken_offline):
    openai = pytest.importorskip("openai")
    from langchain_openai import OpenAIEmbeddings

    embeddings = OpenAIEmbeddings(model="tiny-embed", base_url=keyed_server.url + "/v1", api_key=KEY, max_retries=0)
    with pytest.raises(openai.BadRequestError) as info:
        embeddings.embed_documents(DOCS)
    assert "check_embedding_ctx_length=False" in str(info.value)
    assert info.value.code == "token_ids_not_supported"


def test_llamaindex_snippet(keyed_server, reference_model):
    pytest.importorskip("llama_index.embeddings.openai_like")
    out = run_snippet("llamaindex", keyed_server)
    np.testing.assert_allclose(np.array(out["vectors"]), reference_model.encode_document(DOCS), atol=1e-5, rtol=0)
    np.testing.assert_allclose(out["query_vector"], reference_model.encode_query([QUERY])[0], atol=1e-5, rtol=0)


def test_tei_snippet(keyed_server, reference_model, monkeypatch):
    pytest.importorskip("httpx")
    from huggingface_hub import constants

    # huggingface_hub refuses every URL, loopback included, when HF_HUB_OFFLINE is set (as in these tests)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    out = run_snippet("tei", keyed_server)
    np.testing.assert_allclose(np.array(out["vectors"]), reference_model.encode_document(DOCS), atol=1e-5, rtol=0)
    np.testing.assert_allclose(out["query_vector"], reference_model.encode_query([QUERY])[0], atol=1e-5, rtol=0)
