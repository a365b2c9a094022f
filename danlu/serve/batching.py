"""The micro-batcher: requests that arrive together share one forward pass.

One asyncio task waits until the model thread is free, takes the first waiting job plus every job queued
behind it (up to ``max_batch_size`` inputs), and hands the batch to the single model thread (torch and
ONNX Runtime release the GIL, so the event loop keeps accepting requests meanwhile); each job gets its
slice. While a batch runs, the next one fills up in the queue. When the model was idle and only one job
is waiting, it waits up to ``max_wait_ms`` for company, and only when company is likely: recent batches
held several requests, or requests are being parsed right now (``arriving``). A lone client therefore
pays no waiting time.
A job is never split: one larger than ``max_batch_size`` runs alone. ``max_batch_size=1`` turns
batching off (every request gets its own forward pass).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any


class BatcherClosed(RuntimeError):
    """The server is shutting down and takes no new work."""


@dataclass
class _Job:
    item: Any
    size: int  # number of inputs (rows) in item
    future: asyncio.Future


class MicroBatcher:
    """Merge concurrent jobs into batches for ``run_batch(items) -> results`` (one result per item, in order)."""

    def __init__(self, run_batch: Callable[[list[Any]], Sequence[Any]], *, max_batch_size: int = 64,
                 max_wait_ms: float = 5.0, on_batch: Callable[[int, int, float], None] | None = None):
        if max_batch_size < 1 or max_wait_ms < 0:
            raise ValueError("max_batch_size must be >= 1 and max_wait_ms >= 0")
        self.run_batch, self.max_batch_size, self.max_wait = run_batch, max_batch_size, max_wait_ms / 1000.0
        self.on_batch = on_batch  # (inputs, jobs, seconds) after every forward pass
        self.queued = 0  # inputs waiting, for /healthz
        self.arriving = 0  # requests being parsed that will submit soon (the app counts them)
        self.recent_jobs = 1.0  # moving average of requests per batch: > 1 means clients are concurrent
        self._queue: asyncio.Queue[_Job | None] | None = None
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._closing = False

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done() and not self._closing

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="danlu-model")
        self._closing = False
        self._task = asyncio.create_task(self._loop(), name="danlu-batcher")

    async def submit(self, item: Any, size: int) -> Any:
        """Queue one job and wait for its result; raises what ``run_batch`` raised for its batch."""
        if not self.running or self._queue is None:
            raise BatcherClosed("the server is shutting down")
        future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Job(item, size, future))
        self.queued += size
        return await future

    async def close(self) -> None:
        """Finish every job already queued, then stop: part of a graceful shutdown."""
        if self._task is None or self._queue is None:
            return
        self._closing = True
        self._queue.put_nowait(None)
        await self._task
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        self._task = None

    async def _loop(self) -> None:
        assert self._queue is not None
        queue, loop = self._queue, asyncio.get_running_loop()
        model_free = asyncio.Semaphore(1)
        running: set[asyncio.Task] = set()
        carry: _Job | None = None
        stop = False
        while not stop:
            # Gather only once the model is free: while it runs a batch, the next one fills up in the queue
            # and leaves the moment the model is done (mnist-cnn, 32 clients: the event loop sat idle half
            # the time when it waited for each forward pass before gathering the next batch).
            await model_free.acquire()
            first = carry if carry is not None else await queue.get()
            carry = None
            if first is None:
                model_free.release()
                break
            batch, size = [first], first.size
            backlog = not queue.empty()  # jobs queued behind a busy model: send them now, do not wait
            deadline = loop.time() + self.max_wait
            while size < self.max_batch_size:
                try:
                    job = queue.get_nowait()
                except asyncio.QueueEmpty:
                    remaining = deadline - loop.time()
                    if backlog or remaining <= 0 or not self._company_likely():
                        break
                    try:
                        job = await asyncio.wait_for(queue.get(), remaining)
                    except TimeoutError:
                        break
                if job is None:
                    stop = True  # close() queued this after every real job: run what we hold, then end
                    break
                if size + job.size > self.max_batch_size:
                    carry = job
                    break
                batch.append(job)
                size += job.size
            task = asyncio.create_task(self._run(batch, size))
            running.add(task)
            task.add_done_callback(lambda t: (running.discard(t), model_free.release()))
        if running:
            await asyncio.gather(*running)

    def _company_likely(self) -> bool:
        return self.arriving > 0 or self.recent_jobs > 1.2

    async def _run(self, batch: list[_Job], size: int) -> None:
        self.queued -= size
        self.recent_jobs = 0.8 * self.recent_jobs + 0.2 * len(batch)
        live = [j for j in batch if not j.future.done()]  # a client that hung up needs no answer
        if not live:
            return
        t0 = time.perf_counter()
        try:
            results = await asyncio.get_running_loop().run_in_executor(
                self._executor, self.run_batch, [j.item for j in live])
        except Exception as e:  # a failed batch fails each of its jobs, never the batcher
            for j in live:
                if not j.future.done():
                    j.future.set_exception(e)
            return
        finally:
            if self.on_batch is not None:
                self.on_batch(sum(j.size for j in live), len(live), time.perf_counter() - t0)
        for j, r in zip(live, results, strict=True):
            if not j.future.done():
                j.future.set_result(r)
