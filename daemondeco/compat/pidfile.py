"""python-daemon's ``daemon.pidfile`` on daemondeco's locked pidfile: ``PIDLockFile``, ``TimeoutPIDLockFile``.

The classes keep the observable contract of ``lockfile.pidlockfile.PIDLockFile``
(lockfile 0.12.2) and python-daemon 3.1.2's ``TimeoutPIDLockFile``, with
daemondeco's lock underneath: the file is ``flock``-ed for as long as it is
held, so a crashed daemon's file is stale and simply taken over -- a
``kill -9`` never blocks the next start.

* ``acquire(timeout)``: ``None`` or ``<= 0`` raises :class:`AlreadyLocked` at
  once when another process holds the file; ``> 0`` waits for the holder to
  let go (woken by the release, not polled) and raises :class:`LockTimeout`
  after *timeout* seconds; a path that cannot be used raises
  :class:`LockFailed`.
* ``release()``: :class:`NotLocked` when there is no file, :class:`NotMyLock`
  when this object does not hold it; else the file is removed and unlocked.
* ``is_locked()``: some process holds the lock (or an instance of the old
  python-daemon runs, see below); ``i_am_locking()``; ``read_pid()``;
  ``break_lock()`` removes the file only when nobody holds it.

A file nobody locks that names a live process started before the file was
written belongs to a daemon started by python-daemon (which never locks): it
counts as held, so a rolling upgrade never starts a second instance.

The exceptions are named and arranged as lockfile's. When ``lockfile`` is
installed they also subclass its classes of the same name, so
``except lockfile.LockTimeout:`` keeps working::

    Exception
     +-- Error
          +-- LockError
          |    +-- LockTimeout, AlreadyLocked, LockFailed
          +-- UnlockError
               +-- NotLocked, NotMyLock
"""

from __future__ import annotations

import os
import time

from .. import AlreadyRunningError, DaemonError
from .._pidfile import Pidfile
from ._lock import effective_timeout, legacy_holder, wait_released

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from types import TracebackType
    from typing import Any

    from .._types import PathLike

__all__ = [
    "AlreadyLocked",
    "Error",
    "LockError",
    "LockFailed",
    "LockTimeout",
    "NotLocked",
    "NotMyLock",
    "PIDLockFile",
    "TimeoutPIDLockFile",
    "UnlockError",
]

try:  # only to let `except lockfile.X:` catch ours; lockfile is never required
    import lockfile as _lockfile  # type: ignore[import-untyped]
except Exception:  # not installed, or broken
    _lockfile = None


def _base(name: str) -> tuple[type[Exception], ...]:
    found = getattr(_lockfile, name, None)
    return (found,) if isinstance(found, type) and issubclass(found, Exception) else ()


class Error(*_base("Error"), Exception):  # type: ignore[misc]
    """Base class of the pidfile errors (lockfile's ``Error``)."""


class LockError(Error, *_base("LockError")):  # type: ignore[misc]
    """The lock could not be taken."""


class LockTimeout(LockError, *_base("LockTimeout")):  # type: ignore[misc]
    """The lock stayed held for the whole ``acquire`` timeout."""


class AlreadyLocked(LockError, *_base("AlreadyLocked")):  # type: ignore[misc]
    """Another process holds the lock (``acquire`` without a positive timeout)."""


class LockFailed(LockError, *_base("LockFailed")):  # type: ignore[misc]
    """The pidfile cannot be created or locked (a missing directory, no permission, not a regular file)."""


class UnlockError(Error, *_base("UnlockError")):  # type: ignore[misc]
    """The lock could not be released."""


class NotLocked(UnlockError, *_base("NotLocked")):  # type: ignore[misc]
    """``release()`` with no pidfile there."""


class NotMyLock(UnlockError, *_base("NotMyLock")):  # type: ignore[misc]
    """``release()`` of a pidfile this object does not hold."""


def refused(path: str, timeout: float | None, pid: int | None) -> LockError:
    """The error of a refused ``acquire``: :class:`LockTimeout` after a wait, else :class:`AlreadyLocked`."""
    who = f" by pid {pid}" if pid is not None else ""
    if timeout is not None and timeout > 0:
        return LockTimeout(f"Timeout waiting to acquire lock for {path} (held{who} for {timeout:g} s)")
    return AlreadyLocked(f"{path} is already locked{who}")


def wait_for(path: str, timeout: float | None, deadline: float | None) -> bool:
    """Wait for *path* to be free until *deadline*; False when there is no time left (refuse now)."""
    if timeout is None or timeout <= 0 or deadline is None:
        return False
    left = deadline - time.monotonic()
    if left <= 0:
        return False
    old = legacy_holder(path)
    if old is not None:
        from .._proc import wait_exit

        wait_exit(old, left)
    else:
        wait_released(path, left)
    return True


class PIDLockFile:
    """A pidfile locked with ``flock``, with ``lockfile.pidlockfile.PIDLockFile``'s interface.

    Args:
        path: the pidfile's path.
        threaded: accepted for compatibility; ignored (the lock is per process).
        timeout: the default ``acquire`` timeout in seconds (``None`` or ``<= 0``: do not wait).

    .. versionadded:: 0.1

    """

    def __init__(self, path: PathLike, threaded: bool = False, timeout: float | None = None) -> None:
        self.path = os.fsdecode(os.fspath(path))
        self.threaded = threaded
        self.timeout = timeout
        self._pidfile = Pidfile(self.path)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.path!r}>"

    def acquire(self, timeout: float | None = None, *args: Any, **kwargs: Any) -> None:
        """Lock the file and write this process's pid into it.

        Raises:
            AlreadyLocked: held by another process and *timeout* is ``None`` or ``<= 0``.
            LockTimeout: still held after *timeout* (> 0) seconds.
            LockFailed: the path cannot be used.

        """
        if timeout is None:
            timeout = self.timeout
        deadline = time.monotonic() + timeout if timeout is not None and timeout > 0 else None
        while True:
            old = legacy_holder(self.path)
            if old is not None:
                if wait_for(self.path, timeout, deadline):
                    continue
                raise refused(self.path, timeout, old)
            try:
                self._pidfile.acquire()
                return
            except AlreadyRunningError as exc:
                if wait_for(self.path, timeout, deadline):
                    continue
                raise refused(self.path, timeout, exc.pid) from None
            except (OSError, DaemonError) as exc:
                raise LockFailed(f"failed to create {self.path}: {exc}") from exc

    def release(self) -> None:
        """Remove the file and drop the lock.

        Raises:
            NotLocked: there is no pidfile.
            NotMyLock: this object does not hold it.

        """
        if not os.path.lexists(self.path):
            raise NotLocked(f"{self.path} is not locked")
        if not self._pidfile.is_held:
            raise NotMyLock(f"{self.path} is locked, but not by me")
        self._pidfile.release()

    def is_locked(self) -> bool:
        """True if some process holds the lock (or an old python-daemon instance owns the file)."""
        try:
            return self._pidfile.is_locked() or legacy_holder(self.path) is not None
        except DaemonError:
            return False

    def i_am_locking(self) -> bool:
        """True if this process holds the lock."""
        try:
            return self._pidfile.locked_by() == os.getpid()
        except DaemonError:
            return False

    def read_pid(self) -> int | None:
        """The pid written in the file, or None (no file, garbage)."""
        try:
            return self._pidfile.read_pid()
        except (OSError, DaemonError):
            return None

    def break_lock(self) -> None:
        """Remove the file, only if no process holds it (a live holder's file stays)."""
        if self.is_locked():
            return
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def __enter__(self) -> PIDLockFile:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


class TimeoutPIDLockFile(PIDLockFile):
    """``PIDLockFile`` whose ``acquire()`` waits *acquire_timeout* by default (python-daemon's class).

    Args:
        path: the pidfile's path.
        acquire_timeout: seconds ``acquire()`` waits when called without a
            timeout (``None`` or ``<= 0``: refuse at once).

    .. versionadded:: 0.1

    """

    def __init__(self, path: PathLike, acquire_timeout: float | None = None, *args: Any, **kwargs: Any) -> None:
        super().__init__(path, *args, **kwargs)
        self.acquire_timeout = acquire_timeout

    def acquire(self, timeout: float | None = None, *args: Any, **kwargs: Any) -> None:
        """Like :meth:`PIDLockFile.acquire`, waiting ``acquire_timeout`` when *timeout* is None."""
        if timeout is None:
            timeout = effective_timeout(self)
        super().acquire(timeout, *args, **kwargs)
