"""The daemon's state file next to its pidfile: its bytes and its meaning (states, writers, the typed reader).

This module owns the file's schema: the states (:class:`States`) and which
may follow which (``TRANSITIONS``), one named writer per event (``became``,
``reload_started``, ``worker_exited``, ...: every key the daemon writes is
spelt here, and ``tests/test_structure.py`` checks that no other module
writes one), and :class:`State`, the typed reader ``_control`` uses.

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
import time

__all__ = [
    "RELAYED",
    "State",
    "StateFile",
    "States",
    "anonymous_state_path",
    "became",
    "daemon_exit_record",
    "listening",
    "private_dir",
    "read",
    "read_last_exit",
    "ready_after",
    "reload_between_workers",
    "reload_finished",
    "reload_started",
    "restart_planned",
    "state_path",
    "status_line",
    "stop_began",
    "supervisor_started",
    "upgrade_failed",
    "upgrade_started",
    "worker_exit_record",
    "worker_exited",
    "worker_started",
]


# -- the schema: the states, and which follows which -------------------------------
#
class States:
    """The daemon's ``state`` (the file's ``"state"`` key), as Supervisor's ``ProcessStates``.

    Only the pidfile's lock says whether anything runs: STALE and STOPPED are
    what ``status`` reports when nothing does, never written to the file.
    """

    STARTING = "starting"  # also an empty file: the daemon has not written yet
    READY = "ready"
    RELOADING = "reloading"
    UPGRADING = "upgrading"  # SIGUSR2: a successor is starting (``_upgrade``)
    RESTARTING = "restarting"  # a supervisor (``restart=``) between two workers
    STOPPING = "stopping"
    EXITED = "exited"  # the last run's end (``last_exit``), written at the exit
    STALE = "stale"  # reported: a pidfile without its lock
    STOPPED = "stopped"  # reported: no pidfile


# From each state, the states the daemon may write next. A reload or an upgrade
# ends in the state it began from (its "settled" state), a stop in EXITED.
_S = States
TRANSITIONS: dict[str, tuple[str, ...]] = {
    _S.STARTING: (_S.STARTING, _S.READY, _S.RELOADING, _S.STOPPING, _S.RESTARTING, _S.EXITED),
    # STARTING again: a supervisor's next worker (RESTARTING is skipped when a worker is started at once).
    _S.READY: (_S.READY, _S.RELOADING, _S.UPGRADING, _S.STOPPING, _S.STARTING, _S.RESTARTING, _S.EXITED),
    _S.RELOADING: (_S.READY, _S.STARTING, _S.STOPPING, _S.EXITED),
    _S.UPGRADING: (_S.READY, _S.STARTING, _S.STOPPING, _S.EXITED),
    _S.RESTARTING: (_S.STARTING, _S.READY, _S.STOPPING, _S.RESTARTING, _S.EXITED),
    _S.STOPPING: (_S.STOPPING, _S.EXITED),
    _S.EXITED: (),
}

# The keys a supervised worker's relay may send to its supervisor's file.
RELAYED = ("state", "status", "reload")


# -- the named writers: every field the daemon records, built here ------------------
#
# Each returns the fields to hand to ``StateFile.update`` (through the runtime,
# which writes only in the process that owns the file).


def became(state: str) -> dict[str, object]:
    """The daemon is now in *state* (one of the constants above)."""
    return {"state": state}


def ready_after(ns: int) -> dict[str, object]:
    """``ready="auto"``: ``status`` reads "ready" from *ns* (``CLOCK_MONOTONIC``) on."""
    return {"ready_after_ns": ns}


def status_line(text: str) -> dict[str, object]:
    """The last ``notify_status()`` text."""
    return {"status": text}


def reload_started(generation: int, started_ns: int, state: str) -> dict[str, object]:
    """Reload number *generation* began at *started_ns*; the daemon is in *state* meanwhile."""
    return {"state": state, "reload": {"generation": generation, "started_ns": started_ns, "finished_ns": None}}


def reload_finished(generation: int, started_ns: int, error: str | None, state: str) -> dict[str, object]:
    """The reload ended (*error*: its traceback, None when it succeeded); back to *state*."""
    record = {"generation": generation, "started_ns": started_ns, "finished_ns": time.monotonic_ns()}
    return {"state": state, "reload": {**record, "ok": error is None, "error": error}}


def reload_between_workers(now_ns: int) -> dict[str, object]:
    """A supervisor reloaded with no worker running: nothing to wait for, done at once."""
    return {"reload": {"generation": 0, "started_ns": now_ns, "finished_ns": now_ns, "ok": True, "error": None}}


def listening(sockets: list[str], refusal: str | None) -> dict[str, object]:
    """The ``listen=`` names, and why an upgrade would be refused (None: it can be upgraded)."""
    return {"sockets": sockets, "upgrade_refused": refusal, "upgrade": None}


def upgrade_started(started_ns: int) -> dict[str, object]:
    """An upgrade (SIGUSR2) began at *started_ns*."""
    return {
        "state": States.UPGRADING,
        "upgrade": {"started_ns": started_ns, "finished_ns": None, "ok": None, "error": None},
    }


def upgrade_failed(started_ns: int, error: str, state: str) -> dict[str, object]:
    """The successor failed (*error*: its output); the daemon keeps serving, in *state*."""
    record = {"started_ns": started_ns, "finished_ns": time.monotonic_ns(), "ok": False, "error": error}
    return {"state": state, "upgrade": record}


def supervisor_started(identity: int | None) -> dict[str, object]:
    """A supervisor (``restart=``) begins its history; *identity* tells its file from a previous pid's."""
    fields: dict[str, object] = {"state": States.STARTING, "supervised": True, "identity": identity}
    return {**fields, "worker_pid": None, "restarts": 0, "last_exit": None}


def stop_began(*, supervised: bool = False) -> dict[str, object]:
    """A stop began (a supervisor also forgets its next restart)."""
    return {"state": States.STOPPING, "next_restart_ns": None} if supervised else {"state": States.STOPPING}


def worker_started(pid: int) -> dict[str, object]:
    """The supervisor started worker *pid*."""
    return {"state": States.STARTING, "worker_pid": pid, "next_restart_ns": None}


def daemon_exit_record(how: str, status: int | None, error: str | None, log: str | None) -> dict[str, object]:
    """The record of this daemon's end (``last_exit``, see the module), left at its exit."""
    return {
        "pid": os.getpid(),
        "how": how,
        "status": status,
        "signal": None,
        "time": time.time(),
        "error": error,
        "log": log,
    }


def worker_exit_record(
    pid: int,
    status: int | None,
    signal: str | None,
    *,
    clean: bool,
    uptime_s: float,
    exception: str | None,
    traceback: str | None,
) -> dict[str, object]:
    """The supervisor's record of a worker's end (``last_exit`` while it supervises; ``LastExit``)."""
    return {
        "pid": pid,
        "status": status,
        "signal": signal,
        "clean": clean,
        "uptime_s": uptime_s,
        "exception": exception,
        "traceback": traceback,
        "time": time.time(),
    }


def worker_exited(record: dict[str, object]) -> dict[str, object]:
    """The worker ended (*record*: :func:`worker_exit_record`)."""
    return {"worker_pid": None, "last_exit": record}


def restart_planned(next_ns: int, restarts: int | None = None) -> dict[str, object]:
    """The next worker starts at *next_ns* (``CLOCK_MONOTONIC``); *restarts*: the count so far, if it grew."""
    fields: dict[str, object] = {"state": States.RESTARTING}
    if restarts is not None:
        fields["restarts"] = restarts
    fields["next_restart_ns"] = next_ns
    return fields


_FLAGS = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0) | os.O_NONBLOCK
_READ_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0) | os.O_NONBLOCK
_READ_TRIES = 20  # a torn read needs a write racing it: a retry or two at most


def state_path(pidfile: str) -> str:
    """Where the state file of the daemon with *pidfile* lives."""
    return pidfile + ".state"


def private_dir(*, create: bool = False) -> str | None:
    """``<tmp>/daemondeco-<uid>``, ``0o700`` and ours, else None (another user could plant or read files there).

    ``<tmp>`` is ``tempfile.gettempdir()`` (``$TMPDIR``, else ``/tmp``...). With
    *create* the directory is made if missing. The records of processes
    without a pidfile live there: a supervisor's state file, a worker's
    outcome (``_outcome``).
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
    return directory


def anonymous_state_path(pid: int, *, create: bool = False) -> str | None:
    """The state file of a supervisor without a pidfile, by its pid: ``<private_dir>/<pid>.state`` (or None)."""
    directory = private_dir(create=create)
    return None if directory is None else os.path.join(directory, f"{pid}.state")


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
        self.fields: dict[str, object] = {"pid": os.getpid(), "state": States.STARTING, "status": None, "reload": None}

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
        self.fields = {"pid": os.getpid(), "state": States.STARTING, "status": None, "reload": None}
        return self

    def forget(self) -> None:
        """Close the file without removing it: a successor writes it now."""
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)

    def fileno(self) -> int:
        """The fd kept open across the daemon's fd closing."""
        return self._fd

    def preset(self, fields: dict[str, object]) -> None:
        """Record *fields* (from a named writer) without writing: the next update writes them too."""
        with self._lock:
            self.fields.update(fields)

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

        data = json.dumps({"pid": pid, "state": States.EXITED, "last_exit": record}).encode()
        os.pwrite(fd, data.ljust(size), 0)
    except Exception:  # a courtesy to status: never fatal
        pass


def read_last_exit(path: str) -> dict[str, object] | None:
    """The ``last_exit`` record (see the module) the daemon of state file *path* left at its exit, if any."""
    state = read_state(path)
    record = (state or {}).get("last_exit")
    if not isinstance(record, dict) or (state or {}).get("state") != States.EXITED:
        return None
    return record


# -- the typed reader ------------------------------------------------------------------


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _record(value: object) -> dict[str, object] | None:
    return value if isinstance(value, dict) else None


class State:
    """What a state file says, read once: each key typed, a missing or malformed one None.

    The one reader of the file's meaning (``_control``: ``status``,
    ``reload``, ``upgrade``); a key spelt wrong here fails mypy, not silently.
    """

    __slots__ = (
        "identity",
        "last_exit",
        "next_restart_ns",
        "pid",
        "ready_after_ns",
        "reload",
        "restarts",
        "sockets",
        "state",
        "status",
        "supervised",
        "upgrade",
        "upgrade_refused",
        "worker_pid",
    )

    def __init__(self, fields: dict[str, object]) -> None:
        state = fields.get("state")
        self.state: str | None = state if isinstance(state, str) and state else None  # None: starting
        self.pid = _int(fields.get("pid"))
        self.status = fields.get("status")
        self.reload = _record(fields.get("reload"))
        self.upgrade = _record(fields.get("upgrade"))
        self.sockets = fields.get("sockets")
        self.upgrade_refused = fields.get("upgrade_refused")
        self.ready_after_ns = _int(fields.get("ready_after_ns"))
        self.supervised = bool(fields.get("supervised"))
        self.identity = _int(fields.get("identity"))
        self.worker_pid = fields.get("worker_pid")
        self.restarts = _int(fields.get("restarts")) or 0
        self.last_exit = fields.get("last_exit")
        self.next_restart_ns = _int(fields.get("next_restart_ns"))

    def reload_since(self, sent_ns: int) -> dict[str, object] | None:
        """The reload that started at or after *sent_ns* (a SIGHUP sent then) and has finished, if any."""
        record = self.reload
        if record is None or not record.get("finished_ns"):
            return None
        started = record.get("started_ns", 0)
        return record if isinstance(started, int) and started >= sent_ns else None

    def upgrade_since(self, sent_ns: int) -> dict[str, object] | None:
        """The upgrade that finished at or after *sent_ns* (a SIGUSR2 sent then), if any.

        Its end counts, not its start: one already under way when the signal
        came answers that request too (the daemon ignored the signal).
        """
        record = self.upgrade
        finished = None if record is None else record.get("finished_ns")
        return record if isinstance(finished, int) and finished >= sent_ns else None

    def reload_summary(self) -> dict[str, object] | None:
        """The last finished reload, as ``status --json`` shows it."""
        record = self.reload
        if record is None or not record.get("finished_ns"):
            return None
        return {"generation": record.get("generation"), "ok": record.get("ok"), "error": record.get("error")}

    def supervision(self) -> dict[str, object]:
        """A supervisor's history (``restart=``): the worker's pid, restarts, last exit, time to the next restart."""
        next_in = None
        if self.next_restart_ns is not None:
            next_in = round(max(0, self.next_restart_ns - time.monotonic_ns()) / 1e9, 3)
        return {
            "worker_pid": self.worker_pid,
            "restarts": self.restarts,
            "last_exit": self.last_exit,
            "next_restart_in": next_in,
        }


def read(path: str) -> State | None:
    """The state file at *path*, typed: None without a file (or not a JSON object); empty while starting."""
    fields = read_state(path)
    return None if fields is None else State(fields)
