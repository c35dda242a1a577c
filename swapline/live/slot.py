"""A newest-item slot: the one place live mode hands frames between threads.

A slot holds at most one item. :meth:`NewestSlot.put` replaces an item nobody took (that item
is *dropped* and counted), so a slow consumer sees the newest item, never a backlog: memory and
delay stay bounded whatever the producer's rate. Live mode has no other queue.
"""

from __future__ import annotations

import threading
import time
from typing import Generic, TypeVar

T = TypeVar("T")

__all__ = ["NewestSlot"]


class NewestSlot(Generic[T]):
    """One item at most, the newest; thread-safe.

    Attributes:
        dropped: items replaced before anyone took them.
        put_count: items put (dropped ones included).
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._item: T | None = None
        self._full = False
        self._closed = False
        self.dropped = 0
        self.put_count = 0

    def put(self, item: T) -> bool:
        """Hold ``item``, replacing an untaken one. Returns True when an item was replaced (a
        drop). After :meth:`close` the item is ignored and False is returned."""
        with self._cond:
            if self._closed:
                return False
            dropped = self._full
            if dropped:
                self.dropped += 1
            self._item, self._full = item, True
            self.put_count += 1
            self._cond.notify()
            return dropped

    def get(self, timeout: float | None = None) -> T | None:
        """Take the item, waiting up to ``timeout`` seconds (``None``: until there is one or the
        slot is closed). Returns None on timeout, or once the slot is closed and empty."""
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        with self._cond:
            while not self._full and not self._closed:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                self._cond.wait(left)
            if not self._full:
                return None
            item, self._item, self._full = self._item, None, False
            return item

    def close(self) -> None:
        """No more items: waiting and later :meth:`get` calls return None once the slot is
        empty (an item already held can still be taken)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        """0 or 1: whether an item waits."""
        return int(self._full)
