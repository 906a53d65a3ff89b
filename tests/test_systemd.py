"""systemd's notify protocol, checked against a fake ``$NOTIFY_SOCKET``.

The test binds an ``AF_UNIX`` datagram socket (a path, or an ``@name`` in
the abstract namespace), starts a daemon script with ``NOTIFY_SOCKET``
pointing at it and reads what arrives: ``READY=1``/``MAINPID=``,
``STATUS=``, ``STOPPING=1``, ``RELOADING=1``/``MONOTONIC_USEC=``,
``WATCHDOG=1``. Every wait is a ``recv`` with a timeout, a pidfd or a bounded
poll of a file the daemon writes.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator

import pytest
from conftest import Sandbox, alive, read_pid, wait_exit, wait_for_text

Message = dict[str, str]


def parse(datagram: bytes) -> Message:
    """One notify datagram (newline-separated ``KEY=VALUE``) as a dict."""
    text = datagram.decode("ascii")
    lines = text.split("\n")
    assert all("=" in line for line in lines), f"not KEY=VALUE lines: {datagram!r}"
    return {key: value for key, _, value in (line.partition("=") for line in lines)}


class NotifySocket:
    """The service manager's end: a bound datagram socket the test reads."""

    def __init__(self, address: str, box: Sandbox | None = None) -> None:
        self.address = address  # as NOTIFY_SOCKET spells it
        self.box = box  # whose logs a timeout shows
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.raw: list[bytes] = []

    def recv_raw(self, timeout: float = 5.0) -> bytes:
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            shown = logs(self.box) if self.box is not None else ""
            raise AssertionError(
                f"no notify datagram within {timeout:.1f} s (got so far: {self.raw})\n{shown}"
            ) from None
        self.raw.append(data)
        return data

    def recv(self, timeout: float = 5.0) -> Message:
        """The next datagram, parsed; fails the test after *timeout* s."""
        return parse(self.recv_raw(timeout))

    def until(self, key: str, value: str | None = None, timeout: float = 5.0) -> list[Message]:
        """Datagrams up to and including the first carrying *key* (= *value*)."""
        deadline = time.monotonic() + timeout
        got: list[Message] = []
        while True:
            message = self.recv(max(0.0, deadline - time.monotonic()))
            got.append(message)
            if key in message and (value is None or message[key] == value):
                return got

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notify(sandbox: Sandbox) -> Iterator[NotifySocket]:
    """A fake notify socket at a path in the sandbox."""
    path = str(sandbox.path / "notify.sock")
    assert len(path) < 108, "AF_UNIX path too long for this sandbox"
    listener = NotifySocket(path, sandbox)
    yield listener
    listener.close()


@pytest.fixture
def abstract_notify(sandbox: Sandbox) -> Iterator[NotifySocket]:
    """A fake notify socket in the abstract namespace (``@name``)."""
    listener = NotifySocket(f"@daemondeco-test-{uuid.uuid4().hex}", sandbox)
    yield listener
    listener.close()


def service(body: str = "notify_ready()", options: str = "", before: str = "") -> str:
    """A daemon script: *body* runs inside the ``try`` whose ``finally`` logs "cleanup ran"."""
    inner = textwrap.indent(textwrap.dedent(body).strip("\n"), " " * 8)
    return f"""\
import os, signal, sys, time
from pathlib import Path
from daemondeco import daemon, notify_ready, notify_status
HERE = Path(__file__).resolve().parent

@daemon(pidfile=HERE / "d.pid", stdout=HERE / "d.log", ready="notify"{options})
def main():
    print("daemon up", os.getpid(), flush=True)
    try:
{inner}
        while True:
            time.sleep(3600)
    finally:
        print("cleanup ran", flush=True)

{before}
main()
print("launcher continued after main()", flush=True)
"""


def launch(box: Sandbox, code: str, **env: str) -> subprocess.Popen[bytes]:
    """Start *code* with extra environment *env*; teardown kills it by pid."""
    script = box.write("prog.py", code)
    with open(box.path / "launcher.err", "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, str(script)],
            cwd=box.path,
            env=box.env(**env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    box.extra_pids.append(proc.pid)
    return proc


def finish(proc: subprocess.Popen[bytes], box: Sandbox) -> int:
    """Reap our child and return its exit status (with the logs on failure)."""
    try:
        return proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"pid {proc.pid} did not exit\n{logs(box)}") from None


def logs(box: Sandbox) -> str:
    parts = []
    for name in ("d.log", "launcher.err"):
        path = box.path / name
        parts.append(f"--- {name}\n{path.read_text() if path.exists() else '(none)'}")
    return "\n".join(parts)


def monotonic_usec() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


# -- Type=notify: no fork, READY from the main pid ----------------------------


@pytest.mark.parametrize("kind", [pytest.param("path", id="path"), pytest.param("abstract", id="abstract-namespace")])
def test_under_notify_socket_the_started_process_is_the_daemon(
    sandbox: Sandbox, kind: str, request: pytest.FixtureRequest
) -> None:
    listener: NotifySocket = request.getfixturevalue("notify" if kind == "path" else "abstract_notify")
    proc = launch(sandbox, service(), NOTIFY_SOCKET=listener.address)
    ready = listener.recv()
    assert ready == {"MAINPID": str(proc.pid), "READY": "1"}, "READY must come from the process systemd started"
    assert sandbox.live_pids() == [proc.pid], "nothing forked: no other process of ours exists"
    assert read_pid(sandbox.path / "d.pid") == proc.pid
    assert f"daemon up {proc.pid}" in (sandbox.path / "d.log").read_text()

    proc.send_signal(signal.SIGTERM)
    assert listener.recv() == {"STOPPING": "1"}
    assert finish(proc, sandbox) == 0, logs(sandbox)
    log = (sandbox.path / "d.log").read_text()
    assert "cleanup ran" in log
    assert "launcher continued" not in log, "the daemon's end ends the process"
    assert not (sandbox.path / "d.pid").exists()


def test_ready_only_after_notify_ready_and_status_lines(sandbox: Sandbox, notify: NotifySocket) -> None:
    fifo = sandbox.path / "go.fifo"
    os.mkfifo(fifo)
    body = f"""
        notify_status("loading config")
        with open({str(fifo)!r}) as go:  # blocks until the test opens it
            go.read()
        notify_ready()
        notify_status("serving\\n42 clients")
    """
    proc = launch(sandbox, service(body), NOTIFY_SOCKET=notify.address)
    assert notify.recv() == {"STATUS": "loading config"}, "READY must not be sent before notify_ready()"
    with open(fifo, "w") as go:
        go.write("go")
    assert notify.recv() == {"MAINPID": str(proc.pid), "READY": "1"}
    assert notify.recv() == {"STATUS": "serving 42 clients"}, "one line: newlines become spaces"
    proc.send_signal(signal.SIGTERM)
    assert notify.recv() == {"STOPPING": "1"}
    assert finish(proc, sandbox) == 0, logs(sandbox)


def test_ready_at_start_with_ready_start(sandbox: Sandbox, notify: NotifySocket) -> None:
    code = service(body="print('in the function', flush=True)").replace(', ready="notify"', ', ready="start"')
    proc = launch(sandbox, code, NOTIFY_SOCKET=notify.address)
    assert notify.recv() == {"MAINPID": str(proc.pid), "READY": "1"}
    wait_for_text(sandbox.path / "d.log", "in the function")
    proc.send_signal(signal.SIGTERM)
    assert notify.recv() == {"STOPPING": "1"}
    assert finish(proc, sandbox) == 0, logs(sandbox)


def test_ready_after_startup_grace_by_default(sandbox: Sandbox, notify: NotifySocket) -> None:
    """The default (ready="auto"): READY=1 once the function ran 1 s; the timer thread is gone after it."""
    body = """
        print("in the function at", time.monotonic(), flush=True)
        time.sleep(1.5)
        import threading, warnings
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            child = os.fork()
            if child == 0:
                os._exit(0)
            os.waitpid(child, 0)
        names = [t.name for t in threading.enumerate()]
        tasks = len(os.listdir("/proc/self/task"))
        print("after grace", names, tasks, [str(w.message) for w in caught], flush=True)
    """
    code = service(body=body).replace(', ready="notify"', "")
    proc = launch(sandbox, code, NOTIFY_SOCKET=notify.address)
    assert notify.recv() == {"MAINPID": str(proc.pid), "READY": "1"}
    received = time.monotonic()  # CLOCK_MONOTONIC: the same clock in every process
    text = wait_for_text(sandbox.path / "d.log", "in the function at")
    called = float(text.split("in the function at ")[1].split()[0])
    # (the grace began right before the call, a little before this print)
    assert received - called >= 0.9, "READY=1 before the function had run startup_grace (1 s)"
    text = wait_for_text(sandbox.path / "d.log", "after grace")
    assert "after grace ['MainThread'] 1 []" in text, text
    proc.send_signal(signal.SIGTERM)
    assert notify.recv() == {"STOPPING": "1"}
    assert finish(proc, sandbox) == 0, logs(sandbox)


def test_exit_within_startup_grace_never_says_ready(sandbox: Sandbox, notify: NotifySocket) -> None:
    """The default (ready="auto"): a service that returns at once is a failed start; no READY=1."""
    code = service(body="sys.exit(0)").replace(', ready="notify"', "")
    result = sandbox.run(code, NOTIFY_SOCKET=notify.address)
    assert result.returncode == 0, result
    assert nothing_queued(notify) == [], "a daemon that exited within startup_grace never said READY=1"


def test_notify_ready_ends_the_grace_at_once_under_notify_socket(sandbox: Sandbox, notify: NotifySocket) -> None:
    body = """
        print("called at", time.monotonic(), flush=True)
        notify_ready()
        time.sleep(1.3)
        print("past the grace", flush=True)
    """
    code = service(body=body).replace(', ready="notify"', "")
    proc = launch(sandbox, code, NOTIFY_SOCKET=notify.address)
    assert notify.recv() == {"MAINPID": str(proc.pid), "READY": "1"}
    received = time.monotonic()
    text = wait_for_text(sandbox.path / "d.log", "past the grace")
    called = float(text.split("called at ")[1].split()[0])
    assert received - called < 0.5, "notify_ready() must not wait for the grace"
    assert nothing_queued(notify) == [], "READY=1 once only: the grace's end says nothing more"
    proc.send_signal(signal.SIGTERM)
    assert finish(proc, sandbox) == 0, logs(sandbox)


def test_sighup_sends_reloading_with_monotonic_usec_then_ready(sandbox: Sandbox, notify: NotifySocket) -> None:
    options = ', on_reload=lambda: notify_status("reloaded config")'
    proc = launch(sandbox, service(options=options), NOTIFY_SOCKET=notify.address)
    assert notify.recv()["READY"] == "1"
    for _ in range(2):  # each SIGHUP is one reload cycle
        before = monotonic_usec()
        proc.send_signal(signal.SIGHUP)
        reloading = notify.recv()
        after = monotonic_usec()
        assert set(reloading) == {"RELOADING", "MONOTONIC_USEC"}, reloading
        assert reloading["RELOADING"] == "1"
        assert before <= int(reloading["MONOTONIC_USEC"]) <= after, "MONOTONIC_USEC is CLOCK_MONOTONIC in µs, now"
        assert notify.recv() == {"STATUS": "reloaded config"}, "on_reload runs between RELOADING and READY"
        assert notify.recv() == {"READY": "1"}
    assert alive(proc.pid)
    proc.send_signal(signal.SIGTERM)
    assert notify.recv() == {"STOPPING": "1"}
    assert finish(proc, sandbox) == 0, logs(sandbox)


def test_sighup_before_ready_does_not_report_ready(sandbox: Sandbox, notify: NotifySocket) -> None:
    """A reload during startup must not tell systemd the service is up (READY=1) early."""
    fifo = sandbox.path / "go.fifo"
    os.mkfifo(fifo)
    body = f"""
        notify_status("loading")
        with open({str(fifo)!r}) as go:  # still starting up
            go.read()
        notify_ready()
    """
    options = ', on_reload=lambda: notify_status("reloaded")'
    proc = launch(sandbox, service(body, options=options), NOTIFY_SOCKET=notify.address)
    assert notify.recv() == {"STATUS": "loading"}
    proc.send_signal(signal.SIGHUP)
    early = notify.until("STATUS", "reloaded")
    with open(fifo, "w") as go:
        go.write("go")
    early += notify.until("MAINPID", str(proc.pid))
    premature = [message for message in early[:-1] if "READY" in message]
    assert premature == [], f"READY=1 sent before notify_ready(): {early}"
    assert early[-1] == {"MAINPID": str(proc.pid), "READY": "1"}
    proc.send_signal(signal.SIGTERM)
    assert notify.until("STOPPING", "1")
    assert finish(proc, sandbox) == 0, logs(sandbox)


def nothing_queued(listener: NotifySocket) -> list[bytes]:
    """Datagrams already queued on the socket, without waiting (the sender has exited)."""
    listener.sock.setblocking(False)
    queued = []
    try:
        while True:
            queued.append(listener.sock.recv(65536))
    except BlockingIOError:
        return queued


def test_failure_before_ready_exits_1_without_ready(sandbox: Sandbox, notify: NotifySocket) -> None:
    code = service('raise RuntimeError("cannot bind port 80")')
    result = sandbox.run(code, NOTIFY_SOCKET=notify.address)
    assert result.returncode == 1, result
    log = (sandbox.path / "d.log").read_text()
    assert "RuntimeError: cannot bind port 80" in log, "the traceback goes to the stderr target"
    assert "cleanup ran" in log
    assert nothing_queued(notify) == [], "a daemon that failed to start never said READY=1"
    assert not (sandbox.path / "d.pid").exists()


def test_second_instance_under_notify_socket_is_refused(sandbox: Sandbox, notify: NotifySocket) -> None:
    proc = launch(sandbox, service(), NOTIFY_SOCKET=notify.address)
    assert notify.recv() == {"MAINPID": str(proc.pid), "READY": "1"}
    second = sandbox.run(service(), NOTIFY_SOCKET=notify.address, name="second.py")
    assert second.returncode != 0, second
    assert "AlreadyRunningError" in second.stderr and str(proc.pid) in second.stderr, second
    assert nothing_queued(notify) == [], "the refused instance sent nothing"
    assert read_pid(sandbox.path / "d.pid") == proc.pid
    assert alive(proc.pid)


# -- the watchdog ---------------------------------------------------------------

# The daemon keeps a fixed window open after READY, then says so: the test
# counts the WATCHDOG=1 pings that arrived in between.
WINDOW = """
notify_ready()
time.sleep(0.5)
notify_status("window over")
"""


@pytest.mark.parametrize(
    ("watchdog_pid", "expect_pings"),
    [
        pytest.param(None, True, id="WATCHDOG_PID-unset"),
        pytest.param("self", True, id="WATCHDOG_PID-ours"),
        pytest.param("1", False, id="WATCHDOG_PID-other"),
    ],
)
def test_watchdog_pings_every_half_watchdog_usec(
    sandbox: Sandbox, notify: NotifySocket, watchdog_pid: str | None, expect_pings: bool
) -> None:
    env = {"NOTIFY_SOCKET": notify.address, "WATCHDOG_USEC": "100000"}
    before = ""
    if watchdog_pid == "self":
        before = "os.environ['WATCHDOG_PID'] = str(os.getpid())"
    elif watchdog_pid is not None:
        env["WATCHDOG_PID"] = watchdog_pid
    proc = launch(sandbox, service(WINDOW, before=before), **env)
    arrivals: list[float] = []
    seen: list[Message] = []
    deadline = time.monotonic() + 5
    while True:
        message = notify.recv(max(0.0, deadline - time.monotonic()))
        seen.append(message)
        if message == {"WATCHDOG": "1"}:
            arrivals.append(time.monotonic())
        elif message.get("STATUS") == "window over":
            break
    assert {"MAINPID": str(proc.pid), "READY": "1"} in seen
    assert all(m == {"WATCHDOG": "1"} or "WATCHDOG" not in m for m in seen), seen
    if not expect_pings:
        assert arrivals == [], "WATCHDOG_PID names another process: this one must not ping"
    else:
        # About 10 pings in the 0.5 s window (plus those before READY), one every 50 ms.
        assert 7 <= len(arrivals) <= 16, f"{len(arrivals)} pings: expected one every 50 ms"
        mean = (arrivals[-1] - arrivals[0]) / (len(arrivals) - 1)
        assert 0.035 <= mean <= 0.08, f"mean ping interval {mean * 1000:.1f} ms, expected ~50 ms"
    proc.send_signal(signal.SIGTERM)
    assert notify.until("STOPPING", "1")
    assert finish(proc, sandbox) == 0, logs(sandbox)


def test_log_lines_appear_as_printed_under_notify_socket(sandbox: Sandbox, notify: NotifySocket) -> None:
    """Like the detached daemon, whose stdout is line-buffered: print() needs no flush.

    Under systemd the same program runs attached (no fork); its log lines must
    not wait in an 8 KiB buffer until exit.
    """
    body = 'notify_ready()\nprint("printed without flush")'
    proc = launch(sandbox, service(body), NOTIFY_SOCKET=notify.address)
    assert notify.recv() == {"MAINPID": str(proc.pid), "READY": "1"}
    wait_for_text(sandbox.path / "d.log", "printed without flush", timeout=1)


# -- the environment the daemon leaves to its children --------------------------

MANAGER_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES")

SHOW_ENVIRONMENT = f"""
import subprocess, json
names = {MANAGER_VARIABLES!r}
child = subprocess.run(
    [sys.executable, "-c", "import json, os; print(json.dumps(sorted(os.environ)))"],
    capture_output=True, text=True, check=True,
)
(HERE / "env.json").write_text(json.dumps({{
    "daemon": sorted(n for n in names if n in os.environ),
    "child": sorted(n for n in names if n in json.loads(child.stdout)),
    "marker_in_child": "DAEMONDECO_TEST_ID" in json.loads(child.stdout),
}}))
notify_ready()
"""


@pytest.mark.parametrize("detach", [pytest.param("", id="foreground"), pytest.param(", detach=True", id="detach-True")])
def test_manager_variables_are_removed_from_the_environment(
    sandbox: Sandbox, notify: NotifySocket, detach: str
) -> None:
    import json

    env = {
        "NOTIFY_SOCKET": notify.address,
        "WATCHDOG_USEC": "60000000",
        "WATCHDOG_PID": "1",
        "LISTEN_FDS": "1",
        "LISTEN_PID": "1",
        "LISTEN_FDNAMES": "web",
    }
    proc = launch(sandbox, service(SHOW_ENVIRONMENT, options=detach), **env)
    ready = notify.recv()
    assert ready["READY"] == "1"
    assert (ready["MAINPID"] == str(proc.pid)) is (not detach), "detach=True forks even under NOTIFY_SOCKET"
    found = json.loads((sandbox.path / "env.json").read_text())
    assert found == {"daemon": [], "child": [], "marker_in_child": True}, found


# -- a missing or broken socket is never fatal ---------------------------------


@pytest.mark.parametrize(
    "address",
    [
        pytest.param("{box}/no/such/dir/notify.sock", id="missing-path"),
        pytest.param("{box}/plain-file", id="not-a-socket"),
        pytest.param("@daemondeco-nobody-listens-{uuid}", id="abstract-nobody-listens"),
        pytest.param("relative.sock", id="relative-name"),
    ],
)
def test_unreachable_notify_socket_is_not_fatal(sandbox: Sandbox, address: str) -> None:
    (sandbox.path / "plain-file").write_text("")
    address = address.format(box=sandbox.path, uuid=uuid.uuid4().hex)
    code = """
        import os
        from pathlib import Path
        from daemondeco import daemon, notify_ready, notify_status
        HERE = Path(__file__).resolve().parent

        @daemon(pidfile=HERE / "d.pid", stdout=HERE / "d.log", ready="notify")
        def main():
            notify_status("starting")
            notify_ready()
            print("ran in", os.getpid(), flush=True)
            return 0

        print("launcher", os.getpid(), flush=True)
        main()
    """
    result = sandbox.run(code, NOTIFY_SOCKET=address)
    assert result.returncode == 0, result
    launcher = int(result.stdout.split()[-1])
    assert f"ran in {launcher}" in (sandbox.path / "d.log").read_text(), "NOTIFY_SOCKET set: no fork"
    assert "Traceback" not in (sandbox.path / "d.log").read_text() + result.stderr
    assert not (sandbox.path / "d.pid").exists()


def test_socket_gone_while_running_is_not_fatal(sandbox: Sandbox, notify: NotifySocket) -> None:
    proc = launch(sandbox, service(), NOTIFY_SOCKET=notify.address)
    assert notify.recv()["READY"] == "1"
    notify.close()  # systemd went away: STOPPING=1 cannot be delivered
    os.unlink(notify.address)
    proc.send_signal(signal.SIGTERM)
    assert finish(proc, sandbox) == 0, logs(sandbox)
    log = (sandbox.path / "d.log").read_text()
    assert "cleanup ran" in log and "Traceback" not in log, log


# -- forcing the choice ----------------------------------------------------------


def test_daemondeco_foreground_forces_no_fork(sandbox: Sandbox) -> None:
    code = service(body="print('in the function', flush=True)").replace(', ready="notify"', "")
    proc = launch(sandbox, code, DAEMONDECO_FOREGROUND="1")
    wait_for_text(sandbox.path / "d.log", "in the function", timeout=5)
    assert read_pid(sandbox.path / "d.pid") == proc.pid, "the process the test started is the daemon"
    assert sandbox.live_pids() == [proc.pid]
    proc.send_signal(signal.SIGTERM)
    assert finish(proc, sandbox) == 0, logs(sandbox)
    assert "cleanup ran" in (sandbox.path / "d.log").read_text()


def test_detach_true_forks_under_notify_socket(sandbox: Sandbox, notify: NotifySocket) -> None:
    code = service(options=", detach=True", before="print('launcher', os.getpid(), flush=True)")
    result = sandbox.run(code, NOTIFY_SOCKET=notify.address)
    assert result.returncode == 0, result
    assert "launcher continued" not in result.stdout
    launcher = int(result.stdout.split()[-1])
    daemon_pid = read_pid(sandbox.path / "d.pid")
    assert daemon_pid != launcher
    assert notify.recv() == {"MAINPID": str(daemon_pid), "READY": "1"}, "READY names the daemon, not the launcher"
    assert alive(daemon_pid)
    assert sandbox.live_pids() == [daemon_pid]
    os.kill(daemon_pid, signal.SIGTERM)
    assert notify.recv() == {"STOPPING": "1"}
    assert wait_exit(daemon_pid)


def test_type_forking_pidfile_complete_when_launcher_exits(sandbox: Sandbox) -> None:
    result = sandbox.run(service(before="print('launcher', os.getpid(), flush=True)"))
    assert result.returncode == 0, result
    daemon_pid = read_pid(sandbox.path / "d.pid")
    assert daemon_pid != int(result.stdout.split()[-1])
    assert alive(daemon_pid)


def test_worker_does_not_speak_for_the_service(sandbox: Sandbox, notify: NotifySocket) -> None:
    code = """
        import json, os, socket
        from pathlib import Path
        from daemondeco import notify_ready, notify_status, process_daemonize
        HERE = Path(__file__).resolve().parent

        @process_daemonize(stdout=HERE / "w.log", ready="notify")
        def work():
            (HERE / "w.env").write_text(json.dumps("NOTIFY_SOCKET" in os.environ))
            notify_status("a worker must not say this")
            notify_ready()

        handle = work()
        assert handle.wait(5) == 0
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(b"SENTINEL=1", os.environ["NOTIFY_SOCKET"])
        print("caller still has NOTIFY_SOCKET:", "NOTIFY_SOCKET" in os.environ)
    """
    result = sandbox.run(code, NOTIFY_SOCKET=notify.address)
    assert result.returncode == 0, result
    assert notify.recv() == {"SENTINEL": "1"}, "the worker sent nothing to the service manager"
    assert (sandbox.path / "w.env").read_text() == "false", "the worker's environment lost NOTIFY_SOCKET"
    assert "caller still has NOTIFY_SOCKET: True" in result.stdout, "the caller's environment is untouched"


# -- async main ------------------------------------------------------------------

ASYNC_SERVICE = """
import asyncio, os
from pathlib import Path
from daemondeco import daemon, notify_ready
HERE = Path(__file__).resolve().parent

@daemon(pidfile=HERE / "d.pid", stdout=HERE / "d.log"{options})
async def main():
    try:
        {ready}
        print("loop running:", asyncio.get_running_loop().is_running(), flush=True)
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        print("task cancelled", flush=True)
        raise
    finally:
        print("cleanup ran", flush=True)

main()
"""


@pytest.mark.parametrize(
    ("options", "ready"),
    [
        pytest.param("", "pass", id="ready-start"),
        pytest.param(', ready="notify"', "notify_ready()", id="ready-notify"),
    ],
)
def test_async_main_under_notify_socket(sandbox: Sandbox, notify: NotifySocket, options: str, ready: str) -> None:
    proc = launch(sandbox, ASYNC_SERVICE.format(options=options, ready=ready), NOTIFY_SOCKET=notify.address)
    assert notify.recv() == {"MAINPID": str(proc.pid), "READY": "1"}
    assert sandbox.live_pids() == [proc.pid]
    wait_for_text(sandbox.path / "d.log", "loop running: True")
    proc.send_signal(signal.SIGTERM)
    assert notify.recv() == {"STOPPING": "1"}
    assert finish(proc, sandbox) == 0, logs(sandbox)
    log = (sandbox.path / "d.log").read_text()
    assert "task cancelled" in log and "cleanup ran" in log, log
    assert "Traceback" not in log, log


# -- wire compatibility with systemd's own client --------------------------------

SYSTEMD_NOTIFY = shutil.which("systemd-notify") or "/usr/bin/systemd-notify"


@pytest.mark.skipif(not os.access(SYSTEMD_NOTIFY, os.X_OK), reason="systemd-notify is not installed (Debian: systemd)")
def test_datagrams_match_systemd_notify(sandbox: Sandbox, notify: NotifySocket) -> None:
    body = 'notify_status("hello")\nnotify_ready()'
    proc = launch(sandbox, service(body), NOTIFY_SOCKET=notify.address)
    ours_status = notify.recv_raw()
    ours_ready = notify.recv_raw()

    def systemd_notify(*args: str) -> bytes:
        done = subprocess.run(
            [SYSTEMD_NOTIFY, "--no-block", *args],
            env=sandbox.env(NOTIFY_SOCKET=notify.address),
            capture_output=True,
            text=True,
            timeout=10,
        )
        assert done.returncode == 0, done
        return notify.recv_raw()

    theirs_status = systemd_notify("--status=hello")
    theirs_ready = systemd_notify("--ready", f"--pid={proc.pid}")
    theirs_both = systemd_notify("--ready", "--status=hello")

    assert ours_status == theirs_status == b"STATUS=hello", "byte for byte the same datagram"
    # Same lines, same parse; only the order of the lines may differ.
    assert sorted(ours_ready.split(b"\n")) == sorted(theirs_ready.split(b"\n"))
    assert parse(ours_ready) == parse(theirs_ready) == {"READY": "1", "MAINPID": str(proc.pid)}
    assert b"READY=1" in theirs_both.split(b"\n") and b"READY=1" in ours_ready.split(b"\n")
    for datagram in (ours_status, ours_ready, theirs_both):
        assert not datagram.endswith((b"\n", b"\0")), datagram
    proc.send_signal(signal.SIGTERM)
    ours_stopping = notify.recv_raw()
    assert finish(proc, sandbox) == 0, logs(sandbox)
    assert ours_stopping == systemd_notify("STOPPING=1") == b"STOPPING=1"
