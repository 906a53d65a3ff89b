"""How a ``process_daemonize`` worker ended: the monitor that sees it, and the record it leaves.

A worker is double-forked, so its caller is not its parent and cannot
``waitpid`` it. The first child (the one that calls ``setsid()``) therefore
stays as the worker's **monitor** instead of leaving at once: it forks the
worker, closes everything it does not need (the pidfile lock, the caller's
fds; stdio becomes the worker's), blocks every catchable signal, waits for
the worker with a pidfd and ``waitpid``, writes the **outcome record**, and
leaves with ``os._exit``. The worker is still not a session leader. The
monitor is the caller's child: the caller's :class:`DaemonProcess` handle
reaps it (when it sees the worker gone, and at the next worker's start), so
it is never a zombie of a caller that uses its handles.

Before it exits, the worker sends the monitor one **frame** over a pipe
(``_sender``): what the function returned (pickled) or raised. With
``restart=`` the worker is a supervisor: its workers inherit the pipe and
send their own frames, and the supervisor adds a ``supervised`` frame after
each of its workers ended; the monitor keeps the last two, so the record
tells the supervisor's exit and its last worker's outcome.

The record is JSON, written atomically (a temporary file, then ``rename``)
with mode ``0o600``:

* next to the pidfile, ``<pidfile>.exit``, when the worker has one: it
  outlives the caller, for :meth:`DaemonProcess.from_pidfile`. The monitor
  replaces it with a **pending** record (``{"version": 1, "pending": true,
  "monitor": <its pid>, "monitor_identity": <its start time>}``) before it
  forks the worker, so that a reader never takes a previous worker's
  record for this one's, and waits for the monitor to leave (a pidfd) rather
  than finding no record in the moment between the worker's exit and the
  record;
* else (or where the pidfile's directory cannot be written) in the private
  per-user directory ``<tmp>/daemondeco-<uid>/<pid>.exit`` (``_state.private_dir``:
  ``tempfile.gettempdir()``, so ``$TMPDIR`` first), only while the caller lives; the handle
  removes it once it has read it.

Schema (version 1)::

    {"version": 1,
     "pid": 4242,                  # the worker's (with restart=: the supervisor's) pid
     "identity": 123456,           # its start time (/proc/<pid>/stat field 22), or null
     "status": 0,                  # its exit status, or null when a signal killed it
     "signal": null,               # the signal number that killed it, or null
     "time": 1733600000.5,         # time.time() when the monitor saw it end
     "frames": [frame, ...]}       # the last (at most two) frames, oldest first

    frame: {"pid": 4242, "kind": "returned", "pickle": "<base64>" | null}     # null: None
         | {"pid": 4242, "kind": "unpicklable", "type": "mod.Name", "error": "TypeError: ..."}
         | {"pid": 4242, "kind": "raised", "type": "ValueError", "message": "...", "traceback": "..."}
         | {"pid": 4343, "kind": "supervised", "status": 1, "signal": "SIGKILL" | null,
            "exception": "ValueError: ..." | null, "traceback": "..." | null, ...}  # restart=: a worker ended
"""

from __future__ import annotations

import os
import time

from ._errors import WorkerError
from ._signals import signal_name
from ._state import private_dir

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable, Mapping
    from typing import Any, NoReturn

__all__ = [
    "Outcome",
    "adopt_sender",
    "anonymous_path",
    "exit_path",
    "mark_pending",
    "pending_monitor",
    "read_outcome",
    "report_raised",
    "report_returned",
    "report_supervised",
    "watch",
]

VERSION = 1
_LENGTH = 4  # a frame: its length (4 bytes, big-endian), then JSON
_KEEP = 2  # frames the monitor keeps: with restart=, a worker's own and the supervisor's word on it

# In the worker: the write end of the pipe to its monitor (None in any other process).
_sender: int | None = None


def exit_path(pidfile: str) -> str:
    """The outcome record of the worker holding *pidfile*."""
    return pidfile + ".exit"


def anonymous_path(pid: int, *, create: bool = False) -> str | None:
    """The record of a worker without a pidfile (or whose pidfile's directory was not writable).

    Named by the pid only: the handle may not have seen the worker's start
    time (it ended at once); the record's ``identity`` tells a reused pid.
    """
    directory = private_dir(create=create)
    if directory is None:
        return None
    return os.path.join(directory, f"{pid}.exit")


# -- in the worker ----------------------------------------------------------------


def adopt_sender(fd: int | None) -> None:
    """In a new daemon, right after its fork: *fd* carries a worker's last word to its monitor (None: no monitor)."""
    global _sender
    _sender = fd


def _send(frame: dict[str, object]) -> None:
    """Write one frame to the monitor; never raises (a lost outcome must not change the worker's exit)."""
    fd = _sender
    if fd is None:
        return
    try:
        import json

        data = json.dumps(frame).encode()
        data = len(data).to_bytes(_LENGTH, "big") + data
        while data:
            data = data[os.write(fd, data) :]
    except Exception:  # the monitor is gone (EPIPE), or a frame that cannot be encoded
        pass


def report_returned(value: object) -> None:
    """The function returned *value*: pickled for the caller, or why it cannot be."""
    if _sender is None:
        return
    if value is None:
        _send({"pid": os.getpid(), "kind": "returned", "pickle": None})
        return
    kind = type(value)
    name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    try:
        import base64
        import pickle

        data = base64.b64encode(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)).decode("ascii")
    except Exception as exc:
        _send({"pid": os.getpid(), "kind": "unpicklable", "type": name, "error": f"{type(exc).__name__}: {exc}"})
        return
    _send({"pid": os.getpid(), "kind": "returned", "pickle": data})


def report_raised(exc: BaseException) -> None:
    """The function raised *exc*: its type, message and formatted traceback."""
    if _sender is None:
        return
    import json

    from ._ready import describe_exception

    _send({"pid": os.getpid(), "kind": "raised", **json.loads(describe_exception(exc))})


def report_supervised(last_exit: Mapping[str, object]) -> None:
    """With ``restart=``, in the supervisor: how one of its workers ended (its ``last_exit``)."""
    if _sender is not None:
        _send({**last_exit, "kind": "supervised"})


# -- in the monitor ---------------------------------------------------------------


def mark_pending(pidfile: str, identity: int | None) -> None:
    """In the monitor, before it forks the worker: ``<pidfile>.exit`` says a record is coming (best effort)."""
    _write(
        exit_path(pidfile),
        b'{"version": %d, "pending": true, "monitor": %d, "monitor_identity": %s}\n'
        % (VERSION, os.getpid(), b"null" if identity is None else b"%d" % identity),
    )


def watch(worker: int, fd: int, pidfile: str | None, caller: int) -> NoReturn:
    """In the monitor: wait for *worker*, read its frames from *fd*, write its record, leave.

    Never returns and never raises: it leaves with ``os._exit(0)``, running
    none of the caller's atexit handlers. The anonymous record is written
    only while *caller* (our parent) lives: nobody else could read it.
    """
    try:
        from . import _proc

        frames, status, identity = _collect(worker, fd, _proc.identity)
        ended = time.time()
        code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
        signum = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
        record = b"".join(
            (
                b'{"version": %d, "pid": %d, "identity": %s, "status": %s, "signal": %s, "time": %s, "frames": ['
                % (
                    VERSION,
                    worker,
                    b"null" if identity is None else b"%d" % identity,
                    b"null" if code is None else b"%d" % code,
                    b"null" if signum is None else b"%d" % signum,
                    repr(ended).encode(),
                ),
                b", ".join(frames),
                b"]}\n",
            )
        )
        written = pidfile is not None and _write(exit_path(pidfile), record)
        if not written and os.getppid() == caller:
            path = anonymous_path(worker, create=True)
            if path is not None:
                _write(path, record)
    finally:
        os._exit(0)


def _collect(worker: int, fd: int, identity: Callable[[int], int | None]) -> tuple[list[bytes], int, int | None]:
    """Read frames until *worker* exits (a pidfd wakes us), then the rest; (last frames, wait status, start time).

    The start time is read from the worker's zombie, before ``waitpid``:
    nothing of the monitor's runs during the worker's start but this wait.
    """
    import select

    buffer = b""
    frames: list[bytes] = []
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    pidfd = -1
    try:
        pidfd = os.pidfd_open(worker)
        poller.register(pidfd, select.POLLIN)
    except (AttributeError, OSError):  # pragma: no cover - before Linux 5.3: look again every 50 ms
        pass
    reading = True
    status: int | None = None
    while True:
        ready = {event_fd for event_fd, _ in poller.poll(-1 if pidfd >= 0 else 50)}
        if fd in ready and reading:
            chunk = os.read(fd, 1 << 16)
            if chunk:
                buffer = _frames(buffer + chunk, frames)
            else:  # every writer closed: only the worker's end remains to wait for
                poller.unregister(fd)
                reading = False
        if pidfd in ready:
            break
        if pidfd < 0:  # pragma: no cover - the fallback without pidfds
            reaped, status = os.waitpid(worker, os.WNOHANG)
            if reaped:
                break
    if reading:
        os.set_blocking(fd, False)
        try:
            while chunk := os.read(fd, 1 << 16):
                buffer = _frames(buffer + chunk, frames)
        except BlockingIOError:  # a child of the worker still holds the pipe: what is there is all
            pass
    start = identity(worker) if status is None else None  # the fallback reaped it already
    if status is None:
        _, status = os.waitpid(worker, 0)
    return frames, status, start


def _frames(buffer: bytes, frames: list[bytes]) -> bytes:
    """Move every whole frame of *buffer* to *frames* (keeping the last ``_KEEP``); the rest."""
    while len(buffer) >= _LENGTH:
        size = int.from_bytes(buffer[:_LENGTH], "big")
        if len(buffer) < _LENGTH + size:
            break
        frames.append(buffer[_LENGTH : _LENGTH + size])
        del frames[:-_KEEP]
        buffer = buffer[_LENGTH + size :]
    return buffer


def _write(path: str, data: bytes) -> bool:
    """Replace *path* with *data* atomically (``0o600``); False if it cannot be written."""
    temporary = f"{path}.{os.getpid()}.tmp"
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError:
        return False
    try:
        try:
            while data:
                data = data[os.write(fd, data) :]
        finally:
            os.close(fd)
        os.rename(temporary, path)
    except OSError:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        return False
    return True


# -- in the caller (the handle) ----------------------------------------------------


def pending_monitor(path: str) -> tuple[int, int | None] | None:
    """``(pid, start time)`` of the monitor that is still to write the record at *path*, else None."""
    import json

    try:
        with open(path, "rb") as file:
            record = json.loads(file.read(4096))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("version") != VERSION or record.get("pending") is not True:
        return None
    monitor, identity = record.get("monitor"), record.get("monitor_identity")
    if not isinstance(monitor, int) or monitor <= 1:
        return None
    return monitor, identity if isinstance(identity, int) else None


def read_outcome(path: str, pid: int | None = None, identity: int | None = None) -> Outcome | None:
    """The record at *path*, if it is whole and (given *pid*, *identity*) names that process."""
    import json

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
    except OSError:
        return None
    finally:
        os.close(fd)
    try:
        record = json.loads(b"".join(chunks))
    except ValueError:
        return None
    if not isinstance(record, dict) or record.get("version") != VERSION or not isinstance(record.get("pid"), int):
        return None
    if pid is not None and record["pid"] != pid:
        return None
    if identity is not None and record.get("identity") not in (None, identity):
        return None
    return Outcome(record)


class Outcome:
    """A worker's record, read: its exit code, and what it returned or raised."""

    def __init__(self, record: dict[str, Any]) -> None:
        self.pid: int = record["pid"]
        self.identity: int | None = record.get("identity")
        status, signum = record.get("status"), record.get("signal")
        self.exitcode: int | None = -signum if isinstance(signum, int) else status if isinstance(status, int) else None
        self.time: float | None = record.get("time")
        frames = [frame for frame in record.get("frames") or () if isinstance(frame, dict)]
        self.supervised: dict[str, Any] | None = None
        self.own: dict[str, Any] | None = None  # the function's own word: returned or raised
        last = frames[-1] if frames else None
        if last is not None and last.get("kind") == "supervised":
            self.supervised = {k: v for k, v in last.items() if k != "kind"}
            before = frames[-2] if len(frames) > 1 else None
            if before is not None and before.get("pid") == last.get("pid") and before.get("kind") != "supervised":
                self.own = before
        elif last is not None and last.get("pid") == self.pid:
            self.own = last

    def how(self) -> str:
        """``exited with status 3``, ``was killed by SIGKILL``."""
        if self.exitcode is None:
            return "ended in an unknown way"
        if self.exitcode < 0:
            return f"was killed by {signal_name(-self.exitcode)}"
        return f"exited with status {self.exitcode}"

    def error(self) -> WorkerError | None:
        """What :meth:`DaemonProcess.result` raises, or None when it returns a value."""
        own, who = self.own, f"worker (pid {self.pid})"
        if own is not None and own.get("kind") == "raised":
            if self.supervised is not None:
                who = f"supervisor (pid {self.pid}): its last worker (pid {own.get('pid')})"
            return WorkerError(
                f"{who} raised {own.get('type')}: {own.get('message')}",
                pid=self.pid,
                exitcode=self.exitcode,
                exc_type=str(own.get("type")),
                exc_message=str(own.get("message") or ""),
                worker_traceback=own.get("traceback"),
            )
        supervised = self.supervised
        if own is None and supervised is not None and supervised.get("exception"):
            kind, _, message = str(supervised["exception"]).partition(": ")
            return WorkerError(
                f"supervisor (pid {self.pid}): its last worker (pid {supervised.get('pid')}) raised "
                f"{supervised['exception']}",
                pid=self.pid,
                exitcode=self.exitcode,
                exc_type=kind,
                exc_message=message,
                worker_traceback=supervised.get("traceback"),
            )
        if own is not None and own.get("kind") == "unpicklable":
            return WorkerError(
                f"{who} returned a {own.get('type')} object, which cannot be pickled to reach the caller: "
                f"{own.get('error')}",
                pid=self.pid,
                exitcode=self.exitcode,
            )
        if self.exitcode == 0:
            return None
        if self.exitcode is None:
            return WorkerError(f"{who} {self.how()}", pid=self.pid)
        if supervised is not None:
            how = (
                "was killed by " + str(supervised["signal"])
                if supervised.get("signal")
                else (f"exited with status {supervised.get('status')}")
            )
            return WorkerError(
                f"supervisor (pid {self.pid}) {self.how()} after its last worker (pid {supervised.get('pid')}) {how}",
                pid=self.pid,
                exitcode=self.exitcode,
            )
        how = self.how() if self.exitcode < 0 else f"{self.how()} without raising"
        return WorkerError(f"{who} {how}", pid=self.pid, exitcode=self.exitcode)

    def value(self) -> Any:
        """What the function returned (None when it exited 0 without returning, as after a stop)."""
        own = self.own
        if own is None or own.get("kind") != "returned" or own.get("pickle") is None:
            return None
        import base64
        import pickle

        return pickle.loads(base64.b64decode(own["pickle"]))  # our own worker's value, as multiprocessing does
