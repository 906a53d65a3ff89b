"""Type aliases shared by the modules; imported only while type checking."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Sequence
from typing import Any, Literal, Protocol, TypeAlias

from typing_extensions import TypedDict

__all__ = [
    "DaemonOptions",
    "DaemonizeOptions",
    "FdLike",
    "Handler",
    "LastExit",
    "PathLike",
]


class HasFileno(Protocol):
    """An object that owns a file descriptor: a socket, a file, a server."""

    def fileno(self) -> int:
        """Return the underlying file descriptor."""
        ...


FdLike: TypeAlias = "int | HasFileno"
PathLike: TypeAlias = "str | os.PathLike[str]"
Handler: TypeAlias = "Callable[[int, Any], object] | int | None"


# The enumerated options, as Literal types: ready="notfiy" is an error before anything runs.
ReadyMode: TypeAlias = 'Literal["auto", "start", "notify"]'
RestartMode: TypeAlias = 'Literal["on-failure", "on-abnormal", "always"]'


class DaemonizeOptions(TypedDict, total=False):
    """The keyword options of ``daemonize()``, for type checkers: those of ``@daemon`` but ``restart``.

    ``daemonize()`` has no function to run again: ``restart=`` (and
    ``instances=``) raise ``TypeError`` there, and a type checker refuses them.
    ``tests/test_structure.py`` checks that these keys, ``restart`` and
    ``instances`` (a keyword of ``process_daemonize``'s overloads) are exactly
    the options ``Options.build`` accepts.
    """

    pidfile: PathLike | None
    stdin: PathLike
    stdout: PathLike | None
    stderr: PathLike | None
    workdir: PathLike
    umask: int
    keep_fds: Sequence[FdLike]
    ready: ReadyMode
    ready_fd: int | None
    startup_grace: float
    ready_timeout: float
    stop_timeout: float
    detach: bool | None
    user: str | int | None
    group: str | int | None
    chroot: PathLike | None
    prevent_core: bool
    on_reload: Callable[[], object] | None
    signals: dict[int, Any] | None
    restart_delay: float
    restart_backoff: float
    restart_max_delay: float
    restart_reset_after: float
    start_limit: tuple[int, float] | None
    restart_prevent_exit_codes: Sequence[int]
    listen: dict[str, str | socket.socket] | None
    on_drain: Callable[[], object] | None
    drain_timeout: float | None


class DaemonOptions(DaemonizeOptions, total=False):
    """The keyword options of ``@daemon`` (and, with ``instances=``, of ``@process_daemonize``).

    Not ``instances``: ``@daemon`` refuses it (a program's main is one
    process); ``process_daemonize``'s overloads take it as a keyword of its
    own, so that ``instances=N`` gives a :class:`WorkerGroup`.
    """

    restart: RestartMode | None


class LastExit(TypedDict):
    """How a supervised worker last ended: ``DaemonProcess.last_exit``, as ``_supervise`` records it."""

    pid: int
    status: int | None
    signal: str | None
    clean: bool
    uptime_s: float
    exception: str | None
    traceback: str | None
    time: float
