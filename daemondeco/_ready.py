"""The readiness pipe between a daemon and the process that launched it.

The launcher blocks in ``poll()`` on the read end; the daemon writes small
frames (one tag byte, a 4-byte length, a payload) on the write end:

* ``P`` the daemon's pid, its first act;
* ``R`` ready (``notify_ready()``, or right before the function with
  ``ready="start"``);
* ``E`` a startup failure: JSON with the exception's type, message, traceback;
* ``X`` the daemon exited before the launcher stopped listening (its status).

End of file without ``R`` means the daemon died without a word. Nothing here
sleeps: the launcher wakes on data, on end of file, or at its deadline.
"""

from __future__ import annotations

import os
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from ._pidfile import Pidfile

__all__ = ["EOF", "ERROR", "EXIT", "PID", "READY", "FrameReader", "Runtime", "notify_ready"]

PID, READY, ERROR, EXIT, EOF = b"P", b"R", b"E", b"X", b""


def send(fd: int, tag: bytes, payload: bytes = b"") -> bool:
    """Write one frame; False if the launcher is gone (or the fd closed)."""
    data = tag + len(payload).to_bytes(4, "big") + payload
    try:
        while data:
            data = data[os.write(fd, data) :]
    except OSError:  # BrokenPipeError: nobody listens any more
        return False
    return True


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
            wait_ms = max(0, int((deadline - time.monotonic()) * 1000 + 0.999))
            if not self._poller.poll(wait_ms):
                if time.monotonic() >= deadline:
                    return None
                continue  # pragma: no cover - poll woke early
            chunk = os.read(self._fd, 65536)
            if chunk:
                self._buffer += chunk
            else:
                self._eof = True

    def _take(self) -> tuple[bytes, bytes] | None:
        if len(self._buffer) < 5:
            return None
        size = int.from_bytes(self._buffer[1:5], "big")
        if len(self._buffer) < 5 + size:
            return None
        tag, payload = self._buffer[:1], self._buffer[5 : 5 + size]
        self._buffer = self._buffer[5 + size :]
        return tag, payload


class Runtime:
    """Daemon side: what the running daemon knows about its own start.

    Only the process that created it (the daemon) may use it: a child the
    daemon forks later inherits the object, and must not report for it.
    """

    current: Runtime | None = None

    def __init__(self, fd: int | None, *, keep_open: bool, pidfile: Pidfile | None, ready_mode: str) -> None:
        self.owner = os.getpid()
        self.ready_mode = ready_mode
        self.fd = fd
        self.keep_open = keep_open
        self.pidfile = pidfile
        self.ready = fd is None

    def _mine(self) -> bool:
        return self.fd is not None and self.owner == os.getpid()

    def mark_ready(self) -> None:
        """Tell the launcher we are ready (once)."""
        if self.ready or not self._mine():
            return
        self.ready = True
        assert self.fd is not None
        if sys.stdout is not None:
            sys.stdout.flush()
        send(self.fd, READY)
        if not self.keep_open:
            self.close()

    def failed(self, exc: BaseException) -> None:
        """Report a startup failure (a no-op once nobody listens)."""
        if self._mine():
            assert self.fd is not None
            send(self.fd, ERROR, describe_exception(exc))
            self.close()

    def exited(self, status: int | None) -> None:
        """Report that the daemon is exiting with *status* (None: unknown)."""
        if self._mine():
            assert self.fd is not None
            send(self.fd, EXIT, b"" if status is None else str(status).encode())
            self.close()

    def close(self) -> None:
        """Close our end of the pipe: from now on nobody is told anything."""
        if self._mine():
            assert self.fd is not None
            os.close(self.fd)
        self.fd = None


def notify_ready() -> None:
    """Tell whoever launched this daemon that its startup is complete.

    Call it in a daemon started with ``ready="notify"`` once it can serve
    (ports bound, configuration loaded): only then does the launcher exit 0
    (``@daemon``) or return its handle (``@process_daemonize``). A failure
    before this call reaches the launcher as :class:`StartupError`.

    A no-op where nothing waits: in ``.run()``, in a child the daemon forked,
    after the first call, or outside any daemon.

    .. versionadded:: 0.1
    """
    runtime = Runtime.current
    if runtime is not None:
        runtime.mark_ready()
