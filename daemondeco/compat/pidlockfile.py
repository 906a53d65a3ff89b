"""The old name of :mod:`daemondeco.compat.pidfile` (python-daemon < 1.6 had ``daemon.pidlockfile``)."""

from .pidfile import (
    AlreadyLocked,
    Error,
    LockError,
    LockFailed,
    LockTimeout,
    NotLocked,
    NotMyLock,
    PIDLockFile,
    TimeoutPIDLockFile,
    UnlockError,
)

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
