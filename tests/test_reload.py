"""SIGHUP: log rotation without copytruncate, ``on_reload``, the ``signals`` option.

A rotation is what logrotate does: rename the log, send SIGHUP, expect the
daemon to write to a new file at the old path, with no line lost or repeated
across the switch.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Sandbox, alive, proc_status, read_pid, wait_exit, wait_for_text, wait_until, zombie_exit_code


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def fd_target(pid: int, fd: int) -> str:
    return os.readlink(f"/proc/{pid}/fd/{fd}")


def stop(pid: int) -> None:
    """SIGTERM and wait; the daemon must exit 0."""
    os.kill(pid, signal.SIGTERM)
    assert wait_exit(pid, 5), f"daemon {pid} did not stop"
    assert zombie_exit_code(pid) == 0


def numbers(text_lines: list[str]) -> list[int]:
    return [int(line) for line in text_lines if line.isdigit()]


# A daemon writing a numbered line every 2 ms, each in one write() call.
COUNTER = """
import asyncio, os, sys, time
from pathlib import Path
from daemondeco import daemon, notify_ready
HERE = Path(__file__).resolve().parent

def on_reload():
    with open(HERE / "reloads", "a") as f:
        f.write(f"{{os.getpid()}}\\n")

@daemon(pidfile=HERE / "d.pid", stdout=HERE / "d.log", stderr={stderr}, ready="notify", on_reload=on_reload)
{body}

main()
"""

SYNC_BODY = """
def main():
    n = 0
    notify_ready()
    while True:
        sys.stdout.write(f"{n}\\n")
        sys.stdout.flush()
        n += 1
        time.sleep(0.002)
"""

ASYNC_BODY = """
async def main():
    n = 0
    notify_ready()
    while True:
        sys.stdout.write(f"{n}\\n")
        sys.stdout.flush()
        n += 1
        await asyncio.sleep(0.002)
"""


def counter(body: str, stderr: str = "None") -> str:
    return COUNTER.format(body=body.strip("\n"), stderr=stderr)


@pytest.mark.parametrize("body", [pytest.param(SYNC_BODY, id="sync"), pytest.param(ASYNC_BODY, id="async")])
def test_rename_and_sighup_switches_log_without_losing_a_line(sandbox: Sandbox, body: str) -> None:
    log, rotated = sandbox.path / "d.log", sandbox.path / "d.log.1"
    pid = sandbox.start_daemon(counter(body))
    wait_until(lambda: len(lines(log)) >= 20, timeout=5, what="20 lines in the log")
    log.rename(rotated)  # the daemon keeps writing to the renamed file...
    wait_until(lambda: len(lines(rotated)) >= 30, timeout=5, what="lines after the rename")
    os.kill(pid, signal.SIGHUP)  # ...until told to reopen
    wait_until(lambda: len(lines(log)) >= 20, timeout=5, what="20 lines in the new log")
    assert fd_target(pid, 1) == str(log), "fd 1 points at the new file"
    assert fd_target(pid, 2) == str(log), "stderr follows stdout to the new file"
    assert lines(sandbox.path / "reloads") == [str(pid)], "on_reload ran once, in the daemon"
    stop(pid)

    old, new = numbers(lines(rotated)), numbers(lines(log))
    assert old and new
    assert old + new == list(range(len(old) + len(new))), "one gapless, duplicate-free sequence across the switch"
    assert all(line.isdigit() for line in lines(rotated) + lines(log)), "no torn or foreign line"


def test_on_reload_once_per_sighup(sandbox: Sandbox) -> None:
    pid = sandbox.start_daemon(counter(SYNC_BODY))
    reloads = sandbox.path / "reloads"
    for count in range(1, 4):
        os.kill(pid, signal.SIGHUP)  # one at a time: pending signals of one kind coalesce
        wait_until(lambda count=count: len(lines(reloads)) >= count, timeout=5, what=f"reload {count}")  # type: ignore[misc]
    stop(pid)
    assert lines(reloads) == [str(pid)] * 3


def test_separate_stderr_file_is_reopened_too(sandbox: Sandbox) -> None:
    code = """
        import os, sys, time
        from pathlib import Path
        from daemondeco import daemon
        HERE = Path(__file__).resolve().parent

        def on_reload():
            print("out after reload", flush=True)
            print("err after reload", file=sys.stderr, flush=True)

        @daemon(pidfile=HERE / "d.pid", stdout=HERE / "out.log", stderr=HERE / "err.log", on_reload=on_reload)
        def main():
            print("out before", flush=True)
            print("err before", file=sys.stderr, flush=True)
            while True:
                time.sleep(3600)

        main()
    """
    out, err = sandbox.path / "out.log", sandbox.path / "err.log"
    pid = sandbox.start_daemon(code)
    wait_for_text(out, "out before")
    wait_for_text(err, "err before")
    out.rename(sandbox.path / "out.log.1")
    err.rename(sandbox.path / "err.log.1")
    os.kill(pid, signal.SIGHUP)
    assert wait_for_text(out, "out after reload") == "out after reload\n"
    assert wait_for_text(err, "err after reload") == "err after reload\n"
    assert (fd_target(pid, 1), fd_target(pid, 2)) == (str(out), str(err))
    assert "reload" not in (sandbox.path / "out.log.1").read_text() + (sandbox.path / "err.log.1").read_text()
    stop(pid)


# -- the signals option -----------------------------------------------------------

HANDLED = """
import os, signal, sys, time
from pathlib import Path
from daemondeco import daemon
HERE = Path(__file__).resolve().parent

def handler(signum, frame):
    with open(HERE / "handled", "a") as f:
        f.write(f"{{signal.Signals(signum).name}} {{os.getpid()}}\\n")

def on_reload():
    (HERE / "on_reload-called").write_text("yes")

@daemon(pidfile=HERE / "d.pid", stdout=HERE / "d.log", on_reload=on_reload, signals={{{signum}: handler}})
def main():
    print("up", flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        print("cleanup ran", flush=True)

main()
"""


def test_signals_option_adds_a_handler(sandbox: Sandbox) -> None:
    pid = sandbox.start_daemon(HANDLED.format(signum="signal.SIGUSR1"))
    wait_for_text(sandbox.path / "d.log", "up")
    os.kill(pid, signal.SIGUSR1)
    assert wait_for_text(sandbox.path / "handled", "\n") == f"SIGUSR1 {pid}\n"
    assert alive(pid), "the handler replaced SIGUSR1's default action (terminate)"
    os.kill(pid, signal.SIGHUP)  # the default reload is still there
    wait_until((sandbox.path / "on_reload-called").exists, timeout=5, what="on_reload")
    stop(pid)
    assert "cleanup ran" in (sandbox.path / "d.log").read_text()


def test_signals_option_replaces_the_default_reload(sandbox: Sandbox) -> None:
    log, rotated = sandbox.path / "d.log", sandbox.path / "d.log.1"
    pid = sandbox.start_daemon(HANDLED.format(signum="signal.SIGHUP"))
    wait_for_text(log, "up")
    log.rename(rotated)
    os.kill(pid, signal.SIGHUP)
    assert wait_for_text(sandbox.path / "handled", "\n") == f"SIGHUP {pid}\n"
    assert fd_target(pid, 1) == str(rotated), "the user's handler replaced the reopen"
    assert not log.exists()
    assert not (sandbox.path / "on_reload-called").exists(), "the default reload (and its on_reload) did not run"
    stop(pid)


# -- inherited signal state ---------------------------------------------------------

NOHUP_LAUNCHER = """
import os, signal, sys, time
from pathlib import Path
from daemondeco import daemon, notify_ready
HERE = Path(__file__).resolve().parent

def on_reload():
    (HERE / "reloaded").write_text(str(os.getpid()))

@daemon(pidfile=HERE / "d.pid", stdout=HERE / "d.log", ready="notify", on_reload=on_reload)
def main():
    try:
        notify_ready()
        print("up", flush=True)
        while True:
            time.sleep(3600)
    finally:
        print("cleanup ran", flush=True)

# Like nohup, or a supervisor that starts children with SIGTERM blocked.
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGHUP})
signal.signal(signal.SIGHUP, signal.SIG_IGN)
main()
"""


@pytest.mark.parametrize(
    "foreground", [pytest.param(False, id="detached"), pytest.param(True, id="DAEMONDECO_FOREGROUND")]
)
def test_blocked_and_ignored_signals_are_reset(sandbox: Sandbox, foreground: bool) -> None:
    log = sandbox.path / "d.log"
    if foreground:
        script = sandbox.write("prog.py", NOHUP_LAUNCHER)
        proc = subprocess.Popen(
            [sys.executable, str(script)],
            cwd=sandbox.path,
            env=sandbox.env(DAEMONDECO_FOREGROUND="1"),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        sandbox.extra_pids.append(proc.pid)
        wait_for_text(log, "up", timeout=5)
        pid = proc.pid
        assert read_pid(sandbox.path / "d.pid") == pid
    else:
        pid = sandbox.start_daemon(NOHUP_LAUNCHER)
        wait_for_text(log, "up")
    log.rename(sandbox.path / "d.log.1")
    os.kill(pid, signal.SIGHUP)
    wait_until((sandbox.path / "reloaded").exists, timeout=5, what="the reload after SIGHUP")
    assert fd_target(pid, 1) == str(log)
    os.kill(pid, signal.SIGTERM)
    assert wait_exit(pid, 5), "SIGTERM must stop the daemon even though the launcher blocked it"
    if foreground:
        assert proc.wait(timeout=5) == 0
    else:
        assert zombie_exit_code(pid) == 0
    assert "cleanup ran" in (sandbox.path / "d.log").read_text()


@pytest.mark.parametrize(
    ("handler", "ignored"),
    [pytest.param("signal.SIG_IGN", True, id="SIG_IGN"), pytest.param("signal.SIG_DFL", False, id="SIG_DFL")],
)
def test_signals_option_accepts_sig_ign_and_sig_dfl(sandbox: Sandbox, handler: str, ignored: bool) -> None:
    code = f"""
        import signal, time
        from pathlib import Path
        from daemondeco import daemon
        HERE = Path(__file__).resolve().parent

        @daemon(pidfile=HERE / "d.pid", signals={{signal.SIGUSR2: {handler}}})
        def main():
            time.sleep(60)

        main()
    """
    pid = sandbox.start_daemon(code)
    sig_ign = int(proc_status(pid)["SigIgn"], 16)
    assert bool(sig_ign & (1 << (signal.SIGUSR2 - 1))) is ignored
