"""Call possibly-hanging functions with one shared deadline, on daemon threads, never blocking past it.

A source that hangs (a wedged NVML driver, a docker socket that never answers) must not freeze the
console or the scheduler. `Bounded.submit()` starts the call on a daemon thread and returns a
`Pending`; `Pending.result(deadline)` waits until that monotonic deadline at most. While an earlier
call of the same source is still stuck, no new thread is started (no pile-up): the hang is reported.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class CallTimedOut(Exception):
    """The call did not return by its deadline (or an earlier call is still stuck)."""


class Pending(Generic[T]):
    """One in-flight call."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.done = threading.Event()
        self.value: T | None = None
        self.error: BaseException | None = None
        self.started = time.monotonic()

    def result(self, deadline: float) -> T:
        if not self.done.wait(max(0.0, deadline - time.monotonic())):
            raise CallTimedOut(f"{self.name} did not answer within {time.monotonic() - self.started:.1f} s")
        if self.error is not None:
            raise self.error
        return self.value  # type: ignore[return-value]


class Bounded(Generic[T]):
    """Wraps one zero-argument function so each call runs on a daemon thread."""

    def __init__(self, fn: Callable[[], T], name: str = "source") -> None:
        self.fn, self.name = fn, name
        self._inflight: Pending[T] | None = None
        self._lock = threading.Lock()

    def submit(self) -> Pending[T]:
        with self._lock:
            stuck = self._inflight
            if stuck is not None and not stuck.done.is_set():
                return stuck  # still hung: wait on the same call, start nothing new
            pending: Pending[T] = Pending(self.name)
            self._inflight = pending

        def work() -> None:
            try:
                pending.value = self.fn()
            except BaseException as exc:  # handed to the caller by result(), never swallowed
                pending.error = exc
            finally:
                pending.done.set()

        threading.Thread(target=work, name=f"bounded-{self.name}", daemon=True).start()
        return pending

    def __call__(self, timeout: float = 1.0) -> T:
        return self.submit().result(time.monotonic() + timeout)
