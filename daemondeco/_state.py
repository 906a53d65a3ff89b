"""The daemon's state file next to its pidfile: written by the daemon, read by ``status`` and ``reload``.

``<pidfile>.state`` holds one JSON object: the daemon's ``state``
(``ready``, ``reloading``, ``stopping``; an empty file means it is still
starting), the last ``notify_status()`` text, and the last reload
(``generation``, when it started and finished on ``CLOCK_MONOTONIC``, whether
it succeeded, and the traceback when it did not). Only the pidfile's lock
says whether a daemon runs at all: a state file without a locked pidfile is
stale, whatever it says.

The daemon opens the file before it enters a chroot or drops privileges and
rewrites it in place, through that fd, with one ``pwrite`` padded with
spaces to at least the previous length (JSON ignores trailing whitespace):
no rename, so it works in a directory the daemon may no longer write. A
reader that catches a write half done sees invalid JSON and simply reads
again.

**The last run's end.** When the daemon exits it does not remove the file:
it rewrites it, through the same fd, as ``{"pid": N, "state": "exited",
"last_exit": RECORD}`` (:func:`write_last_exit`), so that ``status`` can say
how the last run ended once nothing runs (:func:`read_last_exit`); the next
start truncates it. ``RECORD`` is one JSON object:

* ``pid`` (int): the daemon's pid;
* ``how`` (str): ``"stopped"`` (a stop was asked: SIGTERM), ``"returned"``
  (the function returned), ``"exited"`` (``sys.exit(n)``), ``"raised"`` (an
  uncaught exception); with ``restart=`` also the supervisor's ``worker_pid``;
* ``status`` (int or null): the exit status, null when unknown;
* ``signal`` (str or null): the signal that killed it (``"SIGKILL"``), when known;
* ``time`` (float): when it ended, seconds since the epoch;
* ``error`` (str or null): the traceback's last line (``"FileNotFoundError: [Errno 2] ..."``);
* ``log`` (str or null): the file the traceback went to (the stderr target).

A daemon killed by a signal writes nothing: its file still says
``"ready"`` (or ``"starting"``, ``"stopping"``) without ``last_exit``, and the
reader says what else can be known (``_control.status_report``).
"""

from __future__ import annotations

import _thread  # a builtin module: its RLock costs no import (threading does)
import os
import stat

__all__ = ["StateFile", "anonymous_state_path", "read_last_exit", "read_state", "state_path"]

_FLAGS = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0) | os.O_NONBLOCK
_READ_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0) | os.O_NONBLOCK
_READ_TRIES = 20  # a torn read needs a write racing it: a retry or two at most


def state_path(pidfile: str) -> str:
    """Where the state file of the daemon with *pidfile* lives."""
    return pidfile + ".state"


def anonymous_state_path(pid: int, *, create: bool = False) -> str | None:
    """The state file of a supervisor without a pidfile, by its pid: in a private per-user directory.

    ``<tmp>/daemondeco-<uid>/<pid>.state``, the directory ``0o700`` and ours
    (else None: another user could plant or read files there). With
    *create* the directory is made if missing.
    """
    import tempfile

    directory = os.path.join(tempfile.gettempdir(), f"daemondeco-{os.getuid()}")
    try:
        if create:
            try:
                os.mkdir(directory, 0o700)
            except FileExistsError:
                pass
        info = os.lstat(directory)
    except OSError:
        return None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        return None
    return os.path.join(directory, f"{pid}.state")


class StateFile:
    """Daemon side: the state, rewritten in place through an fd opened at start."""

    def __init__(self, path: str) -> None:
        self.path = path
        fd = os.open(path, _FLAGS, 0o644)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise OSError(f"state file {path!r} is not a regular file")
        os.ftruncate(fd, 0)  # whatever a previous daemon left: starting now
        self._fd = fd
        self._size = 0
        self._lock = _thread.RLock()
        self._writes = 0
        self.fields: dict[str, object] = {"pid": os.getpid(), "state": "starting", "status": None, "reload": None}

    @classmethod
    def adopt(cls, path: str, fd: int) -> StateFile:
        """The state file a previous generation handed over (its fd), left as it is until we write."""
        self = cls.__new__(cls)
        self.path = path
        os.set_inheritable(fd, False)
        self._fd = fd
        self._size = os.fstat(fd).st_size
        self._lock = _thread.RLock()
        self._writes = 0
        self.fields = {"pid": os.getpid(), "state": "starting", "status": None, "reload": None}
        return self

    def forget(self) -> None:
        """Close the file without removing it: a successor writes it now."""
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)

    def fileno(self) -> int:
        """The fd kept open across the daemon's fd closing."""
        return self._fd

    def update(self, **fields: object) -> None:
        """Record *fields* and rewrite the file; never raises (a full disk loses an update, not the daemon).

        Called from several threads (reload, upgrade, ``notify_status``) and
        from the SIGTERM handler: a lock keeps the fields and the file whole.
        It is reentrant, since the handler may interrupt the main thread in the
        middle of an update: the interrupted write then starts again, so the
        newest fields are the ones left in the file.
        """
        with self._lock:
            self.fields.update(fields)
            while self._fd >= 0:
                self._writes += 1
                mine = self._writes
                try:
                    import json

                    data = json.dumps(self.fields).encode()
                    padded = data.ljust(self._size)
                    os.pwrite(self._fd, padded, 0)
                    self._size = max(self._size, len(data))
                except Exception:  # the state is a courtesy to status and reload: never fatal
                    return
                if self._writes == mine:  # no reentrant update wrote meanwhile
                    return

    def finish(self, last_exit: dict[str, object] | None) -> None:
        """At the daemon's exit: leave *last_exit* in the file (:func:`write_last_exit`) and close it.

        Without a record (None) the file is removed, as :meth:`remove` does.
        """
        if last_exit is None or self._fd < 0:
            self.remove()
            return
        fd, self._fd = self._fd, -1
        try:
            write_last_exit(fd, self.fields.get("pid"), last_exit, self._size)
        finally:
            os.close(fd)

    def remove(self) -> None:
        """Remove the file if it is still the one we wrote, and close it."""
        if self._fd < 0:
            return
        fd, self._fd = self._fd, -1
        try:
            there, held = os.stat(self.path, follow_symlinks=False), os.fstat(fd)
            if (there.st_dev, there.st_ino) == (held.st_dev, held.st_ino):
                os.unlink(self.path)
        except OSError:  # gone already, or no longer allowed (privileges dropped)
            pass
        finally:
            os.close(fd)


def read_state(path: str) -> dict[str, object] | None:
    """The state in the file at *path*: None without a file; ``{}`` while it is empty (starting)."""
    import json

    try:
        fd = os.open(path, _READ_FLAGS)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        for _ in range(_READ_TRIES):
            data = os.pread(fd, 1 << 20, 0).strip()
            if not data:
                return {}
            try:
                state = json.loads(data)
            except ValueError:
                continue  # a write in progress
            return state if isinstance(state, dict) else None
        return None
    finally:
        os.close(fd)


def write_last_exit(fd: int, pid: object, record: dict[str, object], size: int = 0) -> None:
    """Rewrite the state file open at *fd* as the record of the daemon's end (*record*: see the module); never raises.

    *size*: the file's current length, to pad over (one ``pwrite``, as every update).
    """
    try:
        import json

        data = json.dumps({"pid": pid, "state": "exited", "last_exit": record}).encode()
        os.pwrite(fd, data.ljust(size), 0)
    except Exception:  # a courtesy to status: never fatal
        pass


def read_last_exit(path: str) -> dict[str, object] | None:
    """The ``last_exit`` record (see the module) the daemon of state file *path* left at its exit, if any."""
    state = read_state(path)
    record = (state or {}).get("last_exit")
    if not isinstance(record, dict) or (state or {}).get("state") != "exited":
        return None
    return record
