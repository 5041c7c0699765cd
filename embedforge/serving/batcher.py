"""Dynamic batching: texts from requests that arrive together are encoded together.

Why our own: sentence-transformers encodes one caller's list; it has no notion of merging
concurrent callers. Serving stacks that do (TEI, infinity) are separate servers, not libraries.

How it works (all bookkeeping on the event loop; only the model call runs in a thread):

* :meth:`DynamicBatcher.submit` appends a *job* (one request's texts, their token counts and a
  ``key`` such as the ``input_type``) to a FIFO and wakes the worker; it then awaits the job's future.
* The worker waits for the first job, then keeps collecting until the waiting texts reach
  ``max_batch_tokens`` or ``max_wait_ms`` have passed since the oldest waiting job arrived. After a
  batch that answered ``n`` requests it also waits, until ``n`` new requests have arrived, at most
  ``max(max_wait_ms, min(refill_fraction x encode time, max_refill_ms))`` (0.5 and 50 ms by
  default), so that clients in a request loop rejoin the next batch: otherwise a busy server
  settles into alternating half-full batches, and on CPU a batch of 16 short texts costs up to
  ~1.7x per text what a batch of 32 does (all-MiniLM-L6-v2, measured here). With 32 looping
  clients sending one text each, this took batches from ~16 to ~31 texts.
* It fills a batch **round-robin** over the waiting jobs, one text per job per pass, until the
  token budget is spent: a request with 2,000 texts is split over several batches and small
  requests that arrive meanwhile ride in the next batch instead of waiting behind all of it.
* The batch is grouped by ``key`` and handed to ``encode_fn(texts, key)`` in a single dedicated
  thread (the model is never called concurrently); ``encode_fn`` sorts by length and sub-batches
  (sentence-transformers' ``encode`` does both). The event loop keeps accepting and answering
  requests meanwhile. A text far longer than the rest gets a call of its own (:func:`split_outliers`):
  inside ``encode``'s sub-batch of ``forward_rows`` texts it would pad every other row to its length
  (one 256-token text among 31 of 40 tokens: 6.4x the work of that forward pass).
* Rows go back into each job's result array by position; a job's future resolves when all of its
  texts are done. Nothing on this path awaits a client: reading bodies and writing responses
  happen in the request handlers, so a slow client only delays itself.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

EncodeFn = Callable[[list[str], Any], np.ndarray]


class BatcherClosed(RuntimeError):
    """The batcher is not running (not started yet, or shutting down)."""


class QueueFull(RuntimeError):
    """Accepting the request would exceed ``max_queued_inputs``."""


@dataclass(eq=False)
class _Job:
    texts: Sequence[str]
    tokens: Sequence[int]
    key: Hashable
    future: asyncio.Future[np.ndarray]
    arrival: float
    next_index: int = 0  # next text to put in a batch
    remaining: int = 0  # texts not yet encoded
    rows: np.ndarray | None = None  # (n, dim), allocated with the first result
    pending_tokens: int = field(default=0)

    @property
    def exhausted(self) -> bool:
        return self.next_index >= len(self.texts)


class DynamicBatcher:
    """Merge concurrent encode requests into token-bounded batches.

    Args:
        encode_fn: ``encode_fn(texts, key) -> (len(texts), dim)`` array; called in a worker thread,
            one call at a time.
        max_batch_tokens: token budget of one batch (a single text longer than this is encoded alone).
        max_wait_ms: how long the oldest waiting request may wait for others to join its batch.
        max_queued_inputs: refuse new work (:class:`QueueFull`) while this many texts wait; ``None``: no limit.
        refill_fraction: after a batch, wait up to this fraction of its encode time (at least
            ``max_wait_ms``) for as many new requests as it answered (see the module docstring).
        max_refill_ms: upper bound of that wait.
        forward_rows: texts per forward pass inside ``encode_fn`` (its batch size), for :func:`split_outliers`.
        on_batch: called on the event loop after each batch with ``inputs=, tokens=, requests=, seconds=``.
        on_queue: called on the event loop when the queue changes with ``inputs=, requests=``.
    """

    def __init__(
        self,
        encode_fn: EncodeFn,
        *,
        max_batch_tokens: int = 8192,
        max_wait_ms: float = 5.0,
        max_queued_inputs: int | None = None,
        refill_fraction: float = 0.5,
        max_refill_ms: float = 50.0,
        forward_rows: int = 32,
        on_batch: Callable[..., None] | None = None,
        on_queue: Callable[..., None] | None = None,
    ):
        if max_batch_tokens < 1:
            raise ValueError(f"max_batch_tokens must be >= 1, got {max_batch_tokens}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        if max_refill_ms < 0:
            raise ValueError(f"max_refill_ms must be >= 0, got {max_refill_ms}")
        if not 0 <= refill_fraction <= 1:
            raise ValueError(f"refill_fraction must be in [0, 1], got {refill_fraction}")
        if max_queued_inputs is not None and max_queued_inputs < 1:
            raise ValueError(f"max_queued_inputs must be >= 1 or None, got {max_queued_inputs}")
        self.encode_fn = encode_fn
        self.max_batch_tokens = max_batch_tokens
        self.max_wait = max_wait_ms / 1000.0
        self.max_queued_inputs = max_queued_inputs
        self.refill_fraction = refill_fraction
        self.max_refill = max_refill_ms / 1000.0
        self.forward_rows = forward_rows
        self._on_batch = on_batch
        self._on_queue = on_queue
        self._jobs: deque[_Job] = deque()
        self._in_flight: set[_Job] = set()  # jobs with texts inside the batch being encoded
        self._queued_inputs = 0
        self._queued_tokens = 0
        self._arrivals = 0  # requests submitted so far
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None

    # lifecycle -------------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the worker on the running event loop."""
        if self.alive:
            return
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embedforge-encode")
        self._task = asyncio.get_running_loop().create_task(self._run(), name="embedforge-batcher")

    async def stop(self) -> None:
        """Stop the worker; waiting requests fail with :class:`BatcherClosed`."""
        task, self._task = self._task, None
        in_flight = set(self._in_flight)  # the worker clears its own set when cancelled
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        for job in [*self._jobs, *in_flight]:
            if not job.future.done():
                job.future.set_exception(BatcherClosed("the server is shutting down"))
        self._jobs.clear()
        self._in_flight.clear()
        self._queued_inputs = self._queued_tokens = 0
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    @property
    def alive(self) -> bool:
        """Whether the worker task is running."""
        return self._task is not None and not self._task.done()

    @property
    def queued_inputs(self) -> int:
        """Texts waiting to be put in a batch."""
        return self._queued_inputs

    # submitting ------------------------------------------------------------------------------------------------

    async def submit(self, texts: Sequence[str], tokens: Sequence[int], key: Hashable = None) -> np.ndarray:
        """Encode ``texts`` (with their token counts) and return their rows in order.

        Raises:
            BatcherClosed: the batcher is not running.
            QueueFull: ``max_queued_inputs`` would be exceeded.
            Exception: whatever ``encode_fn`` raised for a batch holding these texts.
        """
        if len(texts) != len(tokens):
            raise ValueError(f"got {len(texts)} texts but {len(tokens)} token counts")
        if not texts:
            raise ValueError("nothing to encode")
        if not self.alive:
            raise BatcherClosed("the batcher is not running")
        if self.max_queued_inputs is not None and self._queued_inputs + len(texts) > self.max_queued_inputs:
            raise QueueFull(f"{self._queued_inputs} texts are already waiting (limit {self.max_queued_inputs})")
        loop = asyncio.get_running_loop()
        job = _Job(
            texts=texts,
            tokens=tokens,
            key=key,
            future=loop.create_future(),
            arrival=loop.time(),
            remaining=len(texts),
            pending_tokens=int(sum(tokens)),
        )
        self._jobs.append(job)
        self._arrivals += 1
        self._queued_inputs += len(texts)
        self._queued_tokens += job.pending_tokens
        self._report_queue()
        assert self._wakeup is not None
        self._wakeup.set()
        try:
            return await job.future
        except asyncio.CancelledError:
            # the caller went away: its texts that are still queued are dropped by _take_batch
            job.future.cancel()
            raise

    # worker ----------------------------------------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._wakeup is not None
        last_end, last_seconds, returners, arrivals_at_end = -math.inf, 0.0, 0, 0
        while True:
            while not self._jobs:
                self._wakeup.clear()
                await self._wakeup.wait()
            # Wait for company: until max_wait after the oldest waiting request arrived, and, while
            # fewer new requests have come in than the batch just finished answered, until a refill
            # window after that batch ended: refill_fraction x its encode time, capped at max_refill_ms
            # and at least max_wait. Clients
            # in a request loop send their next request right after their answer; without the window a
            # busy server settles into alternating half-full batches, and small batches cost far more
            # per text (on CPU above all). The encoder idles at most ~refill_fraction of the time.
            refill = min(self.refill_fraction * last_seconds, self.max_refill)
            refill_until = last_end + max(self.max_wait, refill)
            while self._queued_tokens < self.max_batch_tokens:
                deadline = self._jobs[0].arrival + self.max_wait
                if self._arrivals - arrivals_at_end < returners:
                    deadline = max(deadline, refill_until)
                timeout = deadline - loop.time()
                if timeout <= 0:
                    break
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), timeout)
                except TimeoutError:
                    break
            batch = self._take_batch()
            if not batch:
                continue
            start = loop.time()
            returners = await self._encode(batch)
            last_end, arrivals_at_end = loop.time(), self._arrivals
            last_seconds = last_end - start

    def _take_batch(self) -> list[tuple[_Job, int]]:
        """Pick texts round-robin over waiting jobs until the token budget is spent."""
        for job in [job for job in self._jobs if job.future.done()]:  # cancelled callers
            self._drop(job)
        batch: list[tuple[_Job, int]] = []
        budget = self.max_batch_tokens
        used = 0
        full = False
        while self._jobs and not full:
            progressed = False
            for job in self._jobs:
                if job.exhausted:
                    continue
                cost = int(job.tokens[job.next_index])
                if batch and used + cost > budget:
                    full = True
                    break
                batch.append((job, job.next_index))
                job.next_index += 1
                job.pending_tokens -= cost
                used += cost
                self._queued_inputs -= 1
                self._queued_tokens -= cost
                progressed = True
            self._jobs = deque(job for job in self._jobs if not job.exhausted)
            if not progressed:
                break
        self._report_queue()
        return batch

    def _drop(self, job: _Job) -> None:
        self._queued_inputs -= len(job.texts) - job.next_index
        self._queued_tokens -= job.pending_tokens
        job.next_index = len(job.texts)
        job.pending_tokens = 0
        self._jobs.remove(job)

    async def _encode(self, batch: list[tuple[_Job, int]]) -> int:
        """Encode ``batch`` and hand out its rows; returns how many requests it completed."""
        loop = asyncio.get_running_loop()
        groups: dict[Hashable, list[tuple[_Job, int]]] = {}
        for item in batch:
            groups.setdefault(item[0].key, []).append(item)
        jobs = {job for job, _ in batch}
        self._in_flight = jobs
        start = time.perf_counter()
        try:
            results = await loop.run_in_executor(self._executor, self._encode_groups, groups)
        except Exception as error:  # the encoder failed: fail this batch's requests, keep serving
            logger.exception("encoding a batch of %d texts failed", len(batch))
            for job in jobs:
                self._fail(job, error)
            return len(jobs)
        finally:
            self._in_flight = set()
        seconds = time.perf_counter() - start
        completed = 0
        for key, items in groups.items():
            rows = results[key]
            for (job, index), row in zip(items, rows, strict=True):
                if job.future.done():
                    continue
                if job.rows is None:
                    job.rows = np.empty((len(job.texts), row.shape[-1]), dtype=row.dtype)
                job.rows[index] = row
                job.remaining -= 1
                if job.remaining == 0:
                    job.future.set_result(job.rows)
                    completed += 1
        if self._on_batch is not None:
            self._on_batch(
                inputs=len(batch),
                tokens=sum(int(job.tokens[i]) for job, i in batch),
                requests=len(jobs),
                seconds=seconds,
            )
        return completed

    def _encode_groups(self, groups: dict[Hashable, list[tuple[_Job, int]]]) -> dict[Hashable, np.ndarray]:
        out = {}
        for key, items in groups.items():
            rows: np.ndarray | None = None
            for part in split_outliers([int(job.tokens[index]) for job, index in items], self.forward_rows):
                texts = [items[position][0].texts[items[position][1]] for position in part]
                encoded = np.asarray(self.encode_fn(texts, key))
                if encoded.shape[0] != len(texts):
                    raise RuntimeError(f"encode_fn returned {encoded.shape[0]} rows for {len(texts)} texts")
                if rows is None:
                    rows = np.empty((len(items), *encoded.shape[1:]), dtype=encoded.dtype)
                rows[part] = encoded
            out[key] = rows
        return out

    def _fail(self, job: _Job, error: BaseException) -> None:
        if job in self._jobs:
            self._drop(job)
        if not job.future.done():
            job.future.set_exception(error)
        self._report_queue()

    def _report_queue(self) -> None:
        if self._on_queue is not None:
            self._on_queue(inputs=self._queued_inputs, requests=len(self._jobs))


def split_outliers(tokens: Sequence[int], rows: int, waste: float = 2.0) -> list[list[int]]:
    """Positions of a batch's texts in encode calls: texts that would pad a forward pass first, then the rest.

    Walking the texts longest first in groups of up to ``rows`` (the forward passes ``encode`` will make),
    a group stops early when it would pad more than ``waste`` times its real tokens; such a short group is
    an outlier call of its own. Everything else is one call, so ordinary batches are encoded exactly as
    before (``encode`` sorts and sub-batches them itself). Returns at least one group for non-empty input.
    """
    order = sorted(range(len(tokens)), key=lambda position: -tokens[position])
    outliers: list[list[int]] = []
    rest: list[int] = []
    start = 0
    while start < len(order):
        longest = max(int(tokens[order[start]]), 1)
        group, real = [order[start]], longest
        end = start + 1
        while end < len(order) and len(group) < rows:
            nxt = max(int(tokens[order[end]]), 1)
            if (len(group) + 1) * longest > waste * (real + nxt):
                break
            group.append(order[end])
            real += nxt
            end += 1
        if len(group) < rows and end < len(order):
            outliers.append(group)
        else:
            rest.extend(group)
        start = end
    return outliers + ([rest] if rest else [])
