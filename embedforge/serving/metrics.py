"""Prometheus metrics for the embeddings server (``GET /metrics``, text exposition format).

Each app gets its own ``CollectorRegistry`` (so several servers can live in one process, as in tests).
Series (all prefixed ``embedforge_``):

* ``requests_total{route,status}`` and ``request_duration_seconds{route}`` (histogram): every HTTP request;
* ``inputs_encoded_total`` / ``tokens_encoded_total``: texts and tokens (after truncation, prompt included);
* ``batches_total``, ``batch_inputs`` / ``batch_tokens`` / ``batch_requests`` (histograms): what the
  dynamic batcher encoded together; ``batch_requests`` > 1 means requests were merged;
* ``encode_seconds`` (histogram): time inside the model per batch;
* ``queue_inputs`` / ``queue_requests`` (gauges): work waiting for the encoder.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
_TOKEN_BUCKETS = (16, 64, 256, 1024, 2048, 4096, 8192, 16384, 32768, 65536)
_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

# routes reported by name; anything else is "other" (keeps label cardinality bounded)
_ROUTES = ("/v1/embeddings", "/v1/models", "/health", "/metrics", "/embed", "/info", "/tokenize", "/")


class ServerMetrics:
    """The server's counters, histograms and gauges, in a registry of their own."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "embedforge_requests", "HTTP requests by route and status", ["route", "status"], registry=r
        )
        self.request_seconds = Histogram(
            "embedforge_request_duration_seconds",
            "HTTP request latency",
            ["route"],
            buckets=_SECONDS_BUCKETS,
            registry=r,
        )
        self.inputs = Counter("embedforge_inputs_encoded", "texts encoded", registry=r)
        self.tokens = Counter("embedforge_tokens_encoded", "tokens encoded (after truncation)", registry=r)
        self.batches = Counter("embedforge_batches", "batches encoded", registry=r)
        self.batch_inputs = Histogram(
            "embedforge_batch_inputs", "texts per encoded batch", buckets=_SIZE_BUCKETS, registry=r
        )
        self.batch_tokens = Histogram(
            "embedforge_batch_tokens", "tokens per encoded batch", buckets=_TOKEN_BUCKETS, registry=r
        )
        self.batch_requests = Histogram(
            "embedforge_batch_requests", "distinct requests per encoded batch", buckets=_SIZE_BUCKETS, registry=r
        )
        self.encode_seconds = Histogram(
            "embedforge_encode_seconds", "model time per batch", buckets=_SECONDS_BUCKETS, registry=r
        )
        self.queue_inputs = Gauge("embedforge_queue_inputs", "texts waiting to be encoded", registry=r)
        self.queue_requests = Gauge("embedforge_queue_requests", "requests with texts waiting", registry=r)

    def observe_batch(self, *, inputs: int, tokens: int, requests: int, seconds: float) -> None:
        """Record one encoded batch."""
        self.batches.inc()
        self.inputs.inc(inputs)
        self.tokens.inc(tokens)
        self.batch_inputs.observe(inputs)
        self.batch_tokens.observe(tokens)
        self.batch_requests.observe(requests)
        self.encode_seconds.observe(seconds)

    def set_queue(self, *, inputs: int, requests: int) -> None:
        """Record the current queue depth."""
        self.queue_inputs.set(inputs)
        self.queue_requests.set(requests)

    def render(self) -> bytes:
        """The registry in Prometheus text format."""
        return generate_latest(self.registry)


def route_label(path: str) -> str:
    """The ``route`` label for a request path."""
    if path in _ROUTES:
        return path
    if path.startswith("/v1/models/"):
        return "/v1/models/{model}"
    return "other"


class MetricsMiddleware:
    """Pure ASGI middleware: counts every HTTP request by route and status, and times it."""

    def __init__(self, app: Any, metrics: ServerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = route_label(scope.get("path", ""))
            self.metrics.requests.labels(route=route, status=str(status["code"])).inc()
            self.metrics.request_seconds.labels(route=route).observe(time.perf_counter() - start)
