"""Reliability under stress and faults (issue 6), with real processes checked from outside.

Each test states the fixed behaviour; while a defect is open its test is an
expected failure naming the issue's defect number. The expensive variants
(1,000 rotations, 300 start/stop cycles, a 30-launcher race) are in
tests/test_stress.py.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Sandbox, alive, read_pid, wait_exit, wait_for_text, wait_until, zombie_exit_code

import daemondeco

# -- H2a: defects 1, 6, 7, 8, 12 ------------------------------------------------

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")


@contextlib.contextmanager
def tmpfs(where: Path, *, full: bool = False, readonly: bool = False, files: tuple[str, ...] = ()) -> Iterator[Path]:
    """Mount a 16 KiB tmpfs at *where* (created here); unmount it on the way out.

    *files* are created empty first. *full*: a filler file takes every block,
    so creating a file still works (tmpfs counts inodes apart) but writing a
    byte into it fails with ENOSPC. *readonly*: remounted read-only (EROFS).
    """
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k,mode=0755", "tmpfs", str(where)], check=True)
    try:
        for name in files:
            (where / name).touch()
        if full:
            with open(where / "filler", "wb", buffering=0) as filler, contextlib.suppress(OSError):
                while True:
                    filler.write(b"x" * 1024)
            probe = os.open(where / "probe", os.O_WRONLY | os.O_CREAT)
            try:
                with pytest.raises(OSError) as refused:
                    os.write(probe, b"x")
                assert refused.value.errno == errno.ENOSPC
            finally:
                os.close(probe)
                os.unlink(where / "probe")
        if readonly:
            subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True)
        yield where
    finally:
        # A process of the test may still hold a file there (the sandbox kills
        # it after this): then detach the mount lazily.
        if subprocess.run(["umount", str(where)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], check=True)


def says_no_space(text: str) -> bool:
    lowered = text.lower()
    return os.strerror(errno.ENOSPC).lower() in lowered or "enospc" in lowered or f"[errno {errno.ENOSPC}]" in lowered


def wait_for_pid_file(path: Path, timeout: float = 10.0) -> int:
    """The pid a script wrote (atomically, by rename) into *path*."""
    wait_until(path.exists, timeout, what=f"{path.name} written")
    return int(path.read_text())


def names_pid(line: str, pid: int) -> bool:
    return re.search(rf"(?<!\d){pid}(?!\d)", line) is not None


# -- #1: SIGHUP while the daemon writes ------------------------------------------

# A daemon writing to stdout and stderr without pause: a SIGHUP nearly always
# lands inside a write.
ROTATING = """
import sys
from pathlib import Path
from daemondeco import daemon
HERE = Path(__file__).resolve().parent

@daemon(pidfile=HERE / "d.pid", stdout=HERE / "d.log", stderr=HERE / "d.err")
def main():
    n = 0
    while True:
        print("out", n)
        sys.stderr.write(f"err {n}\\n")
        n += 1

main()
"""

RELOAD_TROUBLE = ("reentrant", "reload failed", "Traceback")


def assert_no_reload_trouble(*paths: Path) -> None:
    for path in paths:
        if path.exists():
            text = path.read_text(errors="replace")
            for word in RELOAD_TROUBLE:
                assert word not in text, f"{word!r} in {path.name}: ...{text[max(0, text.find(word) - 300) :][:900]}"


def tail(*paths: Path) -> str:
    return "\n".join(f"{path.name}: ...{path.read_text(errors='replace')[-800:]}" for path in paths if path.exists())


def rotate_under_load(sandbox: Sandbox, rotations: int) -> None:
    """Start ROTATING, rotate its logs *rotations* times (rename + SIGHUP); check each reopen."""
    result = sandbox.run(ROTATING)
    assert result.returncode == 0, result
    pid = read_pid(sandbox.path / "d.pid")
    log, err = sandbox.path / "d.log", sandbox.path / "d.err"
    old_log, old_err = sandbox.path / "d.log.1", sandbox.path / "d.err.1"
    done = 0

    def reopened() -> bool:
        assert alive(pid), f"the daemon died at rotation {done + 1}; its stderr ends:\n{tail(err, old_err)}"
        return all(path.exists() and path.stat().st_size > 0 for path in (log, err))

    wait_until(reopened, 10, what="the first lines in d.log and d.err")
    for done in range(rotations):
        log.rename(old_log)
        err.rename(old_err)
        os.kill(pid, signal.SIGHUP)
        wait_until(reopened, 5, what=f"a new, non-empty d.log and d.err after rotation {done + 1}")
        assert_no_reload_trouble(old_log, old_err)
    assert alive(pid)
    assert_no_reload_trouble(log, err, old_log, old_err)


def test_sighup_under_a_busy_writer_never_kills_nor_loses_a_reopen(sandbox: Sandbox) -> None:
    rotate_under_load(sandbox, 100)


# on_reload records which process and which thread reloaded; it raises when told to.
RELOADER = """
import os, sys, threading, time
from pathlib import Path
from daemondeco import daemon
HERE = Path(__file__).resolve().parent

def on_reload():
    with open(HERE / "reloads", "a") as out:
        out.write(f"{os.getpid()} {threading.current_thread() is threading.main_thread()}\\n")
    if (HERE / "raise").exists():
        raise {exception}

@daemon(pidfile=HERE / "d.pid", stdout=HERE / "d.log", on_reload=on_reload)
def main():
    forked = False
    while True:
        print("tick", flush=True)
        time.sleep(0.01)
        if not forked and (HERE / "fork").exists() and (HERE / "reloads").exists():
            forked = True  # after a reload: the daemon's reload thread runs now
            if os.fork() == 0:  # a child of the daemon, which inherits the SIGHUP handler
                (HERE / "child.tmp").write_text(str(os.getpid()))
                os.rename(HERE / "child.tmp", HERE / "child")
                while True:
                    time.sleep(1)

main()
"""


def reload_lines(sandbox: Sandbox) -> list[str]:
    path = sandbox.path / "reloads"
    return path.read_text().splitlines() if path.exists() else []


@pytest.mark.parametrize(
    "exception",
    [
        pytest.param("ValueError('bad config')", id="ValueError"),
        pytest.param("SystemExit(3)", id="SystemExit"),
        pytest.param("KeyboardInterrupt()", id="KeyboardInterrupt"),
    ],
)
def test_on_reload_runs_outside_the_handler_and_nothing_escapes(sandbox: Sandbox, exception: str) -> None:
    result = sandbox.run(RELOADER.replace("{exception}", exception))
    assert result.returncode == 0, result
    pid = read_pid(sandbox.path / "d.pid")
    (sandbox.path / "raise").touch()
    os.kill(pid, signal.SIGHUP)
    wait_until(lambda: len(reload_lines(sandbox)) == 1, 10, what="the reload")
    assert reload_lines(sandbox) == [f"{pid} False"], "on_reload runs in the daemon, not in its main thread"
    log = sandbox.path / "d.log"
    wait_until(lambda: "reload failed" in log.read_text(), 10, what="the failed reload reported in the log")
    # The exception did not escape into the daemon's own code: it keeps running and printing.
    size = log.stat().st_size
    wait_until(lambda: log.stat().st_size > size, 10, what="the daemon printing after the failed reload")
    assert alive(pid)
    (sandbox.path / "raise").unlink()
    os.kill(pid, signal.SIGHUP)
    wait_until(lambda: len(reload_lines(sandbox)) == 2, 10, what="a second reload after the failed one")
    assert alive(pid)


def test_a_sighup_to_a_child_of_the_daemon_never_reloads_the_daemon(sandbox: Sandbox) -> None:
    result = sandbox.run(RELOADER.replace("{exception}", "ValueError()"))
    assert result.returncode == 0, result
    pid = read_pid(sandbox.path / "d.pid")
    (sandbox.path / "fork").touch()
    os.kill(pid, signal.SIGHUP)
    wait_until(lambda: len(reload_lines(sandbox)) == 1, 10, what="the daemon's first reload")
    wait_until((sandbox.path / "child").exists, 10, what="the daemon's child, forked after that reload")
    child = int((sandbox.path / "child").read_text())
    os.kill(child, signal.SIGHUP)
    wait_until(lambda: len(reload_lines(sandbox)) == 2, 10, what="the child's reload")
    os.kill(pid, signal.SIGHUP)
    wait_until(lambda: len(reload_lines(sandbox)) == 3, 10, what="the daemon's second reload")
    reloaders = [line.split()[0] for line in reload_lines(sandbox)]
    assert reloaders == [str(pid), str(child), str(pid)], "each process reloads itself, only on its own SIGHUP"


# -- #6: status after a stop that had to SIGKILL ---------------------------------

# A daemon whose cleanup blocks: SIGTERM cannot end it, stop must SIGKILL.
STUBBORN = """
import os, sys, time
from pathlib import Path
from daemondeco import daemon, notify_ready
HERE = Path(__file__).resolve().parent

@daemon(pidfile=os.environ.get("PIDFILE", HERE / "d.pid"), stop_timeout=0.5, ready="notify")
def main():
    try:
        notify_ready()
        time.sleep(60)
    finally:
        (HERE / "cleaning").touch()
        time.sleep(60)

sys.exit(main.cli())
"""


@pytest.mark.parametrize("stopper", [pytest.param("cli", id="prog-stop"), pytest.param("module", id="python-m-stop")])
def test_status_is_3_after_a_stop_that_had_to_sigkill(sandbox: Sandbox, stopper: str) -> None:
    pidfile = sandbox.path / "d.pid"
    started = sandbox.run(STUBBORN, "start")
    assert started.returncode == 0, started
    pid = read_pid(pidfile)

    if stopper == "cli":
        stopped = sandbox.run_file(sandbox.path / "prog.py", "stop")
    else:
        stopped = sandbox.run_module("stop", "--timeout", "0.5", str(pidfile))
    assert stopped.returncode == 0, stopped
    assert (sandbox.path / "cleaning").exists(), "SIGTERM never reached the blocking finally block"
    assert not alive(pid)

    if stopper == "cli":
        status = sandbox.run_file(sandbox.path / "prog.py", "status")
    else:
        status = sandbox.run_module("status", str(pidfile))
    assert status.returncode == 3, status
    assert not pidfile.exists()


@ROOT_ONLY
def test_status_is_3_after_a_start_that_could_not_write_its_pid(sandbox: Sandbox) -> None:
    with tmpfs(sandbox.path / "full", full=True) as full:
        pidfile = full / "d.pid"
        started = sandbox.run(STUBBORN, "start", PIDFILE=str(pidfile))
        assert started.returncode == 1, started
        assert sandbox.live_pids() == []
        status = sandbox.run_file(sandbox.path / "prog.py", "status", PIDFILE=str(pidfile))
        assert status.returncode == 3, status
        assert sandbox.run_module("status", str(pidfile)).returncode == 3
        assert not pidfile.exists()


# -- #7: a daemon dies writing to a full disk ------------------------------------

FULL_DISK_DEATH = """
import os, sys
from pathlib import Path
from daemondeco import daemon
HERE = Path(__file__).resolve().parent

def mark(what):
    with open(HERE / "marks", "a") as f:
        f.write(f"{what} {os.getpid()}\\n")

@daemon(pidfile=HERE / "d.pid", stdout="/dev/full", stderr="/dev/full", ready="start")
def main(how):
    (HERE / "daemon.pid.tmp").write_text(str(os.getpid()))
    (HERE / "daemon.pid.tmp").rename(HERE / "daemon.pid")
    if how == "print":
        print("a line the full disk refuses")  # OSError (ENOSPC); its traceback cannot be printed either
    raise ValueError("an uncaught exception whose traceback cannot be printed")

mark("LAUNCHER")
try:
    sys.exit(main.cli())
finally:
    mark("FINALLY")
"""


@pytest.mark.parametrize(
    "how", [pytest.param("print", id="print-fails"), pytest.param("raise", id="exception-traceback-fails")]
)
def test_daemon_dying_on_a_full_disk_ends_in_its_own_exit_sequence(sandbox: Sandbox, how: str) -> None:
    sandbox.run(FULL_DISK_DEATH, "start", how)
    pid = wait_for_pid_file(sandbox.path / "daemon.pid")
    assert wait_exit(pid, 10), "the daemon did not die"
    status = zombie_exit_code(pid)  # at once: PID 1 here reaps orphans after a second or two

    marks = [line.split() for line in (sandbox.path / "marks").read_text().splitlines()]
    launchers = {int(p) for what, p in marks if what == "LAUNCHER"}
    assert len(launchers) == 1, marks
    finally_pids = {int(p) for what, p in marks if what == "FINALLY"}
    assert pid not in finally_pids, "the launching script's finally block ran in the daemon"
    assert finally_pids <= launchers, marks
    assert status == 1
    assert not (sandbox.path / "d.pid").exists()


# -- #8: ready="start" with a log on a full or read-only filesystem -------------

LOG_LAUNCHER = """
import os, sys, time
from pathlib import Path
os.register_at_fork(before=lambda: print("FORK ATTEMPTED", file=sys.stderr, flush=True))
from daemondeco import daemon
HERE = Path(__file__).resolve().parent

@daemon(pidfile=HERE / "d.pid", ready="start", **{os.environ["OPTION"]: os.environ["LOG"]})
def main():
    while True:
        print("tick")
        sys.stderr.write("tock\\n")
        time.sleep(0.05)

if sys.argv[1] == "cli":
    sys.exit(main.cli(["start"]))
try:
    main()
except OSError as exc:
    print("RAISED", exc.errno, exc, file=sys.stderr)
    sys.exit(3)
"""

FORMS = [pytest.param("cli", id="cli-start"), pytest.param("call", id="direct-call")]
LOG_OPTIONS = [pytest.param("stdout", id="stdout"), pytest.param("stderr", id="stderr")]


def assert_refused_in_launcher(sandbox: Sandbox, form: str, option: str, log: Path, code: int) -> str:
    """The launcher failed before any fork, naming *log*; errno *code*. Its stderr."""
    result = sandbox.run(LOG_LAUNCHER, form, OPTION=option, LOG=str(log))
    assert "FORK ATTEMPTED" not in result.stderr, result
    assert str(log) in result.stderr, result
    if form == "cli":
        assert result.returncode == 1, result
    else:
        assert result.returncode == 3, result
        raised = next(line for line in result.stderr.splitlines() if line.startswith("RAISED "))
        assert int(raised.split()[1]) == code, result
    assert sandbox.live_pids() == []
    assert not (sandbox.path / "d.pid").exists()
    return result.stderr


@ROOT_ONLY
@pytest.mark.parametrize("option", LOG_OPTIONS)
@pytest.mark.parametrize("form", FORMS)
def test_log_on_a_full_disk_fails_in_the_launcher(sandbox: Sandbox, form: str, option: str) -> None:
    with tmpfs(sandbox.path / "full", full=True) as full:
        stderr = assert_refused_in_launcher(sandbox, form, option, full / "d.log", errno.ENOSPC)
        assert says_no_space(stderr), stderr


@ROOT_ONLY
@pytest.mark.parametrize("name", [pytest.param("new.log", id="new-file"), pytest.param("old.log", id="existing-file")])
@pytest.mark.parametrize("option", LOG_OPTIONS)
@pytest.mark.parametrize("form", FORMS)
def test_log_on_a_read_only_filesystem_fails_in_the_launcher(
    sandbox: Sandbox, form: str, option: str, name: str
) -> None:
    with tmpfs(sandbox.path / "ro", readonly=True, files=("old.log",)) as ro:
        assert_refused_in_launcher(sandbox, form, option, ro / name, errno.EROFS)


# -- #12: Ctrl-C while start waits for readiness ---------------------------------

SLOW_READY = """
import os, sys, time
from pathlib import Path
from daemondeco import daemon, notify_ready
HERE = Path(__file__).resolve().parent

@daemon(pidfile=HERE / "d.pid", ready="notify", ready_timeout=60)
def main():
    (HERE / "daemon.pid.tmp").write_text(str(os.getpid()))
    (HERE / "daemon.pid.tmp").rename(HERE / "daemon.pid")
    deadline = time.monotonic() + 20
    while not (HERE / "never").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    notify_ready()
    time.sleep(60)

if sys.argv[1] == "cli":
    sys.exit(main.cli(["start"]))
main()
"""


@pytest.mark.parametrize("form", FORMS)
def test_ctrl_c_while_start_waits_stops_the_daemon_and_says_so(sandbox: Sandbox, form: str) -> None:
    launcher = sandbox.popen(SLOW_READY, form, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        pid = wait_for_pid_file(sandbox.path / "daemon.pid")
        assert launcher.poll() is None, "the launcher did not wait for readiness"
        os.kill(launcher.pid, signal.SIGINT)
        out, err = launcher.communicate(timeout=20)
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.communicate()
    assert launcher.returncode == 130, f"exit {launcher.returncode}\n--- stdout\n{out}\n--- stderr\n{err}"
    assert "Traceback" not in err, err
    said = [line for line in err.splitlines() if line.strip()]
    assert len(said) == 1, err
    assert names_pid(said[0], pid), err
    assert wait_exit(pid, 10), f"the daemon {pid} still runs"
    assert not daemondeco.Pidfile(sandbox.path / "d.pid").is_locked()


RELOAD_THEN_WORKER = """
import logging, os, signal, sys, threading, warnings
from pathlib import Path
from daemondeco import daemon, process_daemonize
HERE = Path(__file__).resolve().parent
reloaded = threading.Event()
in_reload = []

def on_reload():
    logging.getLogger("app").info("reloaded")  # asks threading for the current thread
    in_reload.append(threading.current_thread().name)
    reloaded.set()

def threads_in_kernel():
    with open("/proc/self/status") as status:
        return int(next(l for l in status if l.startswith("Threads:")).split()[1])

@process_daemonize
def worker():
    pass

@daemon(pidfile=HERE / "d.pid", stdout=HERE / "d.log", on_reload=on_reload, ready="notify")
def main():
    from daemondeco import notify_ready
    notify_ready()
    os.kill(os.getpid(), signal.SIGHUP)
    assert reloaded.wait(10)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        worker().wait(10)  # forks: after the reload, no thread of ours is left
        kernel = threads_in_kernel()
    names = sorted(t.name for t in threading.enumerate())
    print("IN_RELOAD", in_reload, flush=True)
    print("THREADS", names, kernel, "WARNINGS", [str(w.message) for w in caught], flush=True)

main()
"""


def test_the_reload_thread_is_named_and_never_warned_about(sandbox: Sandbox) -> None:
    result = sandbox.run(RELOAD_THEN_WORKER)
    assert result.returncode == 0, result
    # (The daemon may be gone, and its pidfile with it, by the time we look.)
    lines = wait_for_text(sandbox.path / "d.log", "THREADS").splitlines()
    assert "IN_RELOAD ['daemondeco-reload']" in lines, lines
    line = next(line for line in lines if line.startswith("THREADS"))
    # The reload thread ran under its name and is gone once the reload is over:
    # the fork that started the worker copied a single-threaded daemon
    # (CPython 3.12+ warns otherwise, an error under -W error).
    assert line == "THREADS ['MainThread'] 1 WARNINGS []", line
