"""Controlling daemons from outside: stop and status by pidfile, and the DaemonProcess handle.

The pidfile lock is the source of truth: a pid is only signalled while its
pidfile is locked, and a stop is complete when the lock is released and the
process itself (pid and start time) is gone: a daemon lets go of its lock
while it exits (``PF_EXITING``), a stopper that finds it so waits for it. Waiting
is event-driven: a pidfd wakes us when the process exits; if a forked child
of the daemon still holds the lock, the pidfile's watcher blocks in ``flock``.
A stop that had to SIGKILL (or a daemon no longer allowed to remove its own
file) leaves the file behind: the stopper removes it, so that ``status``
then says "not running" (LSB 3), not "dead but pidfile exists".
"""

from __future__ import annotations

import os
import time

from . import _proc
from ._errors import DaemonError, ReloadError, UpgradeError
from ._options import STOP_TIMEOUT, stop_timeout
from ._pidfile import Watcher
from ._signals import SIGHUP, SIGUSR2
from ._state import anonymous_state_path, read_state, state_path

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable

    from ._options import Options

__all__ = [
    "DaemonProcess",
    "can_upgrade",
    "pidfile_path",
    "reload_pidfile",
    "status_pidfile",
    "status_report",
    "stop_pidfile",
    "upgrade_pidfile",
]


def pidfile_path(options: Options, action: str) -> str:
    """The absolute pidfile path *action* needs, or DaemonError saying how to configure one."""
    path = options.pidfile
    if path is None:
        raise DaemonError(
            f"{action}() needs a pidfile to find the daemon: decorate with @daemon(pidfile='/run/name.pid')"
        )
    return os.path.abspath(path)


def _stopped(watcher: Watcher, pid: int, start_time: int | None, timeout: float) -> bool:
    """Wait until *pid* has exited and nobody holds the lock; True if within *timeout*."""
    deadline = time.monotonic() + timeout
    if not _proc.wait_exit(pid, timeout, start_time):
        return False  # still running, whatever the lock says
    # Something the daemon forked may still hold the lock: wait for it too.
    return watcher.wait_released(deadline - time.monotonic())


# A supervisor (restart=) gives its worker stop_timeout, then SIGKILLs the worker's process group
# itself: whoever stops the supervisor waits that long and this much more before a SIGKILL, which
# would leave the worker's own children running (PR_SET_PDEATHSIG reaches only the worker).
SUPERVISOR_GRACE = 5.0


def stop_pidfile(path: str, timeout: float, *, on_kill: Callable[[int, float], None] | None = None) -> bool:
    """Stop the daemon holding *path*'s lock: SIGTERM, wait, SIGKILL after *timeout*.

    A supervisor (``restart=``) gets ``SUPERVISOR_GRACE`` more seconds: it
    escalates on its worker's process group at *timeout* itself.

    True when no daemon holds the pidfile afterwards (also when none did);
    then a file the daemon left behind is removed. False when the lock could
    not be released, or is held by a process that has not written its pid yet.
    ``on_kill(pid, timeout)`` is called right before a SIGKILL, when the
    daemon outlived *timeout* seconds after SIGTERM.
    """
    watcher = Watcher.open(path)
    if watcher is None:
        return True
    with watcher:
        if not watcher.locked():
            return _exited(watcher.read_pid(), timeout)
        pid = watcher.holder_pid()
        if pid is None:
            return not watcher.locked()  # a start that failed meanwhile: nothing runs
        start_time = _proc.identity(pid)
        state = read_state(state_path(path))
        if state and state.get("supervised") and state.get("pid") == pid:
            timeout += SUPERVISOR_GRACE
        killing = None if on_kill is None else (lambda: on_kill(pid, timeout))
        stopped = _proc.escalate(
            pid, start_time, timeout, lambda wait: _stopped(watcher, pid, start_time, wait), killing
        )
        if stopped:
            watcher.remove_if_stale(pid, companions=(state_path(path),))
        return stopped


def _exited(pid: int | None, timeout: float) -> bool:
    """A pidfile found unlocked: wait until the daemon it names, if caught exiting, is gone (True).

    A daemon lets go of its lock as its very last act, which the kernel does
    when it closes the daemon's files in ``exit()``: the process is then
    marked exiting (``PF_EXITING``) but not a zombie yet. Such a process is
    waited for (SIGKILL after *timeout*, for one stuck there); any other pid
    in a stale file is someone else's and left alone.
    """
    if pid is None or not _proc.exiting(pid):
        return True
    start_time = _proc.identity(pid)
    return _proc.wait_exit(pid, timeout, start_time) or _proc.terminate(pid, 0.0, start_time)


def status_pidfile(path: str) -> int | None:
    """The pid of the daemon running under *path*, else None.

    Running means: the pidfile is locked and the pid it names is alive and not
    a zombie. A stale file (unlocked), whatever pid it names, is not running.
    """
    return _live_holder(path, wait_for_pid=False)


def _live_holder(path: str, *, wait_for_pid: bool) -> int | None:
    """The pid of the live daemon holding *path*'s lock, else None.

    With *wait_for_pid*, a daemon that holds the lock but is still starting
    gets a moment to write its pid (``Watcher.holder_pid``).
    """
    watcher = Watcher.open(path)
    if watcher is None:
        return None
    with watcher:
        if not watcher.locked():
            return None
        pid = watcher.holder_pid() if wait_for_pid else watcher.read_pid()
    return pid if pid is not None and _proc.is_alive(pid) else None


def reload_pidfile(path: str, timeout: float | None) -> int:
    """SIGHUP the daemon holding *path*; return its pid once it has finished the reload.

    Waits for a reload that *started* after the signal was sent (so it saw
    whatever changed before the call), as recorded in the daemon's state
    file; wakes on the file's changes (inotify) and on the daemon's death
    (pidfd), never on a timer where those exist.

    Raises:
        ReloadError: ``on_reload`` raised (with the daemon's traceback; the
            daemon keeps running), the daemon exited during the reload, it
            did not finish within *timeout* s, or no daemon runs
            (``running=False``).

    """
    pid = _live_holder(path, wait_for_pid=True)
    if pid is None:
        raise ReloadError(f"no daemon is running (pidfile {path!r})", running=False)
    spath = state_path(path)
    if read_state(spath) is None:
        raise ReloadError(f"daemon (pid {pid}) keeps no state file {spath!r}: a reload cannot be acknowledged", pid=pid)
    start_time = _proc.identity(pid)
    with _StateWatch(spath, pid) as watch:
        sent_at = time.monotonic_ns()
        os.kill(pid, SIGHUP)
        deadline = _proc.deadline_in(timeout)
        while True:
            record = (read_state(spath) or {}).get("reload")
            if isinstance(record, dict) and record.get("finished_ns") and record.get("started_ns", 0) >= sent_at:
                if record.get("ok"):
                    return pid
                raise ReloadError(
                    f"daemon (pid {pid}) failed to reload; it keeps running with its previous state",
                    pid=pid,
                    daemon_traceback=str(record.get("error") or ""),
                )
            if not _proc.is_alive(pid, start_time):
                raise ReloadError(f"daemon (pid {pid}) exited during reload", pid=pid)
            if not watch.wait(deadline):
                raise ReloadError(f"daemon (pid {pid}) did not finish its reload within {timeout:g} s", pid=pid)


def _upgrade_refusal(path: str, pid: int) -> str | None:
    """Why the daemon *pid* of *path* cannot be upgraded now, or None."""
    state = read_state(state_path(path))
    if state is None:
        return f"daemon (pid {pid}) keeps no state file next to its pidfile: an upgrade cannot be acknowledged"
    if not state.get("sockets"):
        return f"daemon (pid {pid}) has no listen= sockets: nothing to hand over; use restart"
    refused = state.get("upgrade_refused")
    if refused:
        return f"daemon (pid {pid}) cannot be upgraded: {refused}"
    if state.get("state") == "upgrading":
        return f"daemon (pid {pid}) is already being upgraded: wait for that upgrade to finish"
    if state.get("state") != "ready":
        return f"daemon (pid {pid}) is {state.get('state') or 'starting'}: upgrade it once it is ready"
    return None


def can_upgrade(path: str) -> bool:
    """True if a daemon runs under *path* and could hand its sockets to a successor now (``restart`` asks)."""
    pid = _live_holder(path, wait_for_pid=False)
    return pid is not None and _upgrade_refusal(path, pid) is None


def upgrade_pidfile(path: str, timeout: float | None) -> tuple[int, int]:
    """Upgrade the daemon holding *path*: its successor takes its sockets and pidfile; (old pid, new pid).

    Sends SIGUSR2 and waits -- on the state file's changes (inotify) and the
    daemon's exit (pidfd) -- until the pidfile names a live successor (which
    writes its pid only once ready) or the daemon records that its successor
    failed.

    Raises:
        UpgradeError: no daemon runs (``running=False``), the daemon cannot be
            upgraded (no ``listen=`` sockets, under systemd, an upgrade already
            in progress), the successor failed (with its output and traceback;
            the old daemon keeps serving), or *timeout* passed.

    """
    pid = _live_holder(path, wait_for_pid=True)
    if pid is None:
        raise UpgradeError(f"no daemon is running (pidfile {path!r})", running=False)
    refusal = _upgrade_refusal(path, pid)
    if refusal is not None:
        raise UpgradeError(refusal, pid=pid)
    spath = state_path(path)
    start_time = _proc.identity(pid)
    with _StateWatch(spath, pid) as watch:
        sent_at = time.monotonic_ns()
        os.kill(pid, SIGUSR2)
        deadline = _proc.deadline_in(timeout)
        while True:
            successor = _successor(path, pid)
            if successor is not None:
                return pid, successor
            record = (read_state(spath) or {}).get("upgrade")
            # An upgrade that ended after the signal: ours, or one already under way when it came
            # (the daemon then ignored the signal: its outcome is this request's too). Its start
            # says which, not its end: a second request must never wait for an upgrade that never comes.
            finished = record.get("finished_ns") if isinstance(record, dict) else None
            if isinstance(record, dict) and isinstance(finished, int) and finished >= sent_at:
                joined = "an upgrade already in progress failed" if record.get("started_ns", 0) < sent_at else ""
                raise UpgradeError(
                    f"daemon (pid {pid}) could not be upgraded: "
                    f"{joined or 'its successor failed'}; the daemon keeps serving",
                    pid=pid,
                    daemon_traceback=str(record.get("error") or ""),
                )
            if not _proc.is_alive(pid, start_time):
                return pid, _orphaned_successor(path, pid, deadline, timeout, watch)
            if not watch.wait(deadline):
                raise UpgradeError(f"daemon (pid {pid}) did not finish its upgrade within {timeout:g} s", pid=pid)


def _orphaned_successor(path: str, pid: int, deadline: float | None, timeout: float | None, watch: _StateWatch) -> int:
    """The daemon *pid* died during its upgrade: its successor, which holds the lock, may still take over.

    Wait (on the state file, which the successor writes once ready) while
    the pidfile stays locked; the successor's pid once it names itself there.
    """
    watch.forget_exit()
    while True:
        successor = _successor(path, pid)
        if successor is not None:
            return successor
        watcher = Watcher.open(path)
        held = watcher is not None and watcher.locked()
        if watcher is not None:
            watcher.close()
        if not held:
            raise UpgradeError(f"daemon (pid {pid}) exited during the upgrade, and no successor took over", pid=pid)
        if not watch.wait(deadline):
            raise UpgradeError(f"daemon (pid {pid}) did not finish its upgrade within {timeout:g} s", pid=pid)


def _successor(path: str, pid: int) -> int | None:
    """The live pid the locked pidfile names, if it is not *pid* (the upgraded daemon)."""
    named = _live_holder(path, wait_for_pid=False)
    return named if named is not None and named != pid else None


class _StateWatch:
    """Wakes when the state file changes or the daemon exits (inotify and pidfd; else a short backoff)."""

    def __init__(self, path: str, pid: int) -> None:
        import select

        self._poller = select.poll()
        self._fds: list[int] = []
        self._interval = 0.001
        self._events = 0
        notify = _inotify(path)
        if notify is not None:
            self._fds.append(notify)
            self._events += 1
        self._pidfd: int | None = None
        pidfd_open = getattr(os, "pidfd_open", None)
        if pidfd_open is not None:
            try:
                self._pidfd = pidfd_open(pid)
                self._fds.append(self._pidfd)
                self._events += 1
            except OSError:
                pass
        for fd in self._fds:
            self._poller.register(fd, select.POLLIN)

    def forget_exit(self) -> None:
        """The daemon has exited (its pidfd stays readable): from now on wake on the state file, else a backoff."""
        if self._pidfd is not None:
            self._poller.unregister(self._pidfd)
            self._events -= 1
            self._pidfd = None

    def __enter__(self) -> _StateWatch:
        return self

    def __exit__(self, *exc_info: object) -> None:
        for fd in self._fds:
            os.close(fd)

    def wait(self, deadline: float | None) -> bool:
        """Wait for a change (or a moment without inotify); False once *deadline* passed."""
        if deadline is not None and time.monotonic() >= deadline:
            return False
        if self._events < 2:  # without inotify: look again after a growing interval
            left = None if deadline is None else deadline - time.monotonic()
            wait = self._interval if left is None else max(0.0, min(self._interval, left))
            self._interval = min(self._interval * 2, 0.05)
            for fd, _ in self._poller.poll(int(wait * 1000)):
                _drain(fd)
            return True
        for fd, _ in _proc.poll_until(self._poller, deadline):
            _drain(fd)
        return True


def _drain(fd: int) -> None:
    try:
        os.read(fd, 65536)  # inotify events (a pidfd is not readable: harmless)
    except OSError:
        pass


def _inotify(path: str) -> int | None:
    """An inotify fd watching *path* for writes (Linux), or None."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        fd: int = libc.inotify_init1(os.O_CLOEXEC | os.O_NONBLOCK)
    except (ImportError, OSError, AttributeError):  # pragma: no cover - not Linux
        return None
    if fd < 0:  # pragma: no cover - out of inotify instances
        return None
    in_modify, in_delete_self, in_move_self = 0x2, 0x400, 0x800
    if libc.inotify_add_watch(fd, os.fsencode(path), in_modify | in_delete_self | in_move_self) < 0:
        os.close(fd)
        return None
    return fd


def status_report(path: str) -> tuple[int, dict[str, object]]:
    """The LSB status code of the daemon of *path* and its state, as ``status --json`` prints it.

    Read from the pidfile's lock, the daemon's state file and ``/proc``:
    ``pid``, ``state`` (``starting``, ``ready``, ``reloading``, ``stopping``,
    ``stopped``, ``stale``), ``uptime_s``, ``cpu_s``, ``rss_bytes``,
    ``threads``, ``fds``, ``status`` (the last ``notify_status()`` text) and
    ``last_reload``; what cannot be read is ``None``.
    """
    report: dict[str, object] = dict.fromkeys(
        ("pid", "state", "uptime_s", "cpu_s", "rss_bytes", "threads", "fds", "status", "last_reload")
    )
    pid = status_pidfile(path)
    if pid is None:
        stale = os.path.lexists(path)
        report["state"] = "stale" if stale else "stopped"
        return (1 if stale else 3), report
    report["pid"] = pid
    state = read_state(state_path(path))
    report["state"] = (state or {}).get("state") or "starting"
    if state:
        report["status"] = state.get("status")
        report["last_reload"] = _reload_summary(state.get("reload"))
        if state.get("supervised"):
            report.update(_supervision(state))
    report.update(_proc.facts(pid))
    return 0, report


def _supervision(state: dict[str, object]) -> dict[str, object]:
    """A supervisor's history (``restart=``): the worker's pid, restarts, last exit, time to the next restart."""
    next_ns = state.get("next_restart_ns")
    next_in = None
    if isinstance(next_ns, int):
        next_in = round(max(0, next_ns - time.monotonic_ns()) / 1e9, 3)
    restarts = state.get("restarts")
    return {
        "worker_pid": state.get("worker_pid"),
        "restarts": restarts if isinstance(restarts, int) else 0,
        "last_exit": state.get("last_exit"),
        "next_restart_in": next_in,
    }


def _reload_summary(record: object) -> dict[str, object] | None:
    if not isinstance(record, dict) or not record.get("finished_ns"):
        return None
    return {"generation": record.get("generation"), "ok": record.get("ok"), "error": record.get("error")}


# Workers that are this process's children: it is PID 1 or a child subreaper,
# so the double-forked workers were re-parented to it. Pid -> start time; each
# is reaped once it has exited, so that none stays a zombie of the caller.
_our_children: dict[int, int | None] = {}


def _reap_exited_children() -> None:
    for pid, start_time in list(_our_children.items()):
        if _proc.identity(pid) != start_time or _proc.reap_if_child(pid):
            del _our_children[pid]


class DaemonProcess:
    """A handle on a daemon started by a ``@process_daemonize`` function.

    The daemon is not a child of the caller (it was double-forked), so it
    never becomes the caller's zombie; the handle identifies it by pid and
    start time, so a reused pid is never mistaken for it or signalled. Where
    the caller is PID 1 or a child subreaper, which inherit orphans, the
    worker does become its child: it is then reaped once it has exited (when
    the handle sees it gone, or at the next worker's start).

    Attributes:
        pid: the daemon's process id.
        pidfile: the path of its pidfile, or None.

    .. versionadded:: 0.1

    """

    def __init__(self, pid: int, pidfile: str | None = None, *, stop_timeout: float = STOP_TIMEOUT) -> None:
        self.pid = pid
        self.pidfile = pidfile
        self._stop_timeout = stop_timeout
        self._start_time = _proc.identity(pid)

    @classmethod
    def started(cls, pid: int, pidfile: str | None, *, stop_timeout: float) -> DaemonProcess:
        """The handle of a worker this process just started."""
        _reap_exited_children()
        process = cls(pid, pidfile, stop_timeout=stop_timeout)
        fields = _proc.stat_fields(pid)
        if fields is not None and int(fields[1]) == os.getpid():
            _our_children[pid] = process._start_time
        return process

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "exited"
        where = f", pidfile={self.pidfile!r}" if self.pidfile else ""
        return f"<DaemonProcess pid={self.pid}{where} {state}>"

    def _reap(self) -> None:
        """Once the worker has exited: reap it if it became our child (PID 1, subreaper)."""
        if self.pid in _our_children and _proc.reap_if_child(self.pid):
            del _our_children[self.pid]

    def _supervision(self) -> dict[str, object]:
        """The supervisor's history (``restart=``): from ``<pidfile>.state``, or its private file without one."""
        if not self.is_running():
            return {}
        path = state_path(self.pidfile) if self.pidfile is not None else anonymous_state_path(self.pid)
        state = read_state(path) if path is not None else None
        if not state or not state.get("supervised") or state.get("pid") != self.pid:
            return {}
        if state.get("identity") not in (None, self._start_time):
            return {}  # left by an earlier process that had this pid
        return _supervision(state)

    @property
    def worker_pid(self) -> int | None:
        """With ``restart=``: the pid of the worker running the function now (None between two workers).

        :attr:`pid` is the supervisor's, which the pidfile names. None
        without ``restart=``. The history lives in ``<pidfile>.state``, or
        without a pidfile in a private per-user directory under the
        system's temp directory (not with ``user=``/``chroot=``).

        .. versionadded:: 0.1
        """
        pid = self._supervision().get("worker_pid")
        return pid if isinstance(pid, int) else None

    @property
    def restarts(self) -> int:
        """With ``restart=``: how many times the supervisor restarted the function (0 otherwise).

        .. versionadded:: 0.1
        """
        count = self._supervision().get("restarts")
        return count if isinstance(count, int) else 0

    @property
    def last_exit(self) -> dict[str, object] | None:
        """With ``restart=``: how the last worker ended, else None.

        A dict: ``pid``, ``status`` (exit status, or None when killed),
        ``signal`` (``"SIGKILL"``, or None), ``clean`` (systemd's meaning),
        ``uptime_s``, ``exception`` (``"ValueError: ..."`` when it raised),
        ``traceback``, ``time`` (``time.time()`` of the death).

        .. versionadded:: 0.1
        """
        last = self._supervision().get("last_exit")
        return last if isinstance(last, dict) else None

    @property
    def next_restart_in(self) -> float | None:
        """With ``restart=``: seconds until the next worker starts, while the supervisor waits; else None.

        .. versionadded:: 0.1
        """
        wait = self._supervision().get("next_restart_in")
        return wait if isinstance(wait, float) else None

    def is_running(self) -> bool:
        """True while the daemon runs (a zombie or a reused pid does not count)."""
        if _proc.is_alive(self.pid, self._start_time):
            return True
        self._reap()
        return False

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the daemon to exit; True once it has (False at *timeout*)."""
        if not _proc.wait_exit(self.pid, timeout, self._start_time):
            return False
        self._reap()
        return True

    def stop(self, timeout: float | None = None) -> bool:
        """SIGTERM, wait up to *timeout* s (default ``stop_timeout``), then SIGKILL.

        Returns True when the daemon is no longer running, also when it had
        already exited.
        """
        wait = stop_timeout(timeout, self._stop_timeout)
        if not self.is_running():
            return True
        grace = SUPERVISOR_GRACE if self._supervision() else 0.0
        deadline = time.monotonic() + wait + grace
        if self.pidfile is not None and status_pidfile(self.pidfile) == self.pid:
            stopped = stop_pidfile(self.pidfile, wait)
            # The daemon lets go of its pidfile right before it exits (and one exiting by itself may
            # have let go already): only the process itself, by pid and start time, says it is gone.
            if stopped and not _proc.wait_exit(self.pid, max(0.0, deadline - time.monotonic()), self._start_time):
                stopped = _proc.terminate(self.pid, 0.0, self._start_time)
        else:
            stopped = _proc.terminate(self.pid, wait + grace, self._start_time)
        if stopped:
            self._reap()
        return stopped
