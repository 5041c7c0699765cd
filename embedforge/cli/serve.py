"""``embedforge serve MODEL``: an OpenAI- and TEI-compatible embeddings server (thin over ``serving.serve``).

Examples::

    embedforge serve all-MiniLM-L6-v2 --port 8000
    embedforge serve runs/kalm/soup --served-model-name my-embedder --no-truncate --max-inputs 256
    embedforge serve --model small=all-MiniLM-L6-v2 --model large=runs/kalm/soup --api-key $KEY --workers 2
    embedforge serve exported/minilm-onnx --backend onnx

then ``OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="unused").embeddings.create(model=..., input=[...])``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from embedforge.errors import ConfigError
from embedforge.serving.auth import API_KEYS_ENV, keys_from_env


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``serve``'s options to ``parser``."""
    parser.add_argument(
        "model", nargs="?", help="model folder or offline preset name (e.g. all-MiniLM-L6-v2); or use --model"
    )
    parser.add_argument(
        "--model",
        dest="models",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="serve PATH (folder or preset) as NAME; repeat to serve several models from one server",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port (default: %(default)s)")
    parser.add_argument(
        "--served-model-name",
        "--model-name",
        dest="model_name",
        help="name clients send as 'model' (default: the folder / preset name)",
    )
    parser.add_argument(
        "--default-input-type",
        action="append",
        default=[],
        metavar="[NAME=]TYPE",
        help="query or document: the prompt applied when a request sends no input_type (for clients that "
        "cannot send it); NAME= for one model of several. NAME-query / NAME-document aliases exist anyway",
    )
    parser.add_argument(
        "--api-key",
        dest="api_keys",
        action="append",
        default=[],
        help="require 'Authorization: Bearer KEY' on every route but /health; repeat for several keys "
        f"(also read from ${API_KEYS_ENV}, comma-separated)",
    )
    parser.add_argument(
        "--cors-allow-origin",
        dest="cors_allow_origins",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="allow browser requests from ORIGIN ('*' for any); repeat for several",
    )
    parser.add_argument(
        "--backend",
        choices=["torch", "onnx", "openvino"],
        default="torch",
        help="onnx / openvino: serve a folder written by 'embedforge export' (default: %(default)s)",
    )
    parser.add_argument(
        "--packed",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="torch backend: encode each dynamic batch without padding (the same rows up to float rounding); "
        "--no-packed calls SentenceTransformer.encode (default: packed)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="server processes sharing the port, each with its own model copy and batcher (default: %(default)s)",
    )
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


def models_to_serve(args: argparse.Namespace) -> str | dict[str, str]:
    """The positional model, or ``{NAME: PATH}`` from repeated ``--model NAME=PATH``."""
    if args.models and args.model:
        raise ConfigError(f"give the model either as MODEL ({args.model!r}) or with --model NAME=PATH, not both")
    if not args.models:
        if not args.model:
            raise ConfigError("no model to serve: give MODEL (a folder or preset name) or --model NAME=PATH")
        return args.model
    if args.model_name:
        raise ConfigError("--served-model-name names a single model; with --model NAME=PATH the names are given")
    models: dict[str, str] = {}
    for item in args.models:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ConfigError(f"--model {item!r}: expected NAME=PATH (e.g. --model small=all-MiniLM-L6-v2)")
        if name in models:
            raise ConfigError(f"--model {item!r}: the name {name!r} is given twice")
        models[name] = path
    return models


def _default_input_types(values: list[str]) -> str | dict[str, str] | None:
    if not values:
        return None
    if len(values) == 1 and "=" not in values[0]:
        return values[0]
    out = {}
    for item in values:
        name, sep, kind = item.partition("=")
        if not sep:
            raise ConfigError(f"--default-input-type {item!r}: with several, write NAME=TYPE for each")
        out[name] = kind
    return out


def app_options(args: argparse.Namespace) -> dict[str, Any]:
    """The :func:`embedforge.serving.create_app` keyword arguments for parsed ``args``."""
    api_keys = [*args.api_keys, *keys_from_env(os.environ)]
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
        "api_keys": api_keys or None,
        "cors_allow_origins": args.cors_allow_origins or None,
        "default_input_type": _default_input_types(args.default_input_type),
        "backend": args.backend,
        "packed": args.packed,
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
    if args.workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {args.workers}")
    serve(
        models_to_serve(args),
        workers=args.workers,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=not args.no_access_log,
        **server_options(args),
        **app_options(args),
    )
    return 0
