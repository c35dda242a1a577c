"""Stages: worker threads joined by bounded queues, each working on batches, in frame order.

A pipeline is a chain ``source → stage → stage → … → sink``. Every stage owns one thread (or
several, see :class:`Stage`) and one bounded input queue, so memory is bounded by the queue sizes,
not by the length of the video. Items keep their order (FIFO queues; a stage with several workers
hands its results on in the order its items came). The first error in any stage, or a
call to :meth:`Pipeline.cancel`, stops every stage promptly; :meth:`Pipeline.run` then re-raises
the error in the caller's thread.

Heavy work (ONNX Runtime, OpenCV, numpy, libav) releases the GIL, so stages really overlap.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

_END = object()  # end of stream marker, passed down the chain


@dataclass
class StageMetrics:
    """What one stage did: busy seconds, items, batches and the deepest its input queue got."""

    name: str
    busy_s: float = 0.0
    items: int = 0
    batches: int = 0
    max_queue: int = 0
    waits: list[int] = field(default_factory=list)  # queue depth seen at each batch (for reports)


def _batches(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


class Cancelled(Exception):
    """Raised inside stages when the pipeline stops because of another stage or the caller."""


class Stage:
    """One worker: ``fn`` maps a batch (list) of items to a list of output items.

    ``fn`` may return fewer or more items than it got (a stage may hold items back, e.g. to
    reorder, or flush at the end: ``flush`` is called once after the last batch).

    ``workers`` > 1: that many threads call ``fn`` on one item each at the same time (``fn`` must
    then keep no state that depends on the order of items); their results are handed on in the
    order the items came, so the next stage sees the same sequence as with one worker. Such a
    stage takes no batches and no ``flush``. Its ``busy_s`` adds up the workers' time.
    """

    def __init__(self, name: str, fn: Callable[[list[Any]], Sequence[Any]], *, batch_size: int = 1,
                 queue_size: int = 4, flush: Callable[[], Sequence[Any]] | None = None, workers: int = 1):
        self.name = name
        self.fn = fn
        self.flush = flush
        self.batch_size = max(1, batch_size)
        self.workers = max(1, workers)
        if self.workers > 1 and (self.batch_size > 1 or flush is not None):
            raise ValueError(f"stage {name}: several workers take one item at a time and keep no tail to flush")
        self.input: queue.Queue[Any] = queue.Queue(maxsize=max(1, queue_size))
        self.metrics = StageMetrics(name)
        # several workers: items are numbered as they are taken, results handed on by number
        self._take = threading.Lock()
        self._taken = 0
        self._ended = False
        self._order = threading.Condition()
        self._finished: dict[int, Sequence[Any]] = {}
        self._next = 0
        self._running = self.workers


class Pipeline:
    """Runs ``source`` through ``stages`` into ``sink``, each on its own thread.

    Args:
        source: yields the items (e.g. decoded frames); iterated on a thread of its own.
        stages: the chain, in order.
        sink: called with each final item, on the caller's thread (e.g. encode + progress).
    """

    def __init__(self, source: Iterable[Any], stages: Sequence[Stage], sink: Callable[[Any], None]):
        self.source = source
        self.stages = list(stages)
        self.sink = sink
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self._out: queue.Queue[Any] = queue.Queue(maxsize=max(1, self.stages[-1].input.maxsize if stages else 4))
        self.source_metrics = StageMetrics("decode")
        self.sink_metrics = StageMetrics("encode")

    # -- control ------------------------------------------------------------------------------
    def cancel(self, error: BaseException | None = None) -> None:
        """Stop every stage soon; ``error`` (the first one given) is re-raised by :meth:`run`."""
        with self._lock:
            if error is not None and self._error is None:
                self._error = error
        self._stop.set()

    @property
    def cancelled(self) -> bool:
        return self._stop.is_set()

    def _put(self, q: queue.Queue[Any], item: Any) -> None:
        """Put with a timeout loop so a stopped pipeline never blocks forever."""
        while True:
            if self._stop.is_set():
                raise Cancelled
            try:
                q.put(item, timeout=0.05)
                return
            except queue.Full:
                continue

    def _get(self, q: queue.Queue[Any]) -> Any:
        while True:
            if self._stop.is_set():
                raise Cancelled
            try:
                return q.get(timeout=0.05)
            except queue.Empty:
                continue

    # -- workers ------------------------------------------------------------------------------
    def _feed(self) -> None:
        first = self.stages[0].input if self.stages else self._out
        m = self.source_metrics
        try:
            it = iter(self.source)
            while True:
                t0 = time.perf_counter()
                try:
                    item = next(it)
                except StopIteration:
                    break
                m.busy_s += time.perf_counter() - t0
                m.items += 1
                self._put(first, item)
            self._put(first, _END)
        except Cancelled:
            pass
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            self.cancel(exc)
        finally:
            close = getattr(self.source, "close", None)
            if callable(close) and self._stop.is_set():
                try:
                    close()
                except Exception:  # noqa: BLE001 - already stopping for another reason
                    pass

    def _work(self, index: int) -> None:
        stage = self.stages[index]
        out = self.stages[index + 1].input if index + 1 < len(self.stages) else self._out
        m = stage.metrics
        try:
            done = False
            while not done:
                batch = [self._get(stage.input)]
                while len(batch) < stage.batch_size and batch[-1] is not _END:
                    try:
                        batch.append(stage.input.get_nowait())
                    except queue.Empty:
                        break
                if batch[-1] is _END:
                    batch.pop()
                    done = True
                depth = stage.input.qsize()
                m.max_queue = max(m.max_queue, depth + len(batch))
                if batch:
                    t0 = time.perf_counter()
                    results = stage.fn(batch)
                    m.busy_s += time.perf_counter() - t0
                    m.items += len(batch)
                    m.batches += 1
                    for r in results:
                        self._put(out, r)
            if stage.flush is not None:
                t0 = time.perf_counter()
                tail = stage.flush()
                m.busy_s += time.perf_counter() - t0
                for r in tail:
                    self._put(out, r)
            self._put(out, _END)
        except Cancelled:
            pass
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            self.cancel(exc)

    def _work_parallel(self, index: int) -> None:
        """One of a stage's several workers (see :class:`Stage`)."""
        stage = self.stages[index]
        out = self.stages[index + 1].input if index + 1 < len(self.stages) else self._out
        m = stage.metrics
        try:
            while True:
                with stage._take:  # an item and its number, together
                    if stage._ended:
                        break
                    item = self._get(stage.input)
                    number = stage._taken
                    stage._taken += 1
                    if item is _END:
                        stage._ended = True
                        break
                    m.max_queue = max(m.max_queue, stage.input.qsize() + 1)
                t0 = time.perf_counter()
                results = stage.fn([item])
                busy = time.perf_counter() - t0
                with stage._order:
                    m.busy_s += busy
                    m.items += 1
                    m.batches += 1
                    stage._finished[number] = results
                    while stage._next in stage._finished:  # hand on every result now in order
                        for r in stage._finished.pop(stage._next):
                            self._put(out, r)
                        stage._next += 1
            with stage._order:
                stage._running -= 1
                last = stage._running == 0
            if last:  # every item taken was handed on by the worker that took it
                self._put(out, _END)
        except Cancelled:
            pass
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            self.cancel(exc)

    def run(self) -> None:
        """Run to the end (or the first error / cancellation) and join every thread.

        Raises the first stage error; :class:`KeyboardInterrupt` in the caller cancels the stages
        and is re-raised once they have stopped.
        """
        threads = [threading.Thread(target=self._feed, name="swapline-decode", daemon=True)]
        for i, s in enumerate(self.stages):
            if s.workers == 1:
                threads.append(threading.Thread(target=self._work, args=(i,), name=f"swapline-{s.name}", daemon=True))
            else:
                threads += [threading.Thread(target=self._work_parallel, args=(i,), name=f"swapline-{s.name}-{w}",
                                             daemon=True) for w in range(s.workers)]
        for t in threads:
            t.start()
        try:
            while True:
                item = self._get(self._out)
                if item is _END:
                    break
                t0 = time.perf_counter()
                self.sink(item)
                self.sink_metrics.busy_s += time.perf_counter() - t0
                self.sink_metrics.items += 1
        except Cancelled:
            pass
        except BaseException as exc:
            self.cancel(exc)
        finally:
            for t in threads:
                t.join(timeout=10.0)
        if self._error is not None:
            raise self._error

    def run_inline(self) -> None:
        """Run every item through the same stages on the caller's thread, one after another (for
        a single image: no threads to start and stop, same results)."""
        for item in self.source:
            items = [item]
            for stage in self.stages:
                t0 = time.perf_counter()
                items = [out for batch in _batches(items, stage.batch_size) for out in stage.fn(batch)]
                if stage.flush is not None:
                    items += list(stage.flush())
                stage.metrics.busy_s += time.perf_counter() - t0
                stage.metrics.items += 1
            for out in items:
                self.sink(out)
                self.sink_metrics.items += 1

    def metrics(self) -> list[StageMetrics]:
        """Per-stage figures, decode first and encode (the sink) last."""
        return [self.source_metrics, *(s.metrics for s in self.stages), self.sink_metrics]
