"""An sd_notify(3) client without libsystemd: datagrams to ``$NOTIFY_SOCKET``.

The wire format: one ``AF_UNIX``/``SOCK_DGRAM`` datagram of newline-separated
``KEY=VALUE`` lines to the path in ``$NOTIFY_SOCKET`` (``@name`` for the
abstract namespace). A missing or broken socket is never fatal. The manager's
variables, once read, are removed from the environment and from the block
that `/proc/<pid>/environ` shows (`forget_environ`).
"""

from __future__ import annotations

import os
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable, Iterable, Sequence

__all__ = ["MANAGER_VARIABLES", "SystemdNotifier", "forget_environ", "monotonic_usec", "start_watchdog"]

# Variables the service manager hands to the main process only; the daemon
# reads them once and removes them, so its own children do not inherit them.
# (The LISTEN_* variables are read by _sockets first, in the launcher; removed here too in case.)
MANAGER_VARIABLES = (
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "FDSTORE",
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
)


def forget_environ(names: Iterable[str]) -> None:
    """Blank the *names* entries in the environment block that ``/proc/<pid>/environ`` shows.

    ``os.environ.pop()`` updates libc's ``environ`` array, but the kernel's
    ``/proc/<pid>/environ`` reads the block the process was started with,
    which only an exec replaces: an operator (or a monitor) would still see a
    manager's ``LISTEN_FDS`` or ``NOTIFY_SOCKET`` there. Call this after the
    variables were popped: their entries in that block are no longer pointed
    at by anything, and are overwritten in place with NUL bytes. Best effort
    (Linux's ``/proc/self/stat`` fields 50 and 51); elsewhere, nothing.
    """
    gone = tuple(f"{name}=".encode() for name in names if name not in os.environ)
    if not gone:
        return
    try:
        with open("/proc/self/stat", "rb") as stat:
            data = stat.read()
        fields = data[data.rindex(b")") + 2 :].split()
        start, end = int(fields[50 - 3]), int(fields[51 - 3])
    except (OSError, ValueError, IndexError):
        return
    if not 0 < start < end:
        return
    import ctypes

    offset = start
    for entry in ctypes.string_at(start, end - start).split(b"\0"):
        if entry.startswith(gone):
            ctypes.memset(offset, 0, len(entry))
        offset += len(entry) + 1


class SystemdNotifier:
    """Datagrams to the service manager's notification socket.

    The socket is connected once, at start, so it keeps working after a
    ``chroot``; a missing or broken socket is never fatal (``send`` says False).
    """

    def __init__(self, address: str, watchdog_usec: int | None, fdstore: int = 0) -> None:
        import socket

        self.watchdog_usec = watchdog_usec
        self.fdstore = fdstore  # $FDSTORE: how many fds the manager keeps for us (FileDescriptorStoreMax=)
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
        forget_environ(found)  # gone from /proc/<pid>/environ too
        address = found.get("NOTIFY_SOCKET", "")
        if not main_process or not address or address[0] not in "/@":
            return None
        watchdog_usec = None
        watchdog_pid = found.get("WATCHDOG_PID", "")
        if found.get("WATCHDOG_USEC", "").isdigit() and watchdog_pid in ("", str(os.getpid())):
            watchdog_usec = int(found["WATCHDOG_USEC"]) or None
        store = found.get("FDSTORE", "")
        return cls(address, watchdog_usec, int(store) if store.isdigit() else 0)

    def send(self, *fields: str) -> bool:
        """Send one datagram of ``KEY=VALUE`` lines; True if it went out."""
        if self._socket is None:
            return False
        try:
            self._socket.send("\n".join(fields).encode())
        except OSError:
            return False
        return True

    def send_with_fds(self, fields: Sequence[str], fds: Sequence[int]) -> bool:
        """Send one datagram with *fds* attached (``SCM_RIGHTS``), as ``FDSTORE=1`` needs; True if sent."""
        if self._socket is None:
            return False
        import array
        import socket

        try:
            self._socket.sendmsg(
                ["\n".join(fields).encode()], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))]
            )
        except OSError:
            return False
        return True

    def start_watchdog(self) -> None:
        """Send ``WATCHDOG=1`` every half ``WATCHDOG_USEC`` from a daemon thread."""
        start_watchdog(self.send, self.watchdog_usec)


def start_watchdog(send: Callable[..., bool], watchdog_usec: int | None) -> None:
    """Call ``send("WATCHDOG=1")`` every half *watchdog_usec* from a daemon thread (None: never)."""
    if watchdog_usec is None:
        return
    import threading

    interval = min(watchdog_usec / 2e6, threading.TIMEOUT_MAX)
    stop = threading.Event()

    def ping() -> None:
        while not stop.wait(interval):
            send("WATCHDOG=1")

    threading.Thread(target=ping, name="daemondeco-watchdog", daemon=True).start()


def monotonic_usec() -> int:
    """CLOCK_MONOTONIC in microseconds, as systemd wants in ``MONOTONIC_USEC``."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
