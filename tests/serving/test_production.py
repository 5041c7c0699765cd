"""Issue 14: API keys, CORS, several models with aliases and default input types, TEI's routes.

On the server before this work each of these fails: ``Authorization`` was ignored, a CORS preflight got
405, one model per process, and every TEI route was a 404.
"""

from __future__ import annotations

import numpy as np
import pytest

httpx2 = pytest.importorskip("httpx2")

TEXTS = ["What is the capital of France?", "Paris is the capital of France.", "ok"]
KEYS = ["sk-first-key-0001", "sk-second-key-0002"]


@pytest.fixture(scope="module")
def multi_server(prompted_model_dir, tiny_model_dir):
    """Two models (one with prompts, one without), API keys, CORS for one origin, a default input type."""
    from embedforge.serving import ServerThread, create_app

    app = create_app(
        {"tiny-embed": prompted_model_dir, "plain": tiny_model_dir},
        device="cpu",
        api_keys=KEYS,
        cors_allow_origins=["https://app.example"],
        default_input_type={"plain": "query"},
    )
    with ServerThread(app) as running:
        yield running


def _auth(key: str = KEYS[0]) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _rows(response) -> np.ndarray:
    assert response.status_code == 200, response.text
    return np.array([item["embedding"] for item in response.json()["data"]], dtype=np.float32)


def _embed(server, model, **extra):
    body = {"model": model, "input": TEXTS, "encoding_format": "float", **extra}
    return httpx2.post(server.url + "/v1/embeddings", json=body, headers=_auth(), timeout=60)


# --- API keys ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/embeddings", "/v1/models", "/metrics", "/embed", "/info", "/tokenize"])
def test_every_route_but_health_needs_a_key(multi_server, path):
    method = "GET" if path in ("/v1/models", "/metrics", "/info") else "POST"
    missing = httpx2.request(method, multi_server.url + path, json={"model": "tiny-embed", "input": "x"})
    assert missing.status_code == 401
    error = missing.json()["error"]
    assert error["code"] == "invalid_api_key" and error["type"] == "invalid_request_error"
    assert "didn't provide an API key" in error["message"]
    wrong = httpx2.request(method, multi_server.url + path, headers=_auth("sk-wrong-key-9999"), json={})
    assert wrong.status_code == 401 and "Incorrect API key provided: sk-****9999" in wrong.json()["error"]["message"]
    assert httpx2.get(multi_server.url + "/health").status_code == 200  # no key needed


def test_each_key_is_accepted(multi_server, reference_model):
    for key in KEYS:
        body = {"model": "tiny-embed", "input": TEXTS, "encoding_format": "float"}
        response = httpx2.post(multi_server.url + "/v1/embeddings", json=body, headers=_auth(key), timeout=60)
        np.testing.assert_allclose(_rows(response), reference_model.encode(TEXTS), atol=1e-5, rtol=0)


def test_openai_client_auth_errors(multi_server):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=multi_server.url + "/v1", api_key="sk-wrong-key-9999", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as info:
        client.embeddings.create(model="tiny-embed", input="hi")
    assert info.value.status_code == 401 and info.value.code == "invalid_api_key"
    good = openai.OpenAI(base_url=multi_server.url + "/v1", api_key=KEYS[1], max_retries=0)
    assert len(good.embeddings.create(model="tiny-embed", input="hi").data[0].embedding) == 32


def test_api_keys_from_the_environment(monkeypatch):
    import argparse

    from embedforge.cli import serve

    monkeypatch.setenv("EMBEDFORGE_API_KEYS", " env-key-1 ,env-key-2,")
    parser = argparse.ArgumentParser()
    serve.add_arguments(parser)
    options = serve.app_options(parser.parse_args(["m", "--api-key", "cli-key"]))
    assert options["api_keys"] == ["cli-key", "env-key-1", "env-key-2"]
    monkeypatch.delenv("EMBEDFORGE_API_KEYS")
    assert serve.app_options(parser.parse_args(["m"]))["api_keys"] is None


# --- CORS -------------------------------------------------------------------------------------------------


def test_cors_preflight_is_answered_without_a_key(multi_server):
    response = httpx2.options(
        multi_server.url + "/v1/embeddings",
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == "https://app.example"
    assert "POST" in response.headers["access-control-allow-methods"]
    assert "authorization" in response.headers["access-control-allow-headers"].lower()


def test_cors_headers_on_answers_and_refused_origins(multi_server):
    ok = httpx2.get(multi_server.url + "/v1/models", headers={**_auth(), "Origin": "https://app.example"})
    assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == "https://app.example"
    refused = httpx2.options(
        multi_server.url + "/v1/embeddings",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert refused.status_code == 400 and "access-control-allow-origin" not in refused.headers


# --- several models, aliases, default input types -----------------------------------------------------------


def test_each_model_is_addressable_and_equals_its_encode(multi_server, reference_model, tiny_model_dir):
    from sentence_transformers import SentenceTransformer

    plain = SentenceTransformer(str(tiny_model_dir), device="cpu", local_files_only=True)
    np.testing.assert_allclose(_rows(_embed(multi_server, "tiny-embed")), reference_model.encode(TEXTS), atol=1e-5)
    # 'plain' has a default input type 'query' and empty saved prompts (sentence-transformers' default)
    np.testing.assert_allclose(_rows(_embed(multi_server, "plain")), plain.encode_query(TEXTS), atol=1e-5)
    listed = httpx2.get(multi_server.url + "/v1/models", headers=_auth()).json()["data"]
    assert [item["id"] for item in listed] == [
        "tiny-embed",
        "plain",
        "tiny-embed-query",
        "tiny-embed-document",
        "plain-query",
        "plain-document",
    ]
    assert httpx2.get(multi_server.url + "/health").json()["models"] == ["tiny-embed", "plain"]


@pytest.mark.parametrize(
    "alias, method", [("tiny-embed-query", "encode_query"), ("tiny-embed-document", "encode_document")]
)
def test_role_aliases_apply_the_saved_prompt(multi_server, reference_model, alias, method):
    expected = getattr(reference_model, method)(TEXTS)
    assert not np.allclose(expected, reference_model.encode(TEXTS), atol=1e-3)  # the prompt matters
    response = _embed(multi_server, alias)
    np.testing.assert_allclose(_rows(response), expected, atol=1e-5, rtol=0)
    assert response.json()["model"] == alias
    # an explicit input_type still wins over the alias's
    explicit = _embed(multi_server, alias, input_type="document")
    np.testing.assert_allclose(_rows(explicit), reference_model.encode_document(TEXTS), atol=1e-5, rtol=0)


def test_default_input_type_for_the_plain_name(prompted_model_dir, reference_model):
    from embedforge.serving import ServerThread, create_app

    with ServerThread(create_app(prompted_model_dir, device="cpu", default_input_type="query")) as server:
        body = {"model": "tiny-embed", "input": TEXTS, "encoding_format": "float"}
        response = httpx2.post(server.url + "/v1/embeddings", json=body, timeout=60)
        np.testing.assert_allclose(_rows(response), reference_model.encode_query(TEXTS), atol=1e-5, rtol=0)


def test_bad_multi_model_configs_are_refused(prompted_model_dir):
    from embedforge.errors import ConfigError
    from embedforge.serving import create_app

    with pytest.raises(ConfigError, match="default_input_type names models that are not served: nope"):
        create_app({"a": prompted_model_dir}, device="cpu", default_input_type={"nope": "query"})
    with pytest.raises(ConfigError, match="default_input_type for 'a' must be one of query, document"):
        create_app({"a": prompted_model_dir}, device="cpu", default_input_type="passage")
    with pytest.raises(ConfigError, match="alias 'a-query' of 'a' is also the name of a served model"):
        create_app({"a": prompted_model_dir, "a-query": prompted_model_dir}, device="cpu")


def test_cli_parses_several_models_and_default_types():
    import argparse

    from embedforge.cli import serve
    from embedforge.errors import ConfigError

    parser = argparse.ArgumentParser()
    serve.add_arguments(parser)
    args = parser.parse_args(
        ["--model", "a=path/a", "--model", "b=all-MiniLM-L6-v2", "--default-input-type", "a=query"]
    )
    assert serve.models_to_serve(args) == {"a": "path/a", "b": "all-MiniLM-L6-v2"}
    assert serve.app_options(args)["default_input_type"] == {"a": "query"}
    single = parser.parse_args(["m", "--served-model-name", "x", "--default-input-type", "document"])
    assert serve.models_to_serve(single) == "m" and serve.app_options(single)["model_name"] == "x"
    assert serve.app_options(single)["default_input_type"] == "document"
    for argv, message in [
        (["--model", "nopath"], "expected NAME=PATH"),
        (["m", "--model", "a=b"], "not both"),
        ([], "no model to serve"),
        (["--model", "a=x", "--model", "a=y"], "given twice"),
    ]:
        with pytest.raises(ConfigError, match=message):
            serve.models_to_serve(parser.parse_args(argv))


# --- TEI routes -------------------------------------------------------------------------------------------


def test_tei_embed_matches_encode(multi_server, reference_model):
    url = multi_server.url
    rows = httpx2.post(url + "/embed", json={"inputs": TEXTS}, headers=_auth()).json()
    np.testing.assert_allclose(np.array(rows, dtype=np.float32), reference_model.encode(TEXTS), atol=1e-5)
    single = httpx2.post(url + "/embed", json={"inputs": "ok"}, headers=_auth()).json()
    assert len(single) == 1 and len(single[0]) == 32  # TEI always answers a list of rows
    prompted = httpx2.post(url + "/embed", json={"inputs": TEXTS, "prompt_name": "query"}, headers=_auth()).json()
    np.testing.assert_allclose(np.array(prompted), reference_model.encode_query(TEXTS), atol=1e-5)
    cut = httpx2.post(url + "/embed", json={"inputs": TEXTS, "dimensions": 8}, headers=_auth()).json()
    full = reference_model.encode(TEXTS)[:, :8]
    np.testing.assert_allclose(np.array(cut), full / np.linalg.norm(full, axis=1, keepdims=True), atol=1e-5)
    root = httpx2.post(url + "/", json={"inputs": TEXTS}, headers=_auth()).json()  # TEI's task route
    np.testing.assert_allclose(np.array(root), np.array(rows), atol=0)


def test_tei_errors_answer_in_tei_shape(multi_server):
    url = multi_server.url
    long_text = " ".join(["tokens"] * 100)
    too_long = httpx2.post(url + "/embed", json={"inputs": [long_text], "truncate": False}, headers=_auth())
    assert too_long.status_code == 413 and too_long.json()["error_type"] == "Validation"
    assert "64" in too_long.json()["error"]
    truncated = httpx2.post(url + "/embed", json={"inputs": [long_text], "truncate": True}, headers=_auth())
    assert truncated.status_code == 200
    empty = httpx2.post(url + "/embed", json={"inputs": []}, headers=_auth())
    assert empty.status_code == 400 and empty.json()["error_type"] == "Empty"
    bad_prompt = httpx2.post(url + "/embed", json={"inputs": "x", "prompt_name": "nope"}, headers=_auth())
    assert bad_prompt.status_code == 422 and "query, document" in bad_prompt.json()["error"]
    unknown = httpx2.post(url + "/embed", json={"inputs": "x", "normalise": True}, headers=_auth())
    assert unknown.status_code == 422 and set(unknown.json()) == {"error", "error_type"}


def test_tei_tokenize_and_info(multi_server, reference_model):
    url = multi_server.url
    tokens = httpx2.post(url + "/tokenize", json={"inputs": ["hello world"]}, headers=_auth()).json()
    expected_ids = reference_model.tokenizer("hello world")["input_ids"]
    assert [token["id"] for token in tokens[0]] == expected_ids
    assert tokens[0][0]["special"] is True and tokens[0][0]["start"] is None
    words = [token for token in tokens[0] if not token["special"]]
    assert all("hello world"[t["start"] : t["stop"]] == t["text"] for t in words)
    prompted = httpx2.post(url + "/tokenize", json={"inputs": "hi", "prompt_name": "query"}, headers=_auth()).json()
    assert [t["id"] for t in prompted[0]] == reference_model.tokenizer("query: hi")["input_ids"]
    info = httpx2.get(url + "/info", headers=_auth()).json()
    assert info["model_id"] == "tiny-embed" and info["max_input_length"] == 64
    assert info["model_type"] == {"embedding": {"pooling": "mean"}} and info["auto_truncate"] is True
    assert info["max_client_batch_size"] == 2048 and info["model_dtype"] == "float32"
