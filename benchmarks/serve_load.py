"""Load test of ``embedforge serve``: concurrent clients on loopback vs offline ``encode``, one run.

Starts the server in a subprocess (``python -m embedforge serve``) and, in ``--rounds`` alternating
rounds over the same texts (the CPU may be shared with other work: a drift in its load then lands
on both sides alike), measures offline ``model.encode(texts, batch_size=B)`` and then lets
``--clients`` concurrent clients (asyncio + httpx2, one connection each) send those texts as
requests of ``--texts-per-request`` texts; ``--requests`` in all, bounded by ``--time-limit`` seconds.
Reports texts/s of both, their ratio (overall and per round), p50 / p99 request latency, errors,
and what the dynamic batcher did (from ``/metrics``).
Every response is checked (row count, dimension, finite values) and one is compared with the
offline embeddings (max abs difference).

    PYTHONPATH=$PWD python benchmarks/serve_load.py
    PYTHONPATH=$PWD python benchmarks/serve_load.py --clients 32 --requests 640 --texts-per-request 8 --batch-size 32
    PYTHONPATH=$PWD python benchmarks/serve_load.py --model path/to/model --texts my_texts.txt --json out.json

Texts: the sentences of ``../shared/data/eval/STSBenchmark/test.jsonl`` by default, or ``--texts``
(a ``.jsonl`` file with ``text`` / ``sentence1`` / ``sentence2`` fields, or one text per line).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
_STS = Path("shared", "data", "eval", "STSBenchmark", "test.jsonl")
# ../shared next to the checkout (also found from a worktree nested one level deeper)
DEFAULT_TEXTS = next((parent / _STS for parent in REPO.parents if (parent / _STS).is_file()), REPO.parent / _STS)


def read_texts(path: Path) -> list[str]:
    """Unique non-empty texts from a jsonl (``text`` / ``sentence1`` / ``sentence2``) or plain text file."""
    texts: list[str] = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            line = line.strip()
            if not line:
                continue
            if path.suffix == ".jsonl":
                row = json.loads(line)
                texts.extend(str(row[key]) for key in ("text", "sentence1", "sentence2") if row.get(key))
            else:
                texts.append(line)
    return list(dict.fromkeys(texts))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(args: argparse.Namespace, port: int) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "embedforge",
        "serve",
        args.model,
        "--port",
        str(port),
        "--model-name",
        "bench",
        "--encode-batch-size",
        str(args.batch_size),
        "--max-batch-tokens",
        str(args.max_batch_tokens),
        "--max-wait-ms",
        str(args.max_wait_ms),
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen(command, env=env)


def wait_healthy(url: str, process: subprocess.Popen, timeout: float = 300.0) -> None:
    import httpx2

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited with status {process.returncode}")
        try:
            if httpx2.get(url + "/health", timeout=2).status_code == 200:
                return
        except httpx2.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit("the server did not become healthy in time")


def offline_throughput(model, texts: list[str], batch_size: int) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    embeddings = model.encode(texts, batch_size=batch_size, show_progress_bar=False)
    return len(texts) / (time.perf_counter() - start), embeddings


def decode(item: dict, encoding_format: str) -> np.ndarray:
    if encoding_format == "base64":
        return np.frombuffer(base64.b64decode(item["embedding"]), dtype="<f4")
    return np.asarray(item["embedding"], dtype=np.float32)


async def load(args: argparse.Namespace, url: str, requests: list[list[str]], dim: int, deadline: float) -> dict:
    import httpx2

    latencies: list[float] = []
    errors: list[str] = []
    first_rows: dict[int, np.ndarray] = {}
    next_request = 0
    limits = httpx2.Limits(max_connections=args.clients, max_keepalive_connections=args.clients)

    async with httpx2.AsyncClient(base_url=url, timeout=args.time_limit, limits=limits) as client:

        async def worker() -> None:
            nonlocal next_request
            while next_request < len(requests) and time.perf_counter() < deadline:
                index = next_request
                next_request += 1
                body = {"model": "bench", "input": requests[index], "encoding_format": args.encoding_format}
                start = time.perf_counter()
                try:
                    response = await client.post("/v1/embeddings", json=body)
                except httpx2.HTTPError as error:
                    errors.append(f"{type(error).__name__}: {error}")
                    continue
                latencies.append(time.perf_counter() - start)
                if response.status_code != 200:
                    errors.append(f"HTTP {response.status_code}: {response.text[:200]}")
                    continue
                rows = np.stack([decode(item, args.encoding_format) for item in response.json()["data"]])
                if rows.shape != (len(requests[index]), dim) or not np.isfinite(rows).all():
                    errors.append(f"request {index}: bad rows {rows.shape}")
                elif index == 0:
                    first_rows[0] = rows

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(args.clients)))
        wall = time.perf_counter() - start
    done = len(latencies)
    return {"wall": wall, "latencies": latencies, "errors": errors, "completed": done, "first_rows": first_rows}


def scrape(url: str) -> dict[str, float]:
    import httpx2

    values = {}
    for line in httpx2.get(url + "/metrics", timeout=10).text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            values[key] = float(value)
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    parser.add_argument("--texts", type=Path, default=DEFAULT_TEXTS)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--requests", type=int, default=640, help="total requests over all clients")
    parser.add_argument("--texts-per-request", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=32, help="encode batch size, offline and in the server")
    parser.add_argument("--max-batch-tokens", type=int, default=8192)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument(
        "--encoding-format",
        choices=["base64", "float"],
        default="base64",
        help="base64 is what the openai client asks for by default",
    )
    parser.add_argument("--time-limit", type=float, default=600.0, help="stop sending after this many seconds")
    parser.add_argument("--rounds", type=int, default=4, help="alternate offline / server measurement rounds")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    pool = read_texts(args.texts)
    k = args.texts_per_request
    requests = [[pool[(i * k + j) % len(pool)] for j in range(k)] for i in range(args.requests)]
    sent_texts = [text for request in requests for text in request]

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_server(args, port)
    rounds = []
    try:
        wait_healthy(url, server)
        from embedforge.models import load_model

        model = load_model(args.model, device="cpu")
        model.encode(sent_texts[: args.batch_size * 2], batch_size=args.batch_size, show_progress_bar=False)
        _, offline = offline_throughput(model, requests[0], args.batch_size)
        dim = offline.shape[1]
        asyncio.run(load(args, url, requests[: args.clients], dim, np.inf))  # warm-up: every connection
        before = scrape(url)
        # The CPU may be shared with other work whose load drifts: offline and server are measured in
        # alternating rounds over the same texts, so a drift lands on both sides alike.
        deadline = time.perf_counter() + args.time_limit
        per_round = -(-len(requests) // args.rounds)
        for start in range(0, len(requests), per_round):
            chunk = requests[start : start + per_round]
            texts = [text for request in chunk for text in request]
            offline_start = time.perf_counter()
            model.encode(texts, batch_size=args.batch_size, show_progress_bar=False)
            offline_seconds = time.perf_counter() - offline_start
            rounds.append((len(texts), offline_seconds, asyncio.run(load(args, url, chunk, dim, deadline))))
            if time.perf_counter() > deadline:
                break
        after = scrape(url)
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()

    offline_rate = sum(n for n, _, _ in rounds) / sum(seconds for _, seconds, _ in rounds)
    result = {
        "wall": sum(r["wall"] for *_, r in rounds),
        "latencies": [x for *_, r in rounds for x in r["latencies"]],
        "errors": [x for *_, r in rounds for x in r["errors"]],
        "completed": sum(r["completed"] for *_, r in rounds),
        "first_rows": rounds[0][2]["first_rows"],
    }
    round_ratios = [r["completed"] * k / r["wall"] / (n / seconds) for n, seconds, r in rounds]
    latencies = np.array(result["latencies"]) * 1000
    texts_done = result["completed"] * k
    server_rate = texts_done / result["wall"]
    batches = after["embedforge_batches_total"] - before["embedforge_batches_total"]
    inputs = after["embedforge_inputs_encoded_total"] - before["embedforge_inputs_encoded_total"]
    merged = (after["embedforge_batch_requests_sum"] - before["embedforge_batch_requests_sum"]) / max(batches, 1)
    difference = float(np.abs(result["first_rows"][0] - offline[:k]).max()) if result["first_rows"] else float("nan")
    figures = {
        "model": args.model,
        "clients": args.clients,
        "requests": args.requests,
        "completed": result["completed"],
        "texts_per_request": k,
        "batch_size": args.batch_size,
        "max_batch_tokens": args.max_batch_tokens,
        "max_wait_ms": args.max_wait_ms,
        "encoding_format": args.encoding_format,
        "cpu_count": os.cpu_count(),
        "offline_texts_per_s": offline_rate,
        "rounds": len(rounds),
        "ratio_per_round": round_ratios,
        "server_texts_per_s": server_rate,
        "ratio": server_rate / offline_rate,
        "p50_ms": float(np.percentile(latencies, 50)) if len(latencies) else float("nan"),
        "p99_ms": float(np.percentile(latencies, 99)) if len(latencies) else float("nan"),
        "errors": len(result["errors"]),
        "wall_s": result["wall"],
        "batches": batches,
        "texts_per_batch": inputs / max(batches, 1),
        "requests_per_batch": merged,
        "max_abs_diff_vs_offline": difference,
        "load_average": os.getloadavg(),
    }
    rows = [
        ("model", args.model),
        ("clients x requests x texts", f"{args.clients} x {result['completed']}/{args.requests} x {k}"),
        (f"offline encode (batch {args.batch_size})", f"{offline_rate:8.1f} texts/s"),
        (f"server, {args.clients} clients", f"{server_rate:8.1f} texts/s"),
        ("ratio server / offline", f"{figures['ratio']:8.3f}   (target >= 0.7)"),
        (f"  per round ({len(rounds)})", ", ".join(f"{x:.2f}" for x in round_ratios)),
        ("latency p50 / p99", f"{figures['p50_ms']:.0f} ms / {figures['p99_ms']:.0f} ms"),
        ("errors", str(len(result["errors"]))),
        ("batches; texts, requests per batch", f"{batches:.0f}; {figures['texts_per_batch']:.1f}, {merged:.1f}"),
        ("max |server - offline| (request 0)", f"{difference:.2e}"),
        ("load average (1, 5, 15 min)", ", ".join(f"{x:.2f}" for x in figures["load_average"])),
    ]
    width = max(len(name) for name, _ in rows)
    print()
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    for error in result["errors"][:5]:
        print("error:", error)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
