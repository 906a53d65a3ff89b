"""Type aliases shared by the modules; imported only while type checking."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Sequence
from typing import Any, Literal, Protocol, TypeAlias

from typing_extensions import TypedDict

__all__ = ["DaemonOptions", "FdLike", "Handler", "PathLike"]


class HasFileno(Protocol):
    """An object that owns a file descriptor: a socket, a file, a server."""

    def fileno(self) -> int:
        """Return the underlying file descriptor."""
        ...


FdLike: TypeAlias = "int | HasFileno"
PathLike: TypeAlias = "str | os.PathLike[str]"
Handler: TypeAlias = "Callable[[int, Any], object] | int | None"


class DaemonOptions(TypedDict, total=False):
    """The keyword options of ``@daemon``, ``@process_daemonize`` and ``daemonize()``, for type checkers.

    ``tests/test_structure.py`` checks that these keys are exactly the options
    ``Options.build`` accepts.
    """

    pidfile: PathLike | None
    stdin: PathLike
    stdout: PathLike | None
    stderr: PathLike | None
    workdir: PathLike
    umask: int
    keep_fds: Sequence[FdLike]
    ready: str
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
    restart: Literal["on-failure", "on-abnormal", "always"] | None
    restart_delay: float
    restart_backoff: float
    restart_max_delay: float
    restart_reset_after: float
    start_limit: tuple[int, float] | None
    restart_prevent_exit_codes: Sequence[int]
    instances: int | None
    listen: dict[str, str | socket.socket] | None
    on_drain: Callable[[], object] | None
    drain_timeout: float | None
