"""@daemon end to end: what an operator sees of a detached daemon and its launcher."""

from __future__ import annotations

import os
import re
import signal
import socket

import pytest
from conftest import (
    Sandbox,
    alive,
    open_fds,
    proc_stat,
    proc_status,
    read_pid,
    wait_exit,
    wait_until,
    zombie_exit_code,
    zombie_wait_status,
)

import daemondeco

# A daemon that answers "pong <pid>" on a unix socket: proof of life that does
# not depend on timing (a signal queued before we connect is handled first).
PINGER = """
import os, socket, sys, time
from pathlib import Path
from daemondeco import daemon, notify_ready
HERE = Path(__file__).resolve().parent

@daemon(pidfile=HERE / "d.pid", stdout=HERE / "d.log", ready="notify"{options})
def main():
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(HERE / "ping.sock"))
    server.listen()
    print("daemon up", os.getpid(), flush=True)
    try:
        notify_ready()  # inside the try: a SIGTERM right after readiness still runs finally
        while True:
            conn, _ = server.accept()
            with conn:
                conn.recv(16)
                conn.sendall(f"pong {{os.getpid()}}".encode())
    finally:
        print("cleanup ran", flush=True)

{before}
main()
print("launcher continued after main()")
"""


def pinger(options: str = "", before: str = "") -> str:
    return PINGER.format(options=options, before=before)


def ping(box: Sandbox) -> str:
    with socket.socket(socket.AF_UNIX) as conn:
        conn.settimeout(5)
        conn.connect(str(box.path / "ping.sock"))
        conn.sendall(b"ping")
        return conn.recv(64).decode()


def test_daemon_is_detached_from_session_and_terminal(sandbox: Sandbox) -> None:
    pid = sandbox.start_daemon(pinger())
    stat = proc_stat(pid)
    assert stat is not None
    assert stat.tty_nr == 0, "a daemon has no controlling terminal"
    assert stat.session != pid, "the daemon must not be a session leader (second fork)"
    assert stat.session == stat.pgrp, "it stays in the session the first child created"
    launcher_session = os.getsid(0)
    assert stat.session != launcher_session
    assert os.readlink(f"/proc/{pid}/cwd") == "/"
    assert proc_status(pid)["Umask"] == "0022"
    assert ping(sandbox) == f"pong {pid}"
    assert sandbox.live_pids() == [pid], "launcher and first child are gone; only the daemon remains"


def test_only_stdio_and_pidfile_stay_open(sandbox: Sandbox) -> None:
    before = """
import resource
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
stray = open(HERE / "stray.txt", "w")
os.set_inheritable(stray.fileno(), True)
os.dup2(stray.fileno(), hard - 10)
sock = socket.socket()
"""
    pid = sandbox.start_daemon(pinger(before=before))
    # The daemon closes its end of the readiness pipe right after saying "ready".
    wait_until(lambda: not any(t.startswith("pipe:") for t in open_fds(pid).values()), what="pipe closed")
    fds = open_fds(pid)
    log = str(sandbox.path / "d.log")
    pidfile = str(sandbox.path / "d.pid")
    listener = {fd for fd, target in fds.items() if target.startswith("socket:")}
    assert fds[0] == "/dev/null"
    assert fds[1] == log and fds[2] == log
    assert pidfile in fds.values()
    state = {fd for fd, t in fds.items() if t == pidfile + ".state"}  # the daemon's own state file (issue 8)
    assert len(state) == 1, fds
    assert set(fds) == {0, 1, 2} | {fd for fd, t in fds.items() if t == pidfile} | state | listener, fds
    assert len(listener) == 1, "only the socket the daemon opened itself"


def test_keep_fds_and_logging_handlers_survive(sandbox: Sandbox) -> None:
    code = """
        import logging, os, socket, time
        from pathlib import Path
        from daemondeco import daemon
        HERE = Path(__file__).resolve().parent
        logging.basicConfig(filename=HERE / "app.log", level=logging.INFO, format="%(process)d %(message)s")
        log = logging.getLogger("app")
        log.info("configured in the launcher")
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen()
        (HERE / "port").write_text(str(server.getsockname()[1]))

        @daemon(pidfile=HERE / "d.pid", keep_fds=[server])
        def main():
            log.info("logging works in the daemon")
            while True:
                conn, _ = server.accept()
                with conn:
                    conn.sendall(b"served by %d" % os.getpid())

        main()
    """
    result = sandbox.run(code)
    assert result.returncode == 0, result
    pid = read_pid(sandbox.path / "d.pid")
    port = int((sandbox.path / "port").read_text())
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        assert conn.recv(64) == f"served by {pid}".encode()
    wait_until(lambda: "logging works in the daemon" in (sandbox.path / "app.log").read_text(), what="log line")
    assert f"{pid} logging works in the daemon" in (sandbox.path / "app.log").read_text()
    assert str(sandbox.path / "app.log") in open_fds(pid).values()


KEPT_ON_STDIN = """
import logging, os, subprocess, sys
from pathlib import Path
os.register_at_fork(before=lambda: print("FORK ATTEMPTED", file=sys.stderr, flush=True))
from daemondeco import daemon
HERE = Path(__file__).resolve().parent
log = open(HERE / "app.log", "a")  # fd 0: the program was started with stdin closed
print("fd", log.fileno(), file=sys.stderr, flush=True)
if sys.argv[1] == "logging":
    logging.getLogger().addHandler(logging.StreamHandler(log))
    kept = []
else:
    kept = [log] if sys.argv[1] == "object" else [0]

@daemon(pidfile=HERE / "d.pid", keep_fds=kept)
def main():
    print("daemon ran", file=log, flush=True)

try:
    main()
except ValueError as exc:
    print("REFUSED", exc, file=sys.stderr)
    sys.exit(3)
"""


@pytest.mark.parametrize("kept", ["object", "number", "logging"])
def test_a_kept_file_that_took_the_number_of_a_closed_stdin_is_refused_before_the_fork(
    sandbox: Sandbox, kept: str
) -> None:
    """Started with ``<&-``, a file opened first is fd 0; kept (or a logging handler's), the detach would replace it."""
    import subprocess
    import sys

    script = sandbox.write("prog.py", KEPT_ON_STDIN)
    done = subprocess.run(
        ["sh", "-c", f'exec "{sys.executable}" "{script}" {kept} <&-'],
        cwd=sandbox.path,
        env=sandbox.env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert "fd 0" in done.stderr, done
    assert done.returncode == 3, done
    assert "FORK ATTEMPTED" not in done.stderr, done
    named = {
        "object": "keep_fds item <_io.TextIOWrapper name=",
        "number": "keep_fds item 0 is fd 0",
        "logging": "the logging handler <StreamHandler",
    }
    assert "REFUSED daemon(): " + named[kept] in done.stderr, done
    assert "fd 0, which the daemon points at its stdin" in done.stderr and "</dev/null" in done.stderr, done
    assert sandbox.live_pids() == [] and not (sandbox.path / "d.pid").exists()
    assert (sandbox.path / "app.log").read_text() == ""


def test_keeping_the_real_stdin_is_still_allowed(sandbox: Sandbox) -> None:
    """keep_fds=[0] when fd 0 is the standard stream: the detach points it at stdin's target, as before."""
    pid = sandbox.start_daemon(pinger(options=", keep_fds=[0, 1, 2]"))
    assert open_fds(pid)[0] == "/dev/null"
    os.kill(pid, signal.SIGTERM)
    assert wait_exit(pid)


def test_inherited_signal_state_is_reset(sandbox: Sandbox) -> None:
    before = """
import signal
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGUSR1})
signal.signal(signal.SIGHUP, signal.SIG_IGN)
"""
    pid = sandbox.start_daemon(pinger(before=before))
    status = proc_status(pid)
    assert int(status["SigBlk"], 16) == 0, "the launcher's blocked signals must not stay blocked"
    assert not int(status["SigIgn"], 16) & (1 << (signal.SIGHUP - 1)), "an inherited SIG_IGN for SIGHUP is reset"
    os.kill(pid, signal.SIGTERM)
    assert wait_exit(pid)
    assert zombie_wait_status(pid) == 0


def test_sigterm_runs_finally_exits_0_and_removes_pidfile(sandbox: Sandbox) -> None:
    pid = sandbox.start_daemon(pinger())
    os.kill(pid, signal.SIGTERM)
    assert wait_exit(pid)
    assert os.WEXITSTATUS(zombie_wait_status(pid)) == 0
    assert "cleanup ran" in (sandbox.path / "d.log").read_text()
    assert not (sandbox.path / "d.pid").exists()


def sigterm_pending(pid: int) -> bool:
    """SIGTERM is pending for *pid* (sent, not yet delivered to its handler)."""
    status = proc_status(pid)
    bit = 1 << (signal.SIGTERM - 1)
    return bool((int(status["SigPnd"], 16) | int(status["ShdPnd"], 16)) & bit)


def test_second_sigterm_during_cleanup_is_ignored(sandbox: Sandbox) -> None:
    """An impatient operator sends SIGTERM twice: the cleanup that the first one started still runs to its end."""
    code = """
        import os, time
        from pathlib import Path
        from daemondeco import daemon, notify_ready
        HERE = Path(__file__).resolve().parent

        @daemon(pidfile=HERE / "d.pid", stdout=HERE / "d.log", ready="notify")
        def main():
            try:
                notify_ready()
                while True:
                    time.sleep(3600)
            finally:
                (HERE / "cleanup-started").write_text(str(os.getpid()))
                deadline = time.monotonic() + 5  # bounded: the test releases it long before
                while not (HERE / "release").exists() and time.monotonic() < deadline:
                    time.sleep(0.01)
                (HERE / "done").write_text("released" if (HERE / "release").exists() else "timed out")

        main()
    """
    pid = sandbox.start_daemon(code)
    os.kill(pid, signal.SIGTERM)
    wait_until((sandbox.path / "cleanup-started").exists, timeout=5, what="the cleanup to begin")
    os.kill(pid, signal.SIGTERM)
    wait_until(lambda: not sigterm_pending(pid), timeout=5, what="the second SIGTERM to be delivered")
    assert alive(pid), "the second SIGTERM ended the daemon"
    (sandbox.path / "release").touch()
    assert wait_exit(pid, 10)
    done = sandbox.path / "done"
    assert done.exists(), "the second SIGTERM interrupted the finally block"
    assert done.read_text() == "released"
    assert zombie_exit_code(pid) == 0
    assert not (sandbox.path / "d.pid").exists()


def test_launcher_exits_only_once_ready(sandbox: Sandbox) -> None:
    code = """
        import time
        from pathlib import Path
        from daemondeco import daemon, notify_ready
        HERE = Path(__file__).resolve().parent

        @daemon(pidfile=HERE / "d.pid", ready="notify")
        def main():
            time.sleep(0.3)  # slow setup: the launcher must wait for it
            (HERE / "setup-done").write_text("yes")
            notify_ready()
            time.sleep(60)

        main()
    """
    result = sandbox.run(code)
    assert result.returncode == 0, result
    assert (sandbox.path / "setup-done").exists(), "launcher exited before the daemon called notify_ready()"
    assert alive(read_pid(sandbox.path / "d.pid"))


def test_pidfile_complete_when_launcher_exits(sandbox: Sandbox) -> None:
    code = """
        import time
        from pathlib import Path
        from daemondeco import daemon
        HERE = Path(__file__).resolve().parent

        @daemon(pidfile=HERE / "d.pid")
        def main():
            time.sleep(60)

        main()
    """
    result = sandbox.run(code)
    assert result.returncode == 0, result
    pid = read_pid(sandbox.path / "d.pid")
    assert alive(pid)
    assert oct((sandbox.path / "d.pid").stat().st_mode & 0o777) == oct(0o644)


FAILING = """
import os, signal, sys, time
from pathlib import Path
from daemondeco import daemon, notify_ready
HERE = Path(__file__).resolve().parent

def load_config():
    {body}

@daemon(pidfile=HERE / "d.pid", stdout=HERE / "d.log", ready="notify"{options})
def main():
    load_config()
    notify_ready()
    time.sleep(60)

main()
print("launcher continued")
"""


@pytest.mark.parametrize(
    ("body", "options", "expected"),
    [
        pytest.param(
            'raise ValueError("bad config line 42")',
            "",
            ["StartupError", "ValueError: bad config line 42", "Daemon traceback", "in load_config"],
            id="exception",
        ),
        pytest.param("sys.exit(3)", "", ["exited with status 3 before it was ready"], id="sys-exit"),
        pytest.param("sys.exit(0)", "", ["exited with status 0 before it was ready"], id="exit-0"),
        pytest.param("os.kill(os.getpid(), signal.SIGKILL)", "", ["died before it was ready"], id="sigkill"),
        pytest.param("time.sleep(60)", ", ready_timeout=0.5", ["was not ready within ready_timeout=0.5"], id="timeout"),
    ],
)
def test_startup_failure_reaches_the_launcher(sandbox: Sandbox, body: str, options: str, expected: list[str]) -> None:
    result = sandbox.run(FAILING.format(body=body, options=options))
    assert result.returncode == 1, result
    for text in expected:
        assert text in result.stderr, f"{text!r} missing from launcher stderr:\n{result.stderr}"
    assert "launcher continued" not in result.stdout
    assert sandbox.live_pids() == [], "a daemon that failed to start must not be left running"
    assert not sandbox.inspect_pidfile(sandbox.path / "d.pid")["flock_held"], "nobody holds the pidfile's lock"


def test_startup_error_says_the_daemon_was_killed_by_sigkill(sandbox: Sandbox) -> None:
    """A daemon SIGKILLed before readiness: StartupError says which signal it was, read from /proc."""
    result = sandbox.run(FAILING.format(body="os.kill(os.getpid(), signal.SIGKILL)", options=""))
    assert result.returncode == 1, result
    found = re.search(r"daemon \(pid (\d+)\) died before it was ready", result.stderr)
    assert found is not None, result
    pid = int(found.group(1))
    status = zombie_wait_status(pid)  # the note needs the zombie: skipped where PID 1 reaps orphans
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    assert f"daemon (pid {pid}) died before it was ready (killed by SIGKILL)" in result.stderr, result


def test_startup_exception_is_also_in_the_log(sandbox: Sandbox) -> None:
    result = sandbox.run(FAILING.format(body='raise KeyError("port")', options=""))
    assert result.returncode == 1, result
    log = (sandbox.path / "d.log").read_text()
    assert "KeyError: 'port'" in log and "in load_config" in log


def test_return_without_notify_is_a_startup_error(sandbox: Sandbox) -> None:
    code = """
        from pathlib import Path
        from daemondeco import daemon
        HERE = Path(__file__).resolve().parent

        @daemon(pidfile=HERE / "d.pid", ready="notify")
        def main():
            return None

        main()
    """
    result = sandbox.run(code)
    assert result.returncode == 1
    assert "exited with status 0 before it was ready (it never called notify_ready())" in result.stderr


def test_startup_grace_catches_an_early_crash(sandbox: Sandbox) -> None:
    code = """
        import time
        from pathlib import Path
        from daemondeco import daemon
        HERE = Path(__file__).resolve().parent

        @daemon(pidfile=HERE / "d.pid", ready="start", startup_grace=5)
        def main():
            time.sleep(0.1)
            raise RuntimeError("lost the database after startup")

        main()
    """
    result = sandbox.run(code)
    assert result.returncode == 1, result
    assert "within startup_grace=5 s: RuntimeError: lost the database after startup" in result.stderr


def test_startup_grace_passes_a_healthy_daemon(sandbox: Sandbox) -> None:
    code = """
        import time
        from pathlib import Path
        from daemondeco import daemon
        HERE = Path(__file__).resolve().parent

        @daemon(pidfile=HERE / "d.pid", ready="start", startup_grace=0.2)
        def main():
            time.sleep(60)

        main()
    """
    result = sandbox.run(code)
    assert result.returncode == 0, result
    assert alive(read_pid(sandbox.path / "d.pid"))


def test_crash_after_ready_goes_to_log_and_exit_1(sandbox: Sandbox) -> None:
    code = """
        import os
        from pathlib import Path
        from daemondeco import daemon
        HERE = Path(__file__).resolve().parent

        @daemon(pidfile=HERE / "d.pid", stdout=HERE / "d.log", ready="start")  # ready as called
        def main(*words, **named):
            print("args", words, named, flush=True)
            (HERE / "go").read_text()  # raises FileNotFoundError

        main("a", "b", level=3)
    """
    result = sandbox.run(code)
    assert result.returncode == 0, result
    pid = read_pid(sandbox.path / "d.pid") if (sandbox.path / "d.pid").exists() else None
    if pid is not None:
        assert wait_exit(pid)
    wait_until(lambda: "FileNotFoundError" in (sandbox.path / "d.log").read_text(), what="traceback in log")
    log = (sandbox.path / "d.log").read_text()
    assert "args ('a', 'b') {'level': 3}" in log
    assert "Traceback (most recent call last)" in log
    wait_until(lambda: not (sandbox.path / "d.pid").exists(), what="pidfile removal")


def test_output_is_not_duplicated_and_atexit_runs_once(sandbox: Sandbox) -> None:
    code = """
        import atexit, os, sys, time
        from pathlib import Path
        from daemondeco import daemon
        HERE = Path(__file__).resolve().parent

        print("launcher says hello")  # buffered: PYTHONUNBUFFERED is unset
        atexit.register(lambda: print("atexit in", os.getpid(), flush=True))

        @daemon(pidfile=HERE / "d.pid", stdout=HERE / "d.log")
        def main():
            print("daemon says hello")
            time.sleep(60)

        main()
    """
    result = sandbox.run(code)
    assert result.returncode == 0, result
    assert result.stdout == "launcher says hello\n", "launcher output once, no atexit in the launcher"
    pid = read_pid(sandbox.path / "d.pid")
    # ready="start": ready as the function is called, so a SIGTERM sent at once could come before the print.
    wait_until((sandbox.path / "d.log").read_text, what="the daemon's line")
    os.kill(pid, signal.SIGTERM)
    assert wait_exit(pid)
    log = (sandbox.path / "d.log").read_text()
    assert log == f"daemon says hello\natexit in {pid}\n"


def test_workdir_and_umask_options(sandbox: Sandbox) -> None:
    code = """
        import os, time
        from pathlib import Path
        from daemondeco import daemon, notify_ready
        HERE = Path(__file__).resolve().parent

        @daemon(pidfile=HERE / "d.pid", workdir=HERE, umask=0o077, ready="notify")
        def main():
            Path("made-by-daemon").write_text("x")  # relative: lands in workdir
            notify_ready()
            time.sleep(60)

        main()
    """
    result = sandbox.run(code)
    assert result.returncode == 0, result
    pid = read_pid(sandbox.path / "d.pid")
    assert os.readlink(f"/proc/{pid}/cwd") == str(sandbox.path)
    assert proc_status(pid)["Umask"] == "0077"
    assert (sandbox.path / "made-by-daemon").stat().st_mode & 0o777 == 0o600


def test_daemon_survives_the_hangup_of_its_launchers_terminal(sandbox: Sandbox) -> None:
    """A launcher that is a terminal's session leader (ssh -t host cmd) exits: the daemon lives."""
    sandbox.write("launch.py", pinger())
    driver = """
        import os, pty, sys
        from pathlib import Path
        HERE = Path(__file__).resolve().parent
        pid, master = pty.fork()
        if pid == 0:
            os.execv(sys.executable, [sys.executable, str(HERE / "launch.py")])
        output = b""
        while True:
            try:
                chunk = os.read(master, 1024)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
        _, status = os.waitpid(pid, 0)
        os.close(master)  # hang up the terminal for good
        print("launcher status", os.waitstatus_to_exitcode(status))
        print("launcher was session leader with a tty")
    """
    result = sandbox.run(driver, name="driver.py")
    assert "launcher status 0" in result.stdout, result
    pid = read_pid(sandbox.path / "d.pid")
    assert ping(sandbox) == f"pong {pid}", "the daemon must survive SIGHUP from the terminal"
    stat = proc_stat(pid)
    assert stat is not None and stat.tty_nr == 0


def test_second_start_while_running_raises_already_running(sandbox: Sandbox) -> None:
    pid = sandbox.start_daemon(pinger())
    result = sandbox.run(pinger(), name="again.py")
    assert result.returncode == 1
    assert "AlreadyRunningError" in result.stderr and f"pid {pid}" in result.stderr
    assert ping(sandbox) == f"pong {pid}"


def test_launcher_with_closed_stdio_still_detaches(sandbox: Sandbox) -> None:
    """A launcher started with fds 0-2 closed: the pidfile and pipe must not land on them."""
    code = """
        import os, time
        from pathlib import Path
        from daemondeco import daemon, notify_ready
        HERE = Path(__file__).resolve().parent
        os.closerange(0, 3)  # like a program started by a careless supervisor

        @daemon(pidfile=HERE / "d.pid", stdout=HERE / "d.log", ready="notify")
        def main():
            print("daemon up", os.getpid(), flush=True)
            notify_ready()
            time.sleep(60)

        main()
    """
    result = sandbox.run(code)
    assert result.returncode == 0, result
    pid = read_pid(sandbox.path / "d.pid")
    assert (sandbox.path / "d.log").read_text() == f"daemon up {pid}\n"
    fds = open_fds(pid)
    assert fds[1] == fds[2] == str(sandbox.path / "d.log")
    assert fds[0] == "/dev/null"
    assert daemondeco.Pidfile(sandbox.path / "d.pid").locked_by() == pid, "the daemon runs with its pidfile locked"


def test_faulthandler_follows_stderr_into_the_daemon(sandbox: Sandbox) -> None:
    """faulthandler enabled on a swapped sys.stderr (as under pytest) reports a fatal error into the daemon's log.

    ``faulthandler.dump_traceback()`` writes to the current ``sys.stderr``,
    whatever faulthandler was enabled with; a fatal signal uses the enabled
    file, so the daemon aborts (no core file: ``prevent_core``).
    """
    code = """
        import faulthandler, os, sys, time
        from pathlib import Path
        from daemondeco import daemon, notify_ready
        HERE = Path(__file__).resolve().parent

        sys.stderr = open(os.dup(2), "w")  # a test runner's capture: sys.stderr is not fd 2
        faulthandler.enable()  # on that fd, which the daemon closes

        @daemon(pidfile=HERE / "d.pid", stdout=HERE / "d.log", stderr=HERE / "err.log", ready="notify",
                prevent_core=True)
        def main():
            notify_ready()
            deadline = time.monotonic() + 10
            while not (HERE / "abort").exists() and time.monotonic() < deadline:
                time.sleep(0.01)
            crash_here()

        def crash_here():
            os.abort()

        main()
    """
    pid = sandbox.start_daemon(code)
    (sandbox.path / "abort").touch()
    assert wait_exit(pid, 15)
    assert zombie_exit_code(pid) == -signal.SIGABRT
    err = (sandbox.path / "err.log").read_text()
    assert "Fatal Python error: Aborted" in err, err
    assert "in crash_here" in err and "in main" in err, err


KILLED_BEFORE_READY = """
import os, signal, subprocess, sys, time
from pathlib import Path
from daemondeco import daemon, notify_ready
HERE = Path(__file__).resolve().parent

@daemon(pidfile=HERE / "d.pid", stdout=HERE / "d.log", ready="notify", ready_timeout=20)
def main():
    {child}
    os.kill(os.getpid(), signal.SIGKILL)  # killed just before readiness (an OOM killer, a monit restart)
    notify_ready()

main()
print("launcher continued")
"""


@pytest.mark.parametrize(
    "child",
    [
        pytest.param("pass", id="alone"),
        pytest.param("if os.fork() == 0:\n        time.sleep(60)\n        os._exit(0)", id="forked-child"),
        pytest.param(
            "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], close_fds=False)",
            id="subprocess",
        ),
        pytest.param(
            "import multiprocessing\n"
            "    multiprocessing.get_context('fork').Process(target=time.sleep, args=(60,)).start()",
            id="multiprocessing-fork",
        ),
    ],
)
def test_daemon_killed_before_ready_fails_the_start_at_once(sandbox: Sandbox, child: str) -> None:
    """Whoever else holds a copy of the readiness pipe (a child the daemon forked), the launcher sees the death now."""
    import time

    started = time.monotonic()
    result = sandbox.run(KILLED_BEFORE_READY.format(child=child))
    took = time.monotonic() - started
    assert result.returncode == 1, result
    assert "died before it was ready" in result.stderr, result
    assert took < 10, f"the launcher waited {took:.1f} s (ready_timeout=20): a child held the pipe's write end"


DEFAULTS = """
import os, sys, time
from pathlib import Path
from daemondeco import daemon, notify_ready
HERE = Path(__file__).resolve().parent

@daemon(pidfile=HERE / "d.pid", stdout=HERE / "d.log")
def main():
    {body}

main()
print("launcher continued")
"""


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            'open(HERE / "config.ini")',
            ["FileNotFoundError", "config.ini", "Daemon traceback", "before it was ready"],
            id="missing-config",
        ),
        pytest.param(
            "time.sleep(0.2); sys.exit(4)",
            ["exited with status 4 before it was ready", "exited too quickly", "startup_grace=1 s"],
            id="exit-4",
        ),
        pytest.param(
            "return None",
            ["exited with status 0 before it was ready", "exited too quickly"],
            id="clean-return",
        ),
        pytest.param(
            "time.sleep(0.3); os.kill(os.getpid(), 9)",
            ["died before it was ready", "exited too quickly"],
            id="sigkill",
        ),
    ],
)
def test_default_start_reports_a_fast_exit_as_a_failed_start(sandbox: Sandbox, body: str, expected: list[str]) -> None:
    """The defaults (ready="auto"): an exit within startup_grace (1 s) fails the start, whatever its status."""
    result = sandbox.run(DEFAULTS.format(body=body))
    assert result.returncode == 1, result
    for text in expected:
        assert text in result.stderr, f"{text!r} missing from launcher stderr:\n{result.stderr}"
    assert "launcher continued" not in result.stdout
    assert "started" not in result.stdout
    assert not (sandbox.path / "d.pid").exists(), "a failed start leaves no pidfile"
    assert sandbox.live_pids() == []


def test_default_start_is_ready_after_the_grace_or_at_notify_ready(sandbox: Sandbox) -> None:
    """A daemon that keeps running is ready after startup_grace (1 s); notify_ready() ends the wait at once."""
    import time

    started = time.monotonic()
    pid = sandbox.start_daemon(DEFAULTS.format(body="time.sleep(60)"))
    took = time.monotonic() - started
    assert took >= 1.0, f"the launcher left after {took:.2f} s, before startup_grace=1 s had passed"
    assert alive(pid)
    os.kill(pid, signal.SIGTERM)
    assert wait_exit(pid)

    started = time.monotonic()
    pid = sandbox.start_daemon(DEFAULTS.format(body="notify_ready(); time.sleep(60)"))
    took = time.monotonic() - started
    assert took < 0.9, f"notify_ready() must end the wait at once, the launcher took {took:.2f} s"
    assert alive(pid)


def test_default_start_fails_a_daemon_dying_right_after_it_forked_a_child(sandbox: Sandbox) -> None:
    """ready="auto" keeps the pipe open for the grace: a forked child must not hide the daemon's death."""
    import time

    body = "if os.fork() == 0:\n        time.sleep(60)\n        os._exit(0)\n    time.sleep(0.2)\n    sys.exit(2)"
    started = time.monotonic()
    result = sandbox.run(DEFAULTS.format(body=body))
    assert result.returncode == 1, result
    assert "exited with status 2 before it was ready" in result.stderr, result
    assert time.monotonic() - started < 10


SLOW_START = """
import time
from pathlib import Path
from daemondeco import daemon, notify_ready
HERE = Path(__file__).resolve().parent

@daemon(pidfile=HERE / "d.pid", ready="notify")
def main():
    time.sleep({setup})
    notify_ready()
    time.sleep(60)

main()
"""


def _start_with_stderr_on_a_terminal(sandbox: Sandbox, setup: float) -> tuple[int, str]:
    """Run a launcher whose stderr is a pseudo-terminal; its exit status and what the terminal showed."""
    import subprocess
    import sys

    script = sandbox.write("slow.py", SLOW_START.format(setup=setup))
    master, slave = os.openpty()
    try:
        launcher = subprocess.Popen(
            [sys.executable, str(script)],
            cwd=sandbox.path,
            env=sandbox.env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=slave,
        )
        os.close(slave)
        slave = -1
        status = launcher.wait(timeout=30)
        shown = b""
        os.set_blocking(master, False)
        while True:
            try:
                chunk = os.read(master, 4096)
            except (BlockingIOError, OSError):  # EIO: the terminal has no writer left
                break
            if not chunk:
                break
            shown += chunk
        return status, shown.decode(errors="replace")
    finally:
        if slave >= 0:
            os.close(slave)
        os.close(master)


def test_a_slow_start_says_it_waits_on_a_terminal(sandbox: Sandbox) -> None:
    status, shown = _start_with_stderr_on_a_terminal(sandbox, setup=1.6)
    assert status == 0, shown
    pid = read_pid(sandbox.path / "d.pid")
    assert f"waiting for main (pid {pid}) to become ready (up to 30 s)..." in shown, shown
    assert shown.count("waiting for") == 1, shown


def test_a_quick_start_or_no_terminal_prints_no_waiting_line(sandbox: Sandbox) -> None:
    status, shown = _start_with_stderr_on_a_terminal(sandbox, setup=0.1)
    assert status == 0, shown
    assert "waiting" not in shown, shown
    pid = read_pid(sandbox.path / "d.pid")
    os.kill(pid, signal.SIGTERM)
    assert wait_exit(pid)
    result = sandbox.run(SLOW_START.format(setup=1.6))  # stderr a pipe: nothing extra
    assert result.returncode == 0, result
    assert result.stderr == "", result
