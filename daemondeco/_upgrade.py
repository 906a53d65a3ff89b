"""Zero-downtime upgrade: whether a daemon can have one, and the daemon's side of one.

Whether a daemon can be upgraded is answered here once (:func:`plan_upgrade`:
a :class:`Plan`, or the refusal the state file keeps for ``upgrade``). The
wire between the two generations (``DAEMONDECO_HANDOVER``,
``DAEMONDECO_SUCCESSOR_REPORT``) is ``_handover``'s, which every start loads;
this module is loaded only by a daemon that listens (``listen=``).

On SIGUSR2 (sent by ``upgrade``) the daemon, in a thread of its own:

1. records ``"upgrading"`` in its state file (a second request is refused);
2. runs its own command line again (``sys.orig_argv``, from the launcher's
   working directory), with ``DAEMONDECO_HANDOVER`` naming the fds it passes:
   the listening sockets, the pidfile's open file description (whose
   ``flock`` therefore is never released: ``status`` never says "not
   running") and the state file. That launcher takes the sockets as source
   (b) and the lock as its own, and exits 0 once its daemon is ready -- which
   writes its pid into the pidfile only then;
3. on success, gives the state file to the successor, calls ``on_drain``
   (which should stop accepting and finish the requests in flight, e.g.
   ``server.shutdown``; at most ``drain_timeout`` s), then stops itself
   (SIGTERM: ``finally`` blocks run). The successor holds the same listening
   sockets, so connections waiting in their backlog are never refused or
   reset: whoever accepts first serves them. The listening sockets are not
   closed under the daemon's own code (an accept loop on a closed fd spins);
   they close with the process;
4. on failure (exit status not 0, or no answer within ``ready_timeout`` and
   ``stop_timeout`` more), kills what it started, keeps serving, leaves the
   pidfile alone and records the successor's output (its traceback) for
   ``upgrade`` to show.

The successor's daemon writes its pid to a pipe of ours as its first act
(``DAEMONDECO_SUCCESSOR_REPORT``): its launcher may die (kill -9) after the
fork, and the daemon it left must not come up beside us. It is frozen and
looked at: ready (named in the pidfile) it completes the upgrade, else it is
killed. A drained function that returns by itself is left to finish (its
``finally`` blocks); only one still running after ``drain_timeout`` gets
SIGTERM.
"""

from __future__ import annotations

import os
import sys
import time

from ._handover import HANDOVER_VARIABLE, SUCCESSOR_REPORT_VARIABLE, handover_environ
from ._proc import is_alive, signal_quietly
from ._signals import SIGCONT, SIGKILL, SIGSTOP, SIGTERM, SIGUSR2
from ._state import upgrade_failed, upgrade_started

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable
    from typing import Protocol

    from ._options import Options

    class Runtime(Protocol):
        """What an upgrade needs of the daemon's runtime (``_runtime.Runtime``, which imports this module)."""

        options: Options
        upgrade_plan: object | None
        upgrade_requested_ns: int
        returned: bool

        def upgrade_abandoned(self) -> None:
            """The upgrade failed: this daemon keeps serving."""

        def when_returned(self, callback: Callable[[], object]) -> None:
            """Call *callback* once the function has returned or raised."""

        def record(self, fields: dict[str, object]) -> None:
            """Write *fields* (from ``_state``'s named writers) into the state file."""

        def settled_state(self) -> str:
            """The state when nothing is in progress."""

        def hand_over(self) -> None:
            """Give the pidfile and state file to the ready successor."""


__all__ = ["Plan", "plan_upgrade", "upgrade"]

_OUTPUT_LIMIT = 64 * 1024  # the successor's output kept for the error: its tail


class Plan:
    """How to start this daemon's successor: its command line, where, and the fds it inherits."""

    __slots__ = ("argv", "cwd", "pidfile", "sockets", "state")

    def __init__(self, argv: list[str], cwd: str, pidfile: int | None, state: int | None, sockets: dict[str, int]):
        self.argv = argv
        self.cwd = cwd
        self.pidfile = pidfile
        self.state = state
        self.sockets = sockets

    @classmethod
    def here(cls, cwd: str, pidfile: int | None, state: int | None, sockets: dict[str, int]) -> Plan:
        """The plan for this process's own command line (read in the launcher or the daemon alike)."""
        argv = [sys.executable, *getattr(sys, "orig_argv", sys.argv)[1:]]
        return cls(argv, cwd, pidfile, state, sockets)


# -- the policy: can this daemon be upgraded ---------------------------------


def plan_upgrade(
    options: Options,
    sockets: dict[str, int],
    *,
    form: str,
    systemd: bool,
    launch_cwd: str = "",
    pidfile: int | None = None,
    state: int | None = None,
) -> Plan | str:
    """How this daemon (of *form*: ``"detached"``, ``"worker"``, ``"foreground"``) can be upgraded, else why not.

    The one answer to "can this daemon be upgraded": a :class:`Plan`, or the
    refusal (a sentence ending in what to do instead) that the state file
    keeps for ``upgrade`` to show. *systemd*: a notifier (``NOTIFY_SOCKET``)
    was set up; *pidfile* and *state*: their fds, handed to the successor.
    """
    if form == "foreground":
        if systemd:
            return (
                "under systemd (NOTIFY_SOCKET) use the fd store instead: set FileDescriptorStoreMax= "
                "in the unit and run systemctl restart"
            )
        return "a daemon run in the foreground cannot be upgraded; use restart"
    if not sockets:
        return "nothing to hand over (no listen= sockets); use restart"
    if form == "worker" or systemd:
        return "a worker (process_daemonize) cannot be upgraded; use restart"
    if options.restart is not None:
        # The supervisor would take the old worker's drain-and-exit for a crash, and SIGUSR2 is the worker's.
        return "a supervised daemon (restart=) cannot be upgraded; use restart"
    if not launch_cwd or pidfile is None:
        return "the launcher's working directory is gone; use restart"
    if state is None:
        return "no state file next to the pidfile to acknowledge an upgrade; use restart"
    if any(signum == SIGUSR2 for signum, _ in options.signals):
        return "the signals option handles SIGUSR2, which asks for an upgrade; use restart"
    return Plan.here(launch_cwd, pidfile, state, sockets)


# -- the daemon's side: one upgrade ------------------------------------------


def upgrade(runtime: Runtime) -> None:  # pragma: no cover - its frame starts before the tracer is set
    """Run one upgrade of this daemon (the ``daemondeco-upgrade`` thread); never raises."""
    import threading

    # Started with _thread (from a signal handler, where threading's locks may
    # be held): take the tracer and profiler a threading.Thread would (coverage).
    if (trace := threading.gettrace()) is not None:
        sys.settrace(trace)
    if (profile := threading.getprofile()) is not None:
        sys.setprofile(profile)
    threading.current_thread().name = "daemondeco-upgrade"
    _upgrade(runtime)  # a new frame: traced from its first line


def _upgrade(runtime: Runtime) -> None:
    plan = runtime.upgrade_plan
    assert isinstance(plan, Plan)
    started = runtime.upgrade_requested_ns or time.monotonic_ns()
    runtime.record(upgrade_started(started))
    try:
        error = _start_successor(plan, runtime.options.ready_timeout + runtime.options.stop_timeout)
    except BaseException as exc:  # nothing may escape into the daemon
        error = f"daemondeco: could not start the successor: {type(exc).__name__}: {exc}\n"
    if error is not None:
        runtime.upgrade_abandoned()
        runtime.record(upgrade_failed(started, error, runtime.settled_state()))
        _say(f"daemondeco: upgrade failed, this daemon keeps serving:\n{error}")
        return
    runtime.hand_over()
    _drain(runtime)


def _start_successor(plan: Plan, timeout: float) -> str | None:
    """Start the successor's launcher and wait for it; None once its daemon is ready, else its output.

    The successor's daemon tells us its pid first of all (a pipe named in
    ``DAEMONDECO_SUCCESSOR_REPORT``), so the outcome never rests on its
    launcher alone: a launcher killed (or timed out) after it forked leaves a
    daemon that would come up beside us. That daemon is frozen (SIGSTOP)
    and looked at: if it has taken the pidfile it is ready, and the upgrade
    completes; otherwise it is killed, with whatever it forked, before it can.
    """
    import subprocess

    env = dict(os.environ)
    env[HANDOVER_VARIABLE] = handover_environ(os.getpid(), plan.pidfile, plan.state, plan.sockets)
    report_read, report_write = os.pipe()
    env[SUCCESSOR_REPORT_VARIABLE] = f"{os.getpid()}:{report_write}"
    fds = sorted({fd for fd in (plan.pidfile, plan.state, report_write, *plan.sockets.values()) if fd is not None})
    try:
        launcher = subprocess.Popen(
            plan.argv,
            cwd=plan.cwd,
            env=env,
            pass_fds=fds,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
    except BaseException:
        os.close(report_read)
        raise
    finally:
        os.close(report_write)
    try:
        # subprocess waits in poll() with a timeout in ms: beyond ~24.8 days (a huge ready_timeout
        # or stop_timeout) it would overflow; that long is forever.
        limit = None if not timeout < _LONGEST_WAIT else timeout
        problem = None
        try:
            output, _ = launcher.communicate(timeout=limit)
        except subprocess.TimeoutExpired:
            launcher.kill()
            output, _ = launcher.communicate()
            problem = f"daemondeco: the successor's launcher did not finish within {timeout:g} s\n"
        successor = _reported_pid(report_read, limit)
    finally:
        os.close(report_read)
    text = output[-_OUTPUT_LIMIT:].decode("utf-8", "replace")
    status = launcher.returncode
    if problem is None and status == 0:
        if _successor_named(plan.pidfile):
            return None
        return text + (
            "daemondeco: the successor's launcher exited 0, but no successor took over the pidfile "
            "(does the program refuse to start while a daemon holds its pidfile?)\n"
        )
    if problem is None:
        problem = text or f"daemondeco: the successor's launcher exited with status {status}\n"
        if status < 0:
            problem = f"{text}daemondeco: the successor's launcher was killed by {_signal_name(-status)}\n"
    if successor is not None and is_alive(successor):
        if _freeze(successor) and _successor_named(plan.pidfile):
            signal_quietly(successor, SIGCONT)  # ready already: it serves, the upgrade completes
            return None
        _kill_successor(successor)
        problem += f"daemondeco: its daemon (pid {successor}) was stopped before it could take over\n"
    return problem


_LONGEST_WAIT = (2**31 - 1) / 1000  # s: the longest poll() timeout subprocess can pass


def _reported_pid(fd: int, timeout: float | None) -> int | None:
    """The pid the successor's daemon wrote into the report pipe, or None (no daemon was forked).

    Its launcher is gone by now; the daemon writes its pid as its first act,
    and end of file comes once nothing that could still write holds the pipe.
    """
    import select

    from ._proc import deadline_in, poll_until

    poller = select.poll()
    poller.register(fd, select.POLLIN)
    data = b""
    deadline = deadline_in(timeout)
    while b"\n" not in data and poll_until(poller, deadline):
        chunk = os.read(fd, 64)
        if not chunk:
            break
        data += chunk
    first = data.split(b"\n", 1)[0].strip()
    return int(first) if first.isdigit() and int(first) > 0 else None


def _freeze(pid: int) -> bool:
    """SIGSTOP *pid* and wait until it is stopped (or gone); True once it can no longer act."""
    from ._proc import stat_fields

    signal_quietly(pid, SIGSTOP)
    delay, waited = 0.0005, 0.0
    while waited < _FREEZE_WAIT:
        fields = stat_fields(pid)
        if fields is None or fields[0] in ("T", "t", "Z", "X", "x"):
            return True
        time.sleep(delay)  # the kernel's stop of a running process: microseconds
        waited += delay
        delay = min(delay * 2, 0.02)
    return False


_FREEZE_WAIT = 5.0  # s


def _kill_successor(pid: int) -> None:
    """SIGKILL the half-started successor and its process group (what it forked), and wait for it."""
    from ._proc import wait_exit

    try:
        group = os.getpgid(pid)
    except OSError:
        group = 0
    if group > 1 and group != os.getpgid(0):
        try:
            os.killpg(group, SIGKILL)
        except OSError:
            pass
    signal_quietly(pid, SIGKILL)
    wait_exit(pid, _FREEZE_WAIT)


def _signal_name(signum: int) -> str:
    from ._signals import signal_name

    return signal_name(signum)


def _successor_named(pidfile: int | None) -> bool:
    """True if the pidfile (our fd on it) names a process other than us now: the ready successor."""
    if pidfile is None:
        return True
    first = os.pread(pidfile, 64, 0).split(b"\n", 1)[0].strip()
    return first.isdigit() and int(first) != os.getpid()


def _drain(runtime: Runtime) -> None:
    """Stop accepting, let ``on_drain`` finish the work in flight (bounded), then stop this daemon."""
    import threading

    on_drain = runtime.options.on_drain
    returned = threading.Event()
    runtime.when_returned(returned.set)
    if on_drain is not None:
        deadline = time.monotonic() + min(runtime.options.drain_timeout, threading.TIMEOUT_MAX)
        done = threading.Thread(target=_call_quietly, args=(on_drain,), name="daemondeco-drain", daemon=True)
        done.start()
        done.join(max(0.0, deadline - time.monotonic()))
        # A drained function returns (serve_forever() ends): let it finish by itself within
        # drain_timeout. A SIGTERM now would raise SystemExit in the middle of its finally blocks.
        if not runtime.returned:
            returned.wait(max(0.0, deadline - time.monotonic()))
    if not runtime.returned:
        os.kill(os.getpid(), SIGTERM)
    # As a stop would: SIGKILL-like end if the daemon outlives stop_timeout after its SIGTERM.
    threading.Event().wait(min(runtime.options.stop_timeout + 1.0, threading.TIMEOUT_MAX))
    os._exit(0)


def _call_quietly(function: object) -> None:
    try:
        function()  # type: ignore[operator]
    except BaseException as exc:
        _say(f"daemondeco: on_drain raised {type(exc).__name__}: {exc}")


def _say(text: str) -> None:
    try:
        sys.stderr.write(text if text.endswith("\n") else text + "\n")
        sys.stderr.flush()
    except BaseException:  # pragma: no cover - stderr is broken
        pass
