"""daemonize(): the imperative form of the classic recipes."""

from __future__ import annotations

import os
import signal

from conftest import Sandbox, alive, read_pid, wait_exit, wait_until


def test_daemonize_returns_in_the_daemon_only(sandbox: Sandbox) -> None:
    code = """
        import os, time
        from pathlib import Path
        from daemondeco import daemonize
        HERE = Path(__file__).resolve().parent

        print("before", os.getpid())
        daemonize(pidfile=HERE / "d.pid", stdout=HERE / "d.log")
        print("after", os.getpid(), os.getcwd(), flush=True)
        try:
            time.sleep(60)
        finally:
            print("finally", flush=True)
    """
    result = sandbox.run(code)
    assert result.returncode == 0, result
    assert result.stdout.startswith("before ") and "after" not in result.stdout
    pid = read_pid(sandbox.path / "d.pid")
    assert alive(pid)
    wait_until(lambda: "after" in (sandbox.path / "d.log").read_text(), what="daemon output")
    assert (sandbox.path / "d.log").read_text() == f"after {pid} /\n"
    os.kill(pid, signal.SIGTERM)
    assert wait_exit(pid)
    assert (sandbox.path / "d.log").read_text() == f"after {pid} /\nfinally\n"
    assert not (sandbox.path / "d.pid").exists(), "the pidfile is removed at exit"


def test_daemonize_notify_failure_raises_in_launcher(sandbox: Sandbox) -> None:
    code = """
        import json
        from pathlib import Path
        from daemondeco import daemonize, notify_ready
        HERE = Path(__file__).resolve().parent

        daemonize(pidfile=HERE / "d.pid", stdout=HERE / "d.log", ready="notify")
        config = json.loads((HERE / "missing.json").read_text())
        notify_ready()
    """
    result = sandbox.run(code)
    assert result.returncode == 1
    assert "StartupError" in result.stderr
    assert "FileNotFoundError" in result.stderr and "missing.json" in result.stderr
    assert sandbox.live_pids() == []
    assert "FileNotFoundError" in (sandbox.path / "d.log").read_text()


def test_daemonize_notify_then_exit_is_clean(sandbox: Sandbox) -> None:
    code = """
        from pathlib import Path
        from daemondeco import daemonize, notify_ready
        HERE = Path(__file__).resolve().parent

        daemonize(pidfile=HERE / "d.pid", ready="notify")
        (HERE / "ready-marker").write_text("x")
        notify_ready()
        notify_ready()  # a second call is harmless
    """
    result = sandbox.run(code)
    assert result.returncode == 0, result
    assert (sandbox.path / "ready-marker").exists()
    wait_until(lambda: not (sandbox.path / "d.pid").exists(), what="pidfile removal at exit")


# -- ready="auto" (the default): the rest of the script must run startup_grace (issue 18, item 1) --


def test_default_daemonize_fails_a_script_that_ends_within_the_grace(sandbox: Sandbox) -> None:
    code = """
        import sys
        from pathlib import Path
        from daemondeco import daemonize
        HERE = Path(__file__).resolve().parent

        daemonize(pidfile=HERE / "d.pid", stdout=HERE / "d.log")
        print("the script's rest runs", flush=True)
        sys.exit(0)
    """
    result = sandbox.run(code)
    assert result.returncode == 1, result
    assert "before it was ready" in result.stderr and "exited too quickly" in result.stderr, result
    assert "the script's rest runs" in (sandbox.path / "d.log").read_text()
    assert not (sandbox.path / "d.pid").exists()


def test_default_daemonize_is_ready_after_the_grace(sandbox: Sandbox) -> None:
    code = """
        import time
        from pathlib import Path
        from daemondeco import daemonize
        HERE = Path(__file__).resolve().parent

        daemonize(pidfile=HERE / "d.pid", stdout=HERE / "d.log")
        time.sleep(60)
    """
    pid = sandbox.start_daemon(code)
    assert alive(pid)


def test_daemonize_lets_go_of_the_pidfile_after_every_atexit_handler(sandbox: Sandbox) -> None:
    """Issue 17, point 11: a handler registered before daemonize() runs while the lock still says "running"."""
    os.mkfifo(sandbox.path / "gate")
    code = """
        import atexit, os, sys
        from pathlib import Path
        from daemondeco import daemonize
        HERE = Path(__file__).resolve().parent

        def cleanup():  # registered first: runs last
            (HERE / "cleaning").write_text(str(os.getpid()))
            (HERE / "gate").read_text()  # the test lets it finish
            (HERE / "cleaned").write_text("yes")

        if sys.argv[1:] != ["again"]:
            atexit.register(cleanup)
        daemonize(pidfile=HERE / "d.pid", stdout=HERE / "d.log")
        def later():  # registered after: runs first, once
            with open(HERE / "later", "a") as out:
                out.write("ran\\n")

        atexit.register(later)
    """
    script = sandbox.write("prog.py", code)
    assert sandbox.run_file(script).returncode == 0
    wait_until((sandbox.path / "cleaning").exists, what="the script's cleanup")
    pid = int((sandbox.path / "cleaning").read_text())
    assert (sandbox.path / "later").exists()
    seen = sandbox.inspect_pidfile(sandbox.path / "d.pid")
    assert seen["flock_held"] and seen["locked_by"] == pid, seen
    second = sandbox.run_file(script, "again")
    assert second.returncode != 0 and "already running" in second.stderr, second
    with open(sandbox.path / "gate", "w") as gate:
        gate.write("go\n")
    assert wait_exit(pid)
    assert (sandbox.path / "cleaned").read_text() == "yes"
    assert (sandbox.path / "later").read_text() == "ran\n", "every handler ran once"
    assert not (sandbox.path / "d.pid").exists(), "the pidfile is removed at exit"


def test_a_child_of_a_daemonize_daemon_leaves_its_files_alone(sandbox: Sandbox) -> None:
    """A child the daemon forks runs the inherited atexit handlers when it exits: not the daemon's cleanup."""
    code = """
        import os, sys
        from pathlib import Path
        from daemondeco import daemonize
        HERE = Path(__file__).resolve().parent

        daemonize(pidfile=HERE / "d.pid", stdout=HERE / "d.log", ready="start")  # the script ends at once
        child = os.fork()
        if child == 0:
            sys.exit(0)  # a normal exit: atexit handlers run in the child
        os.waitpid(child, 0)
        state = HERE / "d.pid.state"
        print("after the child:", state.exists(), (HERE / "d.pid").exists(), flush=True)
    """
    assert sandbox.run(code).returncode == 0
    wait_until(lambda: "after the child" in (sandbox.path / "d.log").read_text(), what="the daemon's report")
    assert "after the child: True True" in (sandbox.path / "d.log").read_text()
