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

from ._errors import path_error

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable
    from typing import Any

    from ._options import Options
    from ._pidfile import Pidfile

__all__ = [
    "EOF",
    "ERROR",
    "EXIT",
    "PID",
    "READY",
    "FrameReader",
    "Runtime",
    "SystemdNotifier",
    "notify_ready",
    "notify_status",
]

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


# Variables the service manager hands to the main process only; the daemon
# reads them once and removes them, so its own children do not inherit them.
MANAGER_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES")


class SystemdNotifier:
    """sd_notify(3) without libsystemd: datagrams to ``$NOTIFY_SOCKET``.

    The socket is connected once, at start, so it keeps working after a
    ``chroot``; a missing or broken socket is never fatal (``send`` says False).
    """

    def __init__(self, address: str, watchdog_usec: int | None) -> None:
        import socket

        self.address = address
        self.watchdog_usec = watchdog_usec
        self._socket: socket.socket | None = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            self._socket.connect("\0" + address[1:] if address.startswith("@") else address)
        except OSError:
            self._socket.close()
            self._socket = None

    @classmethod
    def from_environ(cls, *, main_process: bool = True) -> SystemdNotifier | None:
        """Read and remove the service manager's variables; a notifier if there is a socket.

        With *main_process* False (a worker started by ``process_daemonize``)
        the variables are only removed: a worker must not speak for the service.
        """
        found = {name: os.environ.pop(name) for name in MANAGER_VARIABLES if name in os.environ}
        address = found.get("NOTIFY_SOCKET", "")
        if not main_process or not address or address[0] not in "/@":
            return None
        watchdog_usec = None
        watchdog_pid = found.get("WATCHDOG_PID", "")
        if found.get("WATCHDOG_USEC", "").isdigit() and watchdog_pid in ("", str(os.getpid())):
            watchdog_usec = int(found["WATCHDOG_USEC"]) or None
        return cls(address, watchdog_usec)

    def send(self, *fields: str) -> bool:
        """Send one datagram of ``KEY=VALUE`` lines; True if it went out."""
        if self._socket is None:
            return False
        try:
            self._socket.send("\n".join(fields).encode())
        except OSError:
            return False
        return True

    def start_watchdog(self) -> None:
        """Send ``WATCHDOG=1`` every half ``WATCHDOG_USEC`` from a daemon thread."""
        if self.watchdog_usec is None:
            return
        import threading

        interval = self.watchdog_usec / 2e6
        stop = threading.Event()

        def ping() -> None:
            while not stop.wait(interval):
                self.send("WATCHDOG=1")

        threading.Thread(target=ping, name="daemondeco-watchdog", daemon=True).start()


def monotonic_usec() -> int:
    """CLOCK_MONOTONIC in microseconds, as systemd wants in ``MONOTONIC_USEC``."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


class Runtime:
    """Daemon side: what the running daemon knows about its own start.

    Two listeners may wait for readiness: the launcher, on the pipe (``fd``),
    and a service manager, on ``$NOTIFY_SOCKET`` (``notifier``). Only the
    process that created the runtime may report: a child the daemon forks
    later inherits the object, and must not speak for it.
    """

    current: Runtime | None = None

    def __init__(
        self,
        fd: int | None,
        options: Options,
        *,
        pidfile: Pidfile | None,
        notifier: SystemdNotifier | None,
        stdio_paths: tuple[str | None, str | None],
    ) -> None:
        self.owner = os.getpid()
        self.fd = fd
        # With startup_grace the launcher keeps listening after "ready".
        self.keep_open = fd is not None and options.startup_grace > 0
        self.ready_mode = options.ready
        self.on_reload: Callable[[], object] | None = options.on_reload
        self.user_signals: tuple[tuple[int, Any], ...] = options.signals
        self.pidfile = pidfile
        self.notifier = notifier
        self.stdio_paths = stdio_paths
        self.ready = False

    def _mine(self) -> bool:
        return self.fd is not None and self.owner == os.getpid()

    def notify(self, *fields: str) -> None:
        """Tell the service manager something (nothing happens without one)."""
        if self.notifier is not None and self.owner == os.getpid():
            self.notifier.send(*fields)

    def mark_ready(self) -> None:
        """Tell the launcher and the service manager that we are ready (once)."""
        if self.ready or self.owner != os.getpid():
            return
        self.ready = True
        self.notify(f"MAINPID={os.getpid()}", "READY=1")
        if self.fd is None:
            return
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

    def reload(self) -> None:
        """SIGHUP: reopen the stdout/stderr targets, then call ``on_reload``.

        A renamed log file (logrotate without copytruncate) is replaced by a
        new one at its path; buffered lines are flushed to the old one first,
        so none is lost across the switch.
        """
        # Before readiness there is nothing to reload from systemd's view, and
        # a READY=1 now would report a start that has not finished.
        tell = self.ready
        if tell:
            self.notify("RELOADING=1", f"MONOTONIC_USEC={monotonic_usec()}")
        try:
            reopen_stdio(*self.stdio_paths)
            if self.on_reload is not None:
                self.on_reload()
        except Exception:
            # A signal handler that raised would unwind whatever the main
            # thread was doing: a failed reload is reported, not fatal.
            import traceback

            print("daemondeco: reload failed, keeping the previous state:", file=sys.stderr)
            traceback.print_exc()
        finally:
            if tell:
                self.notify("READY=1")


def flush_stdio() -> None:
    """Flush sys.stdout and sys.stderr, ignoring streams that are closed or broken."""
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            try:
                stream.flush()
            except (OSError, ValueError):
                pass


def reopen_stdio(stdout: str | None, stderr: str | None) -> None:
    """Point fds 1 and 2 at freshly opened files at their configured paths.

    Every file is opened before any fd is redirected: a path that cannot be
    opened raises OSError naming it, and fds 1 and 2 stay as they were.
    """
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
    targets = ((1, stdout, "stdout target"), (2, stderr if stderr is not None else stdout, "stderr target"))
    opened: dict[str, int] = {}
    try:
        for _, path, what in targets:
            if path is not None and path not in opened:
                try:
                    opened[path] = os.open(path, flags, 0o644)
                except OSError as exc:
                    raise path_error(exc, f"cannot open {what}", path) from None
        flush_stdio()
        for target, path, _ in targets:
            if path is not None:
                os.dup2(opened[path], target)
    finally:
        for fd in opened.values():
            os.close(fd)


def notify_status(text: str) -> None:
    """Show *text* as the service's status line in ``systemctl status`` (``STATUS=``).

    A no-op unless the daemon runs under a service manager that set
    ``$NOTIFY_SOCKET``. Newlines are replaced by spaces.

    .. versionadded:: 0.2
    """
    runtime = Runtime.current
    if runtime is not None:
        runtime.notify("STATUS=" + " ".join(str(text).splitlines()))


def notify_ready() -> None:
    """Tell whoever launched this daemon that its startup is complete.

    Call it in a daemon started with ``ready="notify"`` once it can serve
    (ports bound, configuration loaded): only then does the launcher exit 0
    (``@daemon``) or return its handle (``@process_daemonize``), and only then
    does systemd (``Type=notify``) consider the service started. A failure
    before this call reaches the launcher as :class:`StartupError`.

    A no-op where nothing waits: in a child the daemon forked, after the
    first call, or outside any daemon.

    .. versionadded:: 0.1
    """
    runtime = Runtime.current
    if runtime is not None:
        runtime.mark_ready()
