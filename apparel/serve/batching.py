"""Fast batched inference for the service: one compiled function, fed by a micro-batcher.

Concurrent requests are gathered into one model call (up to ``max_batch`` images; a request that
finds the model idle waits at most ``max_wait_ms`` for company), run on a worker thread so the event
loop keeps serving, and each request gets its own rows back. Throughput then grows with concurrency
instead of paying the per-call overhead once per request. The queue is bounded (``max_queued``
images): past it ``predict`` raises ``Overloaded`` at once, for the service to answer 503, rather
than answering everyone late; a request that gave up (its deadline passed, its client went away)
is dropped from the queue instead of costing model time.

    >>> from apparel.inference.prediction import Predictor
    >>> from apparel.serve.batching import MicroBatcher, inference_function
    >>> predictor = Predictor.from_dir("runs/reference")
    >>> batcher = MicroBatcher(inference_function(predictor), max_batch=64, max_wait_ms=2)
    >>> probabilities = await batcher.predict(images)      # (N, classes), in an async handler
    >>> batcher.close()
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from apparel.inference.prediction import softmax

# The warm-up's time limit: every batch size up to max_batch takes ~1 s for a 28×28 model, but
# ~40 s for a 224-pixel photo model on two cores; sizes not reached are set up by their first request.
WARM_UP_SECONDS = 10.0


class Overloaded(RuntimeError):
    """The service cannot take this request now: answer 503 and ask the client to come back."""


def inference_function(predictor) -> Callable[[np.ndarray], np.ndarray]:
    """A function from float32 model inputs (N, *predictor.contract.shape) to probabilities
    (N, classes) over the predictor's compiled forward pass (Keras graph or LiteRT), with its first
    call — the one that sets up kernels — made here rather than on a request."""
    forward = predictor.forward()

    def run(images: np.ndarray) -> np.ndarray:
        return softmax(forward(images))

    run(np.zeros((1, *predictor.contract.shape), np.float32))
    return run


def warm_up(infer: Callable[[np.ndarray], np.ndarray], max_batch: int, shape: tuple[int, ...],
            seconds: float = WARM_UP_SECONDS) -> int:
    """Run every batch size from 1 to ``max_batch`` once, inputs of ``shape`` (the contract's):
    the first call of a new shape sets up kernels for it, and no request should wait for that.
    Stops after ``seconds``; returns the largest size warmed up.

    >>> warm_up(app.state.batcher.infer, 64, predictor.contract.shape)
    64
    """
    deadline = time.perf_counter() + seconds
    for size in range(1, max_batch + 1):
        infer(np.zeros((size, *shape), np.float32))
        if time.perf_counter() > deadline:
            return size
    return max_batch


class MicroBatcher:
    """Gathers concurrent ``predict`` calls of one event loop into batches for one worker thread.

    A request that finds the model idle waits at most ``max_wait_ms`` for others to join it (no wait
    once ``max_batch`` images are there); requests that arrive while the model is busy go together
    into the next call as soon as it is free. The batching itself happens on the event loop, so the
    worker thread is woken once per batch, not once per request. ``infer`` maps float32 model
    inputs (N, …) to probabilities (N, classes); ``on_batch(size, seconds)`` is told about each
    model call (the service's metrics). ``max_queued`` bounds the images waiting (``None``: no bound).
    """

    def __init__(
        self,
        infer: Callable[[np.ndarray], np.ndarray],
        *,
        max_batch: int = 64,
        max_wait_ms: float = 2.0,
        on_batch: Callable[[int, float], None] | None = None,
        max_queued: int | None = None,
    ):
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be 0 or more, got {max_wait_ms}")
        self.infer = infer
        self.max_batch = max_batch
        self.max_wait_ms = max_wait_ms
        self.on_batch = on_batch
        self.max_queued = max_queued
        self._executor: ThreadPoolExecutor | None = None
        self._loops: dict[asyncio.AbstractEventLoop, _LoopQueue] = {}

    def start(self) -> None:
        """Start the worker thread (``predict`` also does, on first use)."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="apparel-inference")

    def close(self) -> None:
        """Stop the worker thread after the batch it is running; a later ``predict`` starts a new one."""
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)

    async def predict(self, images: np.ndarray) -> np.ndarray:
        """Probabilities (k, classes) for float32 model inputs (k, …), computed in a shared batch;
        ``Overloaded`` when they would take the queue past ``max_queued`` images."""
        loop = asyncio.get_running_loop()
        pending = self._loops.get(loop)
        if pending is None:
            pending = self._loops[loop] = _LoopQueue()
        if self.max_queued is not None and pending.size + len(images) > self.max_queued:
            raise Overloaded(f"{pending.size:,} images are waiting for the model, the most it queues is "
                             f"{self.max_queued:,}; try again shortly")
        future = loop.create_future()
        pending.items.append((images, future, loop.time()))
        pending.size += len(images)
        if not pending.busy:
            if pending.size >= self.max_batch or self.max_wait_ms == 0:
                self._flush(loop, pending)
            elif pending.timer is None:
                pending.timer = loop.call_later(self.max_wait_ms / 1000, self._flush, loop, pending)
        return await future

    def _flush(self, loop: asyncio.AbstractEventLoop, pending: "_LoopQueue") -> None:
        """Send up to ``max_batch`` images of waiting requests to the worker thread."""
        if pending.timer is not None:
            pending.timer.cancel()
            pending.timer = None
        if pending.busy or not pending.items:
            return
        batch, size = [], 0
        while pending.items and (not batch or size + len(pending.items[0][0]) <= self.max_batch):
            item = pending.items.popleft()
            pending.size -= len(item[0])
            if item[1].done():  # cancelled: the request's deadline passed or its client went away
                continue
            batch.append(item)
            size += len(item[0])
        if not batch:
            return
        pending.busy = True
        self.start()
        images = batch[0][0] if len(batch) == 1 else np.concatenate([item[0] for item in batch])
        done = loop.run_in_executor(self._executor, self._run, images)
        done.add_done_callback(lambda outcome: self._finished(loop, pending, batch, outcome))

    def _run(self, images: np.ndarray) -> np.ndarray:
        started = time.perf_counter()
        probabilities = self.infer(images)
        if self.on_batch is not None:
            self.on_batch(len(images), time.perf_counter() - started)
        return probabilities

    def _finished(self, loop, pending: "_LoopQueue", batch: list, outcome: asyncio.Future) -> None:
        pending.busy = False
        error = outcome.exception() if not outcome.cancelled() else asyncio.CancelledError()
        probabilities = outcome.result() if error is None else None
        offset = 0
        for images, future, _ in batch:
            if not future.done():  # a client that went away has a cancelled future
                if error is not None:
                    future.set_exception(error)
                else:
                    future.set_result(probabilities[offset : offset + len(images)])
            offset += len(images)
        if not pending.items:
            if self._loops.get(loop) is pending:
                del self._loops[loop]
            return
        waited = loop.time() - pending.items[0][2]
        if pending.size >= self.max_batch or waited >= self.max_wait_ms / 1000:
            self._flush(loop, pending)  # these waited while the model was busy: go now
        elif pending.timer is None:
            pending.timer = loop.call_later(self.max_wait_ms / 1000 - waited, self._flush, loop, pending)


@dataclass
class _LoopQueue:
    """The requests of one event loop waiting for the model."""

    items: deque = field(default_factory=deque)  # (images, future, loop time of arrival), oldest first
    size: int = 0  # images in items
    busy: bool = False  # a batch of this loop is running
    timer: asyncio.TimerHandle | None = None  # the pending max_wait flush
