"""The compatibility layer's pidfile rules: timeouts, the migration guard, waiting for a lock.

Shared by :mod:`daemondeco.compat.pidfile` (the lockfile-style classes) and
:mod:`daemondeco.compat.daemon` (``DaemonContext``), without importing
``lockfile``: only raising a lockfile-named exception needs that.

The migration guard: python-daemon's ``PIDLockFile`` never ``flock``s; its
lock is the file's existence. A file that nobody ``flock``s is stale by
daemondeco's rules, but one that names a live process started *before* the
file was written is an instance of the old daemon still running (a rolling
upgrade). It counts as held, so the new version never starts beside it.
"""

from __future__ import annotations

import os

from .._pidfile import Watcher

__all__ = ["effective_timeout", "legacy_holder", "lock_path", "wait_released"]


def effective_timeout(pidfile: object) -> float | None:
    """The timeout ``pidfile.acquire()`` would use: ``acquire_timeout``, else ``timeout``."""
    for name in ("acquire_timeout", "timeout"):
        value = getattr(pidfile, name, None)
        if value is not None:
            return float(value)
    return None


def lock_path(pidfile: object) -> str | None:
    """The path of a PID lock file daemondeco can hold itself, else None.

    Recognised: this package's ``PIDLockFile``/``TimeoutPIDLockFile``, and the
    same classes of ``lockfile`` and python-daemon (by class name, module and
    ``path``), so a program that kept the old import gets the locked pidfile too.
    """
    kind = type(pidfile)
    names = {klass.__name__ for klass in kind.__mro__}
    module = kind.__module__.split(".")[0]
    if names & {"PIDLockFile", "TimeoutPIDLockFile"} and module in ("daemondeco", "lockfile", "daemon"):
        path = getattr(pidfile, "path", None)
        if isinstance(path, (str, os.PathLike)):
            return os.path.abspath(os.fsdecode(os.fspath(path)))
    return None


def legacy_holder(path: str) -> int | None:
    """The pid of a live process an unlocked pidfile names and that started before the file was written.

    None when the file is locked (daemondeco's own rules apply), missing,
    unreadable, names no live process, or names one started after the file
    was written (pid reuse: the file is stale). See ``Watcher.legacy_holder``.
    """
    try:
        watcher = Watcher.open(path)
        if watcher is None:
            return None
        with watcher:
            return watcher.legacy_holder()
    except Exception:  # a FIFO, a directory, a race with a remover: the engine judges it later
        return None


def wait_released(path: str, timeout: float) -> bool:
    """Wait up to *timeout* s for nobody to hold *path*'s lock (event-driven); True if released."""
    watcher = Watcher.open(path)
    if watcher is None:
        return True
    with watcher:
        return watcher.wait_released(timeout)
