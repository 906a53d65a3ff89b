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

from .._pidfile import Pidfile, Watcher
from .._proc import identity, is_alive

__all__ = ["effective_timeout", "legacy_holder", "lock_path", "wait_released"]

# /proc/stat's btime has a resolution of one second: a process that started
# up to this long after the file's mtime still counts as its writer, so the
# guard errs toward "held" (a refused start is visible; a second daemon is not).
_CLOCK_SLACK = 1.0


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


def _boot_time() -> float | None:
    try:
        with open("/proc/stat", "rb") as stat:
            for line in stat:
                if line.startswith(b"btime "):
                    return float(line.split()[1])
    except OSError:
        return None
    return None


def legacy_holder(path: str) -> int | None:
    """The pid of a live process an unlocked pidfile names and that started before the file was written.

    None when the file is locked (daemondeco's own rules apply), missing,
    unreadable, names no live process, or names one started after the file
    was written (pid reuse: the file is stale).
    """
    try:
        mtime = os.stat(path, follow_symlinks=False).st_mtime
        pidfile = Pidfile(path)
        if pidfile.is_locked():
            return None
        pid = pidfile.read_pid()
    except Exception:  # a FIFO, a directory, a race with a remover: the engine judges it later
        return None
    if pid is None or pid <= 1 or pid == os.getpid() or not is_alive(pid):
        return None
    ticks, boot = identity(pid), _boot_time()
    if ticks is None or boot is None:
        return pid  # no way to tell: a live process it names is the safe answer
    started = boot + ticks / os.sysconf("SC_CLK_TCK")
    return pid if started <= mtime + _CLOCK_SLACK else None


def wait_released(path: str, timeout: float) -> bool:
    """Wait up to *timeout* s for nobody to hold *path*'s lock (event-driven); True if released."""
    watcher = Watcher.open(path)
    if watcher is None:
        return True
    with watcher:
        return watcher.wait_released(timeout)
