"""The wire between two generations of a daemon during an upgrade: what the old one hands the new one.

The upgrading daemon (``_upgrade``) starts its successor's launcher with
``DAEMONDECO_HANDOVER`` naming the fds it inherits (the pidfile's open file
description, the state file, the ``listen=`` sockets) and
``DAEMONDECO_SUCCESSOR_REPORT`` naming a pipe the successor's daemon writes
its pid to, first of all. The launcher reads both (:func:`read_handover`,
:func:`take_report_fd`: ``_engine``), its daemon reports
(:func:`report_to_predecessor`: ``_daemon``). Defined here, in a module
every start loads, so that the upgrade itself (``_upgrade``) is loaded
only by a daemon that listens.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Mapping

__all__ = [
    "HANDOVER_VARIABLE",
    "SUCCESSOR_REPORT_VARIABLE",
    "Handover",
    "handover_environ",
    "read_handover",
    "report_to_predecessor",
    "take_report_fd",
]

HANDOVER_VARIABLE = "DAEMONDECO_HANDOVER"  # "PID;pidfile=FD;state=FD;name=FD,..." from the previous generation
# Also from the previous generation: "PID:FD", the pipe the successor's daemon writes its own pid to as its
# first act, so that the old generation can watch (and stop) it even if its launcher is killed (_upgrade).
SUCCESSOR_REPORT_VARIABLE = "DAEMONDECO_SUCCESSOR_REPORT"


class Handover:
    """What a previous generation handed us: the pidfile's and state file's fds, the sockets."""

    __slots__ = ("pid", "pidfile", "sockets", "state")

    def __init__(self, pid: int, pidfile: int | None, state: int | None, sockets: dict[str, int]) -> None:
        self.pid = pid
        self.pidfile = pidfile
        self.state = state
        self.sockets = sockets


def handover_environ(pid: int, pidfile: int | None, state: int | None, sockets: Mapping[str, int]) -> str:
    """The value of ``DAEMONDECO_HANDOVER`` describing these fds."""
    fields = [str(pid), f"pidfile={-1 if pidfile is None else pidfile}", f"state={-1 if state is None else state}"]
    fields.append(",".join(f"{name}={fd}" for name, fd in sockets.items()))
    return ";".join(fields)


def _alive(pid: int) -> bool:
    """Whether *pid* runs and is not a zombie (``/proc``)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            data = stat.read()
    except OSError:  # gone (or no /proc: then the adopted pidfile's checks still hold)
        return False
    return data[data.rindex(b")") + 2 :][:1] not in (b"Z", b"X", b"x")


def read_handover() -> Handover | None:
    """The handover from our parent (the previous generation), if any; the variable is removed.

    Only a variable set by our parent counts: one inherited from further up
    (a shell that kept it) is ignored.
    """
    text = os.environ.pop(HANDOVER_VARIABLE, None)
    if not text:
        return None
    try:
        pid_text, pidfile_text, state_text, socket_text = text.split(";", 3)
        pid = int(pid_text)
        pidfile = int(pidfile_text.partition("=")[2])
        state = int(state_text.partition("=")[2])
        named = {}
        for item in filter(None, socket_text.split(",")):
            name, _, fd = item.rpartition("=")
            named[name] = int(fd)
    except ValueError:
        raise ValueError(f"{HANDOVER_VARIABLE}={text[:80]!r}: malformed; it is set by an upgrading daemon") from None
    if pid != os.getppid() and _alive(pid):
        return None  # a live process that is not our parent: a variable inherited from further up
    # (Our parent, or one that died after it started us -- killed during its upgrade: the fds it
    # handed over are still ours, and the successor carries on with them.)
    return Handover(pid, pidfile if pidfile >= 0 else None, state if state >= 0 else None, named)


def take_report_fd(handover: Handover | None) -> int | None:
    """The pipe to tell the upgrading daemon our daemon's pid (``SUCCESSOR_REPORT_VARIABLE``), if it set one."""
    text = os.environ.pop(SUCCESSOR_REPORT_VARIABLE, None)
    if handover is None or not text:
        return None
    pid_text, _, fd_text = text.partition(":")
    if not (pid_text.isdigit() and fd_text.isdigit()) or int(pid_text) != handover.pid:
        return None
    fd = int(fd_text)
    try:
        os.set_inheritable(fd, False)  # what the successor runs must not hold it open
    except OSError:  # not open: nothing to report to
        return None
    return fd


def report_to_predecessor(fd: int | None) -> None:
    """In an upgrade's successor daemon, first of all: tell the old generation our pid, then close the pipe."""
    if fd is None:
        return
    try:
        os.write(fd, f"{os.getpid()}\n".encode())
    except OSError:  # the old generation is gone (killed): nobody to tell
        pass
    finally:
        os.close(fd)
