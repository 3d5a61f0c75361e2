"""Clocks for the simulated units: the wall clock, and a manual one tests move by hand."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol


class Clock(Protocol):
    """Seconds since the epoch, as the unit sees them."""

    def now(self) -> float: ...


class SystemClock:
    def now(self) -> float:
        return time.time()


class ManualClock:
    """A clock that only moves when told to; listeners run after every move.

    Tests use it to let a `commit confirmed` timer expire without waiting.
    """

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self._now = start
        self._listeners: list[Callable[[], None]] = []

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock does not run backwards")
        self._now += seconds
        for listener in list(self._listeners):
            listener()

    def set(self, when: float) -> None:
        self.advance(max(0.0, when - self._now))

    def subscribe(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)
