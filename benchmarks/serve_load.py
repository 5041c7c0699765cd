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

Hostile round (issue 12; ``--hostile-seconds 0`` skips it): after the normal rounds, the same clients
send normal traffic again while ``--hostile-clients`` more, in a process of their own, send 10 MB texts (one
per request), ``--hostile-rate`` per second each (0: back to back, which on a 2-core machine mostly measures
the attacking process's own CPU, taken from the server as a remote attacker could not). The server's RSS is
sampled every 100 ms: the report gives its idle size, the peak and the size after the round (target: peak
within +300 MB of idle), the normal requests' p99 in that round next to the p99 of the normal rounds, and
the cores the server kept busy in each.

Backends (issue 14): ``--export-dir DIR`` exports ``--model`` there (``onnx``, ``onnx-int8``,
``openvino``; reused if present) and measures each backend's offline ``encode`` texts/s against torch in
alternating rounds over the same texts, with the cosine agreement on all of them. ``--backend onnx``
serves the exported ONNX folder in the load rounds instead of the torch model (offline side: the same).

    PYTHONPATH=$PWD python benchmarks/serve_load.py
    PYTHONPATH=$PWD python benchmarks/serve_load.py --clients 32 --requests 640 --texts-per-request 8 --batch-size 32
    PYTHONPATH=$PWD python benchmarks/serve_load.py --model path/to/model --texts my_texts.txt --json out.json
    PYTHONPATH=$PWD python benchmarks/serve_load.py --export-dir /tmp/exports --backend onnx

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
from typing import Any

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
        served_model(args),
        "--backend",
        args.backend,
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
    command.append("--packed" if args.packed else "--no-packed")
    if args.max_body_mb is not None:  # e.g. 2 (TEI's payload limit): huge bodies get 413 before they are read
        command += ["--max-body-mb", str(args.max_body_mb)]
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


def served_model(args: argparse.Namespace) -> str:
    return args.model if args.backend == "torch" else str(args.export_dir / args.backend)


def load_offline(args: argparse.Namespace):
    """The model the offline side encodes with: the torch model, or the exported folder for --backend."""
    if args.backend == "torch":
        from embedforge.models import load_model

        return load_model(args.model, device="cpu")
    from embedforge.serving.export import load_exported

    return load_exported(served_model(args), backend=args.backend)


def export_all(args: argparse.Namespace) -> dict[str, Path]:
    """``--export-dir``: the model exported once per backend (reused if already there)."""
    from embedforge.serving.export import export_model

    kinds = {"onnx": ("onnx", None), "onnx-int8": ("onnx", "int8"), "openvino": ("openvino", None)}
    folders = {}
    for name, (backend, quantize) in kinds.items():
        folder = args.export_dir / name
        if not (folder / "embedforge_export.json").is_file():
            export_model(args.model, folder, backend=backend, quantize=quantize, overwrite=True)
        folders[name] = folder
    return folders


def compare_backends(args: argparse.Namespace, texts: list[str]) -> dict:
    """Offline encode texts/s of each exported backend vs torch, alternating rounds; agreement on all texts."""
    from embedforge.models import load_model
    from embedforge.serving.export import cosine_agreement, load_exported

    folders = export_all(args)
    models = {"torch": load_model(args.model, device="cpu")}
    for name, folder in folders.items():
        models[name] = load_exported(folder, backend="openvino" if name == "openvino" else "onnx")
    seconds = dict.fromkeys(models, 0.0)
    outputs: dict[str, list[np.ndarray]] = {name: [] for name in models}
    for model in models.values():  # warm-up
        model.encode(texts[: args.batch_size * 2], batch_size=args.batch_size, show_progress_bar=False)
    per_round = -(-len(texts) // args.rounds)
    for start in range(0, len(texts), per_round):
        chunk = texts[start : start + per_round]
        for name, model in models.items():
            began = time.perf_counter()
            outputs[name].append(model.encode(chunk, batch_size=args.batch_size, show_progress_bar=False))
            seconds[name] += time.perf_counter() - began
    reference = np.concatenate(outputs["torch"])
    result = {}
    for name in models:
        rate = len(texts) / seconds[name]
        agreement = cosine_agreement(reference, np.concatenate(outputs[name]))
        result[name] = {
            "texts_per_s": rate,
            "vs_torch": rate * seconds["torch"] / len(texts),
            **agreement,
        }
    return result


def rss_mb(pid: int) -> float:
    import psutil

    return psutil.Process(pid).memory_info().rss / 2**20


async def _attack(url: str, body: bytes, clients: int, rate: float, seconds: float) -> dict:
    import httpx2

    statuses: list[int] = []
    latencies: list[float] = []
    stop = time.perf_counter() + seconds

    async def attacker() -> None:
        async with httpx2.AsyncClient(base_url=url, timeout=600) as client:
            while time.perf_counter() < stop:
                start = time.perf_counter()
                response = await client.post(
                    "/v1/embeddings", content=body, headers={"content-type": "application/json"}
                )
                latencies.append(time.perf_counter() - start)
                statuses.append(response.status_code)
                if rate > 0:  # paced: one huge text per 1 / rate seconds from each attacker
                    await asyncio.sleep(max(0.0, 1.0 / rate - (time.perf_counter() - start)))

    await asyncio.gather(*(attacker() for _ in range(clients)))
    return {"statuses": statuses, "latencies": latencies}


def attack_process(url: str, megabytes: int, clients: int, rate: float, seconds: float, out: str) -> None:
    """The attacking clients, in their own process (their own event loop and GIL, not the normal clients')."""
    text = ("hostile " * (megabytes * 1024 * 1024 // 8 + 1))[: megabytes * 1024 * 1024]
    body = json.dumps({"model": "bench", "input": [text], "encoding_format": "base64"}).encode()
    del text
    result = asyncio.run(_attack(url, body, clients, rate, seconds))
    Path(out).write_text(json.dumps(result))


async def hostile_round(
    args: argparse.Namespace, url: str, requests: list[list[str]], dim: int, pid: int
) -> tuple[dict, dict]:
    """Normal traffic while another process sends huge texts (paced or back to back); RSS sampled every 100 ms."""
    import multiprocessing
    import tempfile

    samples: list[float] = []
    done = asyncio.Event()

    async def sample() -> None:
        while not done.is_set():
            samples.append(rss_mb(pid))
            await asyncio.sleep(0.1)

    with tempfile.TemporaryDirectory() as folder:
        out = str(Path(folder) / "attack.json")
        attack = multiprocessing.get_context("spawn").Process(
            target=attack_process,
            args=(url, args.hostile_mb, args.hostile_clients, args.hostile_rate, args.hostile_seconds, out),
        )
        attack.start()
        sampler = asyncio.create_task(sample())
        cpu_before = cpu_seconds(pid)
        try:
            result = await load(args, url, requests, dim, time.perf_counter() + args.hostile_seconds)
        finally:
            done.set()
        result["cpu"] = [end - begin for end, begin in zip(cpu_seconds(pid), cpu_before, strict=True)]
        await sampler
        await asyncio.get_running_loop().run_in_executor(None, attack.join, 600)
        attacked = json.loads(Path(out).read_text()) if Path(out).is_file() else {"statuses": [], "latencies": []}
    return result, {"rss_samples_mb": samples, **attacked}


def cpu_seconds(server_pid: int) -> tuple[float, float]:
    """CPU seconds (user + system) used so far by the server process and by this one (the clients)."""
    import psutil

    server, clients = psutil.Process(server_pid).cpu_times(), psutil.Process().cpu_times()
    return server.user + server.system, clients.user + clients.system


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


def markdown_table(paths: list[Path]) -> str:
    """One markdown column per earlier run's ``--json`` figures: throughput, CPU, latency, hostile round.

    A figure an older run did not record (or a run without a hostile round) shows as ``-``.
    """
    runs = [json.loads(path.read_text()) for path in paths]

    def attack(h: dict) -> str:
        rate = f"{h['rate_per_client']:g}/s each" if h.get("rate_per_client", 0) > 0 else "back to back"
        return f"{h['clients']} x {h['text_mb']} MB, {rate}, body limit {h['server_max_body_mb']:g} MB"

    def packed_rate(r: dict) -> str:
        rate = r["offline_packed_texts_per_s"]
        return f"{rate:.0f} ({r['server_texts_per_s'] / rate:.3f})" if rate else "-"

    rows = [
        ("run", lambda r, p: f"`{p.name}`"),
        (
            "server / offline texts/s",
            lambda r, p: f"{r['ratio']:.3f} ({r['server_texts_per_s']:.0f} / {r['offline_texts_per_s']:.0f})",
        ),
        ("per round", lambda r, p: ", ".join(f"{x:.2f}" for x in r["ratio_per_round"])),
        ("server encodes", lambda r, p: "packed" if r["packed"] else "`SentenceTransformer.encode`"),
        ("offline packed texts/s (server / it)", lambda r, p: packed_rate(r)),
        ("batch token budget", lambda r, p: f"{r['max_batch_tokens']}"),
        ("cores busy: offline / server", lambda r, p: f"{r['offline_cores_busy']:.2f} / {r['server_cores_busy']:.2f}"),
        (
            "CPU ms per text: offline / server",
            lambda r, p: f"{r['cpu_ms_per_text']['offline']:.2f} / {r['cpu_ms_per_text']['server']:.2f}",
        ),
        ("normal rounds p50 / p99 ms", lambda r, p: f"{r['p50_ms']:.0f} / {r['p99_ms']:.0f}"),
        ("hostile clients", lambda r, p: attack(r["hostile"])),
        (
            "huge requests: sent, statuses",
            lambda r, p: f"{r['hostile']['huge_requests']}, {r['hostile']['huge_statuses']}",
        ),
        ("server RSS peak over idle MB", lambda r, p: f"{r['hostile']['rss_peak_over_idle_mb']:+.0f}"),
        (
            "normal p50 / p99 ms in the hostile round",
            lambda r, p: (
                f"{r['hostile']['normal_p50_ms']:.0f} / {r['hostile']['normal_p99_ms']:.0f} "
                f"({r['hostile']['normal_p99_ms'] / r['p99_ms']:.2f}x)"
            ),
        ),
        ("normal texts/s in the hostile round", lambda r, p: f"{r['hostile']['normal_texts_per_s']:.0f}"),
    ]

    def cell(figure: Any, run: dict, path: Path) -> str:
        try:
            return figure(run, path)
        except KeyError:
            return "-"

    lines = ["| figure | " + " | ".join(f"run {i + 1}" for i in range(len(runs))) + " |"]
    lines.append("|---|" + "---:|" * len(runs))
    for name, figure in rows:
        cells = (cell(figure, run, path) for run, path in zip(runs, paths, strict=True))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


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
    parser.add_argument(
        "--warmup-requests", type=int, default=None, help="requests sent before measuring (default: one per client)"
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--backend", choices=["torch", "onnx", "openvino"], default="torch", help="served backend")
    parser.add_argument(
        "--packed",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the server encodes without padding (its default); also timed offline, beside encode",
    )
    parser.add_argument("--export-dir", type=Path, help="export --model here and compare the backends offline")
    parser.add_argument("--backend-texts", type=int, default=1024, help="texts for the offline backend comparison")
    parser.add_argument("--hostile-seconds", type=float, default=30.0, help="length of the hostile round (0: skip)")
    parser.add_argument("--hostile-clients", type=int, default=2, help="clients sending huge texts")
    parser.add_argument(
        "--hostile-rate",
        type=float,
        default=1.0,
        help="huge texts per second from each hostile client (0: back to back, which on a small machine mostly "
        "measures the attacking process's own CPU)",
    )
    parser.add_argument("--hostile-mb", type=int, default=10, help="size of each huge text")
    parser.add_argument(
        "--max-body-mb", type=float, default=None, help="the server's request body limit (default: serve's, 32)"
    )
    parser.add_argument("--table", type=Path, nargs="+", help="only print a markdown table of earlier --json runs")
    args = parser.parse_args()
    if args.table:
        print(markdown_table(args.table), end="")
        return

    pool = read_texts(args.texts)
    k = args.texts_per_request
    requests = [[pool[(i * k + j) % len(pool)] for j in range(k)] for i in range(args.requests)]
    sent_texts = [text for request in requests for text in request]

    if args.backend != "torch" and args.export_dir is None:
        parser.error("--backend onnx|openvino serves the folder made with --export-dir DIR")
    backends = compare_backends(args, pool[: args.backend_texts]) if args.export_dir else None

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_server(args, port)
    rounds = []
    hostile = None
    try:
        wait_healthy(url, server)
        model = load_offline(args)
        model.encode(sent_texts[: args.batch_size * 2], batch_size=args.batch_size, show_progress_bar=False)
        _, offline = offline_throughput(model, requests[0], args.batch_size)
        dim = offline.shape[1]
        packed = None
        if args.packed and args.backend == "torch":  # the server's own encode path, measured offline too
            from embedforge.models.packed_encode import PackedEncoder, supports_packed_encode
            from embedforge.serving.app import PACKED_CHUNK_TOKENS

            if supports_packed_encode(model):
                packed = PackedEncoder(model, max_tokens=PACKED_CHUNK_TOKENS)
                packed.encode(sent_texts[: args.batch_size * 2])
        packed_seconds = 0.0
        warmup = requests[: args.warmup_requests or args.clients]  # at least every connection once
        asyncio.run(load(args, url, warmup, dim, np.inf))
        before = scrape(url)
        # The CPU may be shared with other work whose load drifts: offline and server are measured in
        # alternating rounds over the same texts, so a drift lands on both sides alike.
        deadline = time.perf_counter() + args.time_limit
        per_round = -(-len(requests) // args.rounds)
        offline_cpu = 0.0
        for start in range(0, len(requests), per_round):
            if time.perf_counter() > deadline:  # no round whose server side could not run
                break
            chunk = requests[start : start + per_round]
            texts = [text for request in chunk for text in request]
            offline_start, offline_cpu_start = time.perf_counter(), time.process_time()
            model.encode(texts, batch_size=args.batch_size, show_progress_bar=False)
            offline_seconds = time.perf_counter() - offline_start
            offline_cpu += time.process_time() - offline_cpu_start
            if packed is not None:
                packed_start = time.perf_counter()
                packed.encode(texts)
                packed_seconds += time.perf_counter() - packed_start
            cpu_before = cpu_seconds(server.pid)
            outcome = asyncio.run(load(args, url, chunk, dim, deadline))
            cpu_after = cpu_seconds(server.pid)
            outcome["cpu"] = [end - begin for end, begin in zip(cpu_after, cpu_before, strict=True)]
            rounds.append((len(texts), offline_seconds, outcome))
        after = scrape(url)
        if args.hostile_seconds > 0:
            time.sleep(2.0)
            idle = rss_mb(server.pid)
            cycle = requests * (1 + int(args.hostile_seconds * 1000 / max(len(requests), 1)))
            normal, attack = asyncio.run(hostile_round(args, url, cycle, dim, server.pid))
            time.sleep(2.0)
            hostile = {"idle_mb": idle, "after_mb": rss_mb(server.pid), "normal": normal, **attack}
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
    round_rates = [{"offline": n / seconds, "server": r["completed"] * k / r["wall"]} for n, seconds, r in rounds]
    server_cpu = sum(r["cpu"][0] for *_, r in rounds)
    client_cpu = sum(r["cpu"][1] for *_, r in rounds)
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
        "texts_per_s_per_round": round_rates,
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
        # what the load rounds cost each process: on a small machine the clients' CPU is the server's loss
        "server_cpu_s": server_cpu,
        "client_cpu_s": client_cpu,
        "client_cpu_share": client_cpu / max(server_cpu + client_cpu, 1e-9),
        "offline_cpu_s": offline_cpu,
        "offline_cores_busy": offline_cpu / sum(seconds for _, seconds, _ in rounds),
        "server_cores_busy": server_cpu / result["wall"],
        "cpu_ms_per_text": {
            "offline": 1000 * offline_cpu / sum(n for n, _, _ in rounds),
            "server": 1000 * server_cpu / max(texts_done, 1),
        },
        "load_average": os.getloadavg(),
        "backend": args.backend,
        "packed": packed is not None,
        "offline_packed_texts_per_s": (sum(n for n, _, _ in rounds) / packed_seconds) if packed_seconds else None,
    }
    if hostile is not None:
        normal = hostile["normal"]
        hostile_latencies = np.array(normal["latencies"]) * 1000
        peak = max(hostile["rss_samples_mb"], default=float("nan"))
        figures["hostile"] = {
            "seconds": args.hostile_seconds,
            "clients": args.hostile_clients,
            "rate_per_client": args.hostile_rate,
            "text_mb": args.hostile_mb,
            "server_max_body_mb": args.max_body_mb if args.max_body_mb is not None else 32.0,
            "huge_requests": len(hostile["statuses"]),
            "huge_statuses": sorted(set(hostile["statuses"])),
            "huge_latency_p50_ms": float(np.percentile(hostile["latencies"], 50) * 1000)
            if hostile["latencies"]
            else float("nan"),
            "rss_idle_mb": hostile["idle_mb"],
            "rss_peak_mb": peak,
            "rss_after_mb": hostile["after_mb"],
            "rss_peak_over_idle_mb": peak - hostile["idle_mb"],
            "normal_completed": normal["completed"],
            "normal_errors": len(normal["errors"]),
            "normal_p50_ms": float(np.percentile(hostile_latencies, 50)) if len(hostile_latencies) else float("nan"),
            "normal_p99_ms": float(np.percentile(hostile_latencies, 99)) if len(hostile_latencies) else float("nan"),
            "normal_texts_per_s": normal["completed"] * k / normal["wall"],
            "server_cpu_s": normal["cpu"][0],
            "server_cores_busy": normal["cpu"][0] / normal["wall"],
        }
    if backends is not None:
        figures["backends_offline"] = backends
    rows = [
        ("model", args.model),
        ("clients x requests x texts", f"{args.clients} x {result['completed']}/{args.requests} x {k}"),
        (f"offline encode (batch {args.batch_size})", f"{offline_rate:8.1f} texts/s"),
        (f"server, {args.clients} clients", f"{server_rate:8.1f} texts/s"),
        ("ratio server / offline", f"{figures['ratio']:8.3f}   (target >= 0.9)"),
        (f"  per round ({len(rounds)})", ", ".join(f"{x:.2f}" for x in round_ratios)),
        (
            "server encodes packed; offline packed encode",
            f"{figures['offline_packed_texts_per_s']:8.1f} texts/s (server / it: "
            f"{server_rate / figures['offline_packed_texts_per_s']:.3f})"
            if figures["offline_packed_texts_per_s"]
            else "no (SentenceTransformer.encode)",
        ),
        ("  offline / server texts/s", ", ".join(f"{r['offline']:.0f}/{r['server']:.0f}" for r in round_rates)),
        ("latency p50 / p99", f"{figures['p50_ms']:.0f} ms / {figures['p99_ms']:.0f} ms"),
        ("errors", str(len(result["errors"]))),
        ("batches; texts, requests per batch", f"{batches:.0f}; {figures['texts_per_batch']:.1f}, {merged:.1f}"),
        ("max |server - offline| (request 0)", f"{difference:.2e}"),
        (
            "CPU s in the load rounds: server / clients",
            f"{server_cpu:.1f} / {client_cpu:.1f} over {result['wall']:.1f} s wall "
            f"(clients {figures['client_cpu_share']:.0%} of it)",
        ),
        (
            "CPU ms per text; cores busy: offline / server",
            f"{figures['cpu_ms_per_text']['offline']:.2f} / {figures['cpu_ms_per_text']['server']:.2f}; "
            f"{figures['offline_cores_busy']:.2f} / {figures['server_cores_busy']:.2f}",
        ),
        ("load average (1, 5, 15 min)", ", ".join(f"{x:.2f}" for x in figures["load_average"])),
    ]
    if hostile is not None:
        h = figures["hostile"]
        rows += [
            (
                f"hostile: {h['clients']} x {h['text_mb']} MB texts"
                + (f", {h['rate_per_client']:g}/s each" if h["rate_per_client"] > 0 else ", back to back"),
                f"{h['huge_requests']} sent, statuses {h['huge_statuses']}, p50 {h['huge_latency_p50_ms']:.0f} ms",
            ),
            (
                "  server RSS idle / peak / after",
                f"{h['rss_idle_mb']:.0f} / {h['rss_peak_mb']:.0f} / {h['rss_after_mb']:.0f} MB "
                f"(peak +{h['rss_peak_over_idle_mb']:.0f} MB; target <= +300)",
            ),
            (
                "  normal requests p50 / p99",
                f"{h['normal_p50_ms']:.0f} ms / {h['normal_p99_ms']:.0f} ms (normal rounds: "
                f"{figures['p50_ms']:.0f} / {figures['p99_ms']:.0f}); {h['normal_errors']} errors",
            ),
            (
                "  normal texts/s; server cores busy",
                f"{h['normal_texts_per_s']:.0f} (normal rounds {server_rate:.0f}); {h['server_cores_busy']:.2f} "
                f"(normal rounds {figures['server_cores_busy']:.2f})",
            ),
        ]
    if backends is not None:
        for name, b in backends.items():
            rows.append(
                (
                    f"offline {name}",
                    f"{b['texts_per_s']:8.1f} texts/s  x{b['vs_torch']:.2f} torch  min cos {b['min_cosine']:.5f}"
                    f"  mean {b['mean_cosine']:.5f}",
                )
            )
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
