"""daemondeco.testing: DaemonRunner, used the way a user's own test suite uses it.

Each test writes a small application module (``app.py``) into the sandbox and
either a script that drives it with DaemonRunner, or a user-style test file
that a nested ``python -m pytest`` runs. The daemons are checked from outside
(/proc, pidfiles, logs); the sandbox's teardown kills by pid whatever a test
left, daemons included (they inherit the sandbox's environment marker).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPORT, Sandbox, alive, proc_stat, read_pid, reports, wait_exit, zombie_status_or_none

APP = """
import asyncio, os, signal, sys
from daemondeco import daemon, notify_ready, process_daemonize

# Paths nobody can create: started as they are, these daemons would fail in
# the launcher, so a daemon that starts proves the runner replaced them.
NOWHERE = "/nonexistent/daemondeco-app"


def idle():
    while True:
        signal.pause()


@daemon(pidfile=NOWHERE + "/serve.pid", stdout=NOWHERE + "/serve.log", ready="notify", stop_timeout=60)
def serve(greeting="hello"):
    print(f"{greeting} from pid {os.getpid()} cwd {os.getcwd()}")
    print("stderr line", file=sys.stderr)
    notify_ready()
    print("ready")
    try:
        idle()
    finally:
        print("stopping serve")


@daemon(pidfile=NOWHERE + "/crash.pid", ready="notify")
def crash(*args):
    print("loading the configuration")
    raise ValueError("bad config: port missing")


@daemon(ready="notify")
def give_up():
    print("config missing, giving up")
    sys.exit(3)


@daemon(ready="start")  # ready as it is called: it ends at once on purpose
def quick():
    print("done quickly")


@daemon(stop_timeout=60)
def stubborn():
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print("ignoring SIGTERM")
    idle()


@daemon(stdout=NOWHERE + "/aserve.log", ready="notify")
async def aserve(name):
    await asyncio.sleep(0)
    print(f"async {name} up in pid {os.getpid()}")
    notify_ready()
    try:
        await asyncio.Event().wait()
    finally:
        print("stopping aserve")


@process_daemonize(stdout=NOWHERE + "/work.log")
def work(n):
    print(f"worker {n} in pid {os.getpid()}")
    try:
        idle()
    finally:
        print("stopping work")


def plain(n):
    print(f"plain {n} in pid {os.getpid()}")
    try:
        idle()
    finally:
        print("stopping plain")


class Service:
    def __init__(self, name):
        self.name = name

    @daemon(pidfile=NOWHERE + "/method.pid")
    def main(self, extra):
        print(f"method {self.name} {extra} in pid {os.getpid()}")
        try:
            idle()
        finally:
            print("stopping method")


@daemon(ready="notify")
def logs():
    import logging

    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("app").info("logged in pid %d", os.getpid())
    notify_ready()
    idle()


@daemon
def partial():
    signal.signal(signal.SIGUSR1, lambda *_: print(" done"))
    print("progress: 50%", end="", flush=True)
    idle()


@daemon
def lingering():
    import atexit

    atexit.register(idle)  # never returns: the pidfile is released, the process stays
    print("registered")
    idle()


def compute(a, b, pidfile=None):
    from pathlib import Path

    return {"sum": a + b, "pid": os.getpid(), "pidfile": Path(pidfile).read_text() if pidfile else None}
"""

HEADER = """
import json, os, signal, sys, time
from pathlib import Path
import app
from daemondeco import AlreadyRunningError, StartupError
from daemondeco.testing import DaemonRunner
HERE = Path(__file__).resolve().parent
"""

DONE = "script done in pid"
FOOTER = f'\nprint("{DONE}", os.getpid(), flush=True)\n'


def check_done(stdout: str) -> int:
    """The script ran to its end, in one process: nothing forked away printed it twice."""
    done = [line for line in stdout.splitlines() if line.startswith(DONE)]
    assert len(done) == 1, stdout
    return int(done[0].split()[-1])


def run_script(box: Sandbox, body: str, **env: str) -> list[dict[str, object]]:
    box.write("app.py", APP)
    result = box.run_reporting(HEADER + body + FOOTER, **env)
    check_done(result.stdout)
    return result.reports()


def run_user_suite(box: Sandbox, test_code: str) -> subprocess.CompletedProcess[str]:
    """Run a user's test file under a nested pytest, in the sandbox."""
    box.write("app.py", APP)
    box.write("pytest.ini", "[pytest]\n")  # the sandbox is the user's project root
    box.write("test_user_service.py", test_code)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--basetemp={box.path / 'basetemp'}"],
        cwd=box.path,
        env=box.env(),
        capture_output=True,
        text=True,
        timeout=50,
        stdin=subprocess.DEVNULL,
    )


def zombie_signal(pid: int) -> int | None:
    """The signal that killed *pid*, read from its zombie; None if it was reaped."""
    status = zombie_status_or_none(pid)
    if status is None:
        return None
    return os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0


# -- the lifecycle -------------------------------------------------------------


def test_start_look_and_stop_checked_from_outside(sandbox: Sandbox) -> None:
    sandbox.write("app.py", APP)
    script = """
runner = DaemonRunner(app.serve, directory=HERE / "run")
with runner.start("hi") as d:
    first = d.wait_for_log("hi from")
    d.wait_for_log("ready")
    try:
        runner.start("again")
        second = "started"
    except AlreadyRunningError as exc:
        second = exc.pid
    report(pid=d.pid, pidfile=str(d.pidfile), log_path=str(d.log_path), directory=str(d.directory),
           running=d.is_running(), first=first, second=second, me=os.getpid(), stop_timeout=runner.stop_timeout,
           handle_pid=d.process.pid, handle_pidfile=d.process.pidfile)
    sys.stdin.readline()  # the outer test looks at the daemon meanwhile
report(running=d.is_running(), log=d.log())
"""
    proc = sandbox.popen(REPORT + HEADER + script + FOOTER, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    data = json.loads(proc.stdout.readline())
    pid, me = data["pid"], data["me"]
    assert isinstance(pid, int) and isinstance(me, int)
    run = sandbox.path / "run"
    assert data["directory"] == str(run)
    assert data["pidfile"] == str(run / "daemon.pid") and data["handle_pidfile"] == str(run / "daemon.pid")
    assert data["log_path"] == str(run / "daemon.log")
    assert data["handle_pid"] == pid and data["running"] is True
    assert data["first"] == f"hi from pid {pid} cwd /", "wait_for_log returns the line"
    assert data["second"] == pid, "a second start in the same directory is refused, naming the running daemon"
    assert data["stop_timeout"] == 5.0, "the runner's default, not the app's stop_timeout=60"

    assert alive(pid) and read_pid(run / "daemon.pid") == pid
    stat = proc_stat(pid)
    assert stat is not None
    assert stat.tty_nr == 0 and stat.session != os.getsid(me) and stat.ppid != me, "a detached daemon"
    log = (run / "daemon.log").read_text()
    assert log == f"hi from pid {pid} cwd /\nstderr line\nready\n", "stdout and stderr both go to the log"

    proc.stdin.write("\n")
    proc.stdin.flush()
    rest, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, rest
    assert check_done(rest) == me, "the test process went on, and only it"
    after = reports(rest)[-1]
    assert after["running"] is False
    assert not alive(pid)
    assert after["log"] == log + "stopping serve\n", "SIGTERM: the daemon's finally block ran"
    assert not (run / "daemon.pid").exists(), "the daemon removed its pidfile"
    assert (run / "daemon.log").exists(), "a given directory is kept"


def test_a_block_that_raises_still_stops_the_daemon(sandbox: Sandbox) -> None:
    [data] = run_script(
        sandbox,
        """
try:
    with DaemonRunner(app.serve, directory=HERE / "run").start() as d:
        d.wait_for_log("ready")
        raise RuntimeError("the test body failed")
except RuntimeError as exc:
    report(pid=d.pid, error=str(exc), running=d.is_running(), log=d.log())
""",
    )
    pid = data["pid"]
    assert isinstance(pid, int)
    assert data["error"] == "the test body failed", "the body's exception propagates"
    assert data["running"] is False and not alive(pid)
    assert str(data["log"]).endswith("stopping serve\n")


def test_stop_escalates_to_sigkill_after_the_runners_stop_timeout(sandbox: Sandbox) -> None:
    [data] = run_script(
        sandbox,
        """
runner = DaemonRunner(app.stubborn, directory=HERE / "run", stop_timeout=0.3)
with runner.start() as d:
    d.wait_for_log("ignoring SIGTERM")
    began = time.monotonic()
    stopped = d.stop()
    took = time.monotonic() - began
report(pid=d.pid, stopped=stopped, took=took, running=d.is_running())
""",
    )
    pid = data["pid"]
    assert isinstance(pid, int) and isinstance(data["took"], float)
    assert data["stopped"] is True and data["running"] is False
    assert 0.3 <= data["took"] < 5, "SIGKILL after stop_timeout=0.3, not the app's 60 s"
    assert not alive(pid)
    assert zombie_signal(pid) in (None, 9)


# -- startup failures -----------------------------------------------------------


def test_a_daemon_failing_at_startup_raises_startup_error_with_its_traceback(sandbox: Sandbox) -> None:
    tmp = sandbox.path / "tmp"
    tmp.mkdir()
    data = run_script(
        sandbox,
        """
for target in (app.crash, app.give_up):
    try:
        DaemonRunner(target).start()
    except StartupError as exc:
        report(pid=exc.pid, type=exc.exc_type, message=str(exc), traceback=exc.daemon_traceback,
               status=exc.exit_status, notes=getattr(exc, "__notes__", []),
               frames=[frame.f_code.co_filename for frame, _ in __import__("traceback").walk_tb(exc.__traceback__)])
    else:
        report(error="no StartupError")
""",
        TMPDIR=str(tmp),
    )
    crash, give_up = data
    for failed in data:
        assert isinstance(failed["pid"], int) and not alive(failed["pid"])
        frames = failed["frames"]
        assert isinstance(frames, list) and frames
        assert not any(name.endswith(("_engine.py", "_decorators.py")) for name in frames), "launcher frames: noise"
    assert crash["type"] == "ValueError"
    assert "failed before it was ready: ValueError: bad config: port missing" in str(crash["message"])
    traceback = str(crash["traceback"])
    assert 'raise ValueError("bad config: port missing")' in traceback and "app.py" in traceback
    assert traceback.rstrip() in str(crash["message"]), "the message carries the daemon's traceback"

    assert give_up["status"] == 3 and give_up["traceback"] is None
    if sys.version_info >= (3, 11):
        assert isinstance(give_up["notes"], list) and len(give_up["notes"]) == 1
        assert "config missing, giving up" in give_up["notes"][0], "no traceback: the log's tail tells why"
    assert list(tmp.iterdir()) == [], "the runner removed the directories it made"
    assert sandbox.live_pids() == []


# -- wait_for_log -----------------------------------------------------------------


def test_wait_for_log_times_out_with_the_logs_tail(sandbox: Sandbox) -> None:
    [data] = run_script(
        sandbox,
        """
with DaemonRunner(app.serve, directory=HERE / "run").start("hi") as d:
    d.wait_for_log("ready")
    began = time.monotonic()
    try:
        d.wait_for_log("never printed", timeout=0.2)
        error = None
    except AssertionError as exc:
        error = str(exc)
    report(error=error, took=time.monotonic() - began, pid=d.pid)
""",
    )
    error, took = data["error"], data["took"]
    assert isinstance(error, str) and isinstance(took, float)
    assert "'never printed' did not appear" in error and "within 0.2 s" in error
    assert error.endswith(f"    hi from pid {data['pid']} cwd /\n    stderr line\n    ready"), error
    assert 0.2 <= took < 5


def test_wait_for_log_fails_at_once_when_the_daemon_exits(sandbox: Sandbox) -> None:
    [data] = run_script(
        sandbox,
        """
with DaemonRunner(app.quick, directory=HERE / "run").start() as d:
    began = time.monotonic()
    try:
        d.wait_for_log("never printed", timeout=30)
        error = None
    except AssertionError as exc:
        error = str(exc)
    took = time.monotonic() - began
    report(error=error, took=took, found=d.wait_for_log("done", timeout=30))
""",
    )
    error, took = data["error"], data["took"]
    assert isinstance(error, str) and isinstance(took, float)
    assert "exited before 'never printed' appeared" in error and error.endswith("    done quickly")
    assert took < 15, "an exited daemon ends the wait, not the 30 s timeout"
    assert data["found"] == "done quickly", "a line written before the exit is still found"


# -- options ----------------------------------------------------------------------


def test_overrides_are_validated_before_anything_starts(sandbox: Sandbox) -> None:
    tmp = sandbox.path / "tmp"
    tmp.mkdir()
    data = run_script(
        sandbox,
        """
for kwargs in ({"stop_timout": 1}, {"ready_timeout": -1}, {"pidfile": None}, {"directory": 5}):
    try:
        DaemonRunner(app.serve, **kwargs)
        report(kwargs=repr(kwargs), error=None)
    except (TypeError, ValueError) as exc:
        report(kwargs=repr(kwargs), error=f"{type(exc).__name__}: {exc}")
try:
    DaemonRunner("app.serve")
except TypeError as exc:
    report(error=str(exc))
""",
        TMPDIR=str(tmp),
    )
    typo, negative, no_pidfile, bad_directory, not_callable = (item["error"] for item in data)
    assert typo == "TypeError: DaemonRunner() got an unexpected option 'stop_timout'; did you mean 'stop_timeout'?"
    assert str(negative).startswith("ValueError: DaemonRunner(): ready_timeout must be a finite number")
    assert str(no_pidfile).startswith("ValueError: DaemonRunner(): pidfile=None is not supported")
    assert str(bad_directory).startswith("TypeError")
    assert "decorated with @daemon or @process_daemonize" in str(not_callable)
    assert list(tmp.iterdir()) == [], "no directory made for a runner that was refused"
    assert sandbox.live_pids() == []


def test_overrides_apply_and_relative_paths_go_in_the_directory(sandbox: Sandbox) -> None:
    [data] = run_script(
        sandbox,
        """
runner = DaemonRunner(app.serve, directory="run", stdout="serve.log", stderr="err.log", workdir=HERE)
with runner.start() as d:
    d.wait_for_log("ready")
    report(pid=d.pid, log_path=str(d.log_path), pidfile=str(d.pidfile))
""",
    )
    run = sandbox.path / "run"
    assert data["log_path"] == str(run / "serve.log") and data["pidfile"] == str(run / "daemon.pid")
    assert (run / "serve.log").read_text() == (
        f"hello from pid {data['pid']} cwd {sandbox.path}\nready\nstopping serve\n"
    )
    assert (run / "err.log").read_text() == "stderr line\n"


def test_without_a_directory_a_temporary_one_is_made_and_removed(sandbox: Sandbox) -> None:
    tmp = sandbox.path / "tmp"
    tmp.mkdir()
    [inside, after] = run_script(
        sandbox,
        """
with DaemonRunner(app.serve).start() as d:
    d.wait_for_log("ready")
    report(directory=str(d.directory), files=sorted(p.name for p in d.directory.iterdir()), pid=d.pid,
           pidfile=str(d.pidfile))
report(exists=d.directory.exists(), log=d.log())
""",
        TMPDIR=str(tmp),
    )
    directory = Path(str(inside["directory"]))
    assert directory.parent == tmp and directory.name.startswith("daemondeco-")
    # the state file (issue 8); the worker's pending exit record, from its monitor's start (issue 18)
    assert inside["files"] == ["daemon.log", "daemon.pid", "daemon.pid.exit", "daemon.pid.state"]
    assert inside["pidfile"] == str(directory / "daemon.pid")
    assert after["exists"] is False and list(tmp.iterdir()) == []
    assert str(after["log"]).endswith("ready\nstopping serve\n"), "the log outlives its directory"


# -- targets ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "args", "first", "last"),
    [
        pytest.param("app.aserve", '"alpha"', "async alpha up in pid {pid}", "stopping aserve", id="async-def"),
        pytest.param("app.work", "7", "worker 7 in pid {pid}", "stopping work", id="process_daemonize"),
        pytest.param("app.plain", "3", "plain 3 in pid {pid}", "stopping plain", id="plain-function"),
        pytest.param('app.Service("svc").main', '"x"', "method svc x in pid {pid}", "stopping method", id="method"),
    ],
)
def test_targets(sandbox: Sandbox, target: str, args: str, first: str, last: str) -> None:
    [data, after] = run_script(
        sandbox,
        f"""
with DaemonRunner({target}, directory=HERE / "run").start({args}) as d:
    line = d.wait_for_log(" in pid ")
    report(pid=d.pid, line=line, pidfile=d.pidfile.read_text(), me=os.getpid())
report(running=d.is_running(), log=d.log())
""",
    )
    pid = data["pid"]
    assert isinstance(pid, int) and pid != data["me"]
    assert data["line"] == first.format(pid=pid)
    assert data["pidfile"] == f"{pid}\n"
    assert after["running"] is False and not alive(pid)
    assert after["log"] == f"{first.format(pid=pid)}\n{last}\n", "stopped by SIGTERM: its finally block ran"
    assert (sandbox.path / "run" / "daemon.log").read_text() == f"{first.format(pid=pid)}\n{last}\n"


def test_run_in_the_foreground(sandbox: Sandbox) -> None:
    [data] = run_script(
        sandbox,
        """
runner = DaemonRunner(app.compute, directory=HERE / "fg")
result = runner.run(2, 3, pidfile=HERE / "fg" / "daemon.pid")
report(result=result, me=os.getpid(), left=(HERE / "fg" / "daemon.pid").exists(),
       sigterm=signal.getsignal(signal.SIGTERM) == signal.SIG_DFL)
""",
    )
    assert data["result"] == {"sum": 5, "pid": data["me"], "pidfile": f"{data['me']}\n"}
    assert data["left"] is False and data["sigterm"] is True


def test_works_without_pytest_and_is_not_imported_by_daemondeco(sandbox: Sandbox) -> None:
    sandbox.write("app.py", APP)
    result = sandbox.run(
        """
import sys
sys.modules["pytest"] = sys.modules["_pytest"] = None  # import pytest now raises ImportError
import daemondeco
before = "daemondeco.testing" in sys.modules
from daemondeco.testing import DaemonRunner
import app
with DaemonRunner(app.serve).start() as d:
    print(d.wait_for_log("ready"), before, "pytest" in sys.modules and sys.modules["pytest"] is not None)
print("done")
"""
    )
    assert result.returncode == 0, result
    assert result.stdout == "ready False False\ndone\n"


# -- in a user's own pytest suite ---------------------------------------------------------

USER_SUITE = """
import json, os
from pathlib import Path

import pytest

import app
from daemondeco.testing import DaemonRunner

SEEN = Path(__file__).resolve().parent / "seen.jsonl"


def record(**values):
    with SEEN.open("a") as handle:
        handle.write(json.dumps(values) + "\\n")


@pytest.fixture
def service(tmp_path):
    runner = DaemonRunner(app.serve, directory=tmp_path)
    with runner.start("hello") as running:
        yield running


def test_greets(service):
    line = service.wait_for_log("hello from")
    print("captured by pytest, not in the daemon's log")
    assert line == f"hello from pid {service.pid} cwd /"
    assert int(service.pidfile.read_text()) == service.pid
    record(test="greets", pid=service.pid, me=os.getpid())


def test_async_daemon(tmp_path):
    with DaemonRunner(app.aserve, directory=tmp_path).start("beta") as d:
        d.wait_for_log("async beta up")
        record(test="async", pid=d.pid, me=os.getpid())
    assert d.log().endswith("stopping aserve\\n")


def test_logging_daemon(tmp_path):
    with DaemonRunner(app.logs, directory=tmp_path).start() as d:
        assert d.wait_for_log("logged in pid") == f"INFO app: logged in pid {d.pid}"
"""


def test_a_users_pytest_suite_passes(sandbox: Sandbox) -> None:
    result = run_user_suite(sandbox, USER_SUITE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout
    seen = [json.loads(line) for line in (sandbox.path / "seen.jsonl").read_text().splitlines()]
    assert [item["test"] for item in seen] == ["greets", "async"]
    for item in seen:
        assert item["pid"] != item["me"] and not alive(item["pid"])
    greeted = next(sandbox.path.glob("basetemp/test_greets*/daemon.log")).read_text()
    assert greeted == f"hello from pid {seen[0]['pid']} cwd /\nstderr line\nready\nstopping serve\n"
    assert sandbox.live_pids() == []


def test_a_broken_daemon_fails_the_users_test_with_its_traceback(sandbox: Sandbox) -> None:
    suite = USER_SUITE.replace("DaemonRunner(app.serve,", "DaemonRunner(app.crash,")
    result = run_user_suite(sandbox, suite)
    assert result.returncode == 1, result.stdout + result.stderr
    out = result.stdout
    assert "2 passed, 1 error" in out, "the fixture's start fails: pytest reports an error at setup"
    assert "ERROR at setup of test_greets" in out
    assert "StartupError: daemon (pid" in out and "failed before it was ready" in out
    assert "Daemon traceback:" in out
    assert 'raise ValueError("bad config: port missing")' in out and "ValueError: bad config: port missing" in out
    assert 'with runner.start("hello") as running:' in out, "pytest points at the user's line"
    assert sandbox.live_pids() == []


def test_the_test_process_is_never_left_by_its_forks(sandbox: Sandbox) -> None:
    """Every daemon the runner starts runs in worker mode: no launcher exit, no fork prints twice."""
    sandbox.write("app.py", APP)
    result = sandbox.run(
        HEADER
        + """
pids = []
for target, args in ((app.serve, ()), (app.aserve, ("g",)), (app.work, (1,)), (app.quick, ())):
    with DaemonRunner(target).start(*args) as d:
        pids.append(d.pid)
print("after the blocks", os.getpid(), json.dumps(pids), flush=True)
"""
    )
    assert result.returncode == 0, result
    lines = result.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("after the blocks"), result
    pids = json.loads(lines[0].split(" ", 4)[4])
    assert len(set(pids)) == 4 and not any(alive(pid) for pid in pids)
    assert all(wait_exit(pid, 0) for pid in pids)


def test_a_daemon_lingering_after_its_pidfile_is_released_is_killed(sandbox: Sandbox) -> None:
    [data] = run_script(
        sandbox,
        """
with DaemonRunner(app.lingering, directory=HERE / "run", stop_timeout=0.2).start() as d:
    d.wait_for_log("registered")
report(pid=d.pid, running=d.is_running())
""",
    )
    pid = data["pid"]
    assert isinstance(pid, int)
    assert data["running"] is False and not alive(pid)
    assert zombie_signal(pid) in (None, 9)


def test_the_rest_of_the_api(sandbox: Sandbox) -> None:
    tmp = sandbox.path / "tmp"
    tmp.mkdir()
    [data] = run_script(
        sandbox,
        """
runner = DaemonRunner(app.partial, directory=HERE / "run")
with runner.start() as d:
    began = time.monotonic()
    unfinished = d.wait_for_log("progress", timeout=0.2)  # at the deadline: the line as far as it goes
    waited = time.monotonic() - began
    os.kill(d.pid, signal.SIGUSR1)
    finished = d.wait_for_log("progress")  # waits for the line's end
    text = repr(d)
    d.log_path.unlink()
    missing = d.log()
    try:
        d.wait_for_log("anything", timeout=0.01)
    except AssertionError as exc:
        empty = str(exc)
    os.kill(d.pid, signal.SIGKILL)  # killed behind the runner's back: closing still works
    exited = d.wait(10)
d.close()
quick = DaemonRunner(app.quick).start()
quick_exit = quick.wait(10)
quick.close()
report(unfinished=unfinished, waited=waited, finished=finished, repr=text, runner=repr(runner), missing=missing,
       empty=empty, exited=exited, after=repr(d), pid=d.pid, quick=quick_exit, quick_log=quick.log(),
       sum=DaemonRunner(app.compute).run(1, 2)["sum"])
""",
        TMPDIR=str(tmp),
    )
    assert data["unfinished"] == "progress: 50%" and isinstance(data["waited"], float) and data["waited"] >= 0.2
    assert data["finished"] == "progress: 50% done"
    run = sandbox.path / "run"
    assert data["repr"] == f"<RunningDaemon pid={data['pid']} running directory={str(run)!r}>"
    assert data["after"] == f"<RunningDaemon pid={data['pid']} exited directory={str(run)!r}>"
    assert data["runner"] == f"<DaemonRunner partial directory={str(run)!r}>"
    assert data["missing"] == "" and str(data["empty"]).endswith("(the log is empty)")
    assert data["exited"] is True and data["quick"] is True and data["quick_log"] == "done quickly\n"
    assert data["sum"] == 3
    assert list(tmp.iterdir()) == [], "run() and start() removed the directories they made"
