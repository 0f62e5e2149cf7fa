"""The engine thread's loop: timers, file readers and cross-thread calls.

A small selector loop instead of asyncio: pyroute2's sync API runs its own
asyncio core and refuses to run inside a running event loop, and protocol
engines here are plain callbacks around sans-I/O cores.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import ThreadPoolExecutor
import heapq
import itertools
import logging
import os
import selectors
import threading
import time
from typing import Any
from typing import TypeVar

T = TypeVar("T")
log = logging.getLogger("routerd.loop")
#: The loop wakes at least this often, so the heartbeat shows it is alive.
MAX_SLEEP = 0.5


class TimerHandle:
    """A scheduled call; ``cancel()`` is safe from the loop thread."""

    __slots__ = ("args", "callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.when = when
        self.callback = callback
        self.args = args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class EngineLoop:
    """Run callbacks on one thread. Only ``call_soon_threadsafe`` and ``submit``
    may be used from other threads."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, workers: int = 4) -> None:
        self.clock = clock
        self._selector = selectors.DefaultSelector()
        self._timers: list[tuple[float, int, TimerHandle]] = []
        self._seq = itertools.count()
        self._ready: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="engine-worker")
        self.heartbeat = clock()
        self.callback_errors = 0
        self.last_error: str | None = None

    # -- scheduling -------------------------------------------------------
    def call_at(self, when: float, callback: Callable[..., Any], *args: Any) -> TimerHandle:
        handle = TimerHandle(when, callback, args)
        heapq.heappush(self._timers, (when, next(self._seq), handle))
        return handle

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> TimerHandle:
        return self.call_at(self.clock() + max(0.0, delay), callback, *args)

    def call_soon_threadsafe(self, callback: Callable[..., Any], *args: Any) -> None:
        with self._lock:
            self._ready.append((callback, args))
        try:
            os.write(self._wake_w, b"\0")
        except BlockingIOError:
            pass  # the pipe is full of wake-ups already
        except OSError:
            pass  # closed during shutdown

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        """Run ``fn`` on the loop thread; the future carries its result."""
        fut: Future[T] = Future()

        def run() -> None:
            if not fut.set_running_or_notify_cancel():
                return
            try:
                fut.set_result(fn(*args))
            except BaseException as exc:
                fut.set_exception(exc)

        if self.in_loop_thread():
            run()
        else:
            self.call_soon_threadsafe(run)
        return fut

    def run_in_worker(
        self,
        fn: Callable[..., T],
        *args: Any,
        on_done: Callable[[Future[T]], None] | None = None,
    ) -> Future[T]:
        """Run blocking ``fn`` on a worker thread; ``on_done`` runs on the loop thread."""
        fut = self._pool.submit(fn, *args)
        if on_done is not None:
            fut.add_done_callback(lambda f: self.call_soon_threadsafe(on_done, f))
        return fut

    def add_reader(self, fileobj: Any, callback: Callable[[], Any]) -> None:
        self._selector.register(fileobj, selectors.EVENT_READ, callback)

    def remove_reader(self, fileobj: Any) -> None:
        try:
            self._selector.unregister(fileobj)
        except (KeyError, ValueError):
            pass

    # -- running ----------------------------------------------------------
    def in_loop_thread(self) -> bool:
        return self._thread is threading.current_thread()

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start_thread(self, name: str = "engine") -> threading.Thread:
        self._thread = threading.Thread(target=self.run_forever, name=name, daemon=True)
        self._thread.start()
        return self._thread

    def stop(self) -> None:
        """Ask the loop to return after the current iteration (any thread)."""
        self._stopping = True
        self.call_soon_threadsafe(lambda: None)

    def join(self, timeout: float | None = None) -> bool:
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._selector.close()
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass

    def _invoke(self, callback: Callable[..., Any], args: tuple[Any, ...]) -> None:
        try:
            callback(*args)
        except Exception as exc:
            # An engine bug must not kill the engine thread: count it, log it,
            # keep serving (healthz stays green; status shows the error count).
            self.callback_errors += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.exception("engine callback %r failed", callback)

    def run_forever(self) -> None:
        if self._thread is None:
            self._thread = threading.current_thread()
        while not self._stopping:
            self.run_once()

    def run_once(self) -> None:
        now = self.clock()
        self.heartbeat = now
        timeout = MAX_SLEEP
        with self._lock:
            if self._ready:
                timeout = 0.0
        while self._timers and self._timers[0][2].cancelled:
            heapq.heappop(self._timers)
        if self._timers:
            timeout = min(timeout, max(0.0, self._timers[0][0] - now))
        for key, _ in self._selector.select(timeout):
            if key.data is None:
                try:
                    while os.read(self._wake_r, 4096):
                        pass
                except BlockingIOError:
                    pass
                continue
            self._invoke(key.data, ())
        with self._lock:
            ready, self._ready = self._ready, []
        for callback, args in ready:
            self._invoke(callback, args)
        now = self.clock()
        while self._timers and self._timers[0][0] <= now:
            _, _, handle = heapq.heappop(self._timers)
            if not handle.cancelled:
                self._invoke(handle.callback, handle.args)
