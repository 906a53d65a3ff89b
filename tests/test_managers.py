"""Readiness for every manager (issue 8, point 1), checked with the real managers where they exist.

* ``ready_fd`` / ``$DAEMONDECO_READY_FD`` (s6's ``notification-fd``): a pipe
  the test passes gets exactly ``"\\n"`` and is closed at readiness, while the
  daemon runs on; a failed start gives end of file only; bad values are
  refused before any fork.
* ``notify_extend()``: ``EXTEND_TIMEOUT_USEC=`` on a fake ``$NOTIFY_SOCKET``
  and more time for the launcher's own ``ready_timeout``.
* Real managers, each skipped with the reason when it is not installed:
  ``s6-supervise`` + ``s6-svwait -U``, ``start-stop-daemon --notify-await``,
  ``supervisord`` (no fork under ``SUPERVISOR_ENABLED``) and PID 1 in a new
  PID namespace (``unshare``): orphans reaped, SIGTERM honoured at once.

Every wait is on an event (a pipe, a datagram, a process's exit) or a
bounded ``wait_until`` on a file or ``/proc``.
"""

from __future__ import annotations

import math
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Sandbox, alive, assert_refused, proc_stat, run_options_launcher, wait_exit, wait_until

import daemondeco

# -- a program the managers run -------------------------------------------------

# ``app.py ACTION`` (the decorated CLI). Before readiness it appends its pid to
# "started", waits on the FIFO "gate" if the test made one, fails with
# APP_FAIL=1, else writes "marker" and calls notify_ready(). APP_READY_FD sets
# the ready_fd option; "env" records what DAEMONDECO_READY_FD the daemon sees.
APP = """
import os, sys, time
from daemondeco import daemon, notify_ready

HERE = os.path.dirname(os.path.abspath(__file__))

def P(name):
    return os.path.join(HERE, name)

OPTIONS = dict(ready="notify", pidfile=P("d.pid"))
if os.environ.get("APP_READY_FD"):
    OPTIONS["ready_fd"] = int(os.environ["APP_READY_FD"])

@daemon(**OPTIONS)
def main():
    with open(P("started"), "a") as f:
        f.write(f"{os.getpid()}\\n")
    with open(P("env"), "w") as f:
        f.write(repr(os.environ.get("DAEMONDECO_READY_FD")))
    if os.path.exists(P("gate")):
        with open(P("gate")) as gate:  # a FIFO: blocks until the test opens and closes it
            gate.read()
    if os.environ.get("APP_FAIL"):
        raise RuntimeError("failing on purpose")
    with open(P("marker"), "w") as f:
        f.write(str(os.getpid()))
    notify_ready()
    while True:
        time.sleep(3600)

if __name__ == "__main__":
    sys.exit(main.cli())
"""


def open_gate(box: Sandbox) -> None:
    """Let an app waiting on its FIFO "gate" go on (its open for reading returns at our close)."""
    fd: list[int] = []

    def opened() -> bool:
        try:
            fd.append(os.open(box.path / "gate", os.O_WRONLY | os.O_NONBLOCK))
        except OSError:  # ENXIO: the app has not opened it for reading yet
            return False
        return True

    wait_until(opened, what="the app to wait on its gate")
    os.close(fd[0])


def read_until_eof(fd: int, timeout: float = 10.0) -> bytes:
    """Everything written to the pipe *fd* until every writer closed it (bounded)."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    deadline = time.monotonic() + timeout
    data = b""
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"no end of file within {timeout} s (read so far: {data!r})"
        if not poller.poll(int(left * 1000) + 1):
            continue
        chunk = os.read(fd, 4096)
        if not chunk:
            return data
        data += chunk


def read_line(fd: int, timeout: float = 10.0) -> bytes:
    """The first bytes up to a newline on *fd* (bounded); what came, if end of file came first."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    deadline = time.monotonic() + timeout
    data = b""
    while not data.endswith(b"\n"):
        left = deadline - time.monotonic()
        assert left > 0, f"no newline within {timeout} s (read so far: {data!r})"
        if not poller.poll(int(left * 1000) + 1):
            continue
        chunk = os.read(fd, 1)
        if not chunk:
            return data
        data += chunk
    return data


def popen(box: Sandbox, argv: list[str], **kwargs: object) -> subprocess.Popen[bytes]:
    """Start *argv* from the sandbox with its environment marker (teardown kills it by pid)."""
    env = kwargs.pop("env", None) or box.env()
    proc: subprocess.Popen[bytes] = subprocess.Popen(argv, cwd=box.path, env=env, **kwargs)  # type: ignore[call-overload]
    box.extra_pids.append(proc.pid)
    return proc


class NotifySocket:
    """A fake service manager: the bound ``$NOTIFY_SOCKET`` datagram socket."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)

    def recv(self, timeout: float = 10.0) -> dict[str, str]:
        self.sock.settimeout(timeout)
        text = self.sock.recv(65536).decode()
        return dict(line.partition("=")[::2] for line in text.split("\n"))

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notify(sandbox: Sandbox) -> Iterator[NotifySocket]:
    listener = NotifySocket(sandbox.path / "notify.sock")
    yield listener
    listener.close()


# -- ready_fd: validation --------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "error"),
    [
        pytest.param(True, TypeError, id="bool"),
        pytest.param("3", TypeError, id="str"),
        pytest.param(3.0, TypeError, id="float"),
        pytest.param(-1, ValueError, id="negative"),
        pytest.param(2**31, ValueError, id="above-int"),
        pytest.param(10**5000, ValueError, id="huge"),
    ],
)
def test_ready_fd_bad_values_are_refused_at_decoration(value: object, error: type[Exception]) -> None:
    for form in (daemondeco.daemon, daemondeco.process_daemonize):
        with pytest.raises(error, match=r"ready_fd must be a file descriptor number"):
            form(ready_fd=value)
    with pytest.raises(error, match=r"daemonize\(\): ready_fd"):
        daemondeco.daemonize(ready_fd=value)


@pytest.mark.parametrize("form", ["daemon", "process_daemonize", "daemonize"])
def test_a_closed_ready_fd_is_refused_before_any_fork(sandbox: Sandbox, form: str) -> None:
    result = run_options_launcher(sandbox, "dict(WITH_FILES, ready_fd=CLOSED)", form)
    assert_refused(sandbox, result, "OSError", ["ready_fd: file descriptor {closed} is not open"])


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("three", id="word"),
        pytest.param("-3", id="negative"),
        pytest.param("3.0", id="float"),
        pytest.param("99999999999", id="huge"),
    ],
)
@pytest.mark.parametrize("form", ["daemon", "daemonize"])
def test_a_bad_ready_fd_variable_is_refused_before_any_fork(sandbox: Sandbox, form: str, value: str) -> None:
    options = f"os.environ.update(DAEMONDECO_READY_FD={value!r}) or WITH_FILES"
    result = run_options_launcher(sandbox, options, form)
    assert_refused(sandbox, result, "ValueError", [f"DAEMONDECO_READY_FD={value!r}: not a file descriptor number"])


def test_a_closed_ready_fd_from_the_variable_is_refused_naming_it(sandbox: Sandbox) -> None:
    options = "os.environ.update(DAEMONDECO_READY_FD=str(CLOSED)) or WITH_FILES"
    result = run_options_launcher(sandbox, options, "daemon")
    assert_refused(sandbox, result, "OSError", ["DAEMONDECO_READY_FD: file descriptor {closed} is not open"])


def test_a_read_only_ready_fd_is_refused(sandbox: Sandbox) -> None:
    options = "dict(WITH_FILES, ready_fd=os.open(os.devnull, os.O_RDONLY))"
    result = run_options_launcher(sandbox, options, "daemon")
    assert_refused(sandbox, result, "OSError", ["is open read-only"])


# -- ready_fd: what the fd sees ------------------------------------------------

FORMS = """
import os, sys, time
from daemondeco import daemon, daemonize, process_daemonize, notify_ready

HERE = os.path.dirname(os.path.abspath(__file__))

def P(name):
    return os.path.join(HERE, name)

form, fd = sys.argv[1], sys.argv[2]
options = dict(ready="notify", pidfile=P("d.pid"), stdout=P("out.log"))
if fd != "env":
    options["ready_fd"] = int(fd)

def body():
    with open(P("env"), "w") as f:
        f.write(repr(os.environ.get("DAEMONDECO_READY_FD")))
    if os.environ.get("APP_FAIL"):
        raise RuntimeError("failing on purpose")
    with open(P("marker"), "w") as f:
        f.write(str(os.getpid()))
    notify_ready()
    while True:
        time.sleep(3600)

if form == "daemonize":
    daemonize(**options)
    body()
elif form == "process_daemonize":
    handle = process_daemonize(**options)(body)()
    print("worker", handle.pid, flush=True)
else:
    main = daemon(**options)(body)
    main.run() if form == "run" else main()
"""


@pytest.mark.parametrize(
    ("form", "source"),
    [
        pytest.param("daemon", "option", id="daemon"),
        pytest.param("daemon", "env", id="daemon-variable"),
        pytest.param("process_daemonize", "option", id="process_daemonize"),
        pytest.param("daemonize", "option", id="daemonize"),
        pytest.param("daemonize", "env", id="daemonize-variable"),
        pytest.param("run", "option", id="run"),
        pytest.param("run", "env", id="run-variable"),
    ],
)
def test_ready_fd_gets_one_newline_and_is_closed_at_readiness(sandbox: Sandbox, form: str, source: str) -> None:
    script = sandbox.write("forms.py", FORMS)
    read_end, write_end = os.pipe()
    try:
        env = sandbox.env(DAEMONDECO_READY_FD=str(write_end)) if source == "env" else sandbox.env()
        arg = "env" if source == "env" else str(write_end)
        popen(sandbox, [sys.executable, str(script), form, arg], pass_fds=(write_end,), env=env)
        os.close(write_end)
        assert read_line(read_end) == b"\n"
        assert (sandbox.path / "marker").exists(), "readiness came before notify_ready()"
        assert read_until_eof(read_end) == b"", "exactly one newline"
    finally:
        os.close(read_end)
    daemon_pid = int((sandbox.path / "marker").read_text())
    assert alive(daemon_pid), "the fd is closed at readiness, by the running daemon"
    # Read once (option or variable), the variable is gone from the daemon's environment.
    assert (sandbox.path / "env").read_text() == "None"


@pytest.mark.parametrize("form", ["daemon", "run"])
def test_ready_fd_is_never_written_when_the_start_fails(sandbox: Sandbox, form: str) -> None:
    script = sandbox.write("forms.py", FORMS)
    read_end, write_end = os.pipe()
    try:
        proc = popen(
            sandbox,
            [sys.executable, str(script), form, str(write_end)],
            pass_fds=(write_end,),
            env=sandbox.env(APP_FAIL="1"),
            stderr=subprocess.PIPE,
        )
        os.close(write_end)
        assert read_until_eof(read_end) == b"", "end of file only: no readiness"
    finally:
        os.close(read_end)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 1
    assert b"failing on purpose" in err
    assert (sandbox.path / "env").exists(), "the daemon ran and failed"


def test_ready_fd_and_notify_socket_are_both_told(sandbox: Sandbox, notify: NotifySocket) -> None:
    script = sandbox.write("forms.py", FORMS)
    read_end, write_end = os.pipe()
    try:
        proc = popen(
            sandbox,
            [sys.executable, str(script), "daemon", str(write_end)],
            pass_fds=(write_end,),
            env=sandbox.env(NOTIFY_SOCKET=notify.path),
        )
        os.close(write_end)
        message = notify.recv()
        assert message["READY"] == "1"
        assert message["MAINPID"] == str(proc.pid), "under NOTIFY_SOCKET nothing forks"
        assert read_line(read_end) == b"\n"
        assert read_until_eof(read_end) == b""
    finally:
        os.close(read_end)
    assert proc.poll() is None, "the daemon runs on"


# -- notify_extend ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "error"),
    [
        pytest.param("5", TypeError, id="str"),
        pytest.param(None, TypeError, id="None"),
        pytest.param(True, TypeError, id="bool"),
        pytest.param(0, ValueError, id="zero"),
        pytest.param(-1.5, ValueError, id="negative"),
        pytest.param(math.nan, ValueError, id="nan"),
        pytest.param(math.inf, ValueError, id="inf"),
        pytest.param(1e10, ValueError, id="above-1e9"),
        pytest.param(10**400, ValueError, id="beyond-float"),
    ],
)
def test_notify_extend_refuses_bad_values(value: object, error: type[Exception]) -> None:
    with pytest.raises(error, match=r"notify_extend\(\): seconds"):
        daemondeco.notify_extend(value)  # type: ignore[arg-type]


def test_notify_extend_outside_a_daemon_does_nothing() -> None:
    assert daemondeco.notify_extend(5) is None
    assert daemondeco.notify_extend(0.25) is None


SLOW = """
import os, sys, time
from daemondeco import daemon, notify_extend, notify_ready

HERE = os.path.dirname(os.path.abspath(__file__))

@daemon(ready="notify", ready_timeout=1, pidfile=os.path.join(HERE, "d.pid"))
def main():
    if sys.argv[1] == "extend":
        notify_extend(5)
    time.sleep(2)  # the slow start under test: twice ready_timeout
    notify_ready()
    while True:
        time.sleep(3600)

main()
"""


@pytest.mark.parametrize("extend", [True, False], ids=["extended", "not-extended"])
def test_notify_extend_gives_the_launcher_more_time(sandbox: Sandbox, extend: bool) -> None:
    started = time.monotonic()
    result = sandbox.run(SLOW, "extend" if extend else "plain")
    took = time.monotonic() - started
    if extend:
        assert result.returncode == 0, result
        assert took >= 2, "the launcher leaves at readiness"
    else:
        assert result.returncode == 1, result
        assert "was not ready within ready_timeout=1 s" in result.stderr, result
        assert took < 2 + 2, "a start without notify_extend() times out after ready_timeout"


def test_notify_extend_sends_extend_timeout_usec_before_readiness_only(sandbox: Sandbox, notify: NotifySocket) -> None:
    code = """
    from daemondeco import daemon, notify_extend, notify_ready, notify_status
    import time

    @daemon(ready="notify")
    def main():
        notify_extend(5)
        notify_extend(0.25)
        notify_ready()
        notify_extend(3)  # after readiness: nothing
        notify_status("after")
        while True:
            time.sleep(3600)

    main()
    """
    script = sandbox.write("prog.py", code)
    popen(sandbox, [sys.executable, str(script)], env=sandbox.env(NOTIFY_SOCKET=notify.path))
    assert notify.recv() == {"EXTEND_TIMEOUT_USEC": "5000000"}
    assert notify.recv() == {"EXTEND_TIMEOUT_USEC": "250000"}
    assert notify.recv()["READY"] == "1"
    assert notify.recv() == {"STATUS": "after"}, "notify_extend() after readiness sends nothing"


# -- detach=None: supervisord and PID 1 stay in the foreground ---------------------


def test_supervisor_enabled_keeps_start_in_the_foreground(sandbox: Sandbox) -> None:
    script = sandbox.write("app.py", APP)
    proc = popen(sandbox, [sys.executable, str(script), "start"], env=sandbox.env(SUPERVISOR_ENABLED="1"))
    wait_until((sandbox.path / "marker").exists, what="readiness")
    assert int((sandbox.path / "marker").read_text()) == proc.pid, "no fork: the started process is the daemon"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0


# -- real managers -----------------------------------------------------------------


def _need(*programs: str) -> None:
    missing = [name for name in programs if shutil.which(name) is None]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)} (.ci/run installs the Debian package s6)")


def _s6_service(box: Sandbox, variable: bool) -> Path:
    service = box.path / "svc"
    service.mkdir()
    (service / "notification-fd").write_text("3\n")
    set_fd = "DAEMONDECO_READY_FD=3" if variable else "APP_READY_FD=3"
    run = service / "run"
    run.write_text(f"#!/bin/sh\n{set_fd} exec {sys.executable} {box.path / 'app.py'} run\n")
    run.chmod(0o755)
    return service


def _stop_s6(service: Path, supervise: subprocess.Popen[bytes]) -> None:
    subprocess.run(["s6-svc", "-dx", str(service)], timeout=10, check=False)
    try:
        supervise.wait(timeout=10)
    except subprocess.TimeoutExpired:
        supervise.kill()  # by its pid
        supervise.wait(timeout=10)


@pytest.mark.parametrize("variable", [False, True], ids=["ready_fd-option", "DAEMONDECO_READY_FD"])
def test_s6_svwait_returns_only_after_notify_ready(sandbox: Sandbox, variable: bool) -> None:
    _need("s6-supervise", "s6-svwait", "s6-svc")
    sandbox.write("app.py", APP)
    os.mkfifo(sandbox.path / "gate")
    service = _s6_service(sandbox, variable)
    supervise = popen(sandbox, ["s6-supervise", str(service)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until((sandbox.path / "started").exists, what="s6 to start the app")
        svwait = popen(sandbox, ["s6-svwait", "-U", "-t", "10000", str(service)])
        # The app runs, held at its gate before notify_ready(): s6 must not call it ready.
        assert svwait.poll() is None, "s6-svwait returned before notify_ready()"
        open_gate(sandbox)
        assert svwait.wait(timeout=15) == 0
        assert (sandbox.path / "marker").exists(), "s6 saw readiness before notify_ready()"
        assert int((sandbox.path / "marker").read_text()) == int((sandbox.path / "started").read_text())
        assert (sandbox.path / "env").read_text() == "None"
    finally:
        _stop_s6(service, supervise)


def test_s6_svwait_times_out_when_the_start_fails(sandbox: Sandbox) -> None:
    _need("s6-supervise", "s6-svwait", "s6-svc")
    sandbox.write("app.py", APP)
    service = _s6_service(sandbox, variable=False)
    env = sandbox.env(APP_FAIL="1")
    supervise = popen(sandbox, ["s6-supervise", str(service)], env=env, stderr=subprocess.DEVNULL)
    try:
        wait_until((sandbox.path / "started").exists, what="s6 to start the app")
        svwait = subprocess.run(["s6-svwait", "-U", "-t", "1500", str(service)], capture_output=True, timeout=10)
        assert svwait.returncode == 99, svwait  # s6-svwait: 99 = timed out
        assert b"timed out" in svwait.stderr
        assert not (sandbox.path / "marker").exists()
    finally:
        _stop_s6(service, supervise)


def _start_stop_daemon_notify() -> None:
    _need("start-stop-daemon")
    version = subprocess.run(["start-stop-daemon", "--version"], capture_output=True, text=True, check=False).stdout
    found = re.search(r"(\d+)\.(\d+)", version)
    if found is None or (int(found[1]), int(found[2])) < (1, 21):
        pytest.skip(f"start-stop-daemon older than 1.21 has no --notify-await: {version.strip()!r}")


@pytest.mark.parametrize("fail", [False, True], ids=["ready", "failed-start"])
def test_start_stop_daemon_notify_await(sandbox: Sandbox, fail: bool) -> None:
    _start_stop_daemon_notify()
    app = sandbox.write("app.py", APP)
    pidfile = sandbox.path / "d.pid"
    argv = ["start-stop-daemon", "--start", "--background", "--notify-await"]
    argv += ["--notify-timeout", "2" if fail else "10", "--pidfile", str(pidfile)]
    argv += ["--startas", sys.executable, "--", str(app), "run"]
    env = sandbox.env(APP_FAIL="1") if fail else sandbox.env()
    result = subprocess.run(argv, cwd=sandbox.path, env=env, capture_output=True, text=True, timeout=30)
    if fail:
        assert result.returncode != 0, result
        assert "timed out waiting for a notification" in result.stderr
        assert (sandbox.path / "started").exists(), "the app ran and failed"
        assert not (sandbox.path / "marker").exists()
    else:
        assert result.returncode == 0, result
        assert (sandbox.path / "marker").exists(), "start-stop-daemon returned before notify_ready()"
        pid = int((sandbox.path / "marker").read_text())
        assert alive(pid)
        assert int(pidfile.read_text()) == pid


SUPERVISORD_CONF = """\
[supervisord]
nodaemon=true
logfile={dir}/supervisord.log
pidfile={dir}/supervisord.pid
childlogdir={dir}
[unix_http_server]
file={dir}/supervisor.sock
[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
[supervisorctl]
serverurl=unix://{dir}/supervisor.sock
[program:app]
command={python} {dir}/app.py start
directory={dir}
startsecs=1
startretries=0
autorestart=false
"""


def test_supervisord_runs_start_without_a_fork(sandbox: Sandbox) -> None:
    try:
        import supervisor  # noqa: F401
    except ImportError:
        pytest.skip("PyPI supervisor is not installed (it is in the test extra)")
    sandbox.write("app.py", APP)
    conf = sandbox.path / "supervisord.conf"
    conf.write_text(SUPERVISORD_CONF.format(dir=sandbox.path, python=sys.executable))
    supervisord = popen(
        sandbox, [sys.executable, "-m", "supervisor.supervisord", "-c", str(conf)], stderr=subprocess.DEVNULL
    )
    ctl = [sys.executable, "-m", "supervisor.supervisorctl", "-c", str(conf)]
    status: list[str] = []

    def running() -> bool:
        out = subprocess.run([*ctl, "status", "app"], capture_output=True, text=True, timeout=10).stdout
        status[:] = [out]
        assert "EXITED" not in out and "FATAL" not in out and "BACKOFF" not in out, out
        return "RUNNING" in out

    try:
        # RUNNING only after startsecs=1 without an exit: a forking start would be EXITED.
        wait_until(running, timeout=20, what="supervisord to report the app RUNNING")
        found = re.search(r"pid (\d+)", status[0])
        assert found is not None, status
        pid = int(found[1])
        # RUNNING says the process lived startsecs; its function writes the marker a moment after it starts.
        wait_until((sandbox.path / "marker").exists, what="the app's marker")
        assert int((sandbox.path / "marker").read_text()) == pid, "the daemon is supervisord's own child"
        stat = proc_stat(pid)
        assert stat is not None
        assert stat.ppid == supervisord.pid
    finally:
        supervisord.send_signal(signal.SIGTERM)
        supervisord.wait(timeout=20)
    assert wait_exit(pid, 5), "supervisord stopped the daemon"
    # The program's AUTO stdout/stderr logs are in the sandbox, not in the shared temp directory (issue 17).
    assert len(list(sandbox.path.glob("app-std*---supervisor-*.log"))) == 2


PID1_APP = """
import os, sys, time
from daemondeco import daemon

HERE = os.path.dirname(os.path.abspath(__file__))

def P(name):
    return os.path.join(HERE, name)

@daemon
def main():
    import subprocess
    # The daemon's own children stay its own: their exit statuses are not taken by PID 1.
    codes = [subprocess.run(["sh", "-c", "exit 3"]).returncode for _ in range(20)]
    with open(P("codes"), "w") as f:
        f.write(" ".join(map(str, codes)))
    with open(P("pid1"), "w") as f:
        f.write(str(os.getpid()))
    child = os.fork()
    if child == 0:  # a double fork: the grandchild becomes an orphan
        if os.fork() == 0:
            with open(P("grandchild"), "w") as f:
                f.write(str(os.getpid()))
            with open(P("gate")) as gate:  # a FIFO: exits once the test opens and closes it
                gate.read()
            os._exit(0)
        os._exit(0)
    os.waitpid(child, 0)
    while True:
        time.sleep(3600)

if __name__ == "__main__":
    sys.exit(main.cli())
"""


def _children(pid: int) -> list[int]:
    """Host pids of every process whose parent is *pid*, zombies included."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit() and (stat := proc_stat(int(name))) is not None and stat.ppid == pid:
            found.append(int(name))
    return found


def _namespace_pid(host_pid: int) -> int:
    """The pid of *host_pid* in its own (innermost) PID namespace."""
    for line in Path(f"/proc/{host_pid}/status").read_text().splitlines():
        if line.startswith("NSpid:"):
            return int(line.split()[-1])
    raise AssertionError(f"no NSpid line for {host_pid}")


def test_pid_1_stays_in_the_foreground_reaps_orphans_and_stops_on_sigterm(sandbox: Sandbox) -> None:
    _need("unshare")
    if os.geteuid() != 0:
        pytest.skip("a new PID namespace needs root")
    probe = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"unshare --pid is not allowed here: {probe.stderr.strip()}")
    script = sandbox.write("pid1app.py", PID1_APP)
    os.mkfifo(sandbox.path / "gate")
    unshare = popen(sandbox, ["unshare", "--pid", "--fork", "--mount-proc", sys.executable, str(script), "start"])
    wait_until((sandbox.path / "grandchild").exists, what="the orphan to start")
    (init,) = _children(unshare.pid)  # unshare's child: PID 1 inside, daemondeco's init
    assert _namespace_pid(init) == 1
    # As PID 1 the program stays in the foreground as a small init; the daemon is its child (PID 2),
    # so the daemon's own children are its own to wait for (PID 1 reaps only orphans).
    assert (sandbox.path / "pid1").read_text() == "2", "the daemon runs as the init's first child"
    assert (sandbox.path / "codes").read_text() == " ".join(["3"] * 20), "subprocess sees its children's statuses"
    daemon_pid = next(pid for pid in _children(init) if _namespace_pid(pid) == 2)
    assert Path(f"/proc/{daemon_pid}/cmdline").read_bytes().split(b"\0")[1].endswith(b"pid1app.py")
    # The intermediate child exited; the grandchild is now an orphan, re-parented to PID 1.
    grandchild = int((sandbox.path / "grandchild").read_text())
    wait_until(lambda: len(_children(init)) == 2, what="the orphan re-parented to PID 1")
    (orphan,) = [pid for pid in _children(init) if _namespace_pid(pid) == grandchild]
    stat = proc_stat(orphan)
    assert stat is not None
    assert stat.state != "Z"
    open_gate(sandbox)
    wait_until(lambda: proc_stat(orphan) is None, what="PID 1 to reap the exited orphan (no zombie)")
    assert _children(init) == [daemon_pid]
    assert _children(daemon_pid) == [], "the intermediate child was reaped by its parent, the daemon"
    started = time.monotonic()
    os.kill(init, signal.SIGTERM)  # docker stop: SIGTERM to PID 1, forwarded to the daemon
    assert unshare.wait(timeout=10) == 0, "SIGTERM ends the daemon, and PID 1 with its status 0"
    took = time.monotonic() - started
    assert took < 1.0, f"PID 1 took {took:.3f} s to stop on SIGTERM"


# -- ready="auto" (the default) with a ready_fd: the daemon writes it at the grace's end (issue 18) --

AUTO_READY_FD = """
import os, sys, time
from daemondeco import daemon

@daemon(pidfile=os.path.join(os.path.dirname(os.path.abspath(__file__)), "d.pid"), detach=False,
        ready_fd=int(os.environ["APP_READY_FD"]))
def main():
    print("called at", time.monotonic(), flush=True)
    if os.environ.get("APP_QUIT"):
        time.sleep(0.3)
        sys.exit(0)
    while True:
        time.sleep(3600)

main()
"""


@pytest.mark.parametrize("quit_early", [False, True], ids=["runs", "exits-within-the-grace"])
def test_default_ready_fd_is_written_after_startup_grace_or_never(sandbox: Sandbox, quit_early: bool) -> None:
    """s6's notification-fd: "\\n" once the function ran 1 s; a function that exits first: end of file only."""
    import subprocess
    import sys

    script = sandbox.write("auto.py", AUTO_READY_FD)
    read_end, write_end = os.pipe()
    env = sandbox.env(APP_READY_FD=str(write_end), **({"APP_QUIT": "1"} if quit_early else {}))
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        cwd=sandbox.path,
        env=env,
        pass_fds=(write_end,),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    sandbox.extra_pids.append(proc.pid)
    os.close(write_end)
    try:
        poller = select.poll()
        poller.register(read_end, select.POLLIN)
        assert poller.poll(10_000), "nothing on the ready_fd within 10 s"
        first = os.read(read_end, 4096)
        received = time.monotonic()
        assert proc.stdout is not None
        called = float(proc.stdout.readline().split()[-1])
        if quit_early:
            assert first == b"", "a function that exits within startup_grace never says ready"
            assert proc.wait(10) == 0
        else:
            assert first == b"\n"
            assert received - called >= 0.9, "ready before the function ran startup_grace (1 s)"
            assert read_until_eof(read_end, 2) == b"", "the fd is closed after the newline"
    finally:
        os.close(read_end)
        if proc.poll() is None:
            proc.terminate()
            proc.wait(10)
