"""Shared harness: run real scripts, inspect real processes, kill what we started.

Every script a test runs gets an environment marker (``DAEMONDECO_TEST_ID``);
a daemon inherits it through its forks, so teardown finds every process the
test started by scanning ``/proc/*/environ`` and kills each one by its pid.
Nothing is ever killed by name.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MARKER = "DAEMONDECO_TEST_ID"


def pytest_configure(config: pytest.Config) -> None:
    """Let daemons that switched to an unprivileged user save coverage data.

    Coverage's data directory is created by root; a daemon that dropped to
    ``nobody`` could not write its data file there, and its lines would look
    untested. Sticky and world-writable, like /tmp, for this run's artifacts.
    """
    data_dir = ROOT / ".coverage-data"
    if os.geteuid() == 0:
        data_dir.mkdir(exist_ok=True)
        data_dir.chmod(0o1777)


# -- looking at processes -----------------------------------------------------


@dataclass
class ProcStat:
    """The fields of /proc/<pid>/stat a daemon test cares about."""

    pid: int
    state: str
    ppid: int
    pgrp: int
    session: int
    tty_nr: int


def proc_stat(pid: int) -> ProcStat | None:
    """Parse /proc/<pid>/stat; None when the process is gone (reaped)."""
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = data[data.rindex(b")") + 2 :].split()
    return ProcStat(pid, fields[0].decode(), int(fields[1]), int(fields[2]), int(fields[3]), int(fields[4]))


def alive(pid: int) -> bool:
    """True if *pid* exists and is not a zombie (PID 1 here does not reap)."""
    stat = proc_stat(pid)
    return stat is not None and stat.state not in ("Z", "X")


def proc_status(pid: int) -> dict[str, str]:
    """/proc/<pid>/status as a dict (Umask, SigBlk, SigIgn, Uid, ...)."""
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {key: value.strip() for key, _, value in (line.partition(":") for line in lines)}


def open_fds(pid: int) -> dict[int, str]:
    """The open fds of *pid* and what each points to."""
    base = Path(f"/proc/{pid}/fd")
    result = {}
    for entry in base.iterdir():
        try:
            result[int(entry.name)] = os.readlink(entry)
        except FileNotFoundError:
            continue
    return result


def zombie_status_or_none(pid: int) -> int | None:
    """The wait status of a dead daemon, read from its zombie (``/proc/<pid>/stat`` field 52).

    None if PID 1 reaped it (here it does not reap orphans, elsewhere it
    may); a process that has not exited fails the test.
    """
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except FileNotFoundError:
        return None
    fields = data[data.rindex(b")") + 2 :].split()
    assert fields[0] == b"Z", f"pid {pid} is not a zombie: {fields[0]!r}"
    return int(fields[49])


def zombie_wait_status(pid: int) -> int:
    """Like ``zombie_status_or_none``; where the daemon was reaped the test is skipped."""
    status = zombie_status_or_none(pid)
    if status is None:
        pytest.skip("the dead daemon was reaped by PID 1: its exit status is gone")
    return status


def zombie_exit_code(pid: int) -> int:
    """Like ``zombie_wait_status``, as an exit code (negative: killed by that signal)."""
    return os.waitstatus_to_exitcode(zombie_wait_status(pid))


def wait_exit(pid: int, timeout: float = 10.0) -> bool:
    """Block on a pidfd until *pid* exits (zombie counts); True if it did."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([fd], [], [], timeout)[0])
    finally:
        os.close(fd)


def wait_until(predicate: Callable[[], object], timeout: float = 10.0, what: str = "condition") -> None:
    """Poll *predicate* until true; for checks on other processes' files only."""
    deadline = time.monotonic() + timeout
    interval = 0.002
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
        interval = min(interval * 2, 0.05)


def wait_for_text(path: Path, text: str, timeout: float = 10.0) -> str:
    """Wait until a file another process writes contains *text*; return its content.

    With ``ready="start"`` a launcher exits as the daemon's function is called,
    so the function's first output may come a moment after.
    """
    wait_until(lambda: path.exists() and text in path.read_text(), timeout, what=f"{text!r} in {path.name}")
    return path.read_text()


def read_pid(path: Path) -> int:
    """The pid in a pidfile (the test fails if it has none)."""
    text = path.read_text()
    assert text.endswith("\n") and text.strip().isdigit(), f"bad pidfile content {text!r}"
    return int(text)


def marked_pids(marker: str) -> list[int]:
    """Pids of live (non-zombie) processes whose environment carries *marker*."""
    needle = f"{MARKER}={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0") and alive(int(entry.name)):
            found.append(int(entry.name))
    return found


# -- running scripts ----------------------------------------------------------


_FORMS_DISPATCH = """
form = sys.argv[1]
try:
    options = {options}
    if form == "daemon":
        @daemon(**options)
        def main():
            ran()
        main()
    elif form == "process_daemonize":
        @process_daemonize(**options)
        def work():
            ran()
        work()
    else:
        daemonize(**options)
        ran()
except Exception as exc:
    print("RAISED", ",".join(cls.__name__ for cls in type(exc).__mro__), file=sys.stderr)
    print("MESSAGE", exc, file=sys.stderr)
    sys.exit(3)
print("NOT RAISED", flush=True)
"""


def forms_dispatch(options: str) -> str:
    """Script tail: start ``ran()`` under the form named by argv[1] with *options*.

    The form is ``daemon``, ``process_daemonize`` or ``daemonize``; an
    exception prints ``RAISED <mro>`` and ``MESSAGE <text>`` and exits 3.
    """
    return _FORMS_DISPATCH.format(options=options)


@dataclass
class Result:
    """What a finished script left behind."""

    returncode: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return f"exit {self.returncode}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


@dataclass
class Sandbox:
    """A temporary directory where a test writes scripts and runs them."""

    path: Path
    marker: str
    extra_pids: list[int] = field(default_factory=list)

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONUNBUFFERED", "NOTIFY_SOCKET")}
        env[MARKER] = self.marker
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
        env.update(extra)
        return env

    def write(self, name: str, code: str) -> Path:
        """Write a script (dedented) into the sandbox."""
        target = self.path / name
        target.write_text(textwrap.dedent(code).lstrip())
        return target

    def run(self, code: str, *args: str, name: str = "prog.py", timeout: float = 30.0, **env: str) -> Result:
        """Write *code* to *name* and run it to completion with *args*."""
        script = self.write(name, code)
        return self.run_file(script, *args, timeout=timeout, **env)

    def run_file(self, script: Path, *args: str, timeout: float = 30.0, **env: str) -> Result:
        done = subprocess.run(
            [sys.executable, str(script), *args],
            cwd=self.path,
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        return Result(done.returncode, done.stdout, done.stderr)

    def run_module(self, *args: str, timeout: float = 30.0) -> Result:
        """``python -m daemondeco ARGS``, as an operator runs it, from the sandbox."""
        done = subprocess.run(
            [sys.executable, "-m", "daemondeco", *args],
            cwd=self.path,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        return Result(done.returncode, done.stdout, done.stderr)

    def popen(self, code: str, *args: str, name: str = "prog.py", **kwargs: object) -> subprocess.Popen[str]:
        script = self.write(name, code)
        proc = subprocess.Popen(
            [sys.executable, str(script), *args], cwd=self.path, env=self.env(), text=True, **kwargs  # type: ignore[call-overload]
        )
        self.extra_pids.append(proc.pid)
        return proc

    def live_pids(self) -> list[int]:
        """Every live process this test started (launchers, daemons, workers)."""
        return marked_pids(self.marker)

    def kill_all(self) -> None:
        """SIGTERM every process we started (so daemons save coverage), SIGKILL stragglers."""
        pids = set(self.live_pids()) | {p for p in self.extra_pids if alive(p)}
        for signum in (signal.SIGTERM, signal.SIGKILL):
            for pid in pids:
                try:
                    os.kill(pid, signum)
                except ProcessLookupError:
                    pass
            pids = {pid for pid in pids if not wait_exit(pid, 2 if signum == signal.SIGTERM else 5)}


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    """A directory to run scripts in; kills every process they left, by pid."""
    box = Sandbox(tmp_path, uuid.uuid4().hex)
    try:
        yield box
    finally:
        box.kill_all()
