"""Dynamic batching: merged requests, own rows back in order, split big requests, fairness, failures."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from embedforge.serving.batcher import BatcherClosed, DynamicBatcher

httpx2 = pytest.importorskip("httpx2")


def _wait_until(condition, timeout=60.0):
    """Poll ``condition`` (a readiness wait, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.01)


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise KeyError(name)


def test_concurrent_requests_are_merged_and_each_caller_gets_its_own_rows(prompted_model_dir, reference_model):
    from embedforge.serving import ServerThread, create_app

    app = create_app(prompted_model_dir, device="cpu", max_wait_ms=1)
    batcher = app.state.batcher
    real_encode = batcher.encode_fn
    in_encoder, release = threading.Event(), threading.Event()

    def gated_encode(texts, key):  # the real encoder, held until the test has queued everyone
        in_encoder.set()
        release.wait(60)
        return real_encode(texts, key)

    batcher.encode_fn = gated_encode
    callers = 16
    requests = [
        ([f"caller {i} sentence {j} " + "word " * (i % 5) for j in range(1 + i % 4)], "query" if i % 3 == 0 else None)
        for i in range(callers)
    ]

    def call(url, texts, input_type):
        body = {"model": "tiny-embed", "input": texts, "encoding_format": "float"}
        if input_type:
            body["input_type"] = input_type
        response = httpx2.post(url + "/v1/embeddings", json=body, timeout=120)
        assert response.status_code == 200, response.text
        return np.array([item["embedding"] for item in response.json()["data"]], dtype=np.float32)

    with ServerThread(app) as server, ThreadPoolExecutor(callers) as pool:
        first = pool.submit(call, server.url, *requests[0])
        _wait_until(in_encoder.is_set)  # request 0 is inside the encoder, holding it
        rest = [pool.submit(call, server.url, *request) for request in requests[1:]]
        _wait_until(lambda: batcher.queued_inputs == sum(len(texts) for texts, _ in requests[1:]))
        release.set()
        results = [first.result(), *(future.result() for future in rest)]
        metrics = httpx2.get(server.url + "/metrics").text

    for (texts, input_type), rows in zip(requests, results, strict=True):
        encode = reference_model.encode_query if input_type == "query" else reference_model.encode
        np.testing.assert_allclose(rows, encode(texts), atol=1e-5, rtol=0)
    batches = _metric(metrics, "embedforge_batches_total")
    assert batches == 2  # request 0 alone, then the 15 that queued behind it, merged into one batch
    assert _metric(metrics, 'embedforge_batch_requests_bucket{le="1.0"}') == 1
    assert _metric(metrics, 'embedforge_batch_requests_bucket{le="16.0"}') == 2
    assert _metric(metrics, "embedforge_batch_requests_sum") == callers
    assert _metric(metrics, "embedforge_inputs_encoded_total") == sum(len(texts) for texts, _ in requests)


# --- the batcher alone, with a deterministic encoder: row = the number in the text ----------------------------


def _number_encoder(log):
    def encode(texts, key):
        log.append((key, list(texts)))
        return np.array([[float(text.split("-")[1])] for text in texts], dtype=np.float32)

    return encode


def test_big_request_is_split_and_small_requests_are_not_starved():
    log = []

    async def scenario():
        batcher = DynamicBatcher(_number_encoder(log), max_batch_tokens=8, max_wait_ms=1)
        await batcher.start()
        big = [f"big-{i}" for i in range(40)]
        small = ["small-100", "small-101"]
        results = await asyncio.gather(batcher.submit(big, [1] * 40), batcher.submit(small, [1, 1]))
        await batcher.stop()
        return results

    big_rows, small_rows = asyncio.run(scenario())
    np.testing.assert_array_equal(big_rows[:, 0], np.arange(40))
    np.testing.assert_array_equal(small_rows[:, 0], [100, 101])
    batches = [texts for _, texts in log]
    assert all(len(texts) <= 8 for texts in batches)  # the token budget (1 token per text) holds
    assert len(batches) == 6  # 42 texts, 8 per batch
    assert {"small-100", "small-101"} <= set(batches[0])  # round-robin: the small request rides in the first batch


def test_single_text_over_budget_is_encoded_alone():
    log = []

    async def scenario():
        batcher = DynamicBatcher(_number_encoder(log), max_batch_tokens=10, max_wait_ms=1)
        await batcher.start()
        rows = await asyncio.gather(batcher.submit(["a-1"], [50]), batcher.submit(["b-2", "b-3"], [3, 3]))
        await batcher.stop()
        return rows

    first, second = asyncio.run(scenario())
    assert first[0, 0] == 1 and list(second[:, 0]) == [2, 3]
    assert [texts for _, texts in log] == [["a-1"], ["b-2", "b-3"]]


def test_a_text_far_longer_than_the_rest_gets_its_own_encode_call():
    """One 256-token text among 40-token ones would pad a whole forward pass of encode's to 256 tokens."""
    log = []

    async def scenario():
        batcher = DynamicBatcher(_number_encoder(log), max_batch_tokens=100_000, max_wait_ms=1, forward_rows=32)
        await batcher.start()
        normal = [f"n-{i}" for i in range(40)]
        rows = await asyncio.gather(batcher.submit(normal, [40] * 40), batcher.submit(["huge-999"], [256]))
        await batcher.stop()
        return rows

    normal_rows, huge_rows = asyncio.run(scenario())
    np.testing.assert_array_equal(normal_rows[:, 0], np.arange(40))  # every caller's rows in its own order
    assert huge_rows[0, 0] == 999
    calls = [texts for _, texts in log]
    assert len(calls) == 2 and "huge-999" in calls[0] and len(calls[0]) < 32  # a short call of its own
    encoded = sorted(calls[0] + calls[1], key=lambda text: int(text.split("-")[1]))
    assert encoded == [*[f"n-{i}" for i in range(40)], "huge-999"]  # every text once


def test_split_outliers_keeps_ordinary_batches_whole():
    from embedforge.serving.batcher import split_outliers

    for tokens in ([40] * 64, [12, 30, 25, 18] * 20):  # similar lengths: one call, as before
        groups = split_outliers(tokens, 32)
        assert len(groups) == 1 and sorted(groups[0]) == list(range(len(tokens)))
    groups = split_outliers([40] * 31 + [256], 32)
    assert groups[0][0] == 31 and len(groups[0]) < 32 and sorted(sum(groups, [])) == list(range(32))
    assert split_outliers([5], 32) == [[0]] and split_outliers([0, 0], 32) == [[0, 1]]


def test_batches_are_grouped_by_key():
    log = []

    async def scenario():
        batcher = DynamicBatcher(_number_encoder(log), max_batch_tokens=100, max_wait_ms=1)
        await batcher.start()
        rows = await asyncio.gather(
            batcher.submit(["q-1", "q-2"], [1, 1], key="query"),
            batcher.submit(["p-3"], [1], key=None),
            batcher.submit(["q-4"], [1], key="query"),
        )
        await batcher.stop()
        return rows

    rows = asyncio.run(scenario())
    assert [list(r[:, 0]) for r in rows] == [[1, 2], [3], [4]]
    assert sorted(log, key=str) == sorted([("query", ["q-1", "q-4", "q-2"]), (None, ["p-3"])], key=str)


def test_cancelled_caller_is_dropped_from_the_queue():
    log = []
    release = threading.Event()

    def encoder(texts, key):
        if texts == ["hold-0"]:
            release.wait(30)
        return _number_encoder(log)(texts, key)

    async def scenario():
        batcher = DynamicBatcher(encoder, max_batch_tokens=100, max_wait_ms=0)
        await batcher.start()
        holder = asyncio.ensure_future(batcher.submit(["hold-0"], [1]))
        while not log and batcher.queued_inputs:  # wait until the holder's batch was taken
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.01)
        gone = asyncio.ensure_future(batcher.submit(["gone-1", "gone-2"], [1, 1]))
        kept = asyncio.ensure_future(batcher.submit(["kept-3"], [1]))
        await asyncio.sleep(0)  # both are queued now
        assert batcher.queued_inputs == 3
        gone.cancel()
        release.set()
        rows = await kept
        await holder
        await batcher.stop()
        return rows

    rows = asyncio.run(scenario())
    assert rows[0, 0] == 3
    encoded = [text for _, texts in log for text in texts]
    assert "gone-1" not in encoded and "gone-2" not in encoded


def test_encoder_error_fails_that_batch_only_and_batcher_keeps_going():
    def encoder(texts, key):
        if any(text.startswith("bad") for text in texts):
            raise RuntimeError("boom")
        return np.array([[float(text.split("-")[1])] for text in texts], dtype=np.float32)

    async def scenario():
        batcher = DynamicBatcher(encoder, max_batch_tokens=100, max_wait_ms=1)
        await batcher.start()
        with pytest.raises(RuntimeError, match="boom"):
            await batcher.submit(["bad-1"], [1])
        assert batcher.alive and batcher.queued_inputs == 0
        rows = await batcher.submit(["good-7"], [1])
        await batcher.stop()
        return rows

    assert asyncio.run(scenario())[0, 0] == 7


def test_stop_fails_waiting_callers_and_refuses_new_work():
    release = threading.Event()

    def encoder(texts, key):
        release.wait(30)
        return np.zeros((len(texts), 1), dtype=np.float32)

    async def scenario():
        batcher = DynamicBatcher(encoder, max_batch_tokens=1, max_wait_ms=0)
        await batcher.start()
        first = asyncio.ensure_future(batcher.submit(["x-1"], [1]))
        second = asyncio.ensure_future(batcher.submit(["x-2"], [1]))
        await asyncio.sleep(0.05)
        await batcher.stop()
        release.set()
        for future in (first, second):
            with pytest.raises(BatcherClosed):
                await future
        with pytest.raises(BatcherClosed):
            await batcher.submit(["x-3"], [1])

    asyncio.run(scenario())


def test_queue_limit_refuses_with_429(prompted_model_dir):
    from embedforge.serving import ServerThread, create_app

    app = create_app(prompted_model_dir, device="cpu", max_inputs=4, max_queued_inputs=4)
    batcher = app.state.batcher
    real_encode, in_encoder, release = batcher.encode_fn, threading.Event(), threading.Event()

    def gated_encode(texts, key):
        in_encoder.set()
        release.wait(60)
        return real_encode(texts, key)

    batcher.encode_fn = gated_encode
    body = {"model": "tiny-embed", "input": ["a", "b", "c", "d"]}
    with ServerThread(app) as server, ThreadPoolExecutor(2) as pool:
        holder = pool.submit(httpx2.post, server.url + "/v1/embeddings", json=body, timeout=60)
        _wait_until(in_encoder.is_set)
        queued = pool.submit(httpx2.post, server.url + "/v1/embeddings", json=body, timeout=60)
        _wait_until(lambda: batcher.queued_inputs == 4)
        refused = httpx2.post(server.url + "/v1/embeddings", json=body, timeout=60)
        release.set()
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "server_overloaded"
        assert holder.result().status_code == 200 and queued.result().status_code == 200


def test_answered_callers_rejoin_the_next_batch():
    """After a batch, the batcher waits (briefly) for the callers it answered before starting the next one."""
    log = []
    in_encoder, release = threading.Event(), threading.Event()

    def encoder(texts, key):
        if texts == ["a-1"]:
            in_encoder.set()
            release.wait(30)
        return _number_encoder(log)(texts, key)

    async def scenario():
        # the first batch is held ~0.4 s, so the refill window after it is ~0.2 s (refill_fraction 0.5)
        batcher = DynamicBatcher(encoder, max_batch_tokens=100, max_wait_ms=1, refill_fraction=0.5, max_refill_ms=1000)
        await batcher.start()

        async def looping_caller():
            first = await batcher.submit(["a-1"], [1])
            await asyncio.sleep(0.05)  # the client's own work between its requests (well inside the window)
            second = await batcher.submit(["a-3"], [1])
            return first, second

        caller = asyncio.ensure_future(looping_caller())
        while not in_encoder.is_set():  # a-1 is in the encoder, alone
            await asyncio.sleep(0.001)
        other = asyncio.ensure_future(batcher.submit(["b-2"], [1]))  # queued behind a-1
        await asyncio.sleep(0.4)
        release.set()
        (first, second), third = await caller, await other
        await batcher.stop()
        return first, second, third

    first, second, third = asyncio.run(scenario())
    assert (first[0, 0], second[0, 0], third[0, 0]) == (1, 3, 2)
    assert [texts for _, texts in log] == [["a-1"], ["b-2", "a-3"]]  # b-2 waited for a-3 instead of going alone
