"""Controlling a daemon: ``.status()``, ``.stop()``, ``.restart()``, ``.run()``, ``.cli()``.

Also ``python -m daemondeco status|stop PIDFILE``. Exit codes follow the LSB
init-script spec (REFERENCE.md §4). Every daemon is real; its state is read
from outside: the pidfile and its lock, ``/proc/<pid>/stat``, its log.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import Result, Sandbox, alive, read_pid, wait_exit, wait_for_text, wait_until, zombie_status_or_none

from daemondeco import Pidfile

# The service under test. Words after the cli action reach main() as strings:
# "ignore-term" makes the daemon ignore SIGTERM (set before it reports ready).
SERVICE = """
import os, signal, sys, time
from daemondeco import daemon, notify_ready

HERE = os.path.dirname(os.path.abspath(__file__))
PIDFILE = os.path.join(HERE, "d.pid")
LOG = os.path.join(HERE, "d.log")

@daemon(pidfile=PIDFILE, stdout=LOG, ready="notify",
        stop_timeout=float(os.environ.get("SVC_STOP_TIMEOUT", "10")))
def main(*args):
    if "ignore-term" in args:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print("up", os.getpid(), list(args), flush=True)
    try:
        notify_ready()  # inside the try: a SIGTERM right after readiness still runs finally
        while True:
            time.sleep(60)
    finally:
        print("finally ran", os.getpid(), flush=True)

@daemon(pidfile=os.path.join(HERE, "job.pid"))
def job(*args):
    print("job", os.getppid(), list(args), flush=True)
    return int(args[0]) if args else None

@daemon(stdout=os.path.join(HERE, "nopid.log"))
def nopid():
    print("nopid up", os.getpid(), flush=True)
    time.sleep(60)

if __name__ == "__main__":
    target = {"main": main, "job": job, "nopid": nopid}[os.environ.get("SVC_TARGET", "main")]
    sys.exit(target.cli())
"""

@pytest.fixture
def svc(sandbox: Sandbox) -> Path:
    """The service script, written into the sandbox (importable as ``svc``)."""
    return sandbox.write("svc.py", SERVICE)


def ctl(sandbox: Sandbox, *argv: str, **env: str) -> Result:
    """Run ``svc.py ARGV`` (its ``.cli()``)."""
    return sandbox.run_file(sandbox.path / "svc.py", *argv, **env)


def py(sandbox: Sandbox, code: str, **env: str) -> Result:
    """Run Python *code* in a fresh process, next to ``svc.py``."""
    return sandbox.run(code, name="query.py", **env)


def module(sandbox: Sandbox, *argv: str) -> Result:
    """Run ``python -m daemondeco ARGV``."""
    return sandbox.run_module(*argv)

def start(sandbox: Sandbox, *words: str) -> int:
    """``svc.py start WORDS``; the daemon's pid (up and ready when this returns)."""
    return sandbox.start_daemon(sandbox.path / "svc.py", "start", *words, says="started (pid {pid})")


def log(sandbox: Sandbox) -> str:
    return (sandbox.path / "d.log").read_text()


def assert_exited_0(pid: int) -> None:
    status = zombie_status_or_none(pid)
    assert status is not None, f"{pid} is not an exited daemon"
    assert os.WIFEXITED(status), f"{pid} was killed by signal {os.WTERMSIG(status)}"
    assert os.WEXITSTATUS(status) == 0


def assert_killed_by_sigkill(pid: int) -> None:
    status = zombie_status_or_none(pid)
    assert status is not None, f"{pid} is not an exited daemon"
    assert os.WIFSIGNALED(status), f"{pid} exited with status {os.WEXITSTATUS(status)}, not by a signal"
    assert os.WTERMSIG(status) == signal.SIGKILL


def sleeper(sandbox: Sandbox) -> subprocess.Popen[bytes]:
    """An unrelated live process, tracked for teardown."""
    proc = subprocess.Popen(["sleep", "60"])
    sandbox.extra_pids.append(proc.pid)
    return proc


# -- status ------------------------------------------------------------------


@pytest.mark.usefixtures("svc")
def test_status_when_never_started_is_3(sandbox: Sandbox) -> None:
    result = ctl(sandbox, "status")
    assert result.returncode == 3, result
    assert "not running" in result.stdout
    assert py(sandbox, "import svc; print(svc.main.status())").stdout.strip() == "None"
    assert not (sandbox.path / "d.pid").exists()


@pytest.mark.usefixtures("svc")
def test_status_of_running_daemon_is_0_with_its_pid(sandbox: Sandbox) -> None:
    pid = start(sandbox)
    result = ctl(sandbox, "status")
    assert result.returncode == 0, result
    assert f"running (pid {pid})" in result.stdout
    assert py(sandbox, "import svc; print(svc.main.status())").stdout.strip() == str(pid)


@pytest.mark.usefixtures("svc")
def test_status_after_kill_9_is_1_dead_but_pidfile_exists(sandbox: Sandbox) -> None:
    pid = start(sandbox)
    os.kill(pid, signal.SIGKILL)
    assert wait_exit(pid)
    assert not alive(pid)
    result = ctl(sandbox, "status")
    assert result.returncode == 1, result
    assert "pidfile" in result.stdout
    assert "d.pid" in result.stdout
    assert py(sandbox, "import svc; print(svc.main.status())").stdout.strip() == "None"


@pytest.mark.usefixtures("svc")
def test_status_without_a_pidfile_option_is_4(sandbox: Sandbox) -> None:
    result = ctl(sandbox, "status", SVC_TARGET="nopid")
    assert result.returncode == 4, result
    assert "pidfile" in result.stderr
    raised = py(sandbox, "import svc; svc.nopid.status()")
    assert raised.returncode != 0, raised
    assert "DaemonError" in raised.stderr, raised
    assert "pidfile" in raised.stderr, raised


@pytest.mark.usefixtures("svc")
def test_stop_without_a_pidfile_option_fails_with_1(sandbox: Sandbox) -> None:
    result = ctl(sandbox, "stop", SVC_TARGET="nopid")
    assert result.returncode == 1, result
    assert "pidfile" in result.stderr
    assert sandbox.live_pids() == []


# -- start, stop, restart by cli ----------------------------------------------------


@pytest.mark.usefixtures("svc")
def test_cli_start_without_a_pidfile_option_starts_the_daemon(sandbox: Sandbox) -> None:
    """A pidfile is optional: ``start`` only needs one to check for a running daemon."""
    result = ctl(sandbox, "start", SVC_TARGET="nopid")
    assert result.returncode == 0, result
    pid = int(wait_for_text(sandbox.path / "nopid.log", "\n").split()[2])
    assert alive(pid)
    assert sandbox.live_pids() == [pid]


@pytest.mark.usefixtures("svc")
def test_start_on_a_running_daemon_is_0_and_starts_nothing(sandbox: Sandbox) -> None:
    pid = start(sandbox)
    result = ctl(sandbox, "start")
    assert result.returncode == 0, result
    assert f"already running (pid {pid})" in result.stdout
    assert read_pid(sandbox.path / "d.pid") == pid
    assert sandbox.live_pids() == [pid]
    assert log(sandbox).count("up ") == 1


@pytest.mark.usefixtures("svc")
def test_stop_on_a_stopped_daemon_is_0(sandbox: Sandbox) -> None:
    result = ctl(sandbox, "stop")
    assert result.returncode == 0, result
    assert "not running" in result.stdout
    assert py(sandbox, "import svc; print(svc.main.stop())").stdout.strip() == "True"


@pytest.mark.usefixtures("svc")
def test_cli_stop_ends_the_daemon_cleanly(sandbox: Sandbox) -> None:
    pid = start(sandbox)
    result = ctl(sandbox, "stop")
    assert result.returncode == 0, result
    assert f"stopped (pid {pid})" in result.stdout
    assert not alive(pid)
    assert zombie_status_or_none(pid) in (None, 0)  # None: already reaped
    assert f"finally ran {pid}" in log(sandbox)
    assert not (sandbox.path / "d.pid").exists()
    assert ctl(sandbox, "status").returncode == 3


@pytest.mark.usefixtures("svc")
def test_cli_start_passes_extra_words_as_strings(sandbox: Sandbox) -> None:
    pid = start(sandbox, "alpha", "42")
    assert f"up {pid} ['alpha', '42']" in log(sandbox)


@pytest.mark.usefixtures("svc")
def test_cli_restart_replaces_the_daemon(sandbox: Sandbox) -> None:
    first = start(sandbox, "one")
    result = ctl(sandbox, "restart", "two")
    assert result.returncode == 0, result
    second = read_pid(sandbox.path / "d.pid")
    assert second != first
    assert not alive(first)
    assert alive(second)
    assert f"finally ran {first}" in log(sandbox)
    assert f"up {second} ['two']" in log(sandbox)
    assert sandbox.live_pids() == [second]


@pytest.mark.usefixtures("svc")
def test_cli_restart_when_stopped_starts(sandbox: Sandbox) -> None:
    result = ctl(sandbox, "restart")
    assert result.returncode == 0, result
    pid = read_pid(sandbox.path / "d.pid")
    assert sandbox.live_pids() == [pid]


@pytest.mark.usefixtures("svc")
def test_restart_method_stops_then_starts(sandbox: Sandbox) -> None:
    first = start(sandbox)
    result = py(sandbox, 'import svc\nsvc.main.restart("again")\nprint("restart returned")')
    assert result.returncode == 0, result
    assert "restart returned" not in result.stdout, "restart() must not return in the launcher"
    second = read_pid(sandbox.path / "d.pid")
    assert second != first
    assert not alive(first)
    assert f"up {second} ['again']" in log(sandbox)
    assert sandbox.live_pids() == [second]


@pytest.mark.usefixtures("svc")
@pytest.mark.parametrize(
    "argv",
    [
        pytest.param([], id="no-action"),
        pytest.param(["bogus"], id="unknown-action"),
        pytest.param(["--bogus"], id="unknown-option"),
        pytest.param(["STOP"], id="wrong-case"),
    ],
)
def test_cli_usage_error_is_2(sandbox: Sandbox, argv: list[str]) -> None:
    result = ctl(sandbox, *argv)
    assert result.returncode == 2, result
    assert "usage:" in result.stderr
    assert "start" in result.stderr
    assert "status" in result.stderr
    assert sandbox.live_pids() == []
    assert not (sandbox.path / "d.pid").exists()


@pytest.mark.usefixtures("svc")
@pytest.mark.parametrize("flag", [pytest.param("--help", id="long"), pytest.param("-h", id="short")])
def test_cli_help_is_0(sandbox: Sandbox, flag: str) -> None:
    result = ctl(sandbox, flag)
    assert result.returncode == 0, result
    assert "usage:" in result.stdout
    for action in ("start", "stop", "restart", "status", "run"):
        assert action in result.stdout
    assert sandbox.live_pids() == []


@pytest.mark.usefixtures("svc")
@pytest.mark.parametrize(
    ("words", "code"),
    [
        pytest.param(["7", "x"], 7, id="returns-7"),
        pytest.param(["0"], 0, id="returns-0"),
        pytest.param([], 0, id="returns-None"),
    ],
)
def test_cli_run_runs_in_the_foreground_and_returns_the_function_int(
    sandbox: Sandbox, words: list[str], code: int
) -> None:
    result = ctl(sandbox, "run", *words, SVC_TARGET="job")
    assert result.returncode == code, result
    # The function ran in the process the test started (its parent is us), not in a daemon.
    assert f"job {os.getpid()} {words!r}" in result.stdout.splitlines()
    assert sandbox.live_pids() == []
    assert not (sandbox.path / "job.pid").exists()


# -- stop() ------------------------------------------------------------------


@pytest.mark.usefixtures("svc")
def test_stop_method_returns_true_and_runs_finally(sandbox: Sandbox) -> None:
    pid = start(sandbox)
    result = py(sandbox, "import svc; print(svc.main.stop())")
    assert result.stdout.strip() == "True", result
    assert not alive(pid)
    assert f"finally ran {pid}" in log(sandbox)
    assert not (sandbox.path / "d.pid").exists()


@pytest.mark.usefixtures("svc")
def test_sigterm_runs_finally_exits_0_and_removes_the_pidfile(sandbox: Sandbox) -> None:
    pid = start(sandbox)
    os.kill(pid, signal.SIGTERM)
    assert wait_exit(pid)
    assert f"finally ran {pid}" in log(sandbox)
    assert not (sandbox.path / "d.pid").exists()
    assert_exited_0(pid)


@pytest.mark.usefixtures("svc")
def test_stop_escalates_to_sigkill_when_sigterm_is_ignored(sandbox: Sandbox) -> None:
    pid = start(sandbox, "ignore-term")
    began = time.monotonic()
    result = py(
        sandbox,
        """
        import time, svc
        began = time.monotonic()
        print(svc.main.stop(timeout=0.5), time.monotonic() - began)
        """,
    )
    outside = time.monotonic() - began
    assert result.returncode == 0, result
    answer, elapsed = result.stdout.split()
    assert answer == "True"
    assert 0.5 <= float(elapsed) < 5.0, elapsed
    assert outside < 5.0
    assert not alive(pid)
    assert_killed_by_sigkill(pid)
    assert "finally ran" not in log(sandbox)


@pytest.mark.usefixtures("svc")
def test_stop_default_timeout_is_the_stop_timeout_option(sandbox: Sandbox) -> None:
    result = ctl(sandbox, "start", "ignore-term", SVC_STOP_TIMEOUT="0.2")
    assert result.returncode == 0, result
    pid = read_pid(sandbox.path / "d.pid")
    began = time.monotonic()
    stopped = ctl(sandbox, "stop", SVC_STOP_TIMEOUT="0.2")
    assert stopped.returncode == 0, stopped
    assert time.monotonic() - began < 5.0
    assert_killed_by_sigkill(pid)


@pytest.mark.usefixtures("svc")
def test_stop_never_signals_the_pid_of_an_unlocked_pidfile(sandbox: Sandbox) -> None:
    other = sleeper(sandbox)
    path = sandbox.path / "d.pid"
    path.write_text(f"{other.pid}\n")

    assert py(sandbox, "import svc; print(svc.main.stop(timeout=0.2))").stdout.strip() == "True"
    assert ctl(sandbox, "stop").returncode == 0
    assert module(sandbox, "stop", str(path), "--timeout", "0.2").returncode == 0
    assert alive(other.pid), "stop() signalled a process whose pidfile was not locked"
    assert py(sandbox, "import svc; print(svc.main.status())").stdout.strip() == "None"
    assert ctl(sandbox, "status").returncode == 1
    assert path.read_text() == f"{other.pid}\n"
    other.kill()
    other.wait()


@pytest.mark.usefixtures("svc")
def test_stop_during_a_start_never_signals_the_stale_pid(sandbox: Sandbox) -> None:
    """While a launcher holds the lock but its daemon has not written its pid, the old pid is not the daemon's."""
    other = sleeper(sandbox)
    path = sandbox.path / "d.pid"
    path.write_text(f"{other.pid}\n")
    with sandbox.paused_launcher("import svc\nsvc.main()\n"):
        status = py(sandbox, "import svc; print(svc.main.status())").stdout.strip()
        py(sandbox, "import svc; print(svc.main.stop(timeout=0.1))")
        signalled = not alive(other.pid)
    assert not signalled, "stop() signalled the unrelated process named by the stale pidfile"
    assert status != str(other.pid), "status() reports an unrelated process as the daemon"
    other.kill()
    other.wait()


# -- python -m daemondeco ----------------------------------------------------------


@pytest.mark.usefixtures("svc")
def test_module_status_and_stop_by_pidfile(sandbox: Sandbox) -> None:
    path = sandbox.path / "d.pid"
    assert module(sandbox, "status", str(path)).returncode == 3
    pid = start(sandbox)
    status = module(sandbox, "status", "d.pid")  # relative to the cwd
    assert status.returncode == 0, status
    assert str(pid) in status.stdout
    stopped = module(sandbox, "stop", str(path))
    assert stopped.returncode == 0, stopped
    assert not alive(pid)
    assert f"finally ran {pid}" in log(sandbox)
    assert module(sandbox, "status", str(path)).returncode == 3
    assert module(sandbox, "stop", str(path)).returncode == 0


@pytest.mark.usefixtures("svc")
def test_module_status_of_a_killed_daemon_is_1(sandbox: Sandbox) -> None:
    pid = start(sandbox)
    os.kill(pid, signal.SIGKILL)
    assert wait_exit(pid)
    result = module(sandbox, "status", str(sandbox.path / "d.pid"))
    assert result.returncode == 1, result


@pytest.mark.usefixtures("svc")
def test_module_stop_timeout_escalates(sandbox: Sandbox) -> None:
    pid = start(sandbox, "ignore-term")
    began = time.monotonic()
    result = module(sandbox, "stop", str(sandbox.path / "d.pid"), "--timeout", "0.3")
    assert result.returncode == 0, result
    assert time.monotonic() - began < 5.0
    assert_killed_by_sigkill(pid)


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param([], id="nothing"),
        pytest.param(["status"], id="no-pidfile"),
        pytest.param(["start", "x.pid"], id="unknown-action"),
        pytest.param(["stop", "x.pid", "--timeout", "soon"], id="timeout-not-a-number"),
    ],
)
def test_module_usage_error_is_2(sandbox: Sandbox, argv: list[str]) -> None:
    result = module(sandbox, *argv)
    assert result.returncode == 2, result
    assert "usage:" in result.stderr


@pytest.mark.usefixtures("svc")
@pytest.mark.parametrize(
    "timeout",
    [
        pytest.param("nan", id="nan"),
        pytest.param("inf", id="inf"),
        pytest.param("-1", id="negative"),
    ],
)
def test_module_stop_with_a_bad_timeout_is_a_usage_error_and_signals_nothing(sandbox: Sandbox, timeout: str) -> None:
    pid = start(sandbox)
    result = module(sandbox, "stop", str(sandbox.path / "d.pid"), "--timeout", timeout)
    assert result.returncode == 2, result
    assert "timeout" in result.stderr, result
    assert "Traceback" not in result.stderr, result
    assert alive(pid), "the daemon was signalled although the command line was rejected"
    assert "finally ran" not in log(sandbox)


@pytest.mark.parametrize("action", ["reload", "upgrade"])
@pytest.mark.parametrize("value", ["0", "soon"])
def test_a_bad_timeout_is_a_usage_error_naming_it(sandbox: Sandbox, action: str, value: str) -> None:
    result = sandbox.run_module(action, str(sandbox.path / "d.pid"), "--timeout", value)
    assert result.returncode == 2, result
    assert "--timeout" in result.stderr and value in result.stderr, result


# -- run(): the foreground -------------------------------------------------------


@pytest.mark.usefixtures("svc")
def test_run_holds_the_pidfile_and_sigterm_runs_finally(sandbox: Sandbox) -> None:
    code = 'import svc\nsvc.main.run("fg")\nprint("run returned")\n'
    proc = sandbox.popen(code, name="fg.py", stdout=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stdout.readline() == f"up {proc.pid} ['fg']\n"  # no fork: the function runs right here
    path = sandbox.path / "d.pid"
    assert read_pid(path) == proc.pid
    assert Pidfile(path).locked_by() == proc.pid

    second = py(sandbox, "import svc; svc.main()")
    assert second.returncode != 0, second
    assert "AlreadyRunningError" in second.stderr, second
    assert f"pid {proc.pid}" in second.stderr, second
    cli_start = ctl(sandbox, "start")
    assert cli_start.returncode == 0, cli_start
    assert "already running" in cli_start.stdout, cli_start
    assert ctl(sandbox, "status").returncode == 0

    os.kill(proc.pid, signal.SIGTERM)
    rest = proc.stdout.read()
    assert proc.wait(timeout=10) == 0
    assert f"finally ran {proc.pid}" in rest
    assert "run returned" not in rest, "SIGTERM must end the program through SystemExit"
    assert not path.exists()
    assert sandbox.live_pids() == []


@pytest.mark.usefixtures("svc")
def test_run_returns_the_function_value_and_releases_the_pidfile(sandbox: Sandbox) -> None:
    result = py(
        sandbox,
        """
        import os, svc
        value = svc.job.run("5")
        print("value", value, os.path.exists(os.path.join(svc.HERE, "job.pid")))
        """,
    )
    assert result.returncode == 0, result
    assert "value 5 False" in result.stdout
    assert sandbox.live_pids() == []


@pytest.mark.usefixtures("svc")
def test_run_releases_the_pidfile_when_the_function_raises(sandbox: Sandbox) -> None:
    result = py(
        sandbox,
        """
        import os, svc
        try:
            svc.job.run("not a number")
        except ValueError as exc:
            print("raised", exc.__class__.__name__, os.path.exists(os.path.join(svc.HERE, "job.pid")))
        """,
    )
    assert result.returncode == 0, result
    assert "raised ValueError False" in result.stdout


@pytest.mark.usefixtures("svc")
def test_cli_run_while_a_daemon_runs_fails(sandbox: Sandbox) -> None:
    """``run`` could not run the function: that is a failure, not the "already running" success of ``start``."""
    pid = start(sandbox)
    result = ctl(sandbox, "run")
    assert result.returncode != 0, result
    assert f"pid {pid}" in result.stdout + result.stderr
    assert sandbox.live_pids() == [pid]


@pytest.mark.usefixtures("svc")
def test_run_refused_while_a_daemon_runs(sandbox: Sandbox) -> None:
    pid = start(sandbox)
    result = py(sandbox, "import svc; svc.main.run()")
    assert result.returncode != 0, result
    assert "AlreadyRunningError" in result.stderr
    assert f"pid {pid}" in result.stderr
    assert read_pid(sandbox.path / "d.pid") == pid
    assert sandbox.live_pids() == [pid]


def test_stop_waits_for_a_child_that_inherited_the_lock(sandbox: Sandbox) -> None:
    """The daemon exits on SIGTERM but a child it forked still holds the pidfile lock: stop waits for it."""
    code = """
        import os, time
        from pathlib import Path
        from daemondeco import daemon, notify_ready
        HERE = Path(__file__).resolve().parent

        @daemon(pidfile=HERE / "d.pid", stdout=HERE / "d.log", ready="notify")
        def main():
            child = os.fork()
            if child == 0:  # inherits the locked pidfile's fd; leaves on its own
                (HERE / "child.pid").write_text(str(os.getpid()))
                time.sleep(0.5)
                os._exit(0)
            notify_ready()
            time.sleep(60)

        main()
    """
    result = sandbox.run(code)
    assert result.returncode == 0, result
    pid = read_pid(sandbox.path / "d.pid")
    began = time.monotonic()
    stopper = sandbox.run_module("stop", str(sandbox.path / "d.pid"), "--timeout", "5")
    elapsed = time.monotonic() - began
    assert stopper.returncode == 0, stopper
    assert not alive(pid)
    child = int((sandbox.path / "child.pid").read_text())
    assert not alive(child), "stop returned while the child still held the lock"
    assert elapsed < 5.0


def test_stop_returns_only_once_the_daemon_process_has_exited(sandbox: Sandbox) -> None:
    """Stop waits for the process itself, not only for its lock.

    With ``daemonize()`` the pidfile is released in an atexit handler, and
    handlers registered before ``daemonize()`` run after it: here a slow one
    (1 s) that writes a marker. A stop that returned at the lock's release
    would come back while the daemon still runs that cleanup.
    """
    code = """
        import atexit, time
        from pathlib import Path
        from daemondeco import daemonize
        HERE = Path(__file__).resolve().parent

        def slow_cleanup():
            time.sleep(1.0)
            (HERE / "cleaned").write_text("yes")

        atexit.register(slow_cleanup)  # before daemonize(): runs after the pidfile's release
        daemonize(pidfile=HERE / "d.pid", stdout=HERE / "d.log")
        while True:
            time.sleep(60)
    """
    result = sandbox.run(code)
    assert result.returncode == 0, result
    pid = read_pid(sandbox.path / "d.pid")
    stopper = module(sandbox, "stop", str(sandbox.path / "d.pid"), "--timeout", "10")
    assert stopper.returncode == 0, stopper
    assert not alive(pid), "stop returned while the daemon process still ran"
    assert (sandbox.path / "cleaned").read_text() == "yes", "stop returned before the daemon's cleanup ended"


@pytest.mark.usefixtures("svc")
def test_stop_fails_while_a_start_holds_the_lock_without_a_pid(sandbox: Sandbox) -> None:
    """A launcher holding the lock before its daemon wrote a pid: nothing can be signalled, so stop fails (1)."""
    path = sandbox.path / "d.pid"
    with sandbox.paused_launcher("import svc\nsvc.main()\n"):
        by_method = py(sandbox, "import svc; print(svc.main.stop(timeout=0.1))")
        by_module = module(sandbox, "stop", str(path), "--timeout", "0.1")
        still_locked = Pidfile(path).is_locked()
    assert by_method.stdout.strip() == "False", by_method
    assert by_module.returncode == 1, by_module
    assert "failed to stop" in by_module.stderr, by_module
    assert still_locked


def test_status_of_a_dead_daemon_whose_child_holds_the_lock_is_not_running(sandbox: Sandbox) -> None:
    """The daemon was killed but a child it forked keeps the lock: the pid in the file is dead, not running."""
    code = """
        import os, time
        from pathlib import Path
        from daemondeco import daemon, notify_ready
        HERE = Path(__file__).resolve().parent

        @daemon(pidfile=HERE / "d.pid", stdout=HERE / "d.log", ready="notify")
        def main():
            if os.fork() == 0:  # inherits the locked pidfile's fd
                (HERE / "child.pid.tmp").write_text(str(os.getpid()))
                (HERE / "child.pid.tmp").rename(HERE / "child.pid")
                time.sleep(60)
                os._exit(0)
            notify_ready()
            time.sleep(60)

        main()
    """
    result = sandbox.run(code)
    assert result.returncode == 0, result
    path = sandbox.path / "d.pid"
    pid = read_pid(path)
    wait_until((sandbox.path / "child.pid").exists, what="the daemon's child")
    child = int((sandbox.path / "child.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    assert wait_exit(pid)
    assert alive(child)
    assert Pidfile(path).locked_by() == pid, "the child holds the lock on a file naming its dead parent"
    status = module(sandbox, "status", str(path))
    assert status.returncode != 0, status
    assert f"running (pid {pid})" not in status.stdout, status


def test_ctrl_c_in_the_foreground_run_exits_130(sandbox: Sandbox) -> None:
    result = sandbox.run(
        """
import sys
from pathlib import Path
from daemondeco import daemon
HERE = Path(__file__).resolve().parent

@daemon(pidfile=HERE / "d.pid")
def main():
    raise KeyboardInterrupt

sys.exit(main.cli())
""",
        "run",
    )
    assert result.returncode == 130, result
    assert not (sandbox.path / "d.pid").exists() or daemondeco_unlocked(sandbox)


def daemondeco_unlocked(sandbox: Sandbox) -> bool:
    import daemondeco

    return daemondeco.Pidfile(sandbox.path / "d.pid").locked_by() is None


# -- stop racing exit (issue 17, point 4) ----------------------------------------------------------

# A daemon that cannot remove its pidfile (user=nobody, the file in root's directory) and holds 1 GiB,
# so that its exit() takes a while after its lock is free: the moment a stop racing its exit must not
# take for "gone". It leaves by itself on SIGUSR1; the racer waits in flock() for the lock and stops.
EXITING = """
import fcntl, os, signal, sys, time
from pathlib import Path
from daemondeco import daemon, notify_ready

HERE = Path(__file__).resolve().parent

BALLAST = []  # global: freed by exit() itself, not when serve's frame unwinds

def serve():
    BALLAST.append(b"\\x01" * (1 << 30))
    signal.signal(signal.SIGUSR1, lambda *_: sys.exit(0))
    notify_ready()
    while True:
        signal.pause()

main = daemon(pidfile=HERE / "d.pid", stdout=HERE / "d.log", user="nobody", ready="notify")(serve)

def state(pid):
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(") ", 1)[1].split()[0]
    except FileNotFoundError:
        return "gone"

def race(path, pid, stop):
    fd = os.open(path, os.O_RDONLY)
    os.kill(pid, signal.SIGUSR1)
    fcntl.flock(fd, fcntl.LOCK_SH)  # wakes the moment the daemon's lock is free
    fcntl.flock(fd, fcntl.LOCK_UN)
    stopped = stop()
    print(stopped, state(pid), flush=True)

if sys.argv[1] == "start":
    main.start()
else:
    race(HERE / "d.pid", int((HERE / "d.pid").read_text()), main.stop)
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="user=nobody needs root")
def test_stop_racing_an_exit_returns_only_once_the_process_is_gone(sandbox: Sandbox) -> None:
    """The lock goes free before the process is gone: stop must wait for the process (zombie counts as gone).

    (``DaemonProcess.stop`` racing an exit: tests/test_stress.py, many cycles.)
    """
    script = sandbox.write("app.py", EXITING)
    assert sandbox.run_file(script, "start").returncode == 0
    result = sandbox.run_file(script, "race")
    assert result.returncode == 0, result
    assert result.stdout.split() in (["True", "Z"], ["True", "gone"]), result
