"""daemondeco.compat, side by side with python-daemon 3.1.2: the same programs, only the import changed.

Each program is written once with ``daemon`` and ``pidfile`` as free names;
the harness runs it with python-daemon's imports and with the compat ones,
and checks from outside what an operator sees: exit codes, stderr, the
pidfile and its lock, ``/proc/<pid>/status``, the log files. Where the two
differ on purpose (issue 11), both outcomes are asserted, so the test also
documents what a program gains by switching.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import (
    LOCK_HOLDER,
    Result,
    Sandbox,
    alive,
    proc_status,
    read_pid,
    wait_exit,
    wait_until,
    zombie_exit_code,
)

import daemondeco
import daemondeco.compat.daemon

pytest.importorskip("daemon", reason="python-daemon 3.1.2 is a test-only dependency (setup.cfg [test])")

IMPORTS = {
    "python-daemon": "import daemon\nimport daemon.daemon\nfrom daemon import pidfile\n",
    "compat": "import daemondeco.compat as daemon\nfrom daemondeco.compat import pidfile\n",
}
BOTH = pytest.mark.parametrize("impl", ["python-daemon", "compat"])

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="switching uid/gid needs root")


def program(impl: str, body: str) -> str:
    """*body* with the imports of *impl* in front; ``HERE`` is the sandbox directory."""
    return (
        "import os, sys, time, signal\n"
        + IMPORTS[impl]
        + "HERE = os.path.dirname(os.path.abspath(__file__))\n"
        + textwrap.dedent(body)
    )


def wait_gone(box: Sandbox, timeout: float = 10.0) -> None:
    """Wait until no process this test started runs any more.

    Two scans in a row must find none: one scan can miss a process in the
    middle of python-daemon's double fork (the child exits as it is read,
    the grandchild appears after the listing).
    """
    wait_until(lambda: not box.live_pids() and not box.live_pids(), timeout, what="every started process to end")


def wait_content(path: Path, expected: str) -> None:
    """Wait until *path* holds exactly *expected* (a daemon writes it after its launcher left)."""
    wait_until(lambda: path.exists() and path.read_text() == expected, what=f"{expected!r} in {path.name}")


def pidfile_pid(path: Path, timeout: float = 10.0) -> int:
    """The pid in *path*, waiting for python-daemon, which writes it after its launcher left."""
    wait_until(lambda: path.exists() and path.read_text().strip().isdigit(), timeout, what=f"a pid in {path.name}")
    return read_pid(path)


def stop(pid: int) -> None:
    assert pid > 1 and pid != os.getpid()
    os.kill(pid, signal.SIGTERM)
    assert wait_exit(pid, 10), f"daemon {pid} did not stop on SIGTERM"


SLEEPER = """
lock = pidfile.TimeoutPIDLockFile(os.path.join(HERE, "d.pid"), {timeout})
with daemon.DaemonContext(working_directory=HERE, pidfile=lock):
    with open(os.path.join(HERE, "started.txt"), "a") as f:
        f.write(f"{{os.getpid()}}\\n")
    time.sleep(60)
"""


# -- the import shapes ---------------------------------------------------------


def test_every_import_shape_of_python_daemon_resolves(sandbox: Sandbox) -> None:
    result = sandbox.run(
        """
        import inspect, sys
        before = set(sys.modules)  # what the interpreter (and coverage, when it measures) loaded already
        import daemondeco.compat as daemon
        new = set(sys.modules) - before
        heavy = sorted(m for m in ("wrapt", "lockfile", "socket", "daemondeco._decorators") if m in new)
        print("heavy", heavy)
        from daemondeco.compat import daemon as daemon_module, pidfile, pidlockfile
        import daemondeco.compat.pidfile
        assert daemon_module.DaemonContext is daemon.DaemonContext
        assert daemon.pidfile is pidfile and daemon.daemon is daemon_module
        assert pidlockfile.TimeoutPIDLockFile is pidfile.TimeoutPIDLockFile
        for name in ("AlreadyLocked", "LockTimeout", "LockFailed", "NotLocked", "NotMyLock", "PIDLockFile"):
            assert getattr(pidfile, name) is getattr(pidlockfile, name)
        assert issubclass(daemon.DaemonOSEnvironmentError, (daemon.DaemonError, OSError))
        assert issubclass(daemon.StartupError, daemon.DaemonError)
        import daemondeco
        assert issubclass(daemon.StartupError, daemondeco.StartupError)

        import daemon as real
        ours = list(inspect.signature(daemon.DaemonContext).parameters.values())
        theirs = list(inspect.signature(real.DaemonContext).parameters.values())
        assert [(p.name, p.default) for p in ours[: len(theirs)]] == [(p.name, p.default) for p in theirs]
        assert all(p.kind is p.KEYWORD_ONLY for p in ours[len(theirs):])
        print("ok")
        """
    )
    assert result.returncode == 0, result
    assert "heavy []" in result.stdout, result
    assert "ok" in result.stdout


def test_options_are_attributes_assignable_until_open(sandbox: Sandbox) -> None:
    result = sandbox.run(
        """
        import os, signal
        import daemondeco.compat as daemon
        ctx = daemon.DaemonContext()
        print(ctx.uid == os.getuid(), ctx.gid == os.getgid(), ctx.detach_process, ctx.umask, ctx.working_directory)
        print(sorted(ctx.signal_map.items()) == sorted({signal.SIGTSTP: None, signal.SIGTTIN: None,
              signal.SIGTTOU: None, signal.SIGTERM: "terminate"}.items()), ctx.is_open)
        """
    )
    assert result.returncode == 0, result
    assert result.stdout.split() == ["True", "True", "True", "0", "/", "True", "False"], result


# -- values refused in the launcher, before any fork -----------------------------------------------


HEADER = """
import os, sys, time
import daemondeco.compat as daemon
from daemondeco.compat import pidfile
HERE = os.path.dirname(os.path.abspath(__file__))

class Weird:
    def fileno(self):
        return "3"
    def __repr__(self):
        return "<Weird>"
"""


def run(sandbox: Sandbox, body: str) -> Result:
    return sandbox.run(HEADER + textwrap.dedent(body))


@pytest.mark.parametrize(
    ("options", "error"),
    [
        pytest.param(
            "ready='bogus'", "ValueError: DaemonContext: ready must be 'open' or 'notify', not 'bogus'", id="ready"
        ),
        pytest.param(
            "detach_process='yes'",
            "TypeError: DaemonContext: detach_process must be True, False or None, not 'yes'",
            id="detach_process",
        ),
        pytest.param(
            "pidfile=42", "TypeError: DaemonContext: pidfile 42 is neither a path nor a context manager", id="pidfile"
        ),
        pytest.param(
            "files_preserve=[Weird()]",
            "files_preserve item <Weird>: fileno() returned '3', not an int",
            id="fileno-str",
        ),
        pytest.param(
            "files_preserve=[-1]", "files_preserve item -1 is not a file descriptor (negative)", id="negative-fd"
        ),
        pytest.param(
            "initgroups=True, uid=54321, gid=54321",
            "initgroups=True, but uid 54321 has no passwd entry",
            id="initgroups-unknown-uid",
        ),
    ],
)
def test_a_bad_value_is_refused_in_the_launcher_naming_it(sandbox: Sandbox, options: str, error: str) -> None:
    result = run(
        sandbox,
        f"""
        with daemon.DaemonContext({options}):
            open(os.path.join(HERE, "ran"), "w").close()
        """,
    )
    assert result.returncode == 1, result
    assert error in result.stderr, result
    assert not (sandbox.path / "ran").exists()
    assert sandbox.live_pids() == []


# -- a failure inside open(), after the fork -------------------------------------

FAILING_PIDFILE = """
class UnwritablePidfile:
    def __enter__(self):
        raise PermissionError("cannot write /run/app.pid")
    def __exit__(self, *exc_info):
        pass

with daemon.DaemonContext(working_directory=HERE, pidfile=UnwritablePidfile()):
    time.sleep(60)
"""


@BOTH
def test_a_failure_inside_open_after_the_fork(sandbox: Sandbox, impl: str) -> None:
    result = sandbox.run(program(impl, FAILING_PIDFILE))
    if impl == "python-daemon":
        assert (result.returncode, result.stderr) == (0, ""), result  # the failure vanished
        return
    assert result.returncode == 1, result
    assert "StartupError" in result.stderr and "Daemon traceback" in result.stderr, result
    assert "PermissionError: cannot write /run/app.pid" in result.stderr, result
    assert "UnwritablePidfile" not in result.stdout
    wait_gone(sandbox)


def test_ready_notify_reports_a_failure_before_notify_ready(sandbox: Sandbox) -> None:
    code = program(
        "compat",
        """
        context = daemon.DaemonContext(working_directory=HERE, pidfile=os.path.join(HERE, "d.pid"), ready="notify")
        with context:
            if sys.argv[1:] == ["fail"]:
                raise RuntimeError("config broken")
            context.notify_ready()
            time.sleep(60)
        """,
    )
    failed = sandbox.run(code, "fail")
    assert failed.returncode == 1, failed
    assert "RuntimeError: config broken" in failed.stderr, failed
    assert not (sandbox.path / "d.pid").exists()
    started = sandbox.run(code)
    assert started.returncode == 0, started
    assert alive(read_pid(sandbox.path / "d.pid"))


def test_a_pidfile_object_whose_enter_fails_is_a_startup_error_with_its_traceback(sandbox: Sandbox) -> None:
    result = run(
        sandbox,
        """
        class Broken:
            def __enter__(self):
                raise RuntimeError("the lock service is down")
            def __exit__(self, *exc):
                return False
        with daemon.DaemonContext(pidfile=Broken(), working_directory=HERE):
            open(os.path.join(HERE, "ran"), "w").close()
        """,
    )
    assert result.returncode == 1, result
    assert "RuntimeError: the lock service is down" in result.stderr, result
    assert "__enter__" in result.stderr, "the daemon's traceback reaches the launcher"
    assert not (sandbox.path / "ran").exists()
    wait_until(lambda: sandbox.live_pids() == [], what="the failed daemon gone")


# -- the pidfile -------------------------------------------------------------------


@BOTH
def test_kill_9_then_start(sandbox: Sandbox, impl: str) -> None:
    code = program(impl, SLEEPER.format(timeout=-1))
    first = sandbox.run(code)
    assert first.returncode == 0, first
    pid = pidfile_pid(sandbox.path / "d.pid")
    started = sandbox.path / "started.txt"
    wait_until(lambda: started.exists() and started.read_text() == f"{pid}\n", what="the body of the first daemon")
    os.kill(pid, signal.SIGKILL)
    assert wait_exit(pid, 10)
    second = sandbox.run(code)
    assert second.returncode == 0, second  # python-daemon's launcher says nothing either way
    if impl == "python-daemon":
        wait_gone(sandbox)  # its new daemon met the old file and died, unseen
        assert (sandbox.path / "started.txt").read_text().split() == [str(pid)]
        return
    new = read_pid(sandbox.path / "d.pid")
    assert new != pid and alive(new)
    assert daemondeco.Pidfile(sandbox.path / "d.pid").locked_by() == new


@BOTH
def test_a_live_holder_refuses_the_start_in_the_launcher(sandbox: Sandbox, impl: str) -> None:
    code = program(impl, SLEEPER.format(timeout=-1))
    assert sandbox.run(code).returncode == 0
    holder = pidfile_pid(sandbox.path / "d.pid")
    second = sandbox.run(code)
    if impl == "python-daemon":
        assert (second.returncode, second.stderr) == (0, ""), second  # refused in the background, unseen
        wait_until(lambda: sorted(sandbox.live_pids()) == [holder], what="the refused daemon to end")
        return
    assert second.returncode == 1, second
    assert "AlreadyLocked" in second.stderr and f"locked by pid {holder}" in second.stderr, second
    assert alive(holder) and read_pid(sandbox.path / "d.pid") == holder


def test_a_positive_timeout_waits_for_the_holder_to_leave(sandbox: Sandbox) -> None:
    assert sandbox.run(program("compat", SLEEPER.format(timeout=10))).returncode == 0
    holder = read_pid(sandbox.path / "d.pid")
    waiting = sandbox.popen(program("compat", SLEEPER.format(timeout=10)), name="second.py", stderr=subprocess.PIPE)
    with pytest.raises(subprocess.TimeoutExpired):  # a 10 s acquire_timeout waits, it does not fail
        waiting.wait(1)
    stop(holder)
    assert waiting.wait(10) == 0
    new = read_pid(sandbox.path / "d.pid")
    assert new != holder and alive(new)


def test_lock_timeout_is_catchable_as_lockfile_lock_timeout(sandbox: Sandbox) -> None:
    assert sandbox.run(program("compat", SLEEPER.format(timeout=-1))).returncode == 0
    result = sandbox.run(
        program(
            "compat",
            """
            import lockfile
            start = time.monotonic()
            try:
                with daemon.DaemonContext(pidfile=pidfile.TimeoutPIDLockFile(os.path.join(HERE, "d.pid"), 0.5)):
                    pass
            except lockfile.LockTimeout as exc:
                print("LockTimeout after", round(time.monotonic() - start, 1), type(exc).__module__)
            try:
                pidfile.PIDLockFile(os.path.join(HERE, "d.pid")).acquire()
            except lockfile.AlreadyLocked:
                print("AlreadyLocked at once")
            """,
        )
    )
    assert result.returncode == 0, result
    waited = float(result.stdout.split()[2])
    assert 0.5 <= waited < 5, result
    assert "daemondeco.compat.pidfile" in result.stdout and "AlreadyLocked at once" in result.stdout, result


def test_pidlockfile_keeps_lockfiles_contract(sandbox: Sandbox) -> None:
    result = sandbox.run(
        program(
            "compat",
            """
            path = os.path.join(HERE, "x.pid")
            lock = pidfile.PIDLockFile(path)
            try:
                lock.release()
            except pidfile.NotLocked:
                print("NotLocked")
            print(lock.is_locked(), lock.i_am_locking(), lock.read_pid())
            with lock:
                print(lock.is_locked(), lock.i_am_locking(), lock.read_pid() == os.getpid())
                other = pidfile.PIDLockFile(path)
                try:
                    other.release()
                except pidfile.NotMyLock:
                    print("NotMyLock")
                other.break_lock()
                print("kept", os.path.exists(path))
            print("removed", not os.path.exists(path))
            with open(path, "w") as f:
                f.write("999999\\n")
            lock.break_lock()
            print("broken", not os.path.exists(path))
            try:
                pidfile.PIDLockFile(os.path.join(HERE, "no", "dir.pid")).acquire()
            except pidfile.LockFailed:
                print("LockFailed")
            """,
        )
    )
    assert result.returncode == 0, result
    assert result.stdout.split("\n")[:-1] == [
        "NotLocked",
        "False False None",
        "True True True",
        "NotMyLock",
        "kept True",
        "removed True",
        "broken True",
        "LockFailed",
    ], result


def test_a_python_daemon_pidfile_object_is_translated(sandbox: Sandbox) -> None:
    """A program that kept ``import daemon.pidfile`` still gets the locked pidfile, before the fork."""
    code = """
        import os, time
        import daemondeco.compat as daemon
        import daemon.pidfile as old_pidfile
        HERE = os.path.dirname(os.path.abspath(__file__))
        lock = old_pidfile.TimeoutPIDLockFile(os.path.join(HERE, "d.pid"), -1)
        with daemon.DaemonContext(working_directory=HERE, pidfile=lock):
            time.sleep(60)
        """
    assert sandbox.run(code).returncode == 0
    pid = read_pid(sandbox.path / "d.pid")
    assert daemondeco.Pidfile(sandbox.path / "d.pid").locked_by() == pid
    again = sandbox.run(code)
    assert again.returncode == 1 and "AlreadyLocked" in again.stderr, again


@pytest.mark.parametrize("run", range(20))
def test_the_pidfile_is_complete_when_the_launcher_exits(sandbox: Sandbox, run: int) -> None:
    result = sandbox.run(program("compat", SLEEPER.format(timeout=-1)))
    assert result.returncode == 0, result
    text = (sandbox.path / "d.pid").read_text()  # at once: no wait
    assert text.strip().isdigit() and alive(int(text)), text


WAITER = """
import sys
from daemondeco.compat.pidlockfile import AlreadyLocked, PIDLockFile, TimeoutPIDLockFile

lock = PIDLockFile(sys.argv[1])
try:
    lock.acquire(timeout=0)
except AlreadyLocked as exc:
    print("refused:", exc, flush=True)
TimeoutPIDLockFile(sys.argv[1], acquire_timeout=20).acquire()
print("acquired", lock.read_pid(), lock.i_am_locking(), flush=True)
"""


@pytest.mark.parametrize("holder", ["flock", "legacy"])
def test_an_acquire_with_a_timeout_waits_for_the_holder_to_leave(sandbox: Sandbox, holder: str) -> None:
    """A held pidfile: acquire(timeout=0) is refused naming the holder; a waiting acquire gets it once it leaves."""
    path = sandbox.path / "d.pid"
    if holder == "flock":
        owner = sandbox.popen(LOCK_HOLDER, str(path), name="holder.py", stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert owner.stdout is not None and owner.stdout.readline() == "locked\n"
    else:  # an old python-daemon instance: its pid written in a file nobody locks, after it started
        owner = sandbox.popen("import sys; sys.stdin.readline()", name="holder.py", stdin=subprocess.PIPE)
        wait_until(lambda: Path(f"/proc/{owner.pid}/cmdline").read_bytes().count(b"holder.py"), what="the holder")
        path.write_text(f"{owner.pid}\n")
    waiter = sandbox.popen(WAITER, str(path), name="waiter.py", stdout=subprocess.PIPE)
    assert waiter.stdout is not None
    refused = waiter.stdout.readline()
    assert refused.startswith("refused:") and str(owner.pid) in refused, refused
    assert owner.stdin is not None
    owner.stdin.close()
    assert owner.wait(10) == 0
    assert waiter.stdout.readline().split() == ["acquired", str(waiter.pid), "True"]
    assert waiter.wait(10) == 0


def test_lock_file_queries_on_paths_that_are_no_pidfile() -> None:
    from daemondeco.compat.pidlockfile import PIDLockFile

    missing = PIDLockFile("/nonexistent-dir/d.pid")
    assert repr(missing) == "<PIDLockFile '/nonexistent-dir/d.pid'>"
    assert (missing.is_locked(), missing.i_am_locking(), missing.read_pid()) == (False, False, None)
    missing.break_lock()  # nothing to remove: no error


# -- the migration guard -----------------------------------------------------------


def test_the_migration_guard_refuses_to_start_beside_a_python_daemon_instance(sandbox: Sandbox) -> None:
    old_code = program("python-daemon", SLEEPER.format(timeout=-1))
    assert sandbox.run(old_code, name="old.py").returncode == 0
    old = pidfile_pid(sandbox.path / "d.pid")
    assert not daemondeco.Pidfile(sandbox.path / "d.pid").is_locked()  # lockfile never flocks
    new = sandbox.run(program("compat", SLEEPER.format(timeout=-1)), name="new.py")
    assert new.returncode == 1, new
    assert f"AlreadyLocked: {sandbox.path / 'd.pid'} is already locked by pid {old}" in new.stderr, new
    assert sorted(sandbox.live_pids()) == [old]
    os.kill(old, signal.SIGKILL)  # the old instance crashed: now the file is stale
    assert wait_exit(old, 10)
    assert sandbox.run(program("compat", SLEEPER.format(timeout=-1)), name="new.py").returncode == 0
    assert read_pid(sandbox.path / "d.pid") != old


@BOTH
def test_the_command_line_sees_and_stops_a_running_instance(sandbox: Sandbox, impl: str) -> None:
    """docs/migrate.md sends users to ``python -m daemondeco status|stop PIDFILE``: both must see either daemon.

    python-daemon's pidfile is never locked; its instance counts as running
    (as compat's start already counts it): status 0, stop SIGTERMs that very
    pid and waits for it to exit, then status 3.
    """
    assert sandbox.run(program(impl, SLEEPER.format(timeout=-1))).returncode == 0
    pid = pidfile_pid(sandbox.path / "d.pid")
    wait_content(sandbox.path / "started.txt", f"{pid}\n")  # open() has returned: its SIGTERM handler is set
    status = sandbox.run_module("status", "d.pid")
    assert status.returncode == 0 and f"is running (pid {pid})" in status.stdout, status
    report = json.loads(sandbox.run_module("status", "--json", "d.pid").stdout)
    assert report["pid"] == pid
    assert report["state"] == ("python-daemon" if impl == "python-daemon" else "ready"), report
    stopped = sandbox.run_module("stop", "d.pid")
    assert stopped.returncode == 0 and f"stopped (pid {pid})" in stopped.stdout, stopped
    assert not alive(pid), "stop returns once the daemon has exited"
    assert zombie_exit_code(pid) == (1 if impl == "python-daemon" else 0)  # python-daemon: SystemExit(str)
    assert not (sandbox.path / "d.pid").exists()
    assert sandbox.run_module("status", "d.pid").returncode == 3


def test_an_unlocked_pidfile_naming_a_younger_process_is_stale_and_never_signalled(sandbox: Sandbox) -> None:
    """The pid was reused: the process it names started after the file was written. status 1, stop signals nobody."""
    # In a session of its own, as a daemon would be: only the start time tells it from a python-daemon instance.
    bystander = sandbox.popen("import time\ntime.sleep(60)\n", name="bystander.py", start_new_session=True)
    wait_until(lambda: alive(bystander.pid), what="the bystander")
    path = sandbox.path / "d.pid"
    path.write_text(f"{bystander.pid}\n")
    an_hour_ago = time.time() - 3600
    os.utime(path, (an_hour_ago, an_hour_ago))
    status = sandbox.run_module("status", "d.pid")
    assert status.returncode == 1 and "stale" in status.stdout, status
    stopped = sandbox.run_module("stop", "d.pid")
    assert stopped.returncode == 0 and "is not running" in stopped.stdout, stopped
    assert alive(bystander.pid) and bystander.poll() is None, "a reused pid must never be signalled"


# -- logging, stdio, files_preserve --------------------------------------------------

LOGGING = """
import logging
logging.basicConfig(filename=os.path.join(HERE, "app.log"), level=logging.INFO)
with daemon.DaemonContext(working_directory=HERE):
    logging.info("line from the daemon %d", os.getpid())
"""


@BOTH
def test_a_log_handler_configured_before_open_keeps_working(sandbox: Sandbox, impl: str) -> None:
    assert sandbox.run(program(impl, LOGGING)).returncode == 0
    log = sandbox.path / "app.log"
    if impl == "python-daemon":
        wait_gone(sandbox)
        assert log.read_text() == ""  # its fd was closed by open(): the line is lost
    else:
        wait_until(lambda: "line from the daemon" in log.read_text(), what="the log line")


@BOTH
def test_stdout_and_stderr_file_objects(sandbox: Sandbox, impl: str) -> None:
    result = sandbox.run(
        program(
            impl,
            """
            out = open(os.path.join(HERE, "out.log"), "a")
            err = open(os.path.join(HERE, "err.log"), "a")
            with daemon.DaemonContext(working_directory=HERE, stdout=out, stderr=err):
                print("to stdout", flush=True)
                print("to stderr", file=sys.stderr, flush=True)
            """,
        )
    )
    assert result.returncode == 0, result
    wait_content(sandbox.path / "out.log", "to stdout\n")
    wait_content(sandbox.path / "err.log", "to stderr\n")


@pytest.mark.parametrize("option", ["files_preserve=[io.StringIO()]", "stdout=io.StringIO()"])
def test_objects_without_a_usable_fileno_raise_type_error_before_the_fork(sandbox: Sandbox, option: str) -> None:
    result = sandbox.run(
        program(
            "compat",
            f"""
            import io
            with daemon.DaemonContext(working_directory=HERE, pidfile=os.path.join(HERE, "d.pid"), {option}):
                pass
            """,
        )
    )
    assert result.returncode == 1, result
    assert "TypeError: DaemonContext:" in result.stderr and "StringIO" in result.stderr, result
    assert "has no usable fileno()" in result.stderr, result
    assert not (sandbox.path / "d.pid").exists()


@BOTH
def test_the_callers_files_preserve_list_is_not_mutated(sandbox: Sandbox, impl: str) -> None:
    result = sandbox.run(
        program(
            impl,
            """
            keep = [os.open(os.devnull, os.O_RDONLY)]
            out = open(os.path.join(HERE, "out.log"), "a")
            for _ in range(2):
                context = daemon.DaemonContext(detach_process=False, files_preserve=keep, stdout=out, stderr=out)
                context.open()
                context.close()
            print(len(keep), file=out, flush=True)
            """,
        )
    )
    assert result.returncode == 0, result
    expected = "3" if impl == "python-daemon" else "1"  # python-daemon adds {stdout, stderr} on every open()
    assert (sandbox.path / "out.log").read_text().strip() == expected


@BOTH
def test_stdin_closed_at_start(sandbox: Sandbox, impl: str) -> None:
    script = sandbox.write("prog.py", program(impl, "daemon.DaemonContext()\nprint('constructed')\n"))
    done = subprocess.run(
        ["sh", "-c", f'exec "{sys.executable}" "{script}" <&-'],
        cwd=sandbox.path,
        env=sandbox.env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    if impl == "python-daemon":
        assert done.returncode == 1 and "AttributeError" in done.stderr, done  # E6: sys.__stdin__ is None
    else:
        assert done.returncode == 0 and "constructed" in done.stdout, done


def _run_with_closed(box: Sandbox, script: Path, closed: str) -> subprocess.CompletedProcess[str]:
    """Run *script* from ``sh`` with a standard stream closed (*closed*: ``<&-``, ``>&-``), output captured."""
    return subprocess.run(
        ["sh", "-c", f'exec "{sys.executable}" "{script}" {closed}'],
        cwd=box.path,
        env=box.env(),
        capture_output=True,
        text=True,
        timeout=30,
    )


PRESERVED_LOG = """
import logging
handler = logging.FileHandler(os.path.join(HERE, "app.log"))
log = logging.getLogger("app")
log.addHandler(handler)
log.setLevel(logging.INFO)
print("log fd", handler.stream.fileno(), file=sys.stderr, flush=True)
lock = pidfile.TimeoutPIDLockFile(os.path.join(HERE, "d.pid"), -1)
context = daemon.DaemonContext(working_directory=HERE, files_preserve=[handler.stream], detach_process=True,
                               pidfile=lock)
with context:
    log.info("serving %d", os.getpid())
    time.sleep(60)
"""


@BOTH
def test_a_preserved_log_file_that_took_fd_0_is_refused_in_the_launcher(sandbox: Sandbox, impl: str) -> None:
    """Started with stdin closed, the log file opens as fd 0 and is listed in files_preserve (sendria).

    The detach points fd 0 at /dev/null: the daemon would lose its log.
    python-daemon 3.1.2's launcher exits 0 and its daemon dies unseen
    (``redirect_stream(sys.stdin=None)``: AttributeError after the fork);
    compat refuses in the launcher, naming the item and fd 0, before any fork.
    """
    script = sandbox.write("prog.py", program(impl, PRESERVED_LOG))
    done = _run_with_closed(sandbox, script, "<&-")
    assert "log fd 0" in done.stderr, done
    if impl == "python-daemon":
        assert done.returncode == 0, done  # a silent start...
        wait_gone(sandbox)  # ...of a daemon that dies at once
        assert not (sandbox.path / "d.pid").exists()
    else:
        assert done.returncode == 1, done
        assert "DaemonOSEnvironmentError" in done.stderr, done
        assert "files_preserve item <_io.TextIOWrapper name=" in done.stderr, done
        assert "is fd 0, which the daemon points at its stdin" in done.stderr, done
        assert "</dev/null" in done.stderr, done
        assert sandbox.live_pids() == [], "nothing may have forked"
        assert not (sandbox.path / "d.pid").exists()
    assert (sandbox.path / "app.log").read_text() == ""


def test_an_unlisted_log_handler_that_took_fd_0_is_refused_too(sandbox: Sandbox) -> None:
    """compat keeps configured logging handlers without files_preserve: one on fd 0 would be lost the same way."""
    code = program("compat", PRESERVED_LOG.replace("files_preserve=[handler.stream], ", ""))
    done = _run_with_closed(sandbox, sandbox.write("prog.py", code), "<&-")
    assert "log fd 0" in done.stderr, done
    assert done.returncode == 1, done
    assert "DaemonContext(): the logging handler <FileHandler " in done.stderr, done
    assert "is fd 0, which the daemon points at its stdin" in done.stderr, done
    assert sandbox.live_pids() == [] and not (sandbox.path / "d.pid").exists()


def test_a_log_file_that_took_a_closed_stdout_works_when_it_is_the_stdout_object(sandbox: Sandbox) -> None:
    """Not refused: ``stdout=log`` with the log at fd 1 (stdout closed) is dup2-ed back onto fd 1 in the daemon."""
    code = program(
        "compat",
        """
        log = open(os.path.join(HERE, "out.log"), "a")
        print("fd", log.fileno(), file=sys.stderr, flush=True)
        with daemon.DaemonContext(working_directory=HERE, stdout=log, files_preserve=[log],
                                  pidfile=os.path.join(HERE, "d.pid")):
            print("serving", os.getpid(), file=log, flush=True)
            time.sleep(60)
        """,
    )
    done = _run_with_closed(sandbox, sandbox.write("prog.py", code), ">&-")
    assert done.returncode == 0 and "fd 1" in done.stderr, done
    pid = read_pid(sandbox.path / "d.pid")
    wait_content(sandbox.path / "out.log", f"serving {pid}\n")
    stop(pid)


def test_stdout_set_to_a_closed_sys_stdout_is_refused_naming_its_fd(sandbox: Sandbox) -> None:
    result = run(
        sandbox,
        """
        os.close(1)
        with daemon.DaemonContext(stdout=sys.stdout, working_directory=HERE):
            open(os.path.join(HERE, "ran"), "w").close()
        """,
    )
    assert result.returncode == 1, result
    assert "TypeError: DaemonContext: stdout" in result.stderr and "its fd 1 is not open" in result.stderr, result
    assert not (sandbox.path / "ran").exists()


def test_a_closed_fd_in_files_preserve_is_ignored_and_a_second_open_does_nothing(sandbox: Sandbox) -> None:
    result = run(
        sandbox,
        """
        context = daemon.DaemonContext(
            files_preserve=[250], working_directory=HERE,
            pidfile=pidfile.TimeoutPIDLockFile(os.path.join(HERE, "d.pid")),
        )
        context.open()
        context.open()  # already open: nothing happens (no second fork)
        with open(os.path.join(HERE, "ran"), "w") as f:
            f.write(str(os.getpid()))
        time.sleep(60)
        """,
    )
    assert result.returncode == 0, result
    wait_until((sandbox.path / "ran").exists, what="the daemon's mark")
    wait_until(lambda: (sandbox.path / "ran").read_text().isdigit(), what="its pid")
    pid = int((sandbox.path / "ran").read_text())
    assert read_pid(sandbox.path / "d.pid") == pid, "the pid written by the first open is the daemon's"
    assert sandbox.run_module("stop", str(sandbox.path / "d.pid")).returncode == 0
    assert wait_exit(pid)


# -- detach_process --------------------------------------------------------------------

DETACH_PROBE = """
import daemon as python_daemon
import daemondeco.compat as compat
print("python-daemon", python_daemon.DaemonContext().detach_process)
print("compat", compat.DaemonContext().detach_process)
"""


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        pytest.param({}, {"python-daemon": "True", "compat": "True"}, id="terminal"),
        pytest.param({"NOTIFY_SOCKET": "/run/x"}, {"python-daemon": "True", "compat": "False"}, id="NOTIFY_SOCKET"),
        pytest.param({"DAEMONDECO_FOREGROUND": "1"}, {"python-daemon": "True", "compat": "False"}, id="FOREGROUND"),
    ],
)
def test_detach_process_auto_detection(sandbox: Sandbox, env: dict[str, str], expected: dict[str, str]) -> None:
    result = sandbox.run(DETACH_PROBE, **env)
    assert result.returncode == 0, result
    assert dict(line.split() for line in result.stdout.splitlines()) == expected


def test_detach_process_with_a_socket_on_stdin(sandbox: Sandbox) -> None:
    import socket

    script = sandbox.write("probe.py", DETACH_PROBE)
    left, right = socket.socketpair()
    with left, right:
        done = subprocess.run(
            [sys.executable, str(script)], stdin=right, env=sandbox.env(), capture_output=True, text=True, timeout=30
        )
    assert done.returncode == 0, done
    assert dict(line.split() for line in done.stdout.splitlines()) == {"python-daemon": "False", "compat": "False"}


def test_an_orphan_whose_parent_is_pid_1_still_forks(sandbox: Sandbox) -> None:
    probe = sandbox.write(
        "orphan.py",
        """
        import os, sys, time
        deadline = time.monotonic() + 10
        while os.getppid() == int(sys.argv[1]) and time.monotonic() < deadline:  # until the shell has left
            time.sleep(0.01)
        import daemon as python_daemon
        import daemondeco.compat as compat
        with open("orphan.txt", "w") as f:
            theirs, ours = python_daemon.DaemonContext().detach_process, compat.DaemonContext().detach_process
            f.write(f"{os.getppid()} {theirs} {ours}")
        """,
    )
    subprocess.run(
        ["sh", "-c", f'"{sys.executable}" "{probe}" $$ </dev/null >/dev/null 2>&1 &'],
        cwd=sandbox.path,
        env=sandbox.env(),
        timeout=30,
        check=True,
    )
    out = sandbox.path / "orphan.txt"
    wait_until(lambda: out.exists() and out.read_text().count(" ") == 2, what="the orphan's answer")
    ppid, theirs, ours = out.read_text().split()
    if ppid != "1":
        pytest.skip(f"the orphan was adopted by a subreaper (pid {ppid}), not PID 1")
    assert (theirs, ours) == ("False", "True")


def test_is_socket_is_false_for_a_closed_fd() -> None:
    assert daemondeco.compat.daemon.is_socket(987) is False


# -- signals and stopping -------------------------------------------------------------------


@BOTH
def test_sigterm_exits_0_and_removes_the_pidfile(sandbox: Sandbox, impl: str) -> None:
    assert sandbox.run(program(impl, SLEEPER.format(timeout=-1))).returncode == 0
    pid = pidfile_pid(sandbox.path / "d.pid")
    wait_content(sandbox.path / "started.txt", f"{pid}\n")  # open() has returned: python-daemon's handlers run
    stop(pid)
    assert not (sandbox.path / "d.pid").exists()
    assert zombie_exit_code(pid) == (1 if impl == "python-daemon" else 0)


def _start_with_ignored(box: Sandbox, code: str, name: str, ignored: str) -> int:
    """Run the launcher *code* from ``sh`` with *ignored* signals set to SIG_IGN (``trap '' HUP``, as nohup does)."""
    script = box.write(name, code)
    done = subprocess.run(
        ["sh", "-c", f'trap \'\' {ignored}; exec "{sys.executable}" "{script}"'],
        cwd=box.path,
        env=box.env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done
    return pidfile_pid(box.path / name.replace(".py", ".pid"))


SIGNAL_KEEPER = """
lock = pidfile.TimeoutPIDLockFile(os.path.join(HERE, "{name}.pid"), -1)
with daemon.DaemonContext(working_directory=HERE, pidfile=lock):
    with open(os.path.join(HERE, "{name}.started"), "w") as f:
        f.write(str(os.getpid()))
    time.sleep(60)
"""


def test_signals_outside_signal_map_keep_the_launchers_disposition_as_python_daemon(sandbox: Sandbox) -> None:
    """Under nohup (SIGHUP ignored) a later kill -HUP leaves both running; their ignored sets are equal.

    python-daemon 3.1.2 sets only the signals of ``signal_map``: SIGHUP and
    SIGINT ignored by the launcher stay ignored (luigid and maildump started
    under nohup survive a hang-up); compat used to reset them.
    """
    pids, ignored = {}, {}
    for impl in ("python-daemon", "compat"):
        name = "pd" if impl == "python-daemon" else "compat"
        code = program(impl, SIGNAL_KEEPER.format(name=name))
        pid = pids[impl] = _start_with_ignored(sandbox, code, f"{name}.py", "HUP INT")
        wait_content(sandbox.path / f"{name}.started", str(pid))  # open() has returned: signal_map is set
        ignored[impl] = int(proc_status(pid)["SigIgn"], 16)
    for impl, pid in pids.items():
        bits = ignored[impl]
        for signum in (signal.SIGHUP, signal.SIGINT, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU):
            assert bits & (1 << (signum - 1)), f"{impl}: {signal.Signals(signum).name} is not ignored ({bits:#x})"
        os.kill(pid, signal.SIGHUP)
        os.kill(pid, signal.SIGINT)
    assert ignored["compat"] == ignored["python-daemon"]
    for impl, pid in pids.items():
        assert not wait_exit(pid, 0.3) and alive(pid), f"{impl}: the daemon died of an ignored signal"
        stop(pid)
    assert zombie_exit_code(pids["compat"]) == 0


def test_without_nohup_sighup_ends_both_as_its_default(sandbox: Sandbox) -> None:
    """The other side: a SIGHUP the launcher did not ignore keeps its default (it ends the daemon) in both."""
    pids = {}
    for impl in ("python-daemon", "compat"):
        name = "pd" if impl == "python-daemon" else "compat"
        assert sandbox.run(program(impl, SIGNAL_KEEPER.format(name=name)), name=f"{name}.py").returncode == 0
        pids[impl] = pidfile_pid(sandbox.path / f"{name}.pid")
        wait_content(sandbox.path / f"{name}.started", str(pids[impl]))
    for impl, pid in pids.items():
        os.kill(pid, signal.SIGHUP)
        assert wait_exit(pid, 10), impl
        assert zombie_exit_code(pid) == -signal.SIGHUP, impl


def test_debug_mode_detach_process_false_runs_in_the_foreground(sandbox: Sandbox) -> None:
    launcher = sandbox.popen(
        program(
            "compat",
            """
            context = daemon.DaemonContext(working_directory=HERE, stdout=sys.stdout, stderr=sys.stderr,
                                           pidfile=pidfile.TimeoutPIDLockFile(os.path.join(HERE, "d.pid"), -1))
            context.detach_process = False
            with context:
                print("serving", os.getpid(), flush=True)
                time.sleep(60)
            """,
        ),
        stdout=subprocess.PIPE,
    )
    assert launcher.stdout is not None
    assert launcher.stdout.readline().split() == ["serving", str(launcher.pid)]
    assert read_pid(sandbox.path / "d.pid") == launcher.pid
    launcher.send_signal(signal.SIGTERM)
    assert launcher.wait(10) == 0
    launcher.stdout.close()
    assert not (sandbox.path / "d.pid").exists()


def test_a_custom_signal_map(sandbox: Sandbox) -> None:
    code = program(
        "compat",
        """
        def reload_config(signum, frame):
            with open(os.path.join(HERE, "reloaded.txt"), "a") as f:
                f.write("reloaded\\n")

        context = daemon.DaemonContext(working_directory=HERE, pidfile=os.path.join(HERE, "d.pid"))
        context.signal_map = {signal.SIGTERM: None, signal.SIGHUP: "terminate", signal.SIGUSR1: reload_config}
        with context:
            while True:
                time.sleep(1)
        """,
    )
    assert sandbox.run(code).returncode == 0
    pid = read_pid(sandbox.path / "d.pid")
    os.kill(pid, signal.SIGUSR1)
    wait_until((sandbox.path / "reloaded.txt").exists, what="the SIGUSR1 handler")
    os.kill(pid, signal.SIGTERM)  # mapped to None: ignored
    assert not wait_exit(pid, 0.5) and alive(pid)
    os.kill(pid, signal.SIGHUP)
    assert wait_exit(pid, 10)
    assert zombie_exit_code(pid) == 0
    assert not (sandbox.path / "d.pid").exists()


def test_a_signal_map_naming_a_missing_method_fails_in_the_launcher(sandbox: Sandbox) -> None:
    result = sandbox.run(program("compat", "daemon.DaemonContext(signal_map={signal.SIGHUP: 'reload'}).open()\n"))
    assert result.returncode == 1 and "AttributeError" in result.stderr and "reload" in result.stderr, result
    assert sandbox.live_pids() == []


# -- explicit open()/close(), __enter__/__exit__ by hand -----------------------------------------


@pytest.mark.parametrize(
    ("opening", "closing"),
    [("context.open()", "context.close()"), ("context.__enter__()", "context.__exit__(None, None, None)")],
    ids=["open-close", "enter-exit"],
)
def test_explicit_open_and_close(sandbox: Sandbox, opening: str, closing: str) -> None:
    result = sandbox.run(
        program(
            "compat",
            f"""
            context = daemon.DaemonContext(working_directory=HERE,
                                           pidfile=pidfile.TimeoutPIDLockFile(os.path.join(HERE, "d.pid"), 5))
            {opening}
            assert context.is_open
            with open("status.txt", "w") as f:
                f.write(f"open {{os.getpid()}}\\n")
            {closing}
            with open("status.txt", "a") as f:
                f.write(f"closed {{context.is_open}} {{os.path.exists('d.pid')}}\\n")
            time.sleep(60)
            """,
        )
    )
    assert result.returncode == 0, result
    status = sandbox.path / "status.txt"
    wait_until(lambda: status.exists() and "closed" in status.read_text(), what="close() in the daemon")
    opened, closed = status.read_text().splitlines()
    assert alive(int(opened.split()[1]))
    assert closed == "closed False False"


# -- uid, gid, initgroups (root) ------------------------------------------------------------------


@ROOT_ONLY
@BOTH
def test_initgroups_sets_the_target_gid_everywhere(sandbox: Sandbox, impl: str) -> None:
    result = sandbox.run(
        program(
            impl,
            """
            with daemon.DaemonContext(working_directory="/", uid=65534, gid=65534, initgroups=True):
                time.sleep(60)
            """,
        )
    )
    assert result.returncode == 0, result
    wait_until(lambda: len(sandbox.live_pids()) == 1, what="the daemon")
    (pid,) = sandbox.live_pids()
    wait_until(lambda: proc_status(pid)["Uid"].split() == ["65534"] * 4, what="the switch to uid 65534")
    status = proc_status(pid)
    assert status["Uid"].split() == ["65534"] * 4
    if impl == "python-daemon":
        assert status["Gid"].split() == ["0"] * 4, status  # initgroups without setgid: still group root
    else:
        assert status["Gid"].split() == ["65534"] * 4, status
        assert "0" not in status["Groups"].split(), status


@ROOT_ONLY
def test_after_the_drop_root_cannot_be_regained(sandbox: Sandbox) -> None:
    result = sandbox.run(
        program(
            "compat",
            """
            with daemon.DaemonContext(working_directory=HERE, uid=65534, gid=65534, stdout=open("out.log", "a")):
                try:
                    os.setuid(0)
                    print("regained", flush=True)
                except PermissionError:
                    print("refused", flush=True)
            """,
        )
    )
    assert result.returncode == 0, result
    wait_content(sandbox.path / "out.log", "refused\n")


def test_a_missing_working_directory_raises_in_the_launcher(sandbox: Sandbox) -> None:
    result = sandbox.run(program("compat", "daemon.DaemonContext(working_directory='/no/such/dir').open()\n"))
    assert result.returncode == 1, result
    assert "DaemonOSEnvironmentError" in result.stderr and "/no/such/dir" in result.stderr, result
    assert sandbox.live_pids() == []


# -- python-daemon's own documented examples, the import switched ---------------------------------


def test_the_readme_example_runs_unchanged(sandbox: Sandbox) -> None:
    sandbox.write(
        "spam.py",
        """
        import os
        def do_main_program():
            with open(os.environ["SPAM_OUT"], "w") as f:
                f.write(f"main {os.getpid()} {os.getppid()} {os.getsid(0) == os.getpid()}\\n")
        """,
    )
    # README "Simple example of usage", `import daemon` switched.
    result = sandbox.run(
        """
        import daemondeco.compat as daemon

        from spam import do_main_program

        with daemon.DaemonContext():
            do_main_program()
        """,
        SPAM_OUT=str(sandbox.path / "spam.out"),
        PYTHONPATH=f"{sandbox.path}:{Path(__file__).resolve().parent.parent}",
    )
    assert result.returncode == 0, result
    out = sandbox.path / "spam.out"
    wait_until(lambda: out.exists() and out.read_text().endswith("\n"), what="do_main_program in the daemon")
    words = (sandbox.path / "spam.out").read_text().split()
    assert words[0] == "main" and words[3] == "False"  # not a session leader: the second fork happened


@ROOT_ONLY
def test_the_pep_3143_example_runs_unchanged(sandbox: Sandbox) -> None:
    pytest.importorskip("grp")
    (sandbox.path / "var/lib/foo").mkdir(parents=True)
    (sandbox.path / "var/run").mkdir(parents=True)
    sandbox.write(
        "spam.py",
        """
        import os, sys, time
        def initial_program_setup():
            pass
        def do_main_program():
            with open("main.txt", "w") as f:  # in working_directory
                f.write(f"{os.getpid()} {os.getgid()}\\n")
            while True:
                time.sleep(1)
        def program_cleanup(signum, frame):
            with open("cleanup.txt", "w") as f:
                f.write("cleaned\\n")
            sys.exit(0)
        def reload_program_config(signum, frame):
            with open("reload.txt", "w") as f:
                f.write("reloaded\\n")
        """,
    )
    base = str(sandbox.path)
    # The PEP's example, word for word except the import and the /var paths moved into the sandbox.
    result = sandbox.run(
        f"""
        import os
        import grp
        import signal
        import daemondeco.compat as daemon
        import lockfile

        from spam import (
            initial_program_setup,
            do_main_program,
            program_cleanup,
            reload_program_config,
            )

        context = daemon.DaemonContext(
            working_directory='{base}/var/lib/foo',
            umask=0o002,
            pidfile=lockfile.FileLock('{base}/var/run/spam.pid'),
            )

        context.signal_map = {{
            signal.SIGTERM: program_cleanup,
            signal.SIGHUP: 'terminate',
            signal.SIGUSR1: reload_program_config,
            }}

        mail_gid = grp.getgrnam('mail').gr_gid
        context.gid = mail_gid

        important_file = open('spam.data', 'w')
        interesting_file = open('eggs.data', 'w')
        context.files_preserve = [important_file, interesting_file]

        initial_program_setup()

        with context:
            do_main_program()
        """,
        PYTHONPATH=f"{sandbox.path}:{Path(__file__).resolve().parent.parent}",
    )
    assert result.returncode == 0, result
    work = sandbox.path / "var/lib/foo"
    main = work / "main.txt"
    wait_until(lambda: main.exists() and main.read_text().endswith("\n"), what="do_main_program")
    pid, gid = map(int, (work / "main.txt").read_text().split())
    import grp

    assert gid == grp.getgrnam("mail").gr_gid
    os.kill(pid, signal.SIGUSR1)
    wait_until((work / "reload.txt").exists, what="reload_program_config")
    os.kill(pid, signal.SIGTERM)
    assert wait_exit(pid, 10)
    assert (work / "cleanup.txt").read_text() == "cleaned\n"
    assert zombie_exit_code(pid) == 0


# -- more of what an operator sees ----------------------------------------------------------------


@BOTH
def test_a_pidfile_in_a_missing_directory(sandbox: Sandbox, impl: str) -> None:
    result = sandbox.run(
        program(
            impl,
            """
            lock = pidfile.TimeoutPIDLockFile(os.path.join(HERE, "no-such-dir", "d.pid"), -1)
            with daemon.DaemonContext(working_directory=HERE, pidfile=lock):
                time.sleep(60)
            """,
        )
    )
    if impl == "python-daemon":
        assert (result.returncode, result.stderr) == (0, ""), result  # LockFailed in the daemon, unseen
        wait_gone(sandbox)
        return
    assert result.returncode == 1, result
    assert "LockFailed: failed to create" in result.stderr and "no-such-dir" in result.stderr, result
    assert sandbox.live_pids() == []


@ROOT_ONLY
@BOTH
def test_a_root_owned_pidfile_directory_with_a_switch_of_user(sandbox: Sandbox, impl: str) -> None:
    """python-daemon creates the pidfile after setuid (E-uid): the daemon dies; here it is created before."""
    run_dir = sandbox.path / "run"
    run_dir.mkdir(mode=0o755)
    result = sandbox.run(
        program(
            impl,
            """
            lock = pidfile.TimeoutPIDLockFile(os.path.join(HERE, "run", "d.pid"), -1)
            with daemon.DaemonContext(working_directory="/", uid=65534, gid=65534, pidfile=lock):
                time.sleep(60)
            """,
        )
    )
    assert result.returncode == 0, result
    if impl == "python-daemon":
        wait_gone(sandbox)
        assert not (run_dir / "d.pid").exists()
        return
    pid = read_pid(run_dir / "d.pid")
    assert proc_status(pid)["Uid"].split() == ["65534"] * 4
    assert daemondeco.Pidfile(run_dir / "d.pid").locked_by() == pid


@BOTH
def test_a_child_forked_inside_the_context_leaves_the_pidfile_alone(sandbox: Sandbox, impl: str) -> None:
    result = sandbox.run(
        program(
            impl,
            """
            err = open(os.path.join(HERE, "err.log"), "a")
            lock = pidfile.TimeoutPIDLockFile(os.path.join(HERE, "d.pid"), -1)
            with daemon.DaemonContext(working_directory=HERE, pidfile=lock, stderr=err):
                child = os.fork()
                if child == 0:
                    sys.exit(0)  # a worker leaving normally, inside the with block
                _, status = os.waitpid(child, 0)
                with open(os.path.join(HERE, "child.txt"), "w") as f:
                    f.write(f"{os.waitstatus_to_exitcode(status)}\\n")
                time.sleep(60)
            """,
        )
    )
    assert result.returncode == 0, result
    child = sandbox.path / "child.txt"
    wait_until(lambda: child.exists() and child.read_text().endswith("\n"), what="the child's exit status")
    err = (sandbox.path / "err.log").read_text()
    if impl == "python-daemon":
        assert child.read_text() == "1\n" and "NotMyLock" in err, err  # E12
        return
    assert child.read_text() == "0\n" and err == "", err
    pid = read_pid(sandbox.path / "d.pid")
    assert daemondeco.Pidfile(sandbox.path / "d.pid").locked_by() == pid


def test_python_m_daemondeco_stops_a_compat_daemon(sandbox: Sandbox) -> None:
    assert sandbox.run(program("compat", SLEEPER.format(timeout=-1))).returncode == 0
    pid = read_pid(sandbox.path / "d.pid")
    status = sandbox.run_module("status", "d.pid")
    assert status.returncode == 0 and str(pid) in status.stdout, status
    stopped = sandbox.run_module("stop", "d.pid")
    assert stopped.returncode == 0, stopped
    assert not alive(pid) and not (sandbox.path / "d.pid").exists()
    assert zombie_exit_code(pid) == 0


def test_the_daemon_gets_umask_working_directory_and_no_core_dumps(sandbox: Sandbox) -> None:
    (sandbox.path / "work").mkdir()
    result = sandbox.run(
        program(
            "compat",
            """
            import resource
            context = daemon.DaemonContext(working_directory=os.path.join(HERE, "work"), umask=0o027,
                                           pidfile=os.path.join(HERE, "d.pid"), stdout=open("out.log", "a"))
            with context:
                print(oct(os.umask(0o027)), os.path.basename(os.getcwd()),
                      resource.getrlimit(resource.RLIMIT_CORE) == (0, 0), flush=True)
            """,
        )
    )
    assert result.returncode == 0, result
    wait_content(sandbox.path / "out.log", "0o27 work True\n")


def test_under_notify_socket_it_runs_in_the_foreground_and_says_ready(sandbox: Sandbox) -> None:
    import socket

    address = str(sandbox.path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(address)
        listener.settimeout(10)
        script = sandbox.write(
            "prog.py",
            program(
                "compat",
                """
                with daemon.DaemonContext(working_directory=HERE, pidfile=os.path.join(HERE, "d.pid")):
                    time.sleep(60)
                """,
            ),
        )
        launcher = subprocess.Popen(
            [sys.executable, str(script)], cwd=sandbox.path, env=sandbox.env(NOTIFY_SOCKET=address)
        )
        sandbox.extra_pids.append(launcher.pid)
        message = listener.recv(4096).decode()
    assert "READY=1" in message and f"MAINPID={launcher.pid}" in message, message
    assert read_pid(sandbox.path / "d.pid") == launcher.pid  # no fork: systemd's main pid is the daemon
    launcher.send_signal(signal.SIGTERM)
    assert launcher.wait(10) == 0


@BOTH
def test_stdout_sys_stdout_keeps_the_launchers_stream(sandbox: Sandbox, impl: str) -> None:
    """cherry-common's shape: ``stdout=sys.stdout, stderr=sys.stderr`` keep the launcher's files."""
    script = sandbox.write(
        "prog.py",
        program(
            impl,
            """
            with daemon.DaemonContext(working_directory=HERE, stdout=sys.stdout, stderr=sys.stderr):
                print("out from the daemon", flush=True)
                print("err from the daemon", file=sys.stderr, flush=True)
            """,
        ),
    )
    with open(sandbox.path / "out.log", "w") as out, open(sandbox.path / "err.log", "w") as err:
        done = subprocess.run(
            [sys.executable, str(script)], stdout=out, stderr=err, env=sandbox.env(), cwd=sandbox.path, timeout=30
        )
    assert done.returncode == 0
    wait_content(sandbox.path / "out.log", "out from the daemon\n")
    wait_content(sandbox.path / "err.log", "err from the daemon\n")


@BOTH
def test_files_preserve_with_a_log_handler(sandbox: Sandbox, impl: str) -> None:
    """Airflow's and Bcfg2's shape: the handler's stream listed by hand keeps working in both."""
    result = sandbox.run(
        program(
            impl,
            """
            import logging
            handler = logging.FileHandler(os.path.join(HERE, "app.log"))
            logger = logging.getLogger("app")
            logger.addHandler(handler)
            logger.setLevel(logging.INFO)
            with daemon.DaemonContext(working_directory=HERE, files_preserve=[handler.stream]):
                logger.info("kept by files_preserve")
            """,
        )
    )
    assert result.returncode == 0, result
    wait_content(sandbox.path / "app.log", "kept by files_preserve\n")


def test_without_lockfile_installed(sandbox: Sandbox) -> None:
    result = sandbox.run(
        """
        import os, sys
        sys.modules["lockfile"] = None  # import lockfile -> ImportError, as where it is not installed
        import daemondeco.compat as daemon
        from daemondeco.compat import pidfile
        print([c.__name__ for c in pidfile.LockTimeout.__mro__][:5])
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "x.pid")
        with pidfile.TimeoutPIDLockFile(path, 1) as lock:
            try:
                pidfile.PIDLockFile(path).acquire()
            except pidfile.AlreadyLocked as exc:
                print("AlreadyLocked", exc)
        """
    )
    assert result.returncode == 0, result
    assert "['LockTimeout', 'LockError', 'Error', 'Exception', 'BaseException']" in result.stdout, result
    assert "AlreadyLocked" in result.stdout and "locked by pid" in result.stdout, result


@ROOT_ONLY
def test_chroot_directory(sandbox: Sandbox) -> None:
    jail = sandbox.path / "jail"
    jail.mkdir()
    (jail / "inside.txt").write_text("")
    result = sandbox.run(
        program(
            "compat",
            """
            out = open(os.path.join(HERE, "out.log"), "a")
            with daemon.DaemonContext(chroot_directory=os.path.join(HERE, "jail"), stdout=out):
                print(os.getcwd(), sorted(os.listdir("/")), flush=True)
            """,
        )
    )
    assert result.returncode == 0, result
    wait_content(sandbox.path / "out.log", "/ ['inside.txt']\n")


def test_a_missing_chroot_directory_raises_in_the_launcher(sandbox: Sandbox) -> None:
    result = sandbox.run(program("compat", "daemon.DaemonContext(chroot_directory='/no/such/jail').open()\n"))
    assert result.returncode == 1, result
    assert "DaemonOSEnvironmentError" in result.stderr and "/no/such/jail" in result.stderr, result
    assert sandbox.live_pids() == []


def test_stdio_paths_are_reopened_on_sighup(sandbox: Sandbox) -> None:
    """The EdgeDB-style extension: stdout as a path, reopened on SIGHUP (logrotate without copytruncate)."""
    code = program(
        "compat",
        """
        with daemon.DaemonContext(working_directory=HERE, stdout=os.path.join(HERE, "out.log"),
                                  pidfile=os.path.join(HERE, "d.pid")):
            while True:
                print("tick", flush=True)
                time.sleep(0.05)
        """,
    )
    assert sandbox.run(code).returncode == 0
    pid = read_pid(sandbox.path / "d.pid")
    log = sandbox.path / "out.log"
    wait_until(lambda: "tick" in log.read_text(), what="output in out.log")
    log.rename(sandbox.path / "out.log.1")
    os.kill(pid, signal.SIGHUP)
    wait_until(lambda: log.exists() and "tick" in log.read_text(), what="a reopened out.log")
    assert alive(pid)


def test_without_stdio_paths_sighup_keeps_its_default_as_in_python_daemon(sandbox: Sandbox) -> None:
    assert sandbox.run(program("compat", SLEEPER.format(timeout=-1))).returncode == 0
    pid = read_pid(sandbox.path / "d.pid")
    os.kill(pid, signal.SIGHUP)
    assert wait_exit(pid, 10)
    assert zombie_exit_code(pid) == -signal.SIGHUP
    assert not daemondeco.Pidfile(sandbox.path / "d.pid").is_locked()  # stale: the next start takes it over


def test_the_module_level_steps(sandbox: Sandbox) -> None:
    """python-daemon's ``daemon.daemon`` functions that programs call by hand, on their own."""
    result = sandbox.run(
        program(
            "compat",
            """
            import resource, socket
            from daemondeco.compat import daemon as dd
            lines = []
            dd.prevent_core_dump()
            lines.append(f"core {resource.getrlimit(resource.RLIMIT_CORE)}")
            left, right = socket.socketpair()
            superserver = dd.is_process_started_by_superserver()
            lines.append(f"socket {dd.is_socket(left.fileno())} {dd.is_socket(0)} {superserver}")
            keep = os.open(os.devnull, os.O_RDONLY)
            extra = [os.open(os.devnull, os.O_RDONLY) for _ in range(5)]
            out = open("out.log", "w")
            dd.redirect_stream(sys.stdout, out)  # fd 1 is out.log from now on
            dd.close_all_open_files(exclude={0, 1, 2, keep})
            listed = sorted(int(name) for name in os.listdir("/proc/self/fd"))  # with the listing's own fd
            lines.append(f"keep {keep} open {' '.join(map(str, listed))}")
            os.write(1, ("\\n".join(lines) + "\\n").encode())
            """,
        )
    )
    assert result.returncode == 0, result
    core, sock, fds = (sandbox.path / "out.log").read_text().splitlines()
    assert core == "core (0, 0)"
    assert sock == "socket True False False"
    words = fds.split()
    keep, listed = int(words[1]), {int(fd) for fd in words[3:]}
    assert {0, 1, 2, keep} <= listed and len(listed - {0, 1, 2, keep}) <= 1, fds  # at most the listing's fd


@ROOT_ONLY
def test_change_process_owner_sets_the_gid_with_initgroups(sandbox: Sandbox) -> None:
    result = sandbox.run(
        program(
            "compat",
            """
            from daemondeco.compat import daemon as dd
            dd.change_process_owner(65534, 65534, initgroups=True)
            print(os.getresuid(), os.getresgid(), 0 in os.getgroups(), flush=True)
            try:
                dd.change_process_owner(0, 0)
            except dd.DaemonOSEnvironmentError as exc:
                print("refused", exc.__cause__.__class__.__name__)
            """,
        )
    )
    assert result.returncode == 0, result
    assert result.stdout.splitlines() == [
        "(65534, 65534, 65534) (65534, 65534, 65534) False",
        "refused PermissionError",
    ], result


def test_compat_close_removes_the_state_file_before_it_releases_the_pidfile(sandbox: Sandbox) -> None:
    """Issue 17, point 11: no state file may outlive the lock (``status`` would read a dead daemon's state)."""
    sandbox.run(
        program(
            "compat",
            """
            lock = pidfile.TimeoutPIDLockFile(os.path.join(HERE, "d.pid"), 0.5)
            context = daemon.DaemonContext(working_directory=HERE, pidfile=lock)
            with context:
                state = os.path.join(HERE, "d.pid.state")
                before = os.path.exists(state)
                context.close()
                with open(os.path.join(HERE, "seen"), "w") as f:
                    f.write(f"{before} {os.path.exists(state)} {os.path.exists(os.path.join(HERE, 'd.pid'))}")
            """,
        )
    )
    wait_until((sandbox.path / "seen").exists, what="the daemon's report")
    wait_gone(sandbox)
    assert (sandbox.path / "seen").read_text() == "True False False", "state file removed along with the pidfile"
