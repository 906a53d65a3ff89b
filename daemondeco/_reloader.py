"""The reload thread: it exists only while a reload runs (issue 20).

A SIGHUP handler only asks for a reload; the reload runs in a thread of its
own ("daemondeco-reload"), never inside the handler, which may have
interrupted the main thread in the middle of a write to the very stream the
reload flushes. A thread that stayed would make the daemon multi-threaded for
the rest of its life: every later ``os.fork()`` in it (a ``process_daemonize``
worker, a ``multiprocessing`` fork, ``subprocess`` with a ``preexec_fn``)
would copy a process with a thread in it, which CPython 3.12+ warns about
(``DeprecationWarning: This process ... is multi-threaded``; an error under
``-W error``). So the thread is started by a request and leaves when no
request waits, and a fork waits (a few seconds at most) for a running reload
to end before it copies the process.

The handler takes no lock that another thread may hold: it counts the request
(handlers run in the main thread only), then takes the *token* (a lock held by
the running thread) without waiting, and starts a thread only when it got it.
The thread releases the token when it has handled every request counted, then
looks again: a request that came in between finds either the token free (its
handler starts a thread) or this thread taking it back. (No import happens in
the handler: a second SIGHUP during an import would find the module half made.)
"""

from __future__ import annotations

import _thread
import os
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable

__all__ = ["Reloader"]

NAME = "daemondeco-reload"

# How long a fork waits for a running reload to end before it goes on anyway
# (then CPython's own warning says, rightly, that a thread runs).
FORK_WAIT = 5.0

_current: Reloader | None = None  # this process's reloader, for the fork hooks
_hooked = False


class Reloader:
    """Runs *reload* in a short-lived thread at each request (coalesced)."""

    def __init__(self, reload: Callable[[], None]) -> None:
        global _current
        self._reload = reload
        self.owner = os.getpid()
        self._requests = 0  # counted by the handler (the main thread)
        self._handled = 0  # the count the last reload started from
        self._token = _thread.allocate_lock()  # held while a reload thread runs, or across a fork
        self._thread = 0  # the running thread's ident
        self._tid = 0  # the last thread's kernel id, until it is seen gone
        self._held_for_fork = False
        _current = self
        _hook_forks()

    def request(self) -> None:
        """Ask for a reload and return at once (safe in a signal handler)."""
        self._requests += 1
        self._start()

    def _start(self) -> None:
        if self._token.acquire(False):
            try:
                # _thread, not threading: starting a threading.Thread takes
                # locks the interrupted main thread may be holding.
                _thread.start_new_thread(self._loop, ())
            except BaseException:  # pragma: no cover - no thread could be started
                self._token.release()
                raise

    def _loop(self) -> None:  # pragma: no cover - a _thread thread, which coverage's tracer does not follow
        import threading

        self._thread, self._tid = _thread.get_ident(), _thread.get_native_id()
        while True:
            # Registered under a name of ours, so that a worker started during a
            # reload does not warn about it (the engine leaves out "daemondeco-" threads).
            me = threading.current_thread()
            me.name = NAME
            try:
                while self._pending():  # all pending requests at once
                    self._handled = self._requests
                    self._reload()
            finally:
                _forget(threading, me)
                self._thread = 0
                self._token.release()
            if not (self._pending() and self._token.acquire(False)):
                return
            self._thread = _thread.get_ident()

    def _pending(self) -> bool:
        return self._handled != self._requests

    # -- around a fork in this process ----------------------------------------

    def before_fork(self) -> None:
        if self.owner != os.getpid() or self._thread == _thread.get_ident():
            return  # a child's copy, or the reload itself forks: nothing to wait for
        deadline = time.monotonic() + FORK_WAIT
        self._held_for_fork = self._token.acquire(timeout=FORK_WAIT)
        if self._held_for_fork and self._tid:
            # The reload is over; the thread is leaving, but the kernel (and
            # CPython's count of threads at fork) sees it until it is gone.
            interval = 0.0001
            while os.path.exists(f"/proc/self/task/{self._tid}") and time.monotonic() < deadline:
                time.sleep(interval)  # (without the GIL: the thread can finish)
                interval = min(interval * 2, 0.01)
            self._tid = 0

    def after_fork_in_parent(self) -> None:
        if not self._held_for_fork:
            return
        self._held_for_fork = False
        self._token.release()
        if self._pending():  # pragma: no cover - a SIGHUP arrived while the fork held the token
            self._start()

    def after_fork_in_child(self) -> None:
        global _current
        if self.owner != os.getpid():
            _current = None  # the child makes its own at its first request


def _forget(threading: object, me: object) -> None:  # pragma: no cover - called by _loop only
    """Take the thread's ``threading`` entry out as it leaves (3.10-3.12 keep it forever)."""
    lock = getattr(threading, "_active_limbo_lock", None)
    active = getattr(threading, "_active", None)
    if lock is None or not isinstance(active, dict):  # another threading
        return
    with lock:
        ident = _thread.get_ident()
        if active.get(ident) is me:
            del active[ident]


def _before_fork() -> None:
    if _current is not None:
        _current.before_fork()


def _after_fork_in_parent() -> None:
    if _current is not None:
        _current.after_fork_in_parent()


def _after_fork_in_child() -> None:
    if _current is not None:
        _current.after_fork_in_child()


def _hook_forks() -> None:
    """Once per process (the hooks are inherited by its children)."""
    global _hooked
    if not _hooked:
        _hooked = True
        os.register_at_fork(
            before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child
        )
