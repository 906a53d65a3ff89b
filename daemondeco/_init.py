"""PID 1 in a container: a tiny init in front of the daemon, as tini or ``docker run --init`` is.

A container's PID 1 inherits every orphan of its namespace, and a zombie
nobody waits for stays forever. Reaping them inside the daemon would also
reap the daemon's *own* children before the program could wait for them
(``subprocess`` would then report returncode 0 for a failed command): Linux
keeps no trace of an orphan's first parent, so no rule can tell the two
apart. So, as PID 1, daemondeco forks: the child becomes the daemon, and this
process stays the namespace's init. It forwards the signals an operator or a
container runtime sends (SIGTERM from ``docker stop`` among them) to the
daemon, reaps every orphan, and exits with the daemon's exit status (128 + N
when a signal N killed it) as soon as the daemon exits.
"""

from __future__ import annotations

import os

from . import _signals

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable
    from typing import NoReturn

__all__ = ["become_init_or_daemon"]

# Forwarded to the daemon. SIGKILL and SIGSTOP cannot be caught; SIGCHLD is
# ours (the wait below); the rest keep their defaults, which PID 1 ignores.
_FORWARDED = ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGWINCH", "SIGCONT")


def become_init_or_daemon(close_fds: Callable[[set[int]], None]) -> None:
    """As PID 1: fork; return in the child (the daemon to be); never return here (the init).

    *close_fds* is the engine's: the init keeps only fds 0-2, so that a
    ``ready_fd`` or a pipe it inherited cannot hide the daemon's end of file.
    """
    from ._stdio import flush_stdio

    flush_stdio()
    daemon = os.fork()
    if daemon == 0:
        return
    _serve(daemon, close_fds)


def _serve(daemon: int, close_fds: Callable[[set[int]], None]) -> NoReturn:
    """Forward signals to *daemon*, reap everything, exit with the daemon's status."""

    def forward(signum: int, frame: object) -> None:
        try:
            os.kill(daemon, signum)
        except ProcessLookupError:
            pass

    _signals.forward(_FORWARDED, forward)
    close_fds({0, 1, 2})
    while True:
        try:
            pid, status = os.waitpid(-1, 0)  # retried after a forwarding handler (PEP 475)
        except ChildProcessError:  # pragma: no cover - the daemon was reaped elsewhere
            os._exit(1)
        if pid == daemon:
            code = os.waitstatus_to_exitcode(status)
            os._exit(128 - code if code < 0 else code)
