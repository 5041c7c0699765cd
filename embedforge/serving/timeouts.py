"""Read deadlines for slow or lying clients: one for a request's head, one for its body.

uvicorn has settings for part of this and they are used as they are: ``timeout_keep_alive`` closes
an idle connection between requests, and ``h11_max_incomplete_event_size`` caps the bytes of a head
still being read (a larger one gets 400). What it lacks:

* **A head deadline.** uvicorn's keep-alive timer is cancelled by any received byte and is not armed
  for a new connection at all, so a client that sends half a request line, or one header byte every
  few seconds (slowloris), holds its connection forever. :class:`HeadTimeoutH11Protocol` is uvicorn's
  h11 protocol plus one timer per request: armed when the connection opens and after each response,
  never reset by data; if the head is still incomplete when it fires (h11 still expects a request),
  the server answers 408 and closes (or just closes, if nothing at all was sent).
* **A body deadline.** Once the head is in, the app reads the body; a client that declares a
  ``Content-Length`` larger than what it sends, or trickles the body, would hold the request (and
  its share of memory) forever. :class:`BodyTimeoutMiddleware` gives the whole body ``seconds`` from
  the moment the app starts; past that it answers 408 with ``Connection: close``.

The head deadline travels on uvicorn's ``Config`` as the attribute :data:`HEAD_TIMEOUT_ATTR` (set by
:func:`embedforge.serving.server.uvicorn_config`), so it survives uvicorn pickling the config for
worker processes.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

logger = logging.getLogger(__name__)

HEAD_TIMEOUT_ATTR = "embedforge_head_timeout"


def _error_json(message: str, code: str) -> bytes:
    body = {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}}
    return json.dumps(body).encode()


class HeadTimeoutH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request's head (see the module docstring)."""

    _head_generation = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_head_deadline()

    def _arm_head_deadline(self) -> None:
        seconds = getattr(self.config, HEAD_TIMEOUT_ATTR, None)
        if seconds is None:
            return
        self._head_generation += 1
        self.loop.call_later(seconds, self._head_deadline, self._head_generation, seconds)

    def _head_deadline(self, generation: int, seconds: float) -> None:
        if generation != self._head_generation or self.transport.is_closing():
            return
        if self.conn.their_state is not h11.IDLE:  # the head arrived; the request is being served
            return
        if not self.conn.trailing_data[0]:  # nothing sent at all (uvicorn arms no timer for a new connection)
            self.transport.close()
            return
        logger.info("closing a connection whose request head was incomplete after %s s", seconds)
        body = _error_json(f"The request head was not complete within {seconds:g} s.", "request_timeout")
        head = (
            "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
        )
        self.transport.write(head.encode() + body)
        self.transport.close()


class BodyReadTimeout(Exception):
    """The request body did not arrive in time (raised from ``receive``, answered by the middleware)."""


class BodyTimeoutMiddleware:
    """Pure ASGI middleware: the whole request body must arrive within ``seconds`` (else 408, then close).

    Args:
        app: the ASGI app.
        seconds: deadline for the body, counted from the start of the request's handling; ``None``: none.
    """

    def __init__(self, app: Any, seconds: float | None) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or self.seconds is None:
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.seconds
        state = {"body_done": False, "started": False}

        async def timed_receive() -> dict[str, Any]:
            if state["body_done"]:  # waiting for a disconnect after the body: no deadline
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(deadline - loop.time(), 0.0))
            except TimeoutError:
                raise BodyReadTimeout(f"The request body was not complete within {self.seconds:g} s.") from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                state["body_done"] = True
            return message

        async def tracking_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        try:
            await self.app(scope, timed_receive, tracking_send)
        except BodyReadTimeout as error:
            logger.info("%s %s: %s", scope.get("method"), scope.get("path"), error)
            if state["started"]:
                return
            body = _error_json(str(error), "request_timeout")
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ]
            await send({"type": "http.response.start", "status": 408, "headers": headers})
            await send({"type": "http.response.body", "body": body})
