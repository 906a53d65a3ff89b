"""@process_daemonize: the caller keeps running, untouched, with a handle on each worker."""

from __future__ import annotations

import os
import signal

import pytest
from conftest import Sandbox, alive, proc_stat, wait_exit

HEADER = """
import atexit, json, os, signal, sys, time, warnings
from pathlib import Path
from daemondeco import process_daemonize, notify_ready, StartupError, AlreadyRunningError, DaemonWarning
HERE = Path(__file__).resolve().parent
"""


def run_json(box: Sandbox, body: str) -> dict[str, object]:
    """Run HEADER + *body* (exit 0); the last values it reported."""
    return box.run_reporting(HEADER + body).reports()[-1]


def test_caller_keeps_running_with_its_state_untouched(sandbox: Sandbox) -> None:
    data = run_json(
        sandbox,
        """
def state():
    return {
        "cwd": os.getcwd(),
        "umask": os.umask(os.umask(0o022)),
        "fds": sorted(os.listdir("/proc/self/fd")),
        "sigterm": repr(signal.getsignal(signal.SIGTERM)),
        "sighup": repr(signal.getsignal(signal.SIGHUP)),
        "sigmask": sorted(signal.pthread_sigmask(signal.SIG_BLOCK, [])),
        "sid": os.getsid(0),
    }

signal.signal(signal.SIGHUP, signal.SIG_IGN)
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
open_file = open(HERE / "caller-file", "w")

@process_daemonize(stdout=HERE / "w.log")
def worker(n):
    print("worker", os.getpid(), n, os.getcwd(), flush=True)
    time.sleep(60)

before = state()
handle = worker(5)
after = state()
report(pid=handle.pid, same=before == after, before=before, after=after, running=handle.is_running(),
       pidfile=handle.pidfile, caller=os.getpid())
""",
    )
    assert data["same"], (data["before"], data["after"])
    pid = data["pid"]
    assert isinstance(pid, int)
    assert data["running"] is True and data["pidfile"] is None
    assert alive(pid)
    stat = proc_stat(pid)
    assert stat is not None and stat.tty_nr == 0 and stat.session != pid
    assert stat.ppid != data["caller"], "a double-forked worker is not the caller's child"
    assert (sandbox.path / "w.log").read_text() == f"worker {pid} 5 /\n"


def test_every_call_starts_one_more_worker_and_handles_stop_them(sandbox: Sandbox) -> None:
    data = run_json(
        sandbox,
        """
@process_daemonize
def worker():
    time.sleep(60)

handles = [worker() for _ in range(3)]
pids = [h.pid for h in handles]
alive_before = [h.is_running() for h in handles]
waited = handles[0].wait(timeout=0.05)
stopped = [h.stop(timeout=5) for h in handles]
report(pids=pids, alive_before=alive_before, waited=waited, stopped=stopped,
       alive_after=[h.is_running() for h in handles], wait_after=[h.wait(0) for h in handles],
       exitcodes=[h.exitcode for h in handles], stop_again=handles[0].stop())
""",
    )
    pids = data["pids"]
    assert isinstance(pids, list) and len(set(pids)) == 3
    assert data["alive_before"] == [True] * 3
    assert data["waited"] is None, "wait() times out while the worker runs: None"
    assert data["stopped"] == [True] * 3
    assert data["alive_after"] == [False] * 3
    assert data["wait_after"] == [0] * 3, "SIGTERM exits 0: wait() returns the exit code"
    assert data["exitcodes"] == [0] * 3
    assert data["stop_again"] is True, "stopping a stopped worker is success"
    for pid in pids:
        assert not alive(pid)
        assert proc_stat(pid) is None, "its monitor reaped it: no zombie left"


def test_a_pidfile_allows_one_worker_at_a_time(sandbox: Sandbox) -> None:
    data = run_json(
        sandbox,
        """
@process_daemonize(pidfile=HERE / "w.pid")
def worker():
    time.sleep(60)

first = worker()
try:
    worker()
except AlreadyRunningError as exc:
    refused = str(exc)
pid_in_file = int((HERE / "w.pid").read_text())
first.stop()
gone = not (HERE / "w.pid").exists()
second = worker()
report(first=first.pid, refused=refused, pid_in_file=pid_in_file, gone=gone, second=second.pid,
       second_pidfile=second.pidfile)
""",
    )
    assert data["pid_in_file"] == data["first"]
    assert f"pid {data['first']}" in str(data["refused"])
    assert data["gone"] is True, "a stopped worker removes its pidfile"
    second = data["second"]
    assert isinstance(second, int) and alive(second)
    assert data["second_pidfile"] == str(sandbox.path / "w.pid")


def test_worker_startup_error_raises_in_the_caller_which_goes_on(sandbox: Sandbox) -> None:
    data = run_json(
        sandbox,
        """
@process_daemonize(ready="notify", stdout=HERE / "w.log")
def worker(port):
    raise ConnectionRefusedError(f"cannot reach port {port}")

try:
    worker(5432)
except StartupError as exc:
    report(message=str(exc), exc_type=exc.exc_type, pid=exc.pid, tb=exc.daemon_traceback)
""",
    )
    assert data["exc_type"] == "ConnectionRefusedError"
    assert "cannot reach port 5432" in str(data["message"])
    assert "Traceback" in str(data["tb"]) and "in worker" in str(data["tb"])
    pid = data["pid"]
    assert isinstance(pid, int) and not alive(pid)
    assert "ConnectionRefusedError: cannot reach port 5432" in (sandbox.path / "w.log").read_text()
    assert sandbox.live_pids() == []


@pytest.mark.parametrize(
    ("body", "status", "in_log"),
    [
        pytest.param("return 'ignored'", 0, "", id="return"),
        pytest.param("sys.exit(4)", 4, "", id="sys-exit"),
        pytest.param("raise LookupError('no such job')", 1, "LookupError: no such job", id="exception"),
    ],
)
def test_worker_exit_status(sandbox: Sandbox, body: str, status: int, in_log: str) -> None:
    data = run_json(
        sandbox,
        f"""
@process_daemonize(stdout=HERE / "w.log")
def worker():
    {body}

handle = worker()
report(pid=handle.pid, done=handle.wait(timeout=10), exitcode=handle.exitcode)
""",
    )
    assert data["done"] == status, "wait() returns the exit status"
    assert data["exitcode"] == status
    pid = data["pid"]
    assert isinstance(pid, int)
    assert proc_stat(pid) is None, "its monitor reaped it: no zombie left"
    assert in_log in (sandbox.path / "w.log").read_text()


def test_worker_runs_its_own_atexit_handlers_not_the_callers(sandbox: Sandbox) -> None:
    data = run_json(
        sandbox,
        """
marks = HERE / "marks"
atexit.register(lambda: open(marks, "a").write(f"caller-atexit {os.getpid()}\\n"))

@process_daemonize
def worker():
    atexit.register(lambda: open(marks, "a").write(f"worker-atexit {os.getpid()}\\n"))

handle = worker()
handle.wait(timeout=10)
report(pid=handle.pid, caller=os.getpid(), marks_before_caller_exit=marks.read_text() if marks.exists() else "")
""",
    )
    assert data["marks_before_caller_exit"] == f"worker-atexit {data['pid']}\n"
    marks = (sandbox.path / "marks").read_text()
    assert marks == f"worker-atexit {data['pid']}\ncaller-atexit {data['caller']}\n"


def test_callers_multiprocessing_pool_survives_a_worker(sandbox: Sandbox) -> None:
    data = run_json(
        sandbox,
        """
import multiprocessing

def square(x):
    return x * x

@process_daemonize
def worker():
    return None

if __name__ == "__main__":
    with multiprocessing.get_context("fork").Pool(2) as pool:
        first = pool.map(square, range(4))
        handle = worker()
        handle.wait(timeout=10)
        second = pool.map(square, range(4))
    report(first=first, second=second)
""",
    )
    assert data["first"] == data["second"] == [0, 1, 4, 9]


def test_starting_with_threads_alive_warns(sandbox: Sandbox) -> None:
    data = run_json(
        sandbox,
        """
import threading
stop = threading.Event()
helper = threading.Thread(target=stop.wait, name="poller")
helper.start()

@process_daemonize
def worker():
    return None

with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    handle = worker()
stop.set()
handle.wait(timeout=10)
ours = [w for w in caught if issubclass(w.category, DaemonWarning)]
report(count=len(ours), message=str(ours[0].message) if ours else "",
       filename=ours[0].filename if ours else "", runtime=issubclass(DaemonWarning, RuntimeWarning))
""",
    )
    assert data["count"] == 1
    assert "poller" in str(data["message"]) and "will not exist in the daemon" in str(data["message"])
    assert str(data["filename"]).endswith("prog.py"), "the warning points at the caller's line"
    assert data["runtime"] is True


def test_stop_escalates_to_sigkill(sandbox: Sandbox) -> None:
    data = run_json(
        sandbox,
        """
@process_daemonize(ready="notify")
def stubborn():
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    notify_ready()
    while True:
        time.sleep(1)

handle = stubborn()
started = time.monotonic()
stopped = handle.stop(timeout=0.3)
report(pid=handle.pid, stopped=stopped, elapsed=time.monotonic() - started, exitcode=handle.exitcode)
""",
    )
    assert data["stopped"] is True
    pid = data["pid"]
    assert isinstance(pid, int)
    assert data["exitcode"] == -signal.SIGKILL
    elapsed = data["elapsed"]
    assert isinstance(elapsed, float) and 0.3 <= elapsed < 5


def test_handle_never_signals_a_reused_pid(sandbox: Sandbox) -> None:
    """A handle whose process is gone must not signal whatever now has that pid."""
    data = run_json(
        sandbox,
        """
import subprocess
from daemondeco import DaemonProcess

@process_daemonize
def worker():
    return None

other = subprocess.Popen(["sleep", "60"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
time.sleep(0.03)  # start times count in 10 ms clock ticks: make the two differ
handle = worker()
handle.wait(timeout=10)
handle.pid = other.pid  # the pid number now names an unrelated process
report(running=handle.is_running(), stopped=handle.stop(timeout=0.2), other=other.pid)
""",
    )
    other = data["other"]
    assert isinstance(other, int)
    sandbox.extra_pids.append(other)
    assert data["running"] is False and data["stopped"] is True
    assert alive(other), "the unrelated process must not have been signalled"
    os.kill(other, signal.SIGKILL)
    wait_exit(other)
