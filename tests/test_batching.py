"""The micro-batcher on its own (``apparel.serve.batching``): a fake model in numpy, no TensorFlow.

The fake model answers each row with the row's own sum, so every request can be checked to get
its own rows back, and it records the size of each call, so the batches can be counted by hand.
A model call that must stay busy waits on an event the test sets (no race against the clock).
"""

import asyncio
import math
import threading
import time
from types import SimpleNamespace

import os

import numpy as np
import pytest

from apparel.serve.batching import MicroBatcher, Overloaded, inference_function, warm_up


# How long a batcher that never answers is waited for. `make mutation` shortens it (many mutants
# hang the batcher, and each waited the whole bound): every run here takes well under 0.5 s.
HANG_S = float(os.environ.get("APPAREL_TEST_HANG_S", "10"))


class FakeModel:
    """Row i of the answer is [sum of row i, 1]; ``calls`` are the batch sizes it was given."""

    def __init__(self, gate: threading.Event | None = None):
        self.calls: list[int] = []
        self.gate = gate

    def __call__(self, images: np.ndarray) -> np.ndarray:
        if self.gate is not None:
            assert self.gate.wait(3 * HANG_S)
        self.calls.append(len(images))
        sums = images.reshape(len(images), -1).sum(axis=1)
        return np.stack([sums, np.ones_like(sums)], axis=1)


def rows(*values: float, size: int = 2) -> np.ndarray:
    """One 2×2 image per value, every pixel that value (so its row sums to 4 × value)."""
    return np.stack([np.full((size, size), value, np.float32) for value in values])


def run(coroutine, bound: float = HANG_S):
    """Run ``coroutine`` to its end; a batcher that never answers fails the test after ``bound`` s."""
    return asyncio.run(asyncio.wait_for(coroutine, bound))


# construction and warm-up


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="^max_batch must be at least 1, got 0$"):
        MicroBatcher(FakeModel(), max_batch=0)
    with pytest.raises(ValueError, match="^max_wait_ms must be 0 or more, got -0.5$"):
        MicroBatcher(FakeModel(), max_wait_ms=-0.5)
    batcher = MicroBatcher(FakeModel(), max_batch=1, max_wait_ms=0)
    assert (batcher.max_batch, batcher.max_wait_ms, batcher.max_queued, batcher.on_batch) == (1, 0, None, None)


def test_defaults():
    model = FakeModel()
    batcher = MicroBatcher(model)
    assert (batcher.infer, batcher.max_batch, batcher.max_wait_ms, batcher.max_queued) == (model, 64, 2.0, None)


def test_warm_up_runs_every_batch_size_once():
    shapes = []
    assert warm_up(lambda images: shapes.append((images.shape, images.dtype, images.sum())), 4, (3, 3)) == 4
    assert shapes == [((size, 3, 3), np.float32, 0.0) for size in (1, 2, 3, 4)]


def test_warm_up_stops_at_its_time_limit():
    sizes = []

    def slow(images):
        sizes.append(len(images))
        time.sleep(0.05)

    assert warm_up(slow, 64, (2,), seconds=0.12) == len(sizes)
    assert 2 <= len(sizes) <= 4 and sizes == list(range(1, len(sizes) + 1))
    sizes.clear()
    assert warm_up(slow, 64, (2,), seconds=0) == 1 and sizes == [1]


def test_inference_function_makes_its_first_call_and_answers_probabilities():
    seen = []

    def forward(images):
        seen.append((images.shape, images.dtype, float(images.sum())))
        return np.tile(np.array([0.0, math.log(3.0)], np.float32), (len(images), 1))

    predictor = SimpleNamespace(forward=lambda: forward, contract=SimpleNamespace(shape=(5, 5, 3)))
    infer = inference_function(predictor)
    assert seen == [((1, 5, 5, 3), np.float32, 0.0)]  # the warm-up call, before any request
    probabilities = infer(np.ones((2, 5, 5, 3), np.float32))
    assert np.allclose(probabilities, [[0.25, 0.75], [0.25, 0.75]])
    assert seen[1] == ((2, 5, 5, 3), np.float32, 150.0)


# batching


def test_one_request_gets_its_rows():
    model, sizes = FakeModel(), []
    batcher = MicroBatcher(model, max_wait_ms=1, on_batch=lambda size, seconds: sizes.append((size, seconds)))
    started = time.perf_counter()
    answer = run(batcher.predict(rows(1, 2, 3)))
    elapsed = time.perf_counter() - started
    batcher.close()
    assert answer.tolist() == [[4, 1], [8, 1], [12, 1]]
    assert model.calls == [3] and [size for size, _ in sizes] == [3]
    assert 0 <= sizes[0][1] <= elapsed  # the model call's own time, inside the request's


def test_concurrent_requests_share_one_call_and_each_gets_its_own_rows():
    model = FakeModel()
    batcher = MicroBatcher(model, max_batch=64, max_wait_ms=50)

    async def three():
        return await asyncio.gather(batcher.predict(rows(1)), batcher.predict(rows(2, 3)), batcher.predict(rows(4, 5, 6)))

    first, second, third = run(three())
    batcher.close()
    assert model.calls == [6]
    assert first.tolist() == [[4, 1]]
    assert second.tolist() == [[8, 1], [12, 1]]
    assert third.tolist() == [[16, 1], [20, 1], [24, 1]]
    assert batcher._loops == {}  # nothing left behind for a loop that is gone


def test_a_full_batch_goes_at_once_and_the_rest_follow_together():
    # max_batch 4: 3 images wait; 3 + 2 reach the limit, so the 3 go alone (3 + 2 > 4);
    # the 2 and the next 2 (4 images, the limit exactly) go together as soon as the model is free.
    model = FakeModel()
    batcher = MicroBatcher(model, max_batch=4, max_wait_ms=10_000)

    async def requests():
        started = time.perf_counter()
        answers = await asyncio.gather(batcher.predict(rows(1, 1, 1)), batcher.predict(rows(2, 2)),
                                       batcher.predict(rows(3, 3)))
        return answers, time.perf_counter() - started

    (a, b, c), seconds = run(requests())
    batcher.close()
    assert model.calls == [3, 4]
    assert seconds < 5  # neither batch waited for the 10 s timer
    assert a[:, 0].tolist() == [4, 4, 4] and b[:, 0].tolist() == [8, 8] and c[:, 0].tolist() == [12, 12]


def test_one_request_of_max_batch_images_goes_at_once():
    model = FakeModel()
    batcher = MicroBatcher(model, max_batch=2, max_wait_ms=10_000)

    async def timed():
        started = time.perf_counter()
        answer = await batcher.predict(rows(1, 2))
        return answer, time.perf_counter() - started

    answer, seconds = run(timed())
    batcher.close()
    assert answer[:, 0].tolist() == [4, 8] and model.calls == [2] and seconds < 5


def test_a_request_larger_than_max_batch_is_not_split():
    model = FakeModel()
    batcher = MicroBatcher(model, max_batch=2, max_wait_ms=0)
    assert run(batcher.predict(rows(1, 2, 3)))[:, 0].tolist() == [4, 8, 12]
    batcher.close()
    assert model.calls == [3]


def test_without_a_wait_each_request_goes_at_once_and_latecomers_go_together():
    model = FakeModel()
    batcher = MicroBatcher(model, max_batch=64, max_wait_ms=0)

    async def three():
        return await asyncio.gather(*(batcher.predict(rows(value)) for value in (1, 2, 3)))

    answers = run(three())
    batcher.close()
    assert model.calls == [1, 2]
    assert [answer[:, 0].tolist() for answer in answers] == [[4], [8], [12]]


def test_a_lone_request_waits_for_company_at_most_max_wait():
    model = FakeModel()
    batcher = MicroBatcher(model, max_batch=64, max_wait_ms=200)

    async def two():
        first = asyncio.ensure_future(batcher.predict(rows(1)))
        await asyncio.sleep(0.02)  # well inside the 200 ms: joins the first request's batch
        second = asyncio.ensure_future(batcher.predict(rows(2)))
        started = time.perf_counter()
        answers = await asyncio.gather(first, second)
        return answers, time.perf_counter() - started

    answers, seconds = run(two())
    batcher.close()
    assert model.calls == [2]
    assert [answer[:, 0].tolist() for answer in answers] == [[4], [8]]
    assert 0.1 < seconds < 10  # the rest of the 200 ms, not at once and not 1,000 times longer


def busy_then_late(max_wait_ms: float, busy_for: float):
    """A full batch sent to a model held busy, a one-row request behind it, the model freed after
    ``busy_for`` s: (model, busy answer, late answer, seconds from the model's release to both answers)."""
    gate = threading.Event()
    model = FakeModel(gate)
    batcher = MicroBatcher(model, max_batch=2, max_wait_ms=max_wait_ms)

    async def scenario():
        busy = asyncio.ensure_future(batcher.predict(rows(1, 1)))  # a full batch: to the model at once
        await asyncio.sleep(0.02)
        late = asyncio.ensure_future(batcher.predict(rows(2)))  # waits: the model is busy
        await asyncio.sleep(busy_for)
        started = time.perf_counter()
        gate.set()
        answers = await asyncio.gather(busy, late)
        return answers, time.perf_counter() - started

    (busy, late), seconds = run(scenario())
    batcher.close()
    return model, busy, late, seconds


def test_requests_that_arrive_while_the_model_is_busy_wait_only_the_rest_of_max_wait():
    model, busy, late, seconds = busy_then_late(max_wait_ms=250, busy_for=0.02)
    assert model.calls == [2, 1]
    assert busy[:, 0].tolist() == [4, 4] and late[:, 0].tolist() == [8]
    # It had waited ~20 ms when the model came free: the rest of the 250 ms, not the whole, not none.
    assert 0.1 < seconds < 10


def test_requests_that_waited_out_max_wait_while_the_model_was_busy_go_as_soon_as_it_is_free():
    model, busy, late, seconds = busy_then_late(max_wait_ms=30, busy_for=0.3)  # ten times max_wait
    assert model.calls == [2, 1] and busy[:, 0].tolist() == [4, 4] and late[:, 0].tolist() == [8]
    assert seconds < 30


# the queue's bound, requests that gave up, errors


def test_a_request_past_max_queued_is_overloaded_at_once():
    model = FakeModel()
    batcher = MicroBatcher(model, max_batch=64, max_wait_ms=50, max_queued=3)

    async def scenario():
        first = asyncio.ensure_future(batcher.predict(rows(1, 2)))
        await asyncio.sleep(0)  # the first is queued, waiting for company
        with pytest.raises(Overloaded) as caught:
            await batcher.predict(rows(3, 4))
        third = await batcher.predict(rows(5))  # 2 + 1: the bound exactly
        return await first, third, str(caught.value)

    first, third, message = run(scenario())
    batcher.close()
    assert message == "2 images are waiting for the model, the most it queues is 3; try again shortly"
    assert model.calls == [3] and first[:, 0].tolist() == [4, 8] and third[:, 0].tolist() == [20]
    with pytest.raises(Overloaded, match="^0 images are waiting for the model, the most it queues is 3;"):
        run(MicroBatcher(model, max_queued=3).predict(rows(1, 2, 3, 4)))
    big = MicroBatcher(model, max_wait_ms=0, max_queued=1_000)
    with pytest.raises(Overloaded, match="^0 images are waiting for the model, the most it queues is 1,000;"):
        run(big.predict(np.zeros((1_001, 2, 2), np.float32)))


def test_a_request_that_gave_up_costs_no_model_time():
    model = FakeModel()
    batcher = MicroBatcher(model, max_batch=64, max_wait_ms=50)

    async def cancelled_then_kept():
        gone = asyncio.ensure_future(batcher.predict(rows(1, 1)))
        await asyncio.sleep(0)
        gone.cancel()
        kept = await batcher.predict(rows(2, 3))
        return gone.cancelled(), kept

    cancelled, kept = run(cancelled_then_kept())
    batcher.close()
    assert cancelled and kept[:, 0].tolist() == [8, 12]
    assert model.calls == [2]  # the cancelled request's two images were never computed


def test_a_batch_of_only_cancelled_requests_runs_nothing():
    model = FakeModel()
    batcher = MicroBatcher(model, max_batch=64, max_wait_ms=5)

    async def scenario():
        gone = asyncio.ensure_future(batcher.predict(rows(1)))
        await asyncio.sleep(0)
        gone.cancel()
        await asyncio.sleep(0.05)  # the timer fires with nothing to do
        return await batcher.predict(rows(2))

    assert run(scenario())[:, 0].tolist() == [8]
    batcher.close()
    assert model.calls == [1]


def test_a_model_error_reaches_every_request_of_the_batch_and_the_next_batch_still_runs():
    calls = []

    def failing(images):
        calls.append(len(images))
        if len(calls) == 1:
            raise RuntimeError("out of memory")
        return np.zeros((len(images), 2))

    batcher = MicroBatcher(failing, max_batch=64, max_wait_ms=50)

    async def scenario():
        answers = await asyncio.gather(batcher.predict(rows(1)), batcher.predict(rows(2, 3)), return_exceptions=True)
        return answers, await batcher.predict(rows(4))

    (first, second), after = run(scenario())
    batcher.close()
    assert isinstance(first, RuntimeError) and str(first) == "out of memory" and second is first
    assert calls == [3, 1] and after.shape == (1, 2)


def test_close_stops_the_worker_and_predict_starts_a_new_one():
    model = FakeModel()
    batcher = MicroBatcher(model, max_wait_ms=0)
    batcher.close()  # closing before any use is harmless
    batcher.start()
    worker = batcher._executor
    batcher.start()
    assert batcher._executor is worker  # start is idempotent
    assert run(batcher.predict(rows(1)))[:, 0].tolist() == [4]
    batcher.close()
    assert batcher._executor is None and worker._shutdown
    assert run(batcher.predict(rows(2)))[:, 0].tolist() == [8]
    assert batcher._executor is not None and batcher._executor is not worker
    batcher.close()
    assert model.calls == [1, 1]


def test_each_event_loop_has_its_own_queue():
    model = FakeModel()
    batcher = MicroBatcher(model, max_wait_ms=0)
    answers = []
    threads = [threading.Thread(target=lambda value=value: answers.append(run(batcher.predict(rows(value)))))
               for value in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    batcher.close()
    assert sorted(answer[0, 0] for answer in answers) == [4, 8]
    assert batcher._loops == {}


def test_the_model_runs_on_the_batcher_s_own_single_worker_thread():
    names = []

    def model(images):
        names.append(threading.current_thread().name)
        return FakeModel()(images)

    batcher = MicroBatcher(model, max_wait_ms=0)
    run(batcher.predict(rows(1)))
    run(batcher.predict(rows(2)))
    batcher.close()
    assert names == ["apparel-inference_0", "apparel-inference_0"]


def test_model_calls_never_overlap_even_from_two_event_loops():
    active, most, lock = [0], [0], threading.Lock()
    second = threading.Event()

    def model(images):
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
            if active[0] > 1:
                second.set()
        second.wait(0.15)  # a second worker, if there were one, would come in meanwhile
        with lock:
            active[0] -= 1
        return FakeModel()(images)

    batcher = MicroBatcher(model, max_wait_ms=0)
    barrier = threading.Barrier(2)
    answers = []

    def client(value):
        barrier.wait(HANG_S)
        answers.append(run(batcher.predict(rows(value)))[0, 0])

    threads = [threading.Thread(target=client, args=(value,)) for value in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    batcher.close()
    assert sorted(answers) == [4, 8] and most[0] == 1


def test_a_batch_takes_waiting_requests_only_up_to_max_batch_images():
    gate = threading.Event()
    model = FakeModel(gate)
    batcher = MicroBatcher(model, max_batch=2, max_wait_ms=50)

    async def scenario():
        busy = asyncio.ensure_future(batcher.predict(rows(1, 1)))  # full: to the model at once
        await asyncio.sleep(0.01)
        waiting = [asyncio.ensure_future(batcher.predict(rows(value))) for value in (2, 3, 4)]
        await asyncio.sleep(0.01)
        gate.set()
        return await asyncio.gather(busy, *waiting)

    answers = run(scenario())
    batcher.close()
    assert model.calls == [2, 2, 1]  # 1 + 1 images, then the last one: never 3 in a call of max_batch 2
    assert [answer[:, 0].tolist() for answer in answers] == [[4, 4], [8], [12], [16]]


def test_close_waits_for_the_batch_that_is_running():
    gate, entered = threading.Event(), threading.Event()
    order = []

    def model(images):
        entered.set()
        assert gate.wait(30)
        order.append("model done")
        return FakeModel()(images)

    batcher = MicroBatcher(model, max_wait_ms=0)
    client = threading.Thread(target=lambda: run(batcher.predict(rows(1))))
    client.start()
    assert entered.wait(HANG_S)
    closer = threading.Thread(target=lambda: (batcher.close(), order.append("closed")))
    closer.start()
    closer.join(0.2)
    assert closer.is_alive()  # still waiting for the model
    gate.set()
    closer.join(HANG_S)
    client.join(HANG_S)
    assert order == ["model done", "closed"]
