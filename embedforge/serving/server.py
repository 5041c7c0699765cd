"""Run the embeddings app with uvicorn: in the foreground (:func:`serve`) or in a thread (:class:`ServerThread`)."""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)

# JSON of create_app's arguments, read by app_from_env in each worker process
OPTIONS_ENV = "EMBEDFORGE_SERVE_OPTIONS"

# h11's own default for the bytes of a request head still being read; a larger head gets 400
DEFAULT_MAX_HEAD_BYTES = 16 * 1024


def uvicorn_config(
    app: Any,
    *,
    head_timeout: float | None = 10.0,
    keep_alive_timeout: float = 5.0,
    max_head_bytes: int = DEFAULT_MAX_HEAD_BYTES,
    **options: Any,
) -> Any:
    """uvicorn's ``Config`` with the connection limits every embedforge server uses.

    Args:
        app: the ASGI app (or an import string, with ``factory=True`` for a factory).
        head_timeout: seconds a client has to send a request's head (request line and headers),
            counted from the connection's start or the previous response; then 408 and close.
            ``None``: no deadline (uvicorn's own behaviour).
        keep_alive_timeout: uvicorn's ``timeout_keep_alive``: close an idle connection after this.
        max_head_bytes: h11's ``max_incomplete_event_size`` (uvicorn's ``h11_max_incomplete_event_size``):
            a head larger than this gets 400.
        **options: other ``uvicorn.Config`` arguments (``host``, ``port``, ``log_level``, ``workers``...).
    """
    import uvicorn

    from embedforge.serving.timeouts import HEAD_TIMEOUT_ATTR, HeadTimeoutH11Protocol

    if head_timeout is not None and not head_timeout > 0:
        raise ValueError(f"head_timeout must be > 0 seconds or None, got {head_timeout}")
    if not keep_alive_timeout > 0:
        raise ValueError(f"keep_alive_timeout must be > 0 seconds, got {keep_alive_timeout}")
    if max_head_bytes < 1024:
        raise ValueError(f"max_head_bytes must be >= 1024, got {max_head_bytes}")
    config = uvicorn.Config(
        app,
        http=HeadTimeoutH11Protocol,
        timeout_keep_alive=keep_alive_timeout,
        h11_max_incomplete_event_size=max_head_bytes,
        **options,
    )
    setattr(config, HEAD_TIMEOUT_ATTR, head_timeout)
    return config


def app_from_env() -> FastAPI:
    """uvicorn's app factory in worker processes: :func:`create_app` with the options in ``EMBEDFORGE_SERVE_OPTIONS``.

    Each worker process builds its own app, so each has its own model copy and dynamic batcher.
    """
    from embedforge.serving.app import create_app

    raw = os.environ.get(OPTIONS_ENV)
    if not raw:
        raise RuntimeError(f"{OPTIONS_ENV} is not set; start workers with embedforge.serving.serve(..., workers=N)")
    options = json.loads(raw)
    return create_app(options.pop("model_or_path"), **options)


def serve(
    model_or_path: str | os.PathLike[str] | SentenceTransformer | dict[str, Any],
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    log_level: str = "info",
    access_log: bool = True,
    head_timeout: float | None = 10.0,
    keep_alive_timeout: float = 5.0,
    max_head_bytes: int = DEFAULT_MAX_HEAD_BYTES,
    workers: int = 1,
    **app_options: Any,
) -> None:
    """Serve ``model_or_path`` over HTTP until interrupted (Ctrl-C / SIGTERM).

    Args:
        model_or_path: a loaded ``SentenceTransformer``, a model folder, or a preset name.
        host: interface to bind (``0.0.0.0`` to accept remote clients).
        port: TCP port.
        log_level: uvicorn's log level.
        access_log: log one line per request.
        head_timeout, keep_alive_timeout, max_head_bytes: connection limits, see :func:`uvicorn_config`.
        workers: server processes sharing the port (uvicorn's ``workers``: one listening socket, the
            kernel hands each new connection to one process). Each process loads the model and runs
            its own dynamic batcher; ``/metrics`` then describes the process that answered. Needs a
            model folder or preset name (each process loads it), not a model object.
        **app_options: passed to :func:`embedforge.serving.create_app` (``model_name``,
            ``max_batch_tokens``, ``max_wait_ms``, ``max_inputs``, ``truncate``, ...).

    Example:
        >>> from embedforge.serving import serve
        >>> serve("all-MiniLM-L6-v2", port=8000)  # doctest: +SKIP

        then, from any OpenAI client::

            OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="unused").embeddings.create(
                model="all-MiniLM-L6-v2", input=["a text"], dimensions=128)
    """
    import uvicorn

    from embedforge.serving.app import create_app

    limits = {"head_timeout": head_timeout, "keep_alive_timeout": keep_alive_timeout, "max_head_bytes": max_head_bytes}
    common = {"host": host, "port": port, "log_level": log_level, "access_log": access_log}
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if workers == 1:
        uvicorn.Server(uvicorn_config(create_app(model_or_path, **app_options), **limits, **common)).run()
        return
    from uvicorn.supervisors import Multiprocess

    os.environ[OPTIONS_ENV] = json.dumps({"model_or_path": _json_source(model_or_path), **_json_options(app_options)})
    config = uvicorn_config(
        f"{__name__}:app_from_env", factory=True, workers=workers, lifespan="on", **limits, **common
    )
    Multiprocess(config, sockets=[config.bind_socket()]).run()


def _json_source(model_or_path: Any) -> Any:
    if isinstance(model_or_path, str | os.PathLike):
        return str(model_or_path)
    if isinstance(model_or_path, dict) and all(isinstance(v, str | os.PathLike) for v in model_or_path.values()):
        return {name: str(path) for name, path in model_or_path.items()}
    raise ValueError("workers > 1 needs model folders or preset names (each worker process loads its own copy)")


def _json_options(options: dict[str, Any]) -> dict[str, Any]:
    out = dict(options)
    calibration = out.get("int8_calibration")
    if calibration is not None and hasattr(calibration, "tolist"):
        out["int8_calibration"] = calibration.tolist()  # an (m, dim) array: create_app takes it back as a list
    return out


class ServerThread:
    """Run an app with uvicorn in a background thread (tests, benchmarks, notebooks).

    Binds before starting, so ``port=0`` picks a free port with no race; :attr:`url` is the base URL.

    Example:
        >>> with ServerThread(create_app("all-MiniLM-L6-v2")) as server:  # doctest: +SKIP
        ...     OpenAI(base_url=server.url + "/v1", api_key="x").embeddings.create(...)
    """

    def __init__(
        self,
        app: FastAPI,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        log_level: str = "warning",
        **connection_limits: Any,
    ):
        self.app = app
        self.connection_limits = connection_limits  # head_timeout, keep_alive_timeout, max_head_bytes
        self.host = host
        self.port = port
        self.log_level = log_level
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """``http://host:port`` of the running server."""
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 60.0) -> ServerThread:
        """Bind, start uvicorn in a daemon thread and wait until it accepts connections."""
        import uvicorn

        # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY only on sockets that say they are TCP, and
        # without it every response waits ~40 ms for a delayed ACK (Nagle) between its head and body.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        config = uvicorn_config(
            self.app, log_level=self.log_level, access_log=False, lifespan="on", **self.connection_limits
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, daemon=True, name=f"embedforge-server-{self.port}"
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the server thread exited during start-up (see the log)")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start within {timeout} s")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Ask uvicorn to exit and wait for the thread."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                logger.warning("the server thread did not stop within %s s", timeout)
        self._thread = None

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
