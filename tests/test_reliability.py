"""Reliability under load, faults and hostile input, with real processes checked from outside.

Filed by behaviour: SIGHUP under a busy writer, status after a stop that had
to SIGKILL, a daemon dying on a full disk, logs on a full or read-only
filesystem, Ctrl-C while start waits, huge finite timeouts, 5,000 inherited
fds, a subreaper caller's zombies, pidfile names the terminal cannot encode.
(Special files at the pidfile path are specified in ``test_pidfile.py``.) The
expensive variants (1,000 rotations, 300 start/stop cycles, a 30-launcher
race) are in tests/test_stress.py, marked ``stress``.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import resource
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import (
    Result,
    Sandbox,
    alive,
    open_fds,
    read_pid,
    wait_exit,
    wait_for_text,
    wait_until,
    zombie_exit_code,
)

import daemondeco
from daemondeco import Pidfile

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


# -- SIGHUP while the daemon writes: never kills, never loses a reopen; on_reload outside the handler ---

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


# -- status is 3 after a stop that had to SIGKILL, or a start that could not write its pid ---------

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


# -- a daemon dying on a full disk ends in its own exit sequence -----------------------------------

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


# -- ready="start" with a log on a full or read-only filesystem: refused in the launcher -----------

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


# -- Ctrl-C while start waits for readiness; the reload thread at a later fork ---------------------

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


# -- a service whose options come from the environment (the sections below use it) ------------------

# Every subprocess here gets this long: today's hangs show as TimeoutExpired, not as a stuck suite.
QUICK = 10.0

# A service whose behaviour and options come from the environment. Its pidfile
# is "d.pid" next to it unless H2B_PIDNAME (a file name, os.fsencode'd as hex) says otherwise.
SERVICE = """
import json, os, sys, time
from daemondeco import daemon, notify_ready, StartupError

HERE = os.path.dirname(os.path.abspath(__file__))
NAME = os.fsdecode(bytes.fromhex(os.environ["H2B_PIDNAME"])) if "H2B_PIDNAME" in os.environ else "d.pid"
PIDFILE = os.path.join(HERE, NAME)
OPTIONS = json.loads(os.environ.get("H2B_OPTIONS", "{}"))
MODE = os.environ.get("H2B_MODE", "serve")

@daemon(pidfile=PIDFILE, stdout=os.path.join(HERE, "d.log"), ready="notify", **OPTIONS)
def main():
    if MODE == "raise":
        raise ValueError("h2b-setup-failed")
    notify_ready()
    if MODE == "exit3":
        time.sleep(0.2)  # the launcher is in its startup_grace wait by now, not reading both frames at once
        sys.exit(3)
    try:
        while True:
            time.sleep(60)
    finally:
        if MODE == "slow-exit":
            time.sleep(0.3)  # a short cleanup: the stopper is in its wait by now, not finding it gone already

def report(**values):
    print(json.dumps(values), flush=True)

if __name__ == "__main__":
    if sys.argv[1:] == ["api-start"]:
        try:
            main()
        except StartupError as exc:
            report(raised="StartupError", text=str(exc), exc_type=exc.exc_type,
                   traceback=exc.daemon_traceback, exit_status=exc.exit_status)
        except Exception as exc:
            report(raised=type(exc).__name__, text=str(exc))
        sys.exit(0)
    if sys.argv[1:] == ["api-stop"]:
        report(stopped=main.stop())
        sys.exit(0)
    sys.exit(main.cli())
"""


def service(sandbox: Sandbox) -> Path:
    return sandbox.write("prog.py", SERVICE)


def svc(sandbox: Sandbox, *argv: str, **env: str) -> Result:
    """``prog.py ARGV`` with a short timeout."""
    return sandbox.run_file(sandbox.path / "prog.py", *argv, timeout=QUICK, **env)


def last_json(result: Result) -> dict[str, object]:
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    assert lines, result
    data: dict[str, object] = json.loads(lines[-1])
    return data


def start_service(sandbox: Sandbox, **env: str) -> int:
    """Start prog.py; the pid of the running daemon."""
    service(sandbox)
    result = svc(sandbox, "start", **env)
    assert result.returncode == 0, result
    pid = read_pid(sandbox.path / "d.pid")
    assert alive(pid)
    return pid


def assert_stopped(sandbox: Sandbox, pid: int) -> None:
    assert wait_exit(pid, 5), f"daemon {pid} still runs"
    assert not alive(pid)
    assert Pidfile(sandbox.path / "d.pid").locked_by() is None


def options(**values: float) -> str:
    return json.dumps(values)


# -- huge finite timeouts (ready, startup grace, stop) work, not overflow poll() -------------------


def test_huge_ready_timeout_starts_a_daemon_that_is_ready_at_once(sandbox: Sandbox) -> None:
    service(sandbox)
    result = svc(sandbox, "start", H2B_OPTIONS=options(ready_timeout=1e9))
    assert result.returncode == 0, result
    assert "OverflowError" not in result.stderr, result
    pid = read_pid(sandbox.path / "d.pid")
    assert alive(pid)
    assert Pidfile(sandbox.path / "d.pid").locked_by() == pid


def test_huge_ready_timeout_reports_the_daemons_own_failure(sandbox: Sandbox) -> None:
    service(sandbox)
    result = svc(sandbox, "api-start", H2B_OPTIONS=options(ready_timeout=1e9), H2B_MODE="raise")
    assert result.returncode == 0, result
    data = last_json(result)
    assert data["raised"] == "StartupError", data
    assert data["exc_type"] == "ValueError", data
    assert "h2b-setup-failed" in str(data["traceback"]), data
    assert "OverflowError" not in str(data["text"]) + result.stderr, result
    assert not (sandbox.path / "d.pid").exists(), "a failed start leaves no pidfile"


def test_huge_startup_grace_reports_an_exit_right_after_readiness(sandbox: Sandbox) -> None:
    service(sandbox)
    result = svc(sandbox, "api-start", H2B_OPTIONS=options(startup_grace=1e9), H2B_MODE="exit3")
    assert result.returncode == 0, result
    data = last_json(result)
    assert data["raised"] == "StartupError", data
    assert data["exit_status"] == 3, data
    assert "3" in str(data["text"]), data
    assert "OverflowError" not in str(data["text"]) + result.stderr, result


def _stop_by_api(sandbox: Sandbox) -> None:
    result = svc(sandbox, "api-stop", H2B_OPTIONS=options(stop_timeout=1e9))
    assert result.returncode == 0, result
    assert last_json(result) == {"stopped": True}, result


def _stop_by_cli(sandbox: Sandbox) -> None:
    result = svc(sandbox, "stop", H2B_OPTIONS=options(stop_timeout=1e9))
    assert result.returncode == 0, result
    assert "Traceback" not in result.stderr, result


def _stop_by_module(sandbox: Sandbox) -> None:
    result = sandbox.run_module("stop", "--timeout", "1e9", str(sandbox.path / "d.pid"), timeout=QUICK)
    assert result.returncode == 0, result
    assert "Traceback" not in result.stderr, result


@pytest.mark.parametrize(
    "stop",
    [
        pytest.param(_stop_by_api, id="main.stop()"),
        pytest.param(_stop_by_cli, id="prog.py-stop"),
        pytest.param(_stop_by_module, id="python-m-daemondeco-stop--timeout-1e9"),
    ],
)
def test_huge_stop_timeout_stops_a_daemon_that_exits_on_sigterm(
    sandbox: Sandbox, stop: Callable[[Sandbox], None]
) -> None:
    pid = start_service(sandbox, H2B_OPTIONS=options(stop_timeout=1e9), H2B_MODE="slow-exit")
    stop(sandbox)
    assert_stopped(sandbox, pid)


# -- of 5,000 inherited fds, exactly the kept ones survive -----------------------------------------

MANY_FDS = """
import json, os, resource, sys, time
from daemondeco import daemon, notify_ready

HERE = os.path.dirname(os.path.abspath(__file__))
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard if sys.argv[1] == "hard" else 8192, hard))
fds = [os.open("/dev/null", os.O_RDONLY) for _ in range(5000)]
for index, fd in enumerate(fds):
    if index % 2 == 0:
        os.set_inheritable(fd, True)
fd_a, fd_b = fds[100], fds[4000]
print(json.dumps({"fd_a": fd_a, "fd_b": fd_b, "limit": resource.getrlimit(resource.RLIMIT_NOFILE)}), flush=True)

@daemon(pidfile=os.path.join(HERE, "d.pid"), keep_fds=[fd_a, fd_b], ready="notify")
def main():
    notify_ready()
    while True:
        time.sleep(60)

main()
"""


@pytest.mark.parametrize(
    "limit",
    [
        pytest.param("8192", id="soft-limit-8192"),
        pytest.param("hard", id="soft-limit-raised-to-hard"),
    ],
)
def test_of_5000_inherited_fds_the_daemon_keeps_only_its_own_and_keep_fds(sandbox: Sandbox, limit: str) -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 8192:
        pytest.skip(f"the hard fd limit ({hard}) is below 8192: 5,000 open fds need room")
    result = sandbox.run(MANY_FDS, limit, timeout=30)
    assert result.returncode == 0, result
    data = last_json(result)
    fd_a, fd_b = data["fd_a"], data["fd_b"]
    assert isinstance(fd_a, int) and isinstance(fd_b, int)
    assert fd_b - fd_a > 3000, data
    if limit == "hard":
        assert data["limit"] == [hard, hard], data
    pidfile = sandbox.path / "d.pid"
    pid = read_pid(pidfile)
    assert alive(pid)
    # The readiness pipe is closed just after the daemon says "ready": wait for that moment.
    wait_until(lambda: not any(t.startswith("pipe:") for t in open_fds(pid).values()), 5, "the pipe to close")
    fds = open_fds(pid)
    holding_pidfile = [fd for fd, target in fds.items() if target == str(pidfile)]
    assert len(holding_pidfile) == 1, fds
    state = [fd for fd, target in fds.items() if target == f"{pidfile}.state"]  # the daemon's own (issue 8)
    assert len(state) == 1, fds
    assert set(fds) == {0, 1, 2, fd_a, fd_b, holding_pidfile[0], state[0]}, fds
    assert fds[fd_a] == fds[fd_b] == "/dev/null", fds


# -- a subreaper caller collects no zombies of its workers, and keeps its own ----------------------

SUBREAPER = """
import ctypes, json, os, sys, time
from daemondeco import process_daemonize

PR_SET_CHILD_SUBREAPER = 36
assert ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0, ctypes.get_errno()
ME = os.getpid()

def state(pid):
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None, None
    fields = data[data.rindex(b")") + 2 :].split()
    return fields[0].decode(), int(fields[1])

def zombies():
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st, ppid = state(int(entry))
            if st == "Z" and ppid == ME:
                found.append(int(entry))
    return sorted(found)

def exited(pid):
    return state(pid)[0] in (None, "Z", "X")

def wait_all_exited(pids, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not all(exited(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True

@process_daemonize
def worker():
    return None

case = sys.argv[1]
if case == "waited":
    handles = [worker() for _ in range(20)]
    waited = [h.wait(10) for h in handles]
    print(json.dumps({"waited": waited, "zombies": zombies(), "workers": [h.pid for h in handles]}), flush=True)
elif case == "dropped":
    pids = [worker().pid for _ in range(20)]
    all_exited = wait_all_exited(pids)
    last = worker()
    waited = last.wait(10)
    print(json.dumps({"all_exited": all_exited, "waited": waited, "zombies": zombies(),
                      "workers": pids + [last.pid]}), flush=True)
elif case == "own":
    child = os.fork()
    if child == 0:
        os._exit(7)
    own_exited = wait_all_exited([child])
    waited = []
    for _ in range(3):  # a later call is where the library reaps its earlier workers
        handle = worker()
        waited.append(handle.wait(10))
    own_state = state(child)
    reaped_pid, status = os.waitpid(child, os.WNOHANG)
    print(json.dumps({"own_exited": own_exited, "waited": waited, "own_state": own_state, "me": ME,
                      "reaped_pid": reaped_pid, "child": child,
                      "exit_code": os.waitstatus_to_exitcode(status) if reaped_pid else None}), flush=True)
"""


def _my_zombie_workers(data: dict[str, object]) -> str:
    return f"zombie children of the caller: {data['zombies']} (workers {data['workers']})"


def test_a_subreaper_caller_that_waits_its_workers_has_no_zombies(sandbox: Sandbox) -> None:
    result = sandbox.run(SUBREAPER, "waited", timeout=60)
    assert result.returncode == 0, result
    data = last_json(result)
    assert data["waited"] == [0] * 20, data  # wait() returns the exit code
    assert data["zombies"] == [], _my_zombie_workers(data)


def test_a_subreaper_caller_that_drops_its_handles_has_no_zombies_after_the_next_call(sandbox: Sandbox) -> None:
    result = sandbox.run(SUBREAPER, "dropped", timeout=60)
    assert result.returncode == 0, result
    data = last_json(result)
    assert data["all_exited"] is True, data
    assert data["waited"] == 0, data
    assert data["zombies"] == [], _my_zombie_workers(data)


def test_a_subreaper_callers_own_child_is_never_reaped_by_the_library(sandbox: Sandbox) -> None:
    result = sandbox.run(SUBREAPER, "own", timeout=60)
    assert result.returncode == 0, result
    data = last_json(result)
    assert data["own_exited"] is True and data["waited"] == [0] * 3, data
    assert data["own_state"] == ["Z", data["me"]], "the caller's own child is still its zombie"
    assert data["reaped_pid"] == data["child"] and data["exit_code"] == 7, "the caller reaps it itself"


# -- pidfile names the terminal cannot encode are printed safely -----------------------------------

BAD_NAME = b"d\xff.pid"
STRICT = {"PYTHONIOENCODING": "utf-8:strict"}


def run_bytes(sandbox: Sandbox, *argv: str | bytes) -> tuple[int, str, str]:
    """Run ``python ARGV`` under a strict UTF-8 stdout; exit code, stdout, stderr.

    The output must be valid UTF-8 (the test fails otherwise).
    """
    done = subprocess.run(
        [sys.executable, *argv],
        cwd=sandbox.path,
        env=sandbox.env(H2B_PIDNAME=BAD_NAME.hex(), **STRICT),
        capture_output=True,
        timeout=QUICK,
        stdin=subprocess.DEVNULL,
    )
    return done.returncode, done.stdout.decode("utf-8"), done.stderr.decode("utf-8")


def bad_pidfile(sandbox: Sandbox) -> bytes:
    return os.path.join(os.fsencode(sandbox.path), BAD_NAME)


def start_bad_name(sandbox: Sandbox) -> int:
    service(sandbox)
    result = svc(sandbox, "start", H2B_PIDNAME=BAD_NAME.hex())
    assert result.returncode == 0, result
    pid = read_pid(Path(os.fsdecode(bad_pidfile(sandbox))))
    assert alive(pid)
    return pid


def assert_printable(code: int, out: str, err: str, *, names_file: bool) -> None:
    said = out + err
    assert "Traceback" not in err and "UnicodeEncodeError" not in err, (code, out, err)
    assert all(ch.isprintable() or ch in "\n\t" for ch in said), repr(said)
    if names_file:
        assert "d" in said and ".pid" in said, (code, out, err)


def _module_argv(action: str) -> Callable[[Sandbox], list[str | bytes]]:
    return lambda box: ["-m", "daemondeco", action, bad_pidfile(box)]


def _script_argv(action: str) -> Callable[[Sandbox], list[str | bytes]]:
    return lambda box: [str(box.path / "prog.py"), action]


@pytest.mark.parametrize(
    ("argv", "names_file"),
    [
        pytest.param(_module_argv("status"), True, id="python-m-daemondeco-status"),
        pytest.param(_script_argv("status"), False, id="prog.py-status"),
    ],
)
def test_status_of_a_running_daemon_with_a_non_utf8_pidfile_name(
    sandbox: Sandbox, argv: Callable[[Sandbox], list[str | bytes]], names_file: bool
) -> None:
    pid = start_bad_name(sandbox)
    code, out, err = run_bytes(sandbox, *argv(sandbox))
    assert code == 0, (code, out, err)
    assert str(pid) in out, (code, out, err)
    assert_printable(code, out, err, names_file=names_file)


@pytest.mark.parametrize(
    ("argv", "names_file"),
    [
        pytest.param(_module_argv("stop"), True, id="python-m-daemondeco-stop"),
        pytest.param(_script_argv("stop"), False, id="prog.py-stop"),
    ],
)
def test_stop_of_a_daemon_with_a_non_utf8_pidfile_name(
    sandbox: Sandbox, argv: Callable[[Sandbox], list[str | bytes]], names_file: bool
) -> None:
    pid = start_bad_name(sandbox)
    code, out, err = run_bytes(sandbox, *argv(sandbox))
    assert code == 0, (code, out, err)
    assert wait_exit(pid, 5) and not alive(pid)
    assert not os.path.lexists(bad_pidfile(sandbox)), "the stopped daemon removed its pidfile"
    assert_printable(code, out, err, names_file=names_file)


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(_module_argv("status"), id="python-m-daemondeco-status"),
        pytest.param(_script_argv("status"), id="prog.py-status"),
    ],
)
def test_status_of_a_stale_non_utf8_pidfile_names_it_safely(
    sandbox: Sandbox, argv: Callable[[Sandbox], list[str | bytes]]
) -> None:
    service(sandbox)
    with open(bad_pidfile(sandbox), "w") as stale:  # unlocked: stale, whatever it names
        stale.write("999999\n")
    code, out, err = run_bytes(sandbox, *argv(sandbox))
    assert code == 1, (code, out, err)
    assert_printable(code, out, err, names_file=True)


def test_a_name_the_terminal_cannot_encode_is_shown_escaped(sandbox: Sandbox) -> None:
    result = sandbox.run_module("status", str(sandbox.path / "café.pid"), PYTHONIOENCODING="ascii:strict")
    assert result.returncode == 3, result
    assert "caf\\xe9.pid" in result.stdout + result.stderr, result
