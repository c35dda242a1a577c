"""The staged pipeline: order, batching, bounded memory, error and interrupt propagation."""

from __future__ import annotations

import threading
import time

import pytest

from swapline.pipeline.stages import Pipeline, Stage


def _threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("swapline-")}


@pytest.fixture(autouse=True)
def no_thread_left_behind():  # noqa: ANN201
    """Every pipeline thread a test starts has ended when its run() returns or raises."""
    before = _threads()
    yield
    assert not (_threads() - before)


def test_items_keep_their_order_through_batched_stages() -> None:
    out: list[int] = []
    stages = [Stage("double", lambda b: [x * 2 for x in b], batch_size=5, queue_size=3),
              Stage("inc", lambda b: [x + 1 for x in b], queue_size=2)]
    p = Pipeline(range(200), stages, out.append)
    p.run()
    assert out == [2 * x + 1 for x in range(200)]
    m = {s.name: s for s in p.metrics()}
    assert m["double"].items == 200 and m["double"].batches < 200 and m["encode"].items == 200


def test_a_stage_may_hold_items_back_and_flush_them() -> None:
    held: list[int] = []

    def pairs(batch: list[int]) -> list[tuple[int, int]]:
        held.extend(batch)
        out = []
        while len(held) >= 2:
            out.append((held.pop(0), held.pop(0)))
        return out

    out: list[object] = []
    Pipeline(range(5), [Stage("pairs", pairs, flush=lambda: [tuple(held)])], out.append).run()
    assert out == [(0, 1), (2, 3), (4,)]


def test_memory_is_bounded_by_the_queues() -> None:
    """The source is never read far ahead of the sink: at most the queues' capacity."""
    produced = 0
    ahead = []

    def source():  # noqa: ANN202
        nonlocal produced
        for i in range(300):
            produced += 1
            yield i

    def sink(item: int) -> None:
        ahead.append(produced - item)
        time.sleep(0.001)  # a slow encoder

    stages = [Stage("a", lambda b: b, batch_size=4, queue_size=4), Stage("b", lambda b: b, queue_size=4)]
    Pipeline(source(), stages, sink).run()
    capacity = 4 + 4 + 4 + 4 + 3  # queues, the output queue, one batch and items in hand
    assert max(ahead) <= capacity


def test_a_stage_with_several_workers_keeps_the_order_and_overlaps() -> None:
    """Items that take uneven times come out in order; four workers sleeping 10 ms an item get
    through 40 items well before one worker would (400 ms)."""
    seen: set[str] = set()

    def slow(batch: list[int]) -> list[int]:
        seen.add(threading.current_thread().name)
        time.sleep(0.01 if batch[0] % 3 else 0.02)  # uneven: later items often finish first
        return [batch[0] * 10, batch[0] * 10 + 1] if batch[0] % 7 == 0 else [batch[0] * 10]

    out: list[int] = []
    stages = [Stage("slow", slow, workers=4, queue_size=4), Stage("after", lambda b: b)]
    p = Pipeline(range(40), stages, out.append)
    t0 = time.perf_counter()
    p.run()
    elapsed = time.perf_counter() - t0
    assert out == [y for x in range(40) for y in ([x * 10, x * 10 + 1] if x % 7 == 0 else [x * 10])]
    assert len(seen) == 4 and elapsed < 0.4
    m = {s.name: s for s in p.metrics()}
    assert m["slow"].items == 40 and m["slow"].busy_s >= 0.4  # the workers' time, added up
    with pytest.raises(ValueError, match="one item at a time"):
        Stage("bad", slow, workers=2, batch_size=4)


def test_an_error_in_one_of_several_workers_stops_everything() -> None:
    def boom(batch: list[int]) -> list[int]:
        if batch[0] == 20:
            raise ValueError("bad frame 20")
        time.sleep(0.002)
        return batch

    consumed: list[int] = []
    p = Pipeline(range(10_000), [Stage("boom", boom, workers=3)], consumed.append)
    with pytest.raises(ValueError, match="bad frame 20"):
        p.run()
    assert consumed == list(range(len(consumed))) and len(consumed) <= 20


def test_an_error_in_a_stage_stops_everything_and_reaches_the_caller() -> None:
    consumed = []

    def boom(batch: list[int]) -> list[int]:
        if 50 in batch:
            raise ValueError("bad frame 50")
        return batch

    def endless():  # noqa: ANN202
        i = 0
        while True:
            yield i
            i += 1

    p = Pipeline(endless(), [Stage("boom", boom), Stage("after", lambda b: b)], consumed.append)
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match="bad frame 50"):
        p.run()
    assert time.perf_counter() - t0 < 5
    assert consumed == list(range(len(consumed))) and len(consumed) <= 50  # never past the bad item


def test_an_interrupt_in_the_caller_stops_the_stages() -> None:
    def sink(item: int) -> None:
        if item == 10:
            raise KeyboardInterrupt

    p = Pipeline(iter(range(10**9)), [Stage("s", lambda b: b)], sink)
    with pytest.raises(KeyboardInterrupt):
        p.run()


def test_an_error_in_the_source_reaches_the_caller() -> None:
    def source():  # noqa: ANN202
        yield 1
        raise OSError("corrupt input")

    with pytest.raises(OSError, match="corrupt input"):
        Pipeline(source(), [Stage("s", lambda b: b)], lambda x: None).run()


def test_inline_run_gives_what_the_threads_give() -> None:
    stages = [Stage("double", lambda b: [x * 2 for x in b], batch_size=3), Stage("inc", lambda b: [x + 1 for x in b])]
    threaded: list[int] = []
    Pipeline(range(10), stages, threaded.append).run()
    inline: list[int] = []
    Pipeline(range(10), [Stage("double", lambda b: [x * 2 for x in b], batch_size=3),
                         Stage("inc", lambda b: [x + 1 for x in b])], inline.append).run_inline()
    assert inline == threaded == [2 * x + 1 for x in range(10)]
