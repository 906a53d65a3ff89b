"""Other processes: liveness, identity, waiting for an exit, and ending them.

``kill(pid, 0)`` is not liveness: where PID 1 does not reap orphans a dead
daemon stays a zombie and ``kill`` still succeeds. On Linux we read
``/proc/<pid>/stat`` (state and start time, so a reused pid is told apart)
and wait with a pidfd, which becomes readable when the process exits,
zombie or not. Elsewhere we fall back to ``kill(pid, 0)``.

Every wait here takes a number of seconds that may be huge (a validated
``stop_timeout`` of 1e9): ``poll()`` takes at most 2**31-1 ms, so a wait is
cut into slices of that size (``poll_until``) and never overflows.
"""

from __future__ import annotations

import errno
import os
import time

from ._signals import SIGKILL, SIGTERM

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    import select
    from collections.abc import Callable

__all__ = [
    "deadline_in",
    "escalate",
    "exiting",
    "facts",
    "identity",
    "is_alive",
    "poll_ms",
    "poll_until",
    "reap_if_child",
    "signal_quietly",
    "stat_fields",
    "terminate",
    "wait_exit",
]

_PROC = "/proc"
_KILL_GRACE = 5.0  # after SIGKILL the kernel needs moments, unless the process is stuck in D state
_MAX_POLL_MS = 2**31 - 1  # poll() takes a C int of milliseconds


def poll_ms(deadline: float | None) -> int:
    """The ``poll()`` timeout in ms until *deadline* (``time.monotonic()``; None: -1, forever), at most 2**31-1.

    Any finite deadline works, even ``time.monotonic() + 1.7976931348623157e+308``: the milliseconds are
    compared as a float before they become an int (``int(inf)`` would raise ``OverflowError``).
    """
    if deadline is None:
        return -1
    left_ms = (deadline - time.monotonic()) * 1000
    if not left_ms < _MAX_POLL_MS:  # also inf (and NaN, never a validated duration)
        return _MAX_POLL_MS
    return max(0, int(left_ms + 0.999))


def poll_until(poller: select.poll, deadline: float | None) -> list[tuple[int, int]]:
    """``poller.poll()`` until an event or *deadline* (``time.monotonic()``; None: forever)."""
    while True:
        if deadline is None:
            return poller.poll()
        events = poller.poll(poll_ms(deadline))
        if events or time.monotonic() >= deadline:
            return events


def deadline_in(timeout: float | None) -> float | None:
    """The ``time.monotonic()`` deadline *timeout* seconds from now (None: none)."""
    return None if timeout is None else time.monotonic() + timeout


def stat_fields(pid: int) -> list[str] | None:
    """Fields of ``/proc/<pid>/stat`` after the command name, or None if gone."""
    try:
        fd = os.open(f"{_PROC}/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, ProcessLookupError):
        return None
    try:
        data = os.read(fd, 4096)  # os.open/read: ~15x cheaper than open() and its io stack
    except ProcessLookupError:  # pragma: no cover - exited between open and read
        return None
    finally:
        os.close(fd)
    # The command name is in parentheses and may itself contain ") ".
    return data[data.rindex(b")") + 2 :].decode("ascii", "replace").split()


_proc_mounted: bool | None = None


def _have_proc() -> bool:
    global _proc_mounted
    if _proc_mounted is None:
        _proc_mounted = os.path.isdir(f"{_PROC}/self")
    return _proc_mounted


def identity(pid: int) -> int | None:
    """The start time of *pid* (clock ticks since boot), or None if unknown.

    Together with the pid it names one process for the life of the system.
    """
    fields = stat_fields(pid) if _have_proc() else None
    if fields is None:
        return None
    return int(fields[19])


def is_alive(pid: int, start_time: int | None = None) -> bool:
    """True if *pid* runs and is not a zombie (and started at *start_time*)."""
    if pid <= 0:
        return False
    if _have_proc():  # pragma: no branch - Linux; the kill(0) fallback is for systems without /proc
        fields = stat_fields(pid)
        if fields is None or fields[0] in ("Z", "X", "x"):
            return False
        return start_time is None or int(fields[19]) == start_time
    try:  # pragma: no cover - systems without /proc
        os.kill(pid, 0)
    except ProcessLookupError:  # pragma: no cover
        return False
    except PermissionError:  # pragma: no cover
        return True
    return True  # pragma: no cover


_PF_EXITING = 0x4  # include/linux/sched.h: set at the start of exit(), before the files are closed


def exiting(pid: int) -> bool:
    """True if *pid* is in the middle of ``exit()`` (Linux: ``PF_EXITING``), not yet a zombie."""
    fields = stat_fields(pid) if pid > 0 and _have_proc() else None
    if fields is None or fields[0] in ("Z", "X", "x"):
        return False
    return bool(int(fields[6]) & _PF_EXITING)


def wait_exit(pid: int, timeout: float | None, start_time: int | None = None) -> bool:
    """Wait until *pid* has exited; True if it did within *timeout* seconds.

    Uses a pidfd (Linux 5.3+), which wakes the moment the process exits. On
    other systems it falls back to polling with a growing interval.
    """
    if not is_alive(pid, start_time):
        return True
    pidfd_open = getattr(os, "pidfd_open", None)
    if pidfd_open is not None:
        try:
            pidfd = pidfd_open(pid)
        except ProcessLookupError:
            return True
        except OSError as exc:
            if exc.errno not in (errno.ENOSYS, errno.EPERM, errno.EINVAL):
                raise
        else:
            try:
                # The pid may have been reused between is_alive and pidfd_open.
                if not is_alive(pid, start_time):
                    return True
                import select

                poller = select.poll()
                poller.register(pidfd, select.POLLIN)
                return bool(poll_until(poller, deadline_in(timeout)))
            finally:
                os.close(pidfd)
    return _poll_exit(pid, timeout, start_time)  # pragma: no cover - non-Linux fallback


def _poll_exit(pid: int, timeout: float | None, start_time: int | None) -> bool:  # pragma: no cover
    deadline = deadline_in(timeout)
    interval = 0.001
    while is_alive(pid, start_time):
        if deadline is not None and time.monotonic() >= deadline:
            return False
        time.sleep(interval)
        interval = min(interval * 2, 0.05)
    return True


def signal_quietly(pid: int, signum: int) -> None:
    """``kill(pid, signum)``; a process already gone is no error."""
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def escalate(
    pid: int,
    start_time: int | None,
    timeout: float,
    gone: Callable[[float], bool],
    on_kill: Callable[[], None] | None = None,
) -> bool:
    """SIGTERM, ``gone(timeout)``; then SIGKILL and ``gone`` again. True once gone.

    SIGKILL goes only to the very process we sent SIGTERM to (same pid and
    start time): it may have let go of its pidfile lock already, not of life.
    *on_kill* is called right before that SIGKILL, so a caller can say the
    stop had to escalate.
    """
    signal_quietly(pid, SIGTERM)
    if gone(timeout):
        return True
    if is_alive(pid, start_time):
        if on_kill is not None:
            on_kill()
        signal_quietly(pid, SIGKILL)
    return gone(max(timeout, _KILL_GRACE))


def terminate(pid: int, timeout: float, start_time: int | None = None) -> bool:
    """SIGTERM *pid*, wait up to *timeout* s for it to exit, then SIGKILL it.

    Returns True once the process is gone. Never signals a pid that no longer
    names the process that started at *start_time*.
    """
    if start_time is None:
        start_time = identity(pid)
    if not is_alive(pid, start_time):
        return True
    return escalate(pid, start_time, timeout, lambda wait: wait_exit(pid, wait, start_time))


def reap_if_child(pid: int) -> bool:
    """Reap *pid* if it is an exited child of this process; True if it was reaped.

    A daemon is double-forked, so it is nobody's child -- except where this
    process is PID 1 or a child subreaper, which inherit orphans. Only the
    given pid is waited for: other children are the program's own business.
    """
    try:
        reaped, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return False
    return reaped == pid


def facts(pid: int) -> dict[str, object]:
    """What ``/proc`` says of a running *pid*: uptime, CPU time, memory, threads, fds (None when unreadable)."""
    found: dict[str, object] = dict.fromkeys(("uptime_s", "cpu_s", "rss_bytes", "threads", "fds"))
    fields = stat_fields(pid) if _have_proc() else None
    if fields is None:
        return found
    ticks = os.sysconf("SC_CLK_TCK")
    found["cpu_s"] = round((int(fields[11]) + int(fields[12])) / ticks, 3)
    found["threads"] = int(fields[17])
    found["rss_bytes"] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    try:
        with open(f"{_PROC}/uptime", "rb") as uptime:
            since_boot = float(uptime.read().split()[0])
        found["uptime_s"] = round(max(0.0, since_boot - int(fields[19]) / ticks), 3)
    except (OSError, ValueError, IndexError):
        pass
    try:
        found["fds"] = len(os.listdir(f"{_PROC}/{pid}/fd"))
    except OSError:  # another user's process, without root
        pass
    return found
