"""API keys: ``Authorization: Bearer KEY`` on every route but ``/health``, answered with OpenAI's 401 bodies.

Keys come from ``create_app(api_keys=[...])`` (the CLI's repeated ``--api-key`` and the
``EMBEDFORGE_API_KEYS`` environment variable, comma-separated). They are compared in constant time.
CORS preflights (``OPTIONS`` with ``Access-Control-Request-Method``) are answered by Starlette's
``CORSMiddleware``, which wraps this one, so browsers can ask before they send the key.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Sequence
from typing import Any

API_KEYS_ENV = "EMBEDFORGE_API_KEYS"
OPEN_PATHS = frozenset({"/health"})


def keys_from_env(environ: Any) -> list[str]:
    """The keys in ``EMBEDFORGE_API_KEYS`` (comma-separated, blanks ignored)."""
    return [key.strip() for key in environ.get(API_KEYS_ENV, "").split(",") if key.strip()]


def _redact(key: str) -> str:
    return key[:3] + "*" * 4 + key[-4:] if len(key) > 8 else "*" * len(key)


def unauthorized_body(presented: str | None) -> dict[str, Any]:
    """OpenAI's 401 body for a missing or a wrong key."""
    if presented is None:
        message = (
            "You didn't provide an API key. You need to provide your API key in an Authorization header "
            "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
        )
    else:
        message = f"Incorrect API key provided: {_redact(presented)}."
    return {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}}


class APIKeyMiddleware:
    """Pure ASGI middleware: refuse requests without one of ``keys`` (401), except on ``/health``.

    Args:
        app: the ASGI app.
        keys: accepted keys (non-empty strings).
    """

    def __init__(self, app: Any, keys: Sequence[str]) -> None:
        if not keys or not all(isinstance(key, str) and key for key in keys):
            raise ValueError("api_keys must be non-empty strings")
        self.app = app
        self.keys = [key.encode() for key in keys]

    def _allowed(self, presented: str) -> bool:
        candidate = presented.encode()
        # compare with every key (no early exit) so the time taken does not say which prefix matched
        return sum(hmac.compare_digest(candidate, key) for key in self.keys) > 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("path") in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        presented = None
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                scheme, _, token = value.decode("latin-1").partition(" ")
                presented = token.strip() if scheme.lower() == "bearer" else value.decode("latin-1")
                break
        if presented is not None and self._allowed(presented):
            await self.app(scope, receive, send)
            return
        body = json.dumps(unauthorized_body(presented)).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"www-authenticate", b'Bearer realm="embedforge"'),
        ]
        await send({"type": "http.response.start", "status": 401, "headers": headers})
        await send({"type": "http.response.body", "body": body})
