"""Stopping and inspecting daemons from outside, and the DaemonProcess handle.

The pidfile lock is the source of truth: a pid is only signalled while its
pidfile is locked, and a stop is complete when the lock is released. Waiting
is event-driven: a pidfd wakes us when the process exits; if a forked child
of the daemon still holds the lock, a helper thread blocks in ``flock``.
"""

from __future__ import annotations

import os
import time

from . import _proc
from ._pidfile import Pidfile

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable

try:
    import fcntl
except ImportError:  # pragma: no cover - non-POSIX
    fcntl = None  # type: ignore[assignment]

__all__ = ["DaemonProcess", "status_pidfile", "stop_pidfile", "terminate"]

# signal numbers, fixed on every POSIX system (importing signal costs ~1 ms)
_SIGTERM, _SIGKILL = 15, 9
_KILL_GRACE = 5.0  # after SIGKILL the kernel needs moments, unless the process is stuck in D state


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _escalate(pid: int, start_time: int | None, timeout: float, gone: Callable[[float], bool]) -> bool:
    """SIGTERM, ``gone(timeout)``; then SIGKILL and ``gone`` again. True once gone.

    SIGKILL goes only to the very process we sent SIGTERM to (same pid and
    start time): it may have let go of its pidfile lock already, not of life.
    """
    _signal(pid, _SIGTERM)
    if gone(timeout):
        return True
    if _proc.is_alive(pid, start_time):
        _signal(pid, _SIGKILL)
    return gone(max(timeout, _KILL_GRACE))


def terminate(pid: int, timeout: float, start_time: int | None = None) -> bool:
    """SIGTERM *pid*, wait up to *timeout* s for it to exit, then SIGKILL it.

    Returns True once the process is gone. Never signals a pid that no longer
    names the process that started at *start_time*.
    """
    if start_time is None:
        start_time = _proc.identity(pid)
    if not _proc.is_alive(pid, start_time):
        return True
    return _escalate(pid, start_time, timeout, lambda wait: _proc.wait_exit(pid, wait, start_time))


def _wait_unlocked(pidfile: Pidfile, fd: int, pid: int, start_time: int | None, timeout: float) -> bool:
    """Wait until *pid* has exited and nobody holds the lock; True if within *timeout*."""
    deadline = time.monotonic() + timeout
    if not _proc.wait_exit(pid, timeout, start_time):
        return False  # still running, whatever the lock says
    if not pidfile._locked(fd):
        return True
    # Something the daemon forked still holds the lock: block in flock() in a
    # helper thread (it takes the lock for an instant, then lets it go).
    import threading

    done = threading.Event()
    spare = os.dup(fd)

    def block() -> None:
        try:
            fcntl.flock(spare, fcntl.LOCK_SH)
            fcntl.flock(spare, fcntl.LOCK_UN)
        finally:
            os.close(spare)
            done.set()

    threading.Thread(target=block, name="daemondeco-stop-wait", daemon=True).start()
    return done.wait(max(0.0, deadline - time.monotonic()))


def stop_pidfile(path: str, timeout: float) -> bool:
    """Stop the daemon holding *path*'s lock: SIGTERM, wait, SIGKILL after *timeout*.

    True when no daemon holds the pidfile afterwards (also when none did).
    False when the lock could not be released, or is held by a process that
    has not written its pid yet.
    """
    pidfile = Pidfile(path)
    fd = pidfile._open_for_reading()
    if fd is None:
        return True
    try:
        if not pidfile._locked(fd):
            return True
        pid = pidfile._holder_pid(fd)
        if pid is None:
            return not pidfile._locked(fd)  # a start that failed meanwhile: nothing runs
        start_time = _proc.identity(pid)
        return _escalate(
            pid, start_time, timeout, lambda wait: _wait_unlocked(pidfile, fd, pid, start_time, wait)
        )
    finally:
        os.close(fd)


def status_pidfile(path: str) -> int | None:
    """The pid of the daemon running under *path*, else None.

    Running means: the pidfile is locked and the pid it names is alive and not
    a zombie. A stale file (unlocked), whatever pid it names, is not running.
    """
    pid = Pidfile(path).locked_by()
    if pid is not None and _proc.is_alive(pid):
        return pid
    return None


class DaemonProcess:
    """A handle on a daemon started by a ``@process_daemonize`` function.

    The daemon is not a child of the caller (it was double-forked), so it
    never becomes the caller's zombie; the handle identifies it by pid and
    start time, so a reused pid is never mistaken for it or signalled.

    Attributes:
        pid: the daemon's process id.
        pidfile: the path of its pidfile, or None.

    .. versionadded:: 0.1

    """

    def __init__(self, pid: int, pidfile: str | None = None, *, stop_timeout: float = 10.0) -> None:
        self.pid = pid
        self.pidfile = pidfile
        self._stop_timeout = stop_timeout
        self._start_time = _proc.identity(pid)

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "exited"
        where = f", pidfile={self.pidfile!r}" if self.pidfile else ""
        return f"<DaemonProcess pid={self.pid}{where} {state}>"

    def is_running(self) -> bool:
        """True while the daemon runs (a zombie or a reused pid does not count)."""
        return _proc.is_alive(self.pid, self._start_time)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the daemon to exit; True once it has (False at *timeout*)."""
        return _proc.wait_exit(self.pid, timeout, self._start_time)

    def stop(self, timeout: float | None = None) -> bool:
        """SIGTERM, wait up to *timeout* s (default ``stop_timeout``), then SIGKILL.

        Returns True when the daemon is no longer running, also when it had
        already exited.
        """
        from ._options import stop_timeout_or

        wait = stop_timeout_or(None, timeout) if timeout is not None else self._stop_timeout
        if not self.is_running():
            return True
        if self.pidfile is not None and Pidfile(self.pidfile).locked_by() == self.pid:
            return stop_pidfile(self.pidfile, wait)
        return terminate(self.pid, wait, self._start_time)
