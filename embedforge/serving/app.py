"""The FastAPI app: an OpenAI-compatible ``POST /v1/embeddings`` (and TEI's routes) over SentenceTransformers.

One server may serve several models (``create_app({"small": path_a, "large": path_b})``), each with its
own dynamic batcher. Every model answers to its name and, when it has the saved prompt, to the per-role
aliases ``NAME-query`` and ``NAME-document`` (for clients such as LangChain and LlamaIndex that cannot
send ``input_type``); a per-model ``default_input_type`` does the same for the plain name.

Endpoints:

* ``POST /v1/embeddings``: OpenAI's request and response (``input``, ``model``, ``dimensions``,
  ``encoding_format``, ``user``; ``data[i].embedding``, ``usage.prompt_tokens``), plus the extras
  ``input_type`` (``query`` / ``document``) and ``quantization`` (see :mod:`embedforge.serving.output`).
* ``GET /v1/models`` (OpenAI list format) and ``GET /v1/models/{id}``.
* ``GET /health``: 200 while the model is loaded and the batcher runs, else 503.
* ``GET /metrics``: Prometheus text format (see :mod:`embedforge.serving.metrics`).
* TEI's ``POST /embed``, ``POST /tokenize``, ``GET /info`` (see :mod:`embedforge.serving.tei`), for
  the first model.

With ``api_keys``, every route but ``/health`` needs ``Authorization: Bearer KEY`` (see
:mod:`embedforge.serving.auth`); with ``cors_allow_origins``, Starlette's ``CORSMiddleware`` answers
preflights and adds the CORS headers.

Every error, including malformed JSON, wrong types, unknown routes and encoder failures, is
answered with OpenAI's error body (``{"error": {"message", "type", "param", "code"}}``): 4xx for
anything the client can fix, 500 only for a failure inside the server, which keeps serving.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from embedforge.errors import ConfigError
from embedforge.serving.auth import APIKeyMiddleware
from embedforge.serving.batcher import BatcherClosed, DynamicBatcher, QueueFull
from embedforge.serving.metrics import MetricsMiddleware, ServerMetrics
from embedforge.serving.output import Int8Ranges, apply_output_options, encode_rows
from embedforge.serving.schemas import (
    INPUT_TYPES,
    QUANTIZATIONS,
    APIError,
    EmbeddingRequest,
    format_loc,
    normalize_input,
    parse_request,
)
from embedforge.serving.tei import add_tei_routes
from embedforge.serving.timeouts import BodyTimeoutMiddleware

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)

# input_type -> (SentenceTransformer method, prompt names it tries in order). Mirrors
# SentenceTransformer.encode_query / encode_document, which we call, so the prompts match exactly.
_INPUT_TYPES: dict[str | None, tuple[str, tuple[str, ...]]] = {
    None: ("encode", ()),
    "query": ("encode_query", ("query",)),
    "document": ("encode_document", ("document", "passage", "corpus")),
}
assert set(_INPUT_TYPES) - {None} == set(INPUT_TYPES)

# What a batch is grouped by: ("input_type", None | "query" | "document") or ("prompt_name", NAME) (TEI).
EncodeKey = tuple[str, "str | None"]

# Characters kept per text, per token of the model's max_seq_length, before anything tokenizes it: English
# runs ~4-5 characters a token, code ~3, CJK 1-2, so 32 leaves the model's whole window intact for any
# ordinary text, while a 10 MB string costs what ~max_seq_length x 32 characters cost.
CHARS_PER_TOKEN = 32
# the cut for a model that reports no max_seq_length
DEFAULT_MAX_TEXT_CHARS = 1_000_000

# above these sizes, token counting and response building leave the event loop for a thread
_THREAD_CHARS = 200_000
_THREAD_BYTES = 1_000_000
_THREAD_VALUES = 500_000
# real tokens per packed forward pass (the served model's encode without padding)
PACKED_CHUNK_TOKENS = 4096


class EmbeddingService:
    """The served model and what the endpoints need to know about it.

    Args:
        model: the loaded SentenceTransformer.
        name: the model name clients send (``model`` field).
        truncate: texts longer than ``max_seq_length`` tokens are truncated (``True``, like
            ``encode``) or rejected with 400 ``context_length_exceeded`` (``False``).
        encode_batch_size: ``batch_size`` passed to ``encode`` for each dynamic batch.
        int8_ranges: ranges for int8 / uint8 output.
        max_text_chars: characters of a text read at most; longer texts are cut there before any
            tokenizer sees them (``truncate=True``) or rejected with 400 (``truncate=False``).
            Default: ``CHARS_PER_TOKEN`` x ``max_seq_length`` (``DEFAULT_MAX_TEXT_CHARS`` without a limit).
        default_input_type: the ``input_type`` applied when a request to the plain name sends none.
        packed: encode each dynamic batch without padding (:class:`embedforge.models.packed_encode.PackedEncoder`)
            where the model supports it (torch backend, a transformers model pooled by ``Pooling``); the rows
            equal ``encode``'s up to float rounding. ``False``: ``SentenceTransformer.encode`` itself.
    """

    def __init__(
        self,
        model: SentenceTransformer,
        *,
        name: str,
        truncate: bool = True,
        encode_batch_size: int = 32,
        int8_ranges: Int8Ranges | None = None,
        max_text_chars: int | None = None,
        default_input_type: str | None = None,
        packed: bool = False,
    ):
        tokenizer = getattr(model, "tokenizer", None)
        if tokenizer is None:
            raise ConfigError("the model has no tokenizer; only text embedding models can be served")
        dim = model.get_embedding_dimension()
        if not dim:
            raise ConfigError("the model does not report its embedding dimension; cannot serve it")
        if default_input_type is not None and default_input_type not in INPUT_TYPES:
            raise ConfigError(
                f"default_input_type for {name!r} must be one of {', '.join(INPUT_TYPES)}, got {default_input_type!r}"
            )
        self.model = model
        self.name = name
        self.default_input_type = default_input_type
        self.batcher: DynamicBatcher | None = None  # set by create_app
        self.dim = int(dim)
        self.truncate = truncate
        self.encode_batch_size = encode_batch_size
        self.int8_ranges = int8_ranges or Int8Ranges()
        limit = model.max_seq_length or getattr(tokenizer, "model_max_length", None)
        self.max_seq_length: int | None = int(limit) if limit and limit < 1_000_000 else None
        if max_text_chars is not None and (isinstance(max_text_chars, bool) or max_text_chars < 1):
            raise ConfigError(f"max_text_chars must be a positive integer, got {max_text_chars!r}")
        self.max_text_chars = max_text_chars or (
            CHARS_PER_TOKEN * self.max_seq_length if self.max_seq_length else DEFAULT_MAX_TEXT_CHARS
        )
        # Token counting runs on the event loop or request threads while the encoder thread uses the
        # model's tokenizer. A fast tokenizer's settings are mutable shared state ("Already borrowed"
        # errors), so counting uses a private copy with truncation and padding switched off once;
        # encode_batch then only reads it and is safe from several threads.
        backend = getattr(tokenizer, "backend_tokenizer", None) if getattr(tokenizer, "is_fast", False) else None
        self._counter = copy.deepcopy(backend) if backend is not None else None
        self._slow_counter = None if backend is not None else copy.deepcopy(tokenizer)
        if self._counter is not None:
            self._counter.no_truncation()
            self._counter.no_padding()
        self._slow_lock = threading.Lock()
        self._packed = None
        if packed:
            from embedforge.models.packed_encode import PackedEncoder, supports_packed_encode

            if supports_packed_encode(model):
                self._packed = PackedEncoder(model, max_tokens=PACKED_CHUNK_TOKENS)
            else:
                logger.info("%s: this model cannot encode packed; encoding with padding", name)

    def bound_texts(self, texts: list[str], *, single: bool) -> list[str]:
        """Cut each text at :attr:`max_text_chars` characters (or reject it when truncation is off).

        This runs before any tokenizer, so the work and memory per text are bounded whatever its size.

        Raises:
            APIError: 400 ``context_length_exceeded`` for the first too-long text when truncation is off.
        """
        limit = self.max_text_chars
        if all(len(text) <= limit for text in texts):
            return texts
        if not self.truncate:
            index = next(i for i, text in enumerate(texts) if len(text) > limit)
            param = "input" if single else f"input[{index}]"
            raise APIError(
                400,
                f"'{param}' is {len(texts[index])} characters long; this server reads at most {limit} characters "
                f"per text (this model reads at most {self.max_seq_length} tokens). Shorten it, or start the "
                "server with truncation on.",
                param=param,
                code="context_length_exceeded",
            )
        return [text[:limit] for text in texts]

    def aliases(self) -> dict[str, str]:
        """``NAME-query`` / ``NAME-document`` -> input type, for the roles this model has a saved prompt for."""
        prompts = self.model.prompts or {}
        return {
            f"{self.name}-{input_type}": input_type
            for input_type in INPUT_TYPES
            if any(name in prompts for name in _INPUT_TYPES[input_type][1])
        }

    def prompt_for(self, key: EncodeKey | str | None) -> str | None:
        """The prompt that :meth:`encode` prepends for ``key`` (an :data:`EncodeKey` or an ``input_type``)."""
        kind, value = key if isinstance(key, tuple) else ("input_type", key)
        prompts = self.model.prompts or {}
        if kind == "prompt_name":
            return prompts[value]
        input_type = value
        names = [name for name in _INPUT_TYPES[input_type][1] if name in prompts]
        if names:
            return prompts[names[0]]
        # SentenceTransformer._resolve_prompt: without a prompt name, the default prompt applies
        default = getattr(self.model, "default_prompt_name", None)
        return prompts.get(default) if default is not None else None

    def count_tokens(self, texts: Sequence[str], prompt: str | None) -> list[int]:
        """Tokens per text as the model sees it (prompt and special tokens included), before truncation."""
        full = [prompt + text for text in texts] if prompt else list(texts)
        if self._counter is not None:
            return [len(encoding.ids) for encoding in self._counter.encode_batch(full, add_special_tokens=True)]
        with self._slow_lock:
            ids = self._slow_counter(full, add_special_tokens=True, truncation=False, verbose=False)["input_ids"]
        return [len(row) for row in ids]

    def tokenize(
        self, texts: Sequence[str], prompt: str | None, *, add_special_tokens: bool = True
    ) -> list[list[dict[str, Any]]]:
        """TEI's ``/tokenize`` answer: per text, its tokens as ``{"id", "text", "special", "start", "stop"}``.

        Offsets are characters of the text with the prompt prepended; special tokens have no offsets.
        """
        full = [prompt + text for text in texts] if prompt else list(texts)
        if self._counter is None:
            raise APIError(422, "this model's tokenizer is not a fast tokenizer; /tokenize needs one", code="invalid")
        out = []
        for text, encoding in zip(
            full, self._counter.encode_batch(full, add_special_tokens=add_special_tokens), strict=True
        ):
            tokens = []
            for token_id, token, special, (start, stop) in zip(
                encoding.ids, encoding.tokens, encoding.special_tokens_mask, encoding.offsets, strict=True
            ):
                if special:
                    tokens.append({"id": token_id, "text": token, "special": True, "start": None, "stop": None})
                else:
                    tokens.append(
                        {"id": token_id, "text": text[start:stop], "special": False, "start": start, "stop": stop}
                    )
            out.append(tokens)
        return out

    def check_lengths(self, counts: list[int], *, single: bool, truncate: bool | None = None) -> list[int]:
        """Apply the length policy; returns the token counts actually encoded.

        Raises:
            APIError: 400 ``context_length_exceeded`` for the first too-long text when truncation is off.
        """
        limit = self.max_seq_length
        if limit is None:
            return counts
        if not (self.truncate if truncate is None else truncate):
            for index, count in enumerate(counts):
                if count > limit:
                    param = "input" if single else f"input[{index}]"
                    raise APIError(
                        400,
                        f"'{param}' is {count} tokens long (prompt and special tokens included); this model "
                        f"reads at most {limit}. Shorten it, or start the server with truncation on.",
                        param=param,
                        code="context_length_exceeded",
                    )
        return [min(count, limit) for count in counts]

    def encode(self, texts: list[str], key: EncodeKey | str | None) -> np.ndarray:
        """Encode exactly as ``SentenceTransformer.encode`` / ``encode_query`` / ``encode_document`` would.

        ``key`` is ``("input_type", value)`` (or just the input type) or ``("prompt_name", name)``
        (``encode(texts, prompt_name=name)``, TEI's ``prompt_name``).
        """
        if self._packed is not None:
            return self._packed.encode(texts, prompt=self.prompt_for(key))
        kind, value = key if isinstance(key, tuple) else ("input_type", key)
        options = {"batch_size": self.encode_batch_size, "show_progress_bar": False, "convert_to_numpy": True}
        if kind == "prompt_name":
            return self.model.encode(texts, prompt_name=value, **options)
        return getattr(self.model, _INPUT_TYPES[value][0])(texts, **options)

    def describe(self) -> dict[str, Any]:
        """The extra fields shown by ``GET /v1/models``."""
        return {
            "dimensions": self.dim,
            "max_seq_length": self.max_seq_length,
            "truncate": self.truncate,
            "input_types": list(INPUT_TYPES),
            "default_input_type": self.default_input_type,
            "aliases": sorted(self.aliases()),
            "prompts": dict(self.model.prompts or {}),
            "quantizations": list(QUANTIZATIONS),
            "int8_ranges": self.int8_ranges.describe(),
        }


def create_app(
    model_or_path: str | os.PathLike[str] | SentenceTransformer | Mapping[str, Any],
    *,
    model_name: str | None = None,
    device: str | None = None,
    max_seq_length: int | None = None,
    max_batch_tokens: int = 8192,
    max_wait_ms: float = 5.0,
    max_inputs: int = 2048,
    encode_batch_size: int = 32,
    truncate: bool = True,
    max_body_bytes: int = 32 * 1024 * 1024,
    max_queued_inputs: int | None = 65536,
    int8_calibration: np.ndarray | Sequence[str] | None = None,
    int8_range: float | None = None,
    max_text_chars: int | None = None,
    body_timeout: float | None = 60.0,
    api_keys: Sequence[str] | None = None,
    cors_allow_origins: Sequence[str] | None = None,
    default_input_type: str | Mapping[str, str] | None = None,
    backend: str = "torch",
    packed: bool = True,
) -> FastAPI:
    """Build the embeddings app for one model or several.

    Args:
        model_or_path: a loaded ``SentenceTransformer``, a model folder, or an offline preset name
            (loaded with :func:`embedforge.models.load_model`); or a mapping ``{name: any of those}``
            to serve several models, each with its own batcher (the first answers TEI's routes).
        model_name: the name clients send as ``model`` (one model only); defaults to the folder / preset
            name (``"embedforge-model"`` for a model object).
        device: torch device for loading (``None``: CUDA if available, else CPU).
        max_seq_length: override the model's maximum tokens per text.
        max_batch_tokens: token budget of one dynamic batch.
        max_wait_ms: how long a request may wait for others to join its batch.
        max_inputs: most texts in one request (more: 400 ``too_many_inputs``).
        encode_batch_size: ``batch_size`` of ``encode`` inside a dynamic batch.
        truncate: truncate texts longer than ``max_seq_length`` (like ``encode``); ``False``
            rejects them with 400 ``context_length_exceeded``.
        max_body_bytes: larger request bodies get 413.
        max_queued_inputs: refuse new requests with 429 while this many texts wait (``None``: no limit).
        int8_calibration: representative texts (encoded at start) or ``(m, dim)`` embeddings that
            fix the int8 / uint8 ranges; see :mod:`embedforge.serving.output`.
        int8_range: without calibration, the symmetric int8 range ``[-r, r]`` (default ``min(1, 4/sqrt(d))``).
        max_text_chars: characters of one text read at most, before tokenizing (see :class:`EmbeddingService`).
        body_timeout: seconds a request's whole body may take to arrive (then 408 and close); ``None``: no limit.
        api_keys: if given, every route but ``/health`` needs ``Authorization: Bearer`` one of them (else 401).
        cors_allow_origins: origins allowed by CORS (``["*"]`` for any); ``None``: no CORS headers.
        default_input_type: ``query`` / ``document`` applied when a request names the plain model and sends
            no ``input_type``; one value for every model or ``{name: value}``.
        backend: ``torch``, or ``onnx`` / ``openvino`` for a folder written by ``embedforge export``
            (see :mod:`embedforge.serving.export`).
        packed: encode without padding where the model allows it (see :class:`EmbeddingService`); torch only.

    Returns:
        The FastAPI app; run it with uvicorn (or :func:`embedforge.serving.serve`). The batcher starts
        and stops with the app's lifespan.

    Raises:
        ConfigError: a bad option (named, with its value).
    """
    _check_positive(
        max_batch_tokens=max_batch_tokens,
        max_inputs=max_inputs,
        encode_batch_size=encode_batch_size,
        max_body_bytes=max_body_bytes,
    )
    if max_wait_ms < 0:
        raise ConfigError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
    if max_queued_inputs is not None and max_queued_inputs < max_inputs:
        raise ConfigError(f"max_queued_inputs ({max_queued_inputs}) must be >= max_inputs ({max_inputs}) or None")
    if body_timeout is not None and not body_timeout > 0:
        raise ConfigError(f"body_timeout must be > 0 seconds or None, got {body_timeout}")
    if int8_range is not None and not int8_range > 0:
        raise ConfigError(f"int8_range must be a positive number, got {int8_range}")

    if isinstance(model_or_path, Mapping):
        if model_name is not None:
            raise ConfigError("model_name applies to one model; with several, the mapping's keys are the names")
        if not model_or_path:
            raise ConfigError("no model to serve: the mapping of names to models is empty")
        sources = dict(model_or_path)
    else:
        sources = {model_name: model_or_path}
    if None not in sources:
        _check_default_types(default_input_type, sources)  # before loading anything
    metrics = ServerMetrics()
    services: dict[str, EmbeddingService] = {}
    for given_name, source in sources.items():
        model, default_name = _load(source, device=device, max_seq_length=max_seq_length, backend=backend)
        name = given_name or default_name
        if name in services:
            raise ConfigError(f"two served models are named {name!r}; give each a distinct name")
        ranges = Int8Ranges(calibration=_calibration_embeddings(model, int8_calibration), scale=int8_range)
        service = EmbeddingService(
            model,
            name=name,
            truncate=truncate,
            encode_batch_size=encode_batch_size,
            int8_ranges=ranges,
            max_text_chars=max_text_chars,
            default_input_type=(
                default_input_type.get(name) if isinstance(default_input_type, Mapping) else default_input_type
            ),
            packed=packed and backend == "torch",
        )
        service.batcher = DynamicBatcher(
            service.encode,
            max_batch_tokens=max_batch_tokens,
            max_wait_ms=max_wait_ms,
            max_queued_inputs=max_queued_inputs,
            forward_rows=service.encode_batch_size,
            on_batch=metrics.observe_batch,
            on_queue=metrics.set_queue,
        )
        services[name] = service
    _check_default_types(default_input_type, services)
    # model name (or alias) -> (service, input_type applied when the request sends none)
    routes: dict[str, tuple[EmbeddingService, str | None]] = {
        service.name: (service, service.default_input_type) for service in services.values()
    }
    for service in services.values():
        for alias, input_type in service.aliases().items():
            if alias in routes:
                raise ConfigError(f"the alias {alias!r} of {service.name!r} is also the name of a served model")
            routes[alias] = (service, input_type)
    first = next(iter(services.values()))
    batchers = [service.batcher for service in services.values()]
    created = int(time.time())

    def lookup(model_id: str) -> tuple[EmbeddingService, str | None]:
        if model_id not in routes:
            raise APIError(
                404,
                f"The model '{model_id}' does not exist on this server; it serves {', '.join(map(repr, routes))}.",
                param="model",
                code="model_not_found",
            )
        return routes[model_id]

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        for service in services.values():
            await service.batcher.start()
            logger.info(
                "serving %r (%d dims, max %s tokens, truncate=%s, aliases: %s)",
                service.name,
                service.dim,
                service.max_seq_length,
                truncate,
                ", ".join(service.aliases()) or "none",
            )
        try:
            yield
        finally:
            for batcher in batchers:
                await batcher.stop()

    # FastAPI's native OpenTelemetry hooks cost time on every request and have no exporter here.
    app = FastAPI(
        title="embedforge embeddings", lifespan=lifespan, telemetry={"tracing": False, "metrics": False, "logs": False}
    )
    app.state.services = services
    app.state.service = first  # the model TEI's routes answer for
    app.state.batcher = first.batcher
    app.state.metrics = metrics
    # last added runs first: CORS (answers preflights, decorates every answer) > metrics > API keys > body deadline
    app.add_middleware(BodyTimeoutMiddleware, seconds=body_timeout)
    if api_keys:
        app.add_middleware(APIKeyMiddleware, keys=list(api_keys))
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    if cors_allow_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(cors_allow_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    _add_error_handlers(app)

    def model_card(model_id: str) -> dict[str, Any]:
        service, input_type = routes[model_id]
        card = {"id": model_id, "object": "model", "created": created, "owned_by": "embedforge"}
        if model_id != service.name:
            return {**card, "root": service.name, "input_type": input_type}
        return {**card, **service.describe()}

    async def embed_texts(
        service: EmbeddingService, texts: list[str], key: EncodeKey, *, single: bool, truncate: bool | None = None
    ) -> tuple[np.ndarray, int]:
        """Count tokens, apply the length policy and encode through the model's batcher: (rows, tokens)."""
        prompt = service.prompt_for(key)
        big = sum(map(len, texts)) > _THREAD_CHARS
        counts = (
            await run_in_threadpool(service.count_tokens, texts, prompt)
            if big
            else service.count_tokens(texts, prompt)
        )
        tokens = service.check_lengths(counts, single=single, truncate=truncate)
        try:
            rows = await service.batcher.submit(texts, tokens, key=key)
        except QueueFull as error:
            raise APIError(
                429,
                f"The server is overloaded ({error}); retry later.",
                code="server_overloaded",
                type="rate_limit_error",
            ) from None
        except BatcherClosed as error:
            raise APIError(503, f"The server is not accepting work: {error}.", code="unavailable") from None
        except Exception as error:
            logger.exception("encoding failed")
            raise APIError(
                500, f"Encoding failed inside the server: {type(error).__name__}: {error}", code="server_error"
            ) from None
        return rows, sum(tokens)

    @app.post(
        "/v1/embeddings",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": EmbeddingRequest.model_json_schema()}},
            }
        },
    )
    async def create_embeddings(request: Request) -> Response:
        """Embed ``input`` (OpenAI-compatible)."""
        raw = await read_body(request, max_body_bytes)
        # decoding a multi-megabyte body holds the GIL for a while: in a thread, the event loop keeps
        # answering other requests in between (Python switches threads every few milliseconds)
        req = await run_in_threadpool(parse_request, raw) if len(raw) > _THREAD_BYTES else parse_request(raw)
        del raw
        service, default_type = lookup(req.model)
        input_type = req.input_type or default_type
        single = isinstance(req.input, str)
        texts = service.bound_texts(normalize_input(req.input, max_inputs=max_inputs), single=single)
        if req.dimensions is not None and not 1 <= req.dimensions <= service.dim:
            raise APIError(
                400,
                f"'dimensions' must be between 1 and {service.dim} for this model, got {req.dimensions}.",
                param="dimensions",
                code="invalid_value",
            )
        rows, tokens = await embed_texts(service, texts, ("input_type", input_type), single=single)
        args = (rows, req, req.model, service.int8_ranges, tokens)
        try:
            body = (
                await run_in_threadpool(_response_body, *args) if rows.size > _THREAD_VALUES else _response_body(*args)
            )
        except Exception as error:
            logger.exception("building the response failed")
            raise APIError(
                500, f"Building the response failed: {type(error).__name__}: {error}", code="server_error"
            ) from None
        return Response(body, media_type="application/json")

    @app.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        """The served models and their aliases, in OpenAI's list format."""
        return {"object": "list", "data": [model_card(model_id) for model_id in routes]}

    @app.get("/v1/models/{model_id:path}")
    async def get_model(model_id: str) -> dict[str, Any]:
        """One model, or 404 ``model_not_found``."""
        lookup(model_id)
        return model_card(model_id)

    @app.get("/health")
    async def health() -> JSONResponse:
        """200 while every model is loaded and its batcher runs."""
        alive = all(batcher.alive for batcher in batchers)
        body = {
            "status": "ok" if alive else "unavailable",
            "model": first.name,
            "models": list(services),
            "pid": os.getpid(),  # which server process answered (several with --workers)
        }
        return JSONResponse(body, status_code=200 if alive else 503)

    add_tei_routes(app, first, embed_texts=embed_texts, max_inputs=max_inputs, max_body_bytes=max_body_bytes)

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        """Prometheus text exposition."""
        return Response(metrics.render(), media_type=metrics.content_type)

    return app


def _response_body(rows: np.ndarray, req: EmbeddingRequest, name: str, ranges: Int8Ranges, tokens: int) -> bytes:
    out = apply_output_options(rows, dimensions=req.dimensions, quantization=req.quantization, int8_ranges=ranges)
    values = encode_rows(out, req.encoding_format or "float")
    data = [{"object": "embedding", "index": index, "embedding": value} for index, value in enumerate(values)]
    body = {"object": "list", "data": data, "model": name, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
    return json.dumps(body, separators=(",", ":")).encode()


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing more than ``limit`` bytes (413) before reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise APIError(400, f"Invalid Content-Length header {declared!r}.", code="invalid_request")
        if int(declared) > limit:
            raise APIError(
                413,
                f"The request body is {declared} bytes; this server accepts at most {limit}.",
                code="request_too_large",
            )
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise APIError(413, f"The request body exceeds {limit} bytes.", code="request_too_large")
            chunks.append(chunk)
    except ClientDisconnect:
        raise APIError(
            499, "The client closed the connection before sending the whole body.", code="client_closed_request"
        ) from None
    return b"".join(chunks)


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}


def _add_error_handlers(app: FastAPI) -> None:
    async def api_error(_: Request, error: APIError) -> JSONResponse:
        return JSONResponse(error.body(), status_code=error.status)

    async def http_error(_: Request, error: StarletteHTTPException) -> JSONResponse:
        message = error.detail if isinstance(error.detail, str) else json.dumps(error.detail)
        body = APIError(error.status_code, message, code=_HTTP_CODES.get(error.status_code)).body()
        return JSONResponse(body, status_code=error.status_code, headers=getattr(error, "headers", None))

    async def validation_error(_: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0] if error.errors() else {}
        param = format_loc(tuple(part for part in first.get("loc", ()) if part not in ("body", "path", "query")))
        body = APIError(
            400, f"Invalid request: {first.get('msg', 'invalid')}.", param=param or None, code="invalid_value"
        ).body()
        return JSONResponse(body, status_code=400)

    async def unexpected_error(_: Request, error: Exception) -> JSONResponse:
        logger.error("unexpected error: %s: %s", type(error).__name__, error)
        return JSONResponse(APIError(500, "Internal server error.", code="server_error").body(), status_code=500)

    app.add_exception_handler(APIError, api_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, unexpected_error)


def _load(
    model_or_path: Any, *, device: str | None, max_seq_length: int | None, backend: str = "torch"
) -> tuple[SentenceTransformer, str]:
    if backend != "torch":
        if not isinstance(model_or_path, str | os.PathLike):
            raise ConfigError(
                f"backend={backend!r} serves a folder written by 'embedforge export', not a model object"
            )
        from embedforge.serving.export import load_exported

        model = load_exported(model_or_path, backend=backend, max_seq_length=max_seq_length)
        return model, Path(str(model_or_path)).name
    if isinstance(model_or_path, str | os.PathLike):
        from embedforge.models import load_model

        model = load_model(model_or_path, device=device, max_seq_length=max_seq_length)
        return model, Path(str(model_or_path)).name or str(model_or_path)
    model = model_or_path
    if max_seq_length is not None:
        if max_seq_length <= 0:
            raise ConfigError(f"max_seq_length must be a positive integer, got {max_seq_length}")
        model.max_seq_length = max_seq_length
    model.eval()
    return model, "embedforge-model"


def _calibration_embeddings(model: SentenceTransformer, calibration: Any) -> np.ndarray | None:
    if calibration is None:
        return None
    if isinstance(calibration, list) and calibration and isinstance(calibration[0], list):
        calibration = np.asarray(calibration, dtype=np.float32)  # embeddings sent as nested lists (worker processes)
    if isinstance(calibration, np.ndarray):
        array = calibration
    else:
        texts = list(calibration)
        if not texts or not all(isinstance(text, str) and text for text in texts):
            raise ConfigError("int8_calibration must be non-empty texts or an (m, dim) array of embeddings")
        array = model.encode(texts, show_progress_bar=False, convert_to_numpy=True)
    dim = model.get_embedding_dimension()
    if array.ndim != 2 or array.shape[1] != dim or len(array) < 2:
        raise ConfigError(f"int8_calibration embeddings must have shape (m >= 2, {dim}), got {array.shape}")
    return array.astype(np.float32)


def _check_default_types(default_input_type: Any, names: Mapping[str, Any]) -> None:
    if isinstance(default_input_type, Mapping) and set(default_input_type) - set(names):
        unknown = ", ".join(sorted(set(default_input_type) - set(names)))
        raise ConfigError(f"default_input_type names models that are not served: {unknown} (served: {list(names)})")


def _check_positive(**values: int) -> None:
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{key} must be a positive integer, got {value!r}")
