"""Regression pins: each test reproduces one numbered defect, with real processes, as it was reported.

Supervisor keeps its issue-numbered end-to-end tests in one file
(``supervisor/tests/test_end_to_end.py``); these are daemondeco's. A test is
here when its docstring is the defect it pins (a race made wide enough to hit,
a generation killed at one chosen moment, a fork() made to fail for real), not
a behaviour a topic file specifies; the topic files (``test_upgrade.py``,
``test_detach.py``, ``test_supervise.py``) specify the behaviours around them.
A new pin names the issue and point in its docstring.
"""

from __future__ import annotations

import os
import signal
import socket
import sysconfig

import pytest
from conftest import Sandbox, alive, proc_stat, read_pid, wait_exit, wait_until
from test_sockets import APP, ask, free_port
from test_supervise import log, status_json
from test_upgrade import SLOW_APP, _children, _upgrade_cli, started

# -- upgrade (issue 17, points 5 and 15) -----------------------------------------------------------


# The main thread holds the GIL for 2 s once the file SPIN appears (a CPU-bound request, seen from
# the interpreter): an upgrade asked for meanwhile has started (SIGUSR2 handled) but its thread cannot
# record "upgrading" yet -- the instant before the first upgrade is recorded, made long enough to hit.
SPINNING_APP = APP.replace(
    "    daemondeco.notify_ready()\n",
    "    daemondeco.notify_ready()\n"
    "    def spin_when_asked():\n"
    "        import time\n"
    "        while not stopped.is_set():\n"
    "            if os.path.exists('SPIN'):\n"
    "                os.unlink('SPIN')\n"
    "                sys.setswitchinterval(30)\n"
    "                open('spinning', 'w').close()\n"
    "                end = time.monotonic() + 2\n"
    "                while time.monotonic() < end:\n"
    "                    pass\n"
    "                sys.setswitchinterval(0.005)\n"
    "            stopped.wait(0.01)\n",
).replace(
    "    try:\n        while True:\n            for key",
    "    try:\n        spin_when_asked()\n        while True:\n            for key",
)


@pytest.mark.skipif(
    bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
    reason="the race window is held open by keeping the GIL (setswitchinterval); a free-threaded build has none",
)
def test_a_second_upgrade_sent_before_the_first_is_recorded_reports_its_real_outcome(sandbox: Sandbox) -> None:
    """Issue 17, point 5: the daemon ignores the second SIGUSR2; its sender must get the first's outcome."""
    assert SPINNING_APP.count("spin_when_asked") == 2
    port = free_port()
    app = started(sandbox, port, SPINNING_APP)
    old = read_pid(app.pidfile)
    (sandbox.path / "FAIL").touch()  # the successor fails: nothing else tells the second request the outcome
    (sandbox.path / "SPIN").touch()
    wait_until((sandbox.path / "spinning").exists, what="the daemon busy in its main thread")
    os.kill(old, signal.SIGUSR2)  # the first upgrade: started, not yet recorded
    second = sandbox.run_module("upgrade", "--timeout", "20", str(app.pidfile), timeout=40)
    assert second.returncode == 1, second
    assert "an upgrade already in progress failed; the daemon keeps serving" in second.stderr, second
    assert "this version is broken" in second.stderr, "the first upgrade's traceback"
    assert read_pid(app.pidfile) == old and alive(old)
    assert app.run("stop").returncode == 0


# The function's finally block takes a moment after on_drain returned (closing, flushing, a last log line).
SLOW_FINALLY_APP = APP.replace(
    "    finally:\n        stopped.set()\n",
    "    finally:\n        stopped.set()\n        __import__('time').sleep(0.3)\n"
    "        with open(f'finally-{os.getpid()}', 'w') as done:\n            done.write('done')\n",
)


def test_a_drained_daemon_finishes_its_finally_blocks_uninterrupted(sandbox: Sandbox) -> None:
    """Issue 17, point 15: the SIGTERM after on_drain cut the old daemon's finally block short (a lost log line)."""
    assert SLOW_FINALLY_APP != APP
    port = free_port()
    app = started(sandbox, port, SLOW_FINALLY_APP)
    old = read_pid(app.pidfile)
    assert app.run("upgrade").returncode == 0
    assert wait_exit(old)
    assert (sandbox.path / f"finally-{old}").read_text() == "done", "the old daemon's finally block ran to its end"
    assert app.run("stop").returncode == 0


# -- upgrade: killed generations (issue 17, points 1 and 2) ----------------------------------------


# With the file HOLD, the successor's launcher waits on the FIFO gate2 before it reads the handover.
HOLDING_APP = SLOW_APP.replace(
    "LISTEN = json.loads",
    'if os.path.exists("HOLD") and "DAEMONDECO_HANDOVER" in os.environ:\n'
    '    open("holding", "w").close()\n    open("gate2").read()\n'
    "LISTEN = json.loads",
)


def _successor_daemon(sandbox: Sandbox, known: set[int]) -> int:
    """The one process of the test that is none of *known* (and not a short-lived first child)."""
    found: list[int] = []

    def one() -> bool:
        found[:] = [pid for pid in sandbox.live_pids() if pid not in known and (s := proc_stat(pid)) and s.ppid != 0]
        return len(found) == 1 and _settled(found[0])

    wait_until(one, what="the successor's daemon")
    return found[0]


def _settled(pid: int) -> bool:
    """A daemon: not a session leader (the double fork), waiting (the gate)."""
    stat = proc_stat(pid)
    return stat is not None and os.getsid(pid) != pid and stat.state == "S"


def test_a_killed_successor_launcher_leaves_no_second_generation(sandbox: Sandbox) -> None:
    """Point 1: kill -9 of the successor's launcher after it forked, before its daemon is ready."""
    port = free_port()
    app = started(sandbox, port, SLOW_APP)
    old = read_pid(app.pidfile)
    os.mkfifo(sandbox.path / "gate")
    (sandbox.path / "SLOW").touch()
    cli = _upgrade_cli(sandbox, app)
    wait_until(lambda: len(_children(old)) == 1, what="the successor's launcher")
    launcher = _children(old)[0]
    successor = _successor_daemon(sandbox, {old, cli.pid, launcher})
    os.kill(launcher, signal.SIGKILL)
    out, err = cli.communicate(timeout=30)
    assert cli.returncode == 1, (out, err)
    assert "killed by SIGKILL" in err and f"its daemon (pid {successor}) was stopped" in err, err
    assert wait_exit(successor), "the orphaned successor is gone"
    assert read_pid(app.pidfile) == old
    assert ask(socket.AF_INET, ("127.0.0.1", port)) == old
    status = sandbox.run_module("status", str(app.pidfile))
    assert status.returncode == 0 and f"pid {old}" in status.stdout, status
    assert sorted(sandbox.live_pids()) == [old], "one generation serves"
    (sandbox.path / "SLOW").unlink()
    assert app.run("upgrade").returncode == 0, "the next upgrade goes through"
    assert wait_exit(old)
    assert app.run("stop").returncode == 0


def test_a_killed_old_generation_leaves_the_successor_serving(sandbox: Sandbox) -> None:
    """Point 2: kill -9 of the old generation before its successor's launcher read the handover."""
    port = free_port()
    app = started(sandbox, port, HOLDING_APP)
    old = read_pid(app.pidfile)
    os.mkfifo(sandbox.path / "gate2")
    (sandbox.path / "HOLD").touch()
    cli = _upgrade_cli(sandbox, app)
    wait_until((sandbox.path / "holding").exists, what="the successor's launcher, held")
    launcher = _children(old)[0]
    os.kill(old, signal.SIGKILL)
    assert wait_exit(old)
    (sandbox.path / "HOLD").unlink()
    with open(sandbox.path / "gate2", "w") as gate:  # the launcher goes on, its parent dead
        gate.write("go\n")
    out, err = cli.communicate(timeout=30)
    assert cli.returncode == 0, (out, err)
    new = read_pid(app.pidfile)
    assert new not in (old, launcher) and alive(new)
    assert f"upgraded (pid {old} -> {new})" in out, out
    assert ask(socket.AF_INET, ("127.0.0.1", port)) == new, "the successor serves on the handed-over socket"
    status = sandbox.run_module("status", str(app.pidfile))
    assert status.returncode == 0 and f"pid {new}" in status.stdout, status
    assert app.run("stop").returncode == 0


# -- fork() failing for real (issue 17, point 12) --------------------------------------------------


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to nobody needs root")
def test_a_failed_fork_leaves_no_pidfile_or_log_behind(sandbox: Sandbox) -> None:
    """Issue 17, point 12: fork() failing for real (EAGAIN: RLIMIT_NPROC) in the detach undoes what prepare() made."""
    import shutil
    import tempfile

    open_dir = tempfile.mkdtemp(prefix="daemondeco-fork-")  # nobody cannot enter the sandbox (root's, 0700)
    os.chmod(open_dir, 0o1777)
    try:
        result = sandbox.run(
            """
            import os, pwd, resource, sys
            from daemondeco import daemon

            where = sys.argv[1]
            nobody = pwd.getpwnam("nobody")
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            resource.setrlimit(resource.RLIMIT_NPROC, (1, 1))  # nobody runs this process: no fork succeeds

            @daemon(pidfile=os.path.join(where, "d.pid"), stdout=os.path.join(where, "d.log"))
            def main():
                pass

            try:
                main()
            except BlockingIOError as exc:
                print("failed:", exc)
            print(sorted(os.listdir(where)))
            """,
            open_dir,
        )
        assert result.returncode == 0, result
        assert "failed: [Errno 11] Resource temporarily unavailable" in result.stdout, result
        assert result.stdout.splitlines()[-1] == "[]", "neither the pidfile nor the log file is left behind"
    finally:
        shutil.rmtree(open_dir)


FORK_APP = """
import os, resource, signal, sys
# Loaded before the privilege drop: where the interpreter lives in a directory only root may read
# (a pyenv under /root), nobody could not import them later.
import ctypes, json, select, selectors, socket, subprocess, threading, traceback  # noqa: F401
from pathlib import Path
from daemondeco import daemon, notify_ready

HERE = Path(__file__).resolve().parent

def leave_one_behind(signum, frame):
    resource.setrlimit(resource.RLIMIT_NPROC, (100, 100))
    if os.fork() == 0:
        os.setsid()
        while True:
            signal.pause()
    sys.exit(1)

@daemon(pidfile=HERE / "d.pid", stdout=HERE / "d.log", user="nobody", ready="notify", restart="always",
        restart_delay=0.2, restart_backoff=1.0, start_limit=None, startup_grace=0)
def main():
    signal.signal(signal.SIGUSR1, leave_one_behind)
    notify_ready()
    while True:
        signal.pause()

resource.setrlimit(resource.RLIMIT_NPROC, (2, 100))
sys.exit(main.cli())
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="user=nobody needs root")
def test_a_failed_fork_of_a_restart_is_retried_with_backoff(sandbox: Sandbox) -> None:
    """Issue 17, point 12: EAGAIN from fork() for a later worker is no reason for the supervisor to end."""
    supervisor = sandbox.start_daemon(sandbox.write("app.py", FORK_APP), "start")
    worker = status_json(sandbox)[1]["worker_pid"]
    assert isinstance(worker, int) and alive(worker)
    os.kill(worker, signal.SIGUSR1)
    wait_until(lambda: log(sandbox).count("cannot fork a worker") >= 2, what="two failed forks")
    assert "Resource temporarily unavailable" in log(sandbox) and "trying again in 0.2 s" in log(sandbox), log(sandbox)
    assert alive(supervisor), "the supervisor keeps trying"
    code, report = status_json(sandbox)
    assert code == 0 and report["state"] == "restarting" and report["worker_pid"] is None, report
    left = [pid for pid in sandbox.live_pids() if pid not in (supervisor, worker)]
    assert len(left) == 1, left
    os.kill(left[0], signal.SIGKILL)
    wait_until(lambda: isinstance(pid := status_json(sandbox)[1]["worker_pid"], int) and alive(pid), what="a worker")
    assert sandbox.run_module("stop", str(sandbox.path / "d.pid")).returncode == 0
    assert wait_exit(supervisor)
