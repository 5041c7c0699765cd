"""Serving: an OpenAI-compatible embeddings server (``POST /v1/embeddings``) with dynamic batching.

Library first::

    from embedforge.serving import create_app, serve, ServerThread

    app = create_app("all-MiniLM-L6-v2", max_batch_tokens=8192, max_wait_ms=5)  # a FastAPI app
    serve("path/to/model", host="127.0.0.1", port=8000)                         # blocks

The CLI (``embedforge serve MODEL``) is a thin layer over :func:`serve`. Needs the ``serve`` extra
(``pip install 'embedforge[serve]'``: fastapi, uvicorn, prometheus-client).
"""

from __future__ import annotations

from embedforge.utils.lazy import lazy_exports

# public name -> module that defines it (imported on first use: fastapi is an optional extra)
_EXPORTS = {
    "create_app": "embedforge.serving.app",
    "EmbeddingService": "embedforge.serving.app",
    "DynamicBatcher": "embedforge.serving.batcher",
    "ServerMetrics": "embedforge.serving.metrics",
    "APIError": "embedforge.serving.schemas",
    "EmbeddingRequest": "embedforge.serving.schemas",
    "Int8Ranges": "embedforge.serving.output",
    "serve": "embedforge.serving.server",
    "ServerThread": "embedforge.serving.server",
}

__getattr__, __all__ = lazy_exports(
    __name__, _EXPORTS, install_hint="the serve extra: pip install 'embedforge[serve]'"
)
