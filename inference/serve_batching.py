"""Dynamic batching for the extraction service: concurrent requests share one extract call.

A request's texts join a queue. A batch waits while requests keep arriving (until none came for
`window_s`, at most MAX_WINDOWS windows after its first request); then up to `max_texts` texts
(whole requests, in arrival order) go to `extractor.extract` in ONE call on the one decode
thread, and each request gets its own slice of the answers. The event loop never decodes, so
/health and request parsing stay responsive while a batch runs.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any

# The longest a batch waits for more requests, in windows after its first request.
MAX_WINDOWS = 4


class Batcher:
    def __init__(self, extractor: Any, window_s: float, max_texts: int) -> None:
        self.extractor, self.window_s, self.max_texts = extractor, window_s, max_texts
        # (texts, future for their results, arrival time), oldest first
        self.pending: deque[tuple[list[str], asyncio.Future, float]] = deque()
        self.decoding_texts = 0
        self.batches_decoded = 0  # extract calls made (one per batch)
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        # One thread: one model, one decode at a time.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="decode")

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def queued_texts(self) -> int:
        return sum(len(texts) for texts, _, _ in self.pending)

    def start(self) -> None:
        """Start the batching loop on the running event loop."""
        self._wakeup = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for _, future, _ in self.pending:
            if not future.done():
                future.set_exception(RuntimeError("server shutting down"))
        self.pending.clear()
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def submit(self, texts: list[str]) -> list[dict[str, Any]]:
        """The extraction results of `texts`, decoded together with whatever else is waiting."""
        if not self.running or self._wakeup is None:
            raise RuntimeError("the batching loop is not running")
        future = asyncio.get_running_loop().create_future()
        self.pending.append((texts, future, time.monotonic()))
        self._wakeup.set()
        return await future

    def _take_batch(self) -> list[tuple[list[str], asyncio.Future, float]]:
        batch, count = [], 0
        while self.pending and (not batch or count + len(self.pending[0][0]) <= self.max_texts):
            item = self.pending.popleft()
            if item[1].done():  # its request was cancelled while waiting
                continue
            batch.append(item)
            count += len(item[0])
        return batch

    async def _gather(self) -> None:
        """Wait while requests keep coming: until none has arrived for a window, the batch is
        full, or MAX_WINDOWS windows have passed since its first request (bounded latency)."""
        first_arrival = self.pending[0][2] if self.pending else time.monotonic()
        while self.pending and self.queued_texts < self.max_texts:
            last_arrival = self.pending[-1][2]
            until = min(last_arrival + self.window_s, first_arrival + MAX_WINDOWS * self.window_s)
            wait = until - time.monotonic()
            if wait <= 0:
                return
            await asyncio.sleep(wait)

    async def _run(self) -> None:
        assert self._wakeup is not None
        loop = asyncio.get_running_loop()
        while True:
            if not self.pending:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            await self._gather()
            batch = self._take_batch()
            if not batch:
                continue
            texts = [text for item_texts, _, _ in batch for text in item_texts]
            self.decoding_texts = len(texts)
            try:
                results = await loop.run_in_executor(self._executor, self.extractor.extract, texts)
                if len(results) != len(texts):
                    raise RuntimeError(f"{len(results)} results for {len(texts)} texts")
            except Exception as error:  # noqa: BLE001 - each waiting request reports it
                for _, future, _ in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            finally:
                self.decoding_texts = 0
                self.batches_decoded += 1
            start = 0
            for item_texts, future, _ in batch:
                if not future.done():
                    future.set_result(results[start : start + len(item_texts)])
                start += len(item_texts)
