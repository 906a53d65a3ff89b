"""daemondeco.compat: DaemonContext values refused in the launcher, and open() cases, with real processes.

Every refusal is an exception raised before any fork, naming the value at
fault; nothing is left running and no pidfile is written.
"""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

import pytest
from conftest import Result, Sandbox, read_pid, wait_exit, wait_until

import daemondeco.compat.daemon

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


def test_is_socket_is_false_for_a_closed_fd() -> None:
    assert daemondeco.compat.daemon.is_socket(987) is False


# -- PIDLockFile (lockfile's API) against live holders ------------------------------------

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

LOCK_HOLDER = """
import sys
import daemondeco
pidfile = daemondeco.Pidfile(sys.argv[1])
pidfile.acquire()
print("locked", flush=True)
sys.stdin.readline()
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
