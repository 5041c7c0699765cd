"""``embedforge serve MODEL``: an OpenAI-compatible embeddings server (thin over :func:`embedforge.serving.serve`).

Examples::

    embedforge serve all-MiniLM-L6-v2 --port 8000
    embedforge serve runs/kalm/soup --model-name my-embedder --no-truncate --max-inputs 256

then ``OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="unused").embeddings.create(model=..., input=[...])``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from embedforge.errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``serve``'s options to ``parser``."""
    parser.add_argument("model", help="model folder or offline preset name (e.g. all-MiniLM-L6-v2)")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port (default: %(default)s)")
    parser.add_argument("--model-name", help="name clients send as 'model' (default: the folder / preset name)")
    parser.add_argument("--device", help="torch device (default: CUDA if available, else CPU)")
    parser.add_argument("--max-seq-length", type=int, help="override the model's maximum tokens per text")
    parser.add_argument(
        "--max-batch-tokens", type=int, default=8192, help="token budget of one dynamic batch (default: %(default)s)"
    )
    parser.add_argument(
        "--max-wait-ms",
        type=float,
        default=5.0,
        help="how long a request may wait for others to join its batch (default: %(default)s)",
    )
    parser.add_argument("--max-inputs", type=int, default=2048, help="most texts per request (default: %(default)s)")
    parser.add_argument(
        "--encode-batch-size",
        type=int,
        default=32,
        help="batch_size of encode inside a dynamic batch (default: %(default)s)",
    )
    parser.add_argument(
        "--no-truncate",
        action="store_true",
        help="reject texts longer than max_seq_length (400) instead of truncating them",
    )
    parser.add_argument("--max-body-mb", type=float, default=32.0, help="largest request body (default: %(default)s)")
    parser.add_argument(
        "--max-text-chars",
        type=int,
        help="characters of one text read at most, cut (or, with --no-truncate, rejected) before tokenizing "
        "(default: 32 x the model's max_seq_length)",
    )
    parser.add_argument(
        "--head-timeout",
        type=float,
        default=10.0,
        help="seconds a client has to send a request's head; then 408 and close (default: %(default)s)",
    )
    parser.add_argument(
        "--body-timeout",
        type=float,
        default=60.0,
        help="seconds a request's whole body may take to arrive; then 408 and close (default: %(default)s)",
    )
    parser.add_argument(
        "--keep-alive-timeout",
        type=float,
        default=5.0,
        help="uvicorn's timeout_keep_alive: close idle connections after this (default: %(default)s)",
    )
    parser.add_argument(
        "--max-head-kb",
        type=int,
        default=16,
        help="largest request head (h11_max_incomplete_event_size); larger gets 400 (default: %(default)s)",
    )
    parser.add_argument(
        "--int8-calibration",
        type=Path,
        help="text file (one text per line) or .npy embeddings fixing the int8/uint8 ranges",
    )
    parser.add_argument(
        "--int8-range",
        type=float,
        help="without calibration: symmetric int8 range [-r, r] (default: min(1, 4/sqrt(dims)))",
    )
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    parser.add_argument("--no-access-log", action="store_true", help="do not log one line per request")


def app_options(args: argparse.Namespace) -> dict[str, Any]:
    """The :func:`embedforge.serving.create_app` keyword arguments for parsed ``args``."""
    return {
        "model_name": args.model_name,
        "device": args.device,
        "max_seq_length": args.max_seq_length,
        "max_batch_tokens": args.max_batch_tokens,
        "max_wait_ms": args.max_wait_ms,
        "max_inputs": args.max_inputs,
        "encode_batch_size": args.encode_batch_size,
        "truncate": not args.no_truncate,
        "max_body_bytes": int(args.max_body_mb * 1024 * 1024),
        "int8_calibration": _read_calibration(args.int8_calibration),
        "int8_range": args.int8_range,
        "max_text_chars": args.max_text_chars,
        "body_timeout": args.body_timeout,
    }


def server_options(args: argparse.Namespace) -> dict[str, Any]:
    """The connection limits :func:`embedforge.serving.serve` passes to uvicorn."""
    return {
        "head_timeout": args.head_timeout,
        "keep_alive_timeout": args.keep_alive_timeout,
        "max_head_bytes": args.max_head_kb * 1024,
    }


def _read_calibration(path: Path | None) -> Any:
    if path is None:
        return None
    if not path.is_file():
        raise ConfigError(f"--int8-calibration {path}: no such file")
    if path.suffix == ".npy":
        import numpy as np

        return np.load(path)
    texts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if len(texts) < 2:
        raise ConfigError(f"--int8-calibration {path}: needs at least 2 non-empty lines (one text per line)")
    return texts


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted."""
    from embedforge.serving import serve

    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be 0..65535, got {args.port}")
    serve(
        args.model,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=not args.no_access_log,
        **server_options(args),
        **app_options(args),
    )
    return 0
