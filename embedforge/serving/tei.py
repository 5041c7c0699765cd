"""Hugging Face TEI's routes (``POST /embed``, ``POST /tokenize``, ``GET /info``) over the first served model.

Request and response shapes follow text-embeddings-inference's router (``router/src/http/types.rs``), so
TEI clients (``huggingface_hub.InferenceClient.feature_extraction``, LangChain's
``HuggingFaceEndpointEmbeddings``, LlamaIndex's ``TextEmbeddingsInference``, plain HTTP) can point at
embedforge:

* ``POST /embed`` (also ``POST /``, TEI's route for the model's task): ``{"inputs": str | [str],
  "normalize": true, "truncate": null, "truncation_direction": "right", "prompt_name": null,
  "dimensions": null}`` -> ``[[float, ...], ...]``. ``truncate: null`` means the server's setting;
  ``prompt_name`` must be one of the model's saved prompts; ``dimensions`` keeps the first N values
  (renormalized when ``normalize``). ``normalize: false`` returns what the model outputs: a model that
  ends in a ``Normalize`` module is normalized either way. Only right truncation exists here.
* ``POST /tokenize``: ``{"inputs", "add_special_tokens": true, "prompt_name": null}`` -> per text, a
  list of ``{"id", "text", "special", "start", "stop"}`` (character offsets into the text, prompt included).
* ``GET /info``: ``model_id``, ``model_dtype``, ``model_type``, ``max_input_length``,
  ``max_client_batch_size``, ``auto_truncate``, ... .

Errors answer TEI's body ``{"error": message, "error_type": kind}``: 413 ``Validation`` for too many
or too long inputs, 422 ``Validation`` for a malformed request, 400 ``Empty``, 429 ``Overloaded``,
503 ``Unhealthy``, 500 ``Backend``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, StrictBool, StrictInt, StrictStr, ValidationError
from starlette.concurrency import run_in_threadpool

from embedforge.serving.schemas import APIError, format_loc, normalize_input
from embedforge.utils.matryoshka import truncate_and_renormalize

if TYPE_CHECKING:
    from embedforge.serving.app import EmbeddingService

TEI_VERSION = "1.8.0"  # the TEI API version these routes follow


class TEIEmbedRequest(BaseModel):
    """Body of TEI's ``POST /embed``."""

    model_config = ConfigDict(extra="forbid")

    inputs: Any
    normalize: StrictBool = True
    truncate: StrictBool | None = None
    truncation_direction: Literal["right", "Right", "left", "Left"] = "right"
    prompt_name: StrictStr | None = None
    dimensions: StrictInt | None = None


class TEITokenizeRequest(BaseModel):
    """Body of TEI's ``POST /tokenize``."""

    model_config = ConfigDict(extra="forbid")

    inputs: Any
    add_special_tokens: StrictBool = True
    prompt_name: StrictStr | None = None


def tei_error(error: APIError) -> JSONResponse:
    """An :class:`APIError` in TEI's shape and status."""
    code = error.code or ""
    if error.status == 400 and code == "empty_input":
        status, kind = 400, "Empty"
    elif code in ("context_length_exceeded", "too_many_inputs", "request_too_large"):
        status, kind = 413, "Validation"
    elif error.status == 429:
        status, kind = 429, "Overloaded"
    elif error.status == 503:
        status, kind = 503, "Unhealthy"
    elif error.status >= 500:
        status, kind = error.status, "Backend"
    elif error.status in (400, 404):
        status, kind = 422, "Validation"
    else:
        status, kind = error.status, "Validation"
    return JSONResponse({"error": error.message, "error_type": kind}, status_code=status)


def _parse(model: type[BaseModel], raw: bytes) -> Any:
    try:
        payload = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise APIError(422, "Failed to parse the request body as JSON.", code="invalid_json") from None
    if not isinstance(payload, dict):
        raise APIError(422, "The request body must be a JSON object.", code="invalid_type")
    try:
        return model.model_validate(payload)
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        raise APIError(
            422, f"Invalid '{format_loc(first.get('loc', ()))}': {first.get('msg')}.", code="invalid_value"
        ) from None


def _inputs(service: EmbeddingService, value: Any, max_inputs: int) -> tuple[list[str], bool]:
    texts = normalize_input(value, max_inputs=max_inputs)
    single = isinstance(value, str)
    return service.bound_texts(texts, single=single), single


def _prompt_key(service: EmbeddingService, prompt_name: str | None) -> tuple[str, str | None]:
    if prompt_name is None:
        return ("input_type", None)
    prompts = service.model.prompts or {}
    if prompt_name not in prompts:
        raise APIError(
            422,
            f"prompt_name '{prompt_name}' is not one of the model's prompts ({', '.join(prompts) or 'none'}).",
            code="invalid_value",
        )
    return ("prompt_name", prompt_name)


EmbedTexts = Callable[..., Awaitable[tuple[np.ndarray, int]]]


def add_tei_routes(
    app: FastAPI,
    service: EmbeddingService,
    *,
    embed_texts: EmbedTexts,
    max_inputs: int,
    max_body_bytes: int,
) -> None:
    """Add ``/embed``, ``/``, ``/tokenize`` and ``/info`` answering for ``service``.

    Args:
        app: the app built by :func:`embedforge.serving.create_app`.
        service: the model TEI's routes serve.
        embed_texts: ``create_app``'s coroutine that counts, checks and encodes through the batcher.
        max_inputs: most texts per request (TEI's ``max_client_batch_size``).
        max_body_bytes: largest request body.
    """
    from embedforge.serving.app import read_body

    async def embed(request: Request) -> Response:
        try:
            raw = await read_body(request, max_body_bytes)
            req = (
                await run_in_threadpool(_parse, TEIEmbedRequest, raw)
                if len(raw) > 1_000_000
                else _parse(TEIEmbedRequest, raw)
            )
            del raw
            if req.truncation_direction.lower() == "left":
                raise APIError(422, "truncation_direction 'left' is not supported; use 'right'.", code="invalid_value")
            if req.dimensions is not None and not 1 <= req.dimensions <= service.dim:
                raise APIError(
                    422, f"dimensions must be between 1 and {service.dim}, got {req.dimensions}.", code="invalid_value"
                )
            key = _prompt_key(service, req.prompt_name)
            texts, single = _inputs(service, req.inputs, max_inputs)
            rows, _ = await embed_texts(service, texts, key, single=single, truncate=req.truncate)
        except APIError as error:
            return tei_error(error)
        rows = np.asarray(rows, dtype=np.float32)
        if req.dimensions is not None:
            rows = truncate_and_renormalize(rows, req.dimensions) if req.normalize else rows[:, : req.dimensions]
        elif req.normalize:
            norms = np.linalg.norm(rows, axis=1, keepdims=True)
            rows = rows / np.where(norms > 0, norms, 1.0)
        return Response(json.dumps(rows.tolist(), separators=(",", ":")), media_type="application/json")

    app.add_api_route("/embed", embed, methods=["POST"], summary="Embed inputs (TEI-compatible)")
    app.add_api_route("/", embed, methods=["POST"], summary="TEI's task route: embed")

    @app.post("/tokenize")
    async def tokenize(request: Request) -> Response:
        """Tokenize inputs (TEI-compatible)."""
        try:
            req = _parse(TEITokenizeRequest, await read_body(request, max_body_bytes))
            key = _prompt_key(service, req.prompt_name)
            texts, _ = _inputs(service, req.inputs, max_inputs)
            body = service.tokenize(texts, service.prompt_for(key), add_special_tokens=req.add_special_tokens)
        except APIError as error:
            return tei_error(error)
        return JSONResponse(body)

    @app.get("/info")
    async def info() -> dict[str, Any]:
        """The model and the server's limits (TEI-compatible)."""
        model = service.model
        pooling = next((module for module in model if type(module).__name__ == "Pooling"), None)
        pooling_mode = getattr(pooling, "pooling_mode", None) if pooling is not None else None
        dtype = str(getattr(model, "dtype", "float32")).replace("torch.", "")
        batcher = service.batcher
        return {
            "model_id": service.name,
            "model_sha": None,
            "model_dtype": dtype,
            "model_type": {"embedding": {"pooling": pooling_mode or "unknown"}},
            "max_concurrent_requests": batcher.max_queued_inputs if batcher is not None else None,
            "max_input_length": service.max_seq_length,
            "max_batch_tokens": batcher.max_batch_tokens if batcher is not None else None,
            "max_batch_requests": None,
            "max_client_batch_size": max_inputs,
            "auto_truncate": service.truncate,
            "tokenization_workers": 1,
            "version": TEI_VERSION,
            "sha": None,
            "docker_label": None,
            "embedding_dimension": service.dim,
            "prompts": dict(model.prompts or {}),
        }
