"""The readiness pipe between a daemon and the process that launched it, both ends.

The launcher blocks in ``poll()`` on the read end; the daemon writes small
frames (one tag byte, a 4-byte length, a payload) on the write end:

* ``P`` the daemon's pid, its first act;
* ``R`` ready (``notify_ready()``, or right before the function with
  ``ready="start"``);
* ``S`` started (``ready="auto"``): the function is being called; it is
  ready at ``R`` or once it ran ``startup_grace`` seconds, whichever comes
  first. An empty payload asks the launcher to measure that time; ``self``
  says the daemon measures it (it has a service manager to tell as well)
  and sends ``R`` then;
* ``T`` more time (``notify_extend()``): microseconds, in ASCII; the
  deadline becomes at least that long from now (systemd's meaning of
  ``EXTEND_TIMEOUT_USEC``: it never shortens the wait);
* ``E`` a startup failure: JSON with the exception's type, message, traceback;
* ``X`` the daemon exited before the launcher stopped listening (its status).

End of file without ``R`` means the daemon died without a word. Nothing here
sleeps: the launcher wakes on data, on end of file, or at its deadline.
:func:`await_ready` is the launcher's whole wait: it returns the daemon's pid
once it is ready, or raises :class:`StartupError` once nothing runs any more.
"""

from __future__ import annotations

import os
import time

from . import _proc
from ._errors import StartInterrupted, StartupError
from ._signals import ignore_interrupts, signal_name

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable
    from typing import NoReturn

    from ._options import Options

__all__ = [
    "ERROR",
    "EXIT",
    "EXTEND",
    "PID",
    "READY",
    "SELF_TIMED",
    "STARTED",
    "await_ready",
    "describe_exception",
    "send",
    "unpack",
]

PID, READY, ERROR, EXIT, EXTEND, STARTED, EOF = b"P", b"R", b"E", b"X", b"T", b"S", b""
SELF_TIMED = b"self"  # an S frame's payload: the daemon sends R itself at the end of startup_grace

_HEADER = 5  # the tag byte and the payload's length (4 bytes, big-endian)

# After Ctrl-C, how long the launcher waits for a daemon it has not heard of
# yet to say its pid (its first act after fork + setsid + fork).
_PID_GRACE = 2.0

# A start that waits longer than this says so, once, on a terminal (stderr).
_NOTICE_AFTER = 1.0


def send(fd: int, tag: bytes, payload: bytes = b"") -> bool:
    """Write one frame; False if the launcher is gone (or the fd closed)."""
    data = tag + len(payload).to_bytes(4, "big") + payload
    try:
        while data:
            data = data[os.write(fd, data) :]
    except OSError:  # BrokenPipeError: nobody listens any more
        return False
    return True


def unpack(record: bytes) -> tuple[bytes, bytes]:
    """``(tag, payload)`` of one whole frame, as a ``SOCK_SEQPACKET`` record holds it."""
    size = int.from_bytes(record[1:_HEADER], "big")
    return record[:1], record[_HEADER : _HEADER + size]


def describe_exception(exc: BaseException) -> bytes:
    """Encode *exc* (type, message, formatted traceback) for an ``E`` frame."""
    import json
    import traceback

    kind = type(exc)
    name = kind.__qualname__
    if kind.__module__ not in ("builtins", "__main__"):
        name = f"{kind.__module__}.{name}"
    try:
        message = str(exc)
    except Exception:  # pragma: no cover - a __str__ that raises
        message = f"<unprintable {name}>"
    text = "".join(traceback.format_exception(kind, exc, exc.__traceback__))
    return json.dumps({"type": name, "message": message, "traceback": text}).encode()


class FrameReader:
    """Launcher side: read frames from the pipe until a deadline."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._buffer = b""
        self._eof = False
        import select

        self._poller = select.poll()
        self._poller.register(fd, select.POLLIN)

    def next(self, deadline: float) -> tuple[bytes, bytes] | None:
        """The next ``(tag, payload)``; ``(EOF, b"")`` at end of file; None at the deadline."""
        while True:
            frame = self._take()
            if frame is not None:
                return frame
            if self._eof:
                return (EOF, b"")
            if not _proc.poll_until(self._poller, deadline):
                return None
            chunk = os.read(self._fd, 65536)
            if chunk:
                self._buffer += chunk
            else:
                self._eof = True

    def _take(self) -> tuple[bytes, bytes] | None:
        if len(self._buffer) < _HEADER:
            return None
        size = int.from_bytes(self._buffer[1:_HEADER], "big")
        if len(self._buffer) < _HEADER + size:
            return None
        frame = unpack(self._buffer)
        self._buffer = self._buffer[_HEADER + size :]
        return frame


def await_ready(
    read_end: int, child: int, options: Options, *, leaving: bool, name: str | None = None, monitored: bool = False
) -> int:
    """Wait for the daemon forked by *child*; its pid once ready, else StartupError.

    A launcher that is *leaving* and waits longer than about a second says
    so in one line on stderr, when stderr is a terminal (*name*: the
    function's, in that line); nothing when it is not.

    Ctrl-C while waiting stops the daemon (it would otherwise come up behind
    the operator's back) and raises :class:`StartInterrupted` naming it. A
    launcher that is *leaving* once the daemon is ready ignores Ctrl-C from
    then on: the start has succeeded, and only its exit is left to do.
    *monitored*: *child* stays as the worker's monitor (``_outcome``) once it
    is ready; it is reaped here only after a failed start.
    """
    reader = FrameReader(read_end)
    waiting = _Waiting()
    try:
        notice = _waiting_notice(name, options) if leaving else None
        ready = _read_frames(reader, waiting, options, notice)
        if leaving:
            ignore_interrupts()  # for good: this process only says "started" and exits 0
        if monitored:
            child = 0  # the monitor lives as long as the worker: the handle reaps it
        return ready
    except KeyboardInterrupt:
        restore = ignore_interrupts()  # a second Ctrl-C must not cut the stop short
        try:
            pid = waiting.pid if waiting.pid is not None else _pid_after_interrupt(reader)
            if pid is not None:
                _proc.terminate(pid, options.stop_timeout)
        finally:
            restore()
        raise StartInterrupted(pid) from None
    finally:
        # The first child has exited by now (it forked the daemon, which sent
        # a frame, or failed; a worker's monitor exits right after its worker):
        # reaping it here costs no wait. Never a zombie, and a Ctrl-C right
        # now must not replace the outcome with a traceback.
        if child:
            restore = ignore_interrupts()
            try:
                os.waitpid(child, 0)
            finally:
                restore()


class _Waiting:
    """What the launcher has heard so far."""

    pid: int | None = None


def _waiting_notice(name: str | None, options: Options) -> Callable[[int | None, float], None] | None:
    """The function that prints the "waiting for" line, if stderr is a terminal; else None."""
    import sys

    stream = sys.stderr
    try:
        if stream is None or not stream.isatty():
            return None
    except (OSError, ValueError, AttributeError):
        return None
    who = name or "the daemon"

    def say(pid: int | None, up_to: float) -> None:
        pid_text = f" (pid {pid})" if pid is not None else ""
        try:
            print(f"waiting for {who}{pid_text} to become ready (up to {up_to:.3g} s)...", file=stream, flush=True)
        except (OSError, ValueError):  # pragma: no cover - the terminal went away
            pass

    return say


def _pid_after_interrupt(reader: FrameReader) -> int | None:
    deadline = time.monotonic() + _PID_GRACE
    while (frame := reader.next(deadline)) is not None and frame[0] != EOF:
        if frame[0] == PID:
            return int(frame[1])
    return None


def _read_frames(
    reader: FrameReader, waiting: _Waiting, options: Options, notice: Callable[[int | None, float], None] | None
) -> int:
    start = time.monotonic()
    deadline = start + options.ready_timeout
    grace_end: float | None = None  # ready="auto": ready then, unless the daemon said otherwise first
    notice_at = start + _NOTICE_AFTER if notice is not None else None
    while True:
        frame = reader.next(min(d for d in (deadline, grace_end, notice_at) if d is not None))
        if frame is None:
            now = time.monotonic()
            if grace_end is not None and now >= grace_end:
                break  # ran startup_grace without exiting: ready
            if notice is not None and notice_at is not None and now >= notice_at:
                notice_at = None
                if grace_end is None or grace_end - now > _NOTICE_AFTER:  # not a wait about to end anyway
                    notice(waiting.pid, deadline - start)
                continue
            _timed_out(waiting.pid, options, deadline - start)
        tag, payload = frame
        if tag == PID:
            waiting.pid = int(payload)
        elif tag == EXTEND:  # notify_extend(): at least that long from now
            deadline = max(deadline, time.monotonic() + int(payload) / 1e6)
        elif tag == STARTED:
            if payload != SELF_TIMED:
                grace_end = time.monotonic() + options.startup_grace
        elif tag == READY:
            break
        else:
            _startup_failed(tag, payload, waiting.pid, after_ready=False, options=options)
    pid = waiting.pid
    assert pid is not None
    if options.startup_grace > 0 and options.ready != "auto":
        _watch_after_ready(reader, pid, options)
    return pid


def _watch_after_ready(reader: FrameReader, pid: int, options: Options) -> None:
    """``startup_grace`` after readiness (``ready="start"``/``"notify"``): an exit then is a failed start too."""
    deadline = time.monotonic() + options.startup_grace
    while True:
        frame = reader.next(deadline)
        if frame is None or frame == (EXIT, b"0"):
            return
        if frame[0] == EXTEND:  # pragma: no cover - notify_extend() sends nothing once ready
            continue
        _startup_failed(frame[0], frame[1], pid, after_ready=True, options=options)


def _timed_out(pid: int | None, options: Options, waited: float) -> NoReturn:
    if pid is not None:
        _proc.terminate(pid, options.stop_timeout)
    hint = " (it never called notify_ready())" if options.ready == "notify" else ""
    if options.ready == "auto":
        hint = f" (it neither called notify_ready() nor ran startup_grace={options.startup_grace:g} s)"
    if waited > options.ready_timeout:
        hint += f" (notify_extend() had extended the wait to {waited:.3g} s)"
    raise StartupError(
        f"daemon (pid {pid}) was not ready within ready_timeout={options.ready_timeout:g} s{hint}; it was stopped",
        pid=pid,
    )


def _startup_failed(tag: bytes, payload: bytes, pid: int | None, *, after_ready: bool, options: Options) -> NoReturn:
    if pid is not None and not _proc.wait_exit(pid, options.stop_timeout):
        # It reported failure but lingers (slow cleanup): the caller gets
        # StartupError only once nothing runs and the pidfile lock is free.
        _proc.terminate(pid, 0)
    when = f"within startup_grace={options.startup_grace:g} s" if after_ready else "before it was ready"
    if tag == ERROR:
        import json

        info = json.loads(payload)
        raise StartupError(
            f"daemon (pid {pid}) failed {when}: {info['type']}: {info['message']}",
            pid=pid,
            exc_type=info["type"],
            exc_message=info["message"],
            daemon_traceback=info["traceback"],
        )
    if tag == EXIT:
        status = int(payload) if payload else None
        hint = ""
        if status == 0 and not after_ready and options.ready == "notify":
            hint = " (it never called notify_ready())"
        elif not after_ready and options.ready == "auto":
            hint = _too_quickly(options)
        said = f" with status {status}" if status is not None else ""
        raise StartupError(f"daemon (pid {pid}) exited{said} {when}{hint}", pid=pid, exit_status=status)
    assert tag == EOF
    hint = _too_quickly(options) if not after_ready and options.ready == "auto" else ""
    raise StartupError(f"daemon (pid {pid}) died {when}{_death_note(pid)}{hint}", pid=pid)


def _too_quickly(options: Options) -> str:
    """Why an exit before readiness fails a ``ready="auto"`` start, even a clean one."""
    return (
        f": it exited too quickly (within startup_grace={options.startup_grace:g} s, before notify_ready()); "
        "a daemon must keep running (a short job: ready='start')"
    )


def _death_note(pid: int | None) -> str:
    """What /proc says about a dead daemon (while it is an unreaped zombie)."""
    fields = _proc.stat_fields(pid) if pid is not None else None
    if fields is None or fields[0] != "Z" or len(fields) < 50:
        return ""
    status = int(fields[49])
    if os.WIFSIGNALED(status):
        return f" (killed by {signal_name(os.WTERMSIG(status))})"
    return f" (exit status {os.WEXITSTATUS(status)})"
