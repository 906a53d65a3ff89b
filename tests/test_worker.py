"""@process_daemonize: the caller keeps running, untouched, with a handle on each worker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

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


# -- issue 18, item 3: the handle says how the worker ended ------------------------------------

OUTCOME = """
from daemondeco import DaemonProcess, WorkerError
import pickle

def describe(handle, timeout=10):
    code = handle.wait(timeout)
    error = handle.exception()
    try:
        value = {"value": handle.result()}
    except WorkerError as exc:
        copy = pickle.loads(pickle.dumps(exc))
        value = {"error": str(exc), "summary": exc.summary, "exitcode": exc.exitcode, "exc_type": exc.exc_type,
                 "exc_message": exc.exc_message, "traceback": exc.worker_traceback, "error_pid": exc.pid,
                 "pickled_same": (copy.summary, copy.exitcode, copy.exc_type, copy.worker_traceback)
                                 == (exc.summary, exc.exitcode, exc.exc_type, exc.worker_traceback)}
    return {"wait": code, "exitcode": handle.exitcode, "error_type": type(error).__name__, **value}
"""


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            "return {'rows': 3, 'name': 'sync', 'ids': (1, 2)}",
            {"wait": 0, "exitcode": 0, "error_type": "NoneType", "value": {"rows": 3, "name": "sync", "ids": [1, 2]}},
            id="returned",
        ),
        pytest.param("return None", {"wait": 0, "exitcode": 0, "error_type": "NoneType", "value": None}, id="none"),
        pytest.param("sys.exit(0)", {"wait": 0, "exitcode": 0, "error_type": "NoneType", "value": None}, id="exit-0"),
    ],
)
def test_result_returns_what_the_worker_returned(sandbox: Sandbox, body: str, expected: dict[str, object]) -> None:
    data = run_json(
        sandbox,
        OUTCOME
        + f"""
@process_daemonize
def worker():
    {body}

report(**describe(worker()))
""",
    )
    assert data == expected


@pytest.mark.parametrize(
    ("body", "exitcode", "summary"),
    [
        pytest.param("sys.exit(3)", 3, "exited with status 3 without raising", id="sys-exit-3"),
        pytest.param("os._exit(5)", 5, "exited with status 5 without raising", id="os-exit-5"),
        pytest.param("os.kill(os.getpid(), signal.SIGKILL)", -9, "was killed by SIGKILL", id="sigkill"),
        pytest.param("os.abort()", -6, "was killed by SIGABRT", id="sigabrt"),
    ],
)
def test_an_exit_status_or_a_signal_is_the_exitcode_and_result_says_so(
    sandbox: Sandbox, body: str, exitcode: int, summary: str
) -> None:
    data = run_json(
        sandbox,
        OUTCOME
        + f"""
import faulthandler; faulthandler.disable()
@process_daemonize(stdout=HERE / "w.log")
def worker():
    {body}

handle = worker()
report(pid=handle.pid, **describe(handle))
""",
    )
    assert data["wait"] == data["exitcode"] == data["exitcode"] == exitcode
    assert data["error_type"] == "WorkerError"
    assert data["summary"] == f"worker (pid {data['pid']}) {summary}"
    assert data["exc_type"] is None and data["traceback"] is None and data["pickled_same"] is True


def test_a_worker_that_raised_gives_its_type_message_and_traceback(sandbox: Sandbox) -> None:
    data = run_json(
        sandbox,
        OUTCOME
        + """
class JobError(Exception):
    pass

@process_daemonize(stdout=HERE / "w.log")
def worker(job):
    rows = [1, 2]
    raise JobError(f"job {job}: bad row {rows[-1]}")  # the raising line

handle = worker("sync")
report(pid=handle.pid, **describe(handle))
""",
    )
    assert data["wait"] == data["exitcode"] == 1
    assert data["error_type"] == "WorkerError"
    assert data["exc_type"] == "JobError" and data["exc_message"] == "job sync: bad row 2"
    assert data["summary"] == f"worker (pid {data['pid']}) raised JobError: job sync: bad row 2"
    trace = str(data["traceback"])
    assert 'raise JobError(f"job {job}: bad row {rows[-1]}")  # the raising line' in trace
    assert "prog.py" in trace and trace.rstrip().endswith("JobError: job sync: bad row 2")
    assert "Worker traceback:" in str(data["error"]) and "the raising line" in str(data["error"])
    assert data["pickled_same"] is True
    assert "JobError: job sync: bad row 2" in (sandbox.path / "w.log").read_text(), "still in its log too"


def test_an_unpicklable_return_value_is_a_clear_error_naming_its_type(sandbox: Sandbox) -> None:
    data = run_json(
        sandbox,
        OUTCOME
        + """
import threading

@process_daemonize
def worker():
    return threading.Lock()

@process_daemonize
def local_class():
    class Local:
        pass
    return Local()

report(lock=describe(worker()), local=describe(local_class()))
""",
    )
    lock, local = data["lock"], data["local"]
    assert isinstance(lock, dict) and isinstance(local, dict)
    assert lock["exitcode"] == 0 and lock["error_type"] == "WorkerError"
    assert "returned a _thread.lock object, which cannot be pickled" in str(lock["summary"])
    assert "TypeError: cannot pickle '_thread.lock' object" in str(lock["summary"])
    assert "__main__.local_class.<locals>.Local object, which cannot be pickled" in str(local["summary"])


def test_while_the_worker_runs_wait_and_exitcode_say_none_and_result_times_out(sandbox: Sandbox) -> None:
    data = run_json(
        sandbox,
        """
from daemondeco import WorkerError

@process_daemonize
def worker():
    while not (HERE / "go").exists():
        time.sleep(0.01)
    return "finished"

handle = worker()
started = time.monotonic()
waited = handle.wait(timeout=0.2)
elapsed = time.monotonic() - started
code_running = handle.exitcode
try:
    handle.result(timeout=0.1)
    timed_out = None
except TimeoutError as exc:
    timed_out = str(exc)
try:
    handle.exception(timeout=0)
    exc_timed_out = False
except TimeoutError:
    exc_timed_out = True
(HERE / "go").touch()
report(waited=waited, elapsed=elapsed, code_running=code_running, timed_out=timed_out, exc_timed_out=exc_timed_out,
       result=handle.result(timeout=10), exitcode=handle.exitcode, repr=repr(handle), pid=handle.pid)
""",
    )
    assert data["waited"] is None and data["code_running"] is None
    elapsed = data["elapsed"]
    assert isinstance(elapsed, float) and 0.2 <= elapsed < 5
    assert data["timed_out"] == f"worker (pid {data['pid']}) still runs after 0.1 s"
    assert data["exc_timed_out"] is True
    assert data["result"] == "finished" and data["exitcode"] == 0
    assert data["repr"] == f"<DaemonProcess pid={data['pid']} exited exitcode=0>"


def test_the_monitor_sees_the_end_holds_nothing_of_the_callers_and_leaves_with_the_worker(sandbox: Sandbox) -> None:
    """The worker's parent is its monitor: a session leader holding only stdio and the pipe; never a zombie."""
    data = run_json(
        sandbox,
        """
caller_file = open(HERE / "caller-file", "w")

@process_daemonize(pidfile=HERE / "w.pid", stdout=HERE / "w.log")
def worker():
    while not (HERE / "go").exists():
        time.sleep(0.01)

handle = worker()
stat = (Path("/proc") / str(handle.pid) / "stat").read_text()
monitor = int(stat[stat.rindex(")") + 2 :].split()[1])
fds = {int(fd): os.readlink(f"/proc/{monitor}/fd/{fd}") for fd in os.listdir(f"/proc/{monitor}/fd")}
mstat = (Path("/proc") / str(monitor) / "stat").read_text().split(") ")[1].split()
(HERE / "go").touch()
code = handle.wait(10)
children = [line.split() for line in os.popen(f"ps -o pid=,stat= --ppid {os.getpid()}").read().splitlines()]
report(pid=handle.pid, monitor=monitor, fds=fds, monitor_ppid=int(mstat[1]), monitor_sid=int(mstat[3]),
       caller=os.getpid(), code=code, children=children, monitor_gone=not os.path.exists(f"/proc/{monitor}"))
""",
    )
    pid, monitor = data["pid"], data["monitor"]
    assert isinstance(pid, int) and isinstance(monitor, int)
    assert data["monitor_ppid"] == data["caller"], "the monitor is the caller's child (reaped by the handle)"
    assert data["monitor_sid"] == monitor, "the monitor called setsid(); the worker is not a session leader"
    fds = data["fds"]
    assert isinstance(fds, dict)
    log = str(sandbox.path / "w.log")
    assert fds["1"] == fds["2"] == log and fds["0"] == "/dev/null", "stdio: the worker's, not the caller's"
    others = {fd: target for fd, target in fds.items() if fd not in ("0", "1", "2")}
    assert sorted(str(target).split(":")[0] for target in others.values()) == ["anon_inode", "pipe"], fds
    assert "anon_inode:[pidfd]" in others.values(), "the worker's pidfd, and the pipe it reports on"
    assert data["code"] == 0
    assert data["monitor_gone"] is True, "the monitor left with the worker and the handle reaped it"
    assert [c for c in data["children"] if c and int(c[0]) == monitor] == []  # type: ignore[union-attr]
    assert not (sandbox.path / "w.pid").exists()
    assert (sandbox.path / "w.pid.exit").stat().st_mode & 0o777 == 0o600


def test_from_pidfile_between_the_end_and_the_record_waits_for_this_workers_record(sandbox: Sandbox) -> None:
    """The monitor is held (SIGSTOP) as the worker ends: the reader waits for its record, never an earlier one."""
    sandbox.write(
        "start.py",
        HEADER
        + """
@process_daemonize(pidfile=HERE / "job.pid", stdout=HERE / "w.log")
def job(name):
    while name == "second" and not (HERE / "go").exists():
        time.sleep(0.01)
    return name

assert job("first").result(10) == "first"  # the record of an earlier worker with this pidfile
print(job("second").pid)
""",
    )
    started = sandbox.run_file(sandbox.path / "start.py")
    assert started.returncode == 0, started
    worker = int(started.stdout)
    stat = proc_stat(worker)
    assert stat is not None
    monitor = stat.ppid
    assert monitor > 1 and monitor != os.getpid()
    os.kill(monitor, signal.SIGSTOP)
    try:
        (sandbox.path / "go").touch()
        assert wait_exit(worker), "the worker ended (a zombie of its held monitor)"
        reader = sandbox.popen(
            """
from pathlib import Path
from daemondeco import DaemonProcess
HERE = Path(__file__).resolve().parent
print(DaemonProcess.from_pidfile(HERE / "job.pid").result(10), flush=True)
""",
            name="attach.py",
            stdout=subprocess.PIPE,
        )
        with pytest.raises(subprocess.TimeoutExpired):
            reader.wait(timeout=0.3)  # it waits for the held monitor
    finally:
        os.kill(monitor, signal.SIGCONT)
    out, _ = reader.communicate(timeout=10)
    assert reader.returncode == 0 and out == "second\n", out


def test_from_pidfile_reattaches_after_the_caller_exited(sandbox: Sandbox) -> None:
    """A second script finds the worker running, then its result; a third, after it ended, the record."""
    sandbox.write(
        "start.py",
        HEADER
        + """
@process_daemonize(pidfile=HERE / "job.pid", stdout=HERE / "w.log")
def job(name):
    while not (HERE / "go").exists():
        time.sleep(0.01)
    return {"job": name, "rows": 42}

@process_daemonize(pidfile=HERE / "doomed.pid", stdout=HERE / "w.log")
def doomed():
    while True:
        time.sleep(1)

print(job("sync").pid, doomed().pid)
""",
    )
    started = sandbox.run_file(sandbox.path / "start.py")
    assert started.returncode == 0, started
    pid, doomed = (int(word) for word in started.stdout.split())
    attach = """
import json, os, signal, sys
from pathlib import Path
from daemondeco import DaemonProcess, WorkerError
HERE = Path(__file__).resolve().parent
handle = DaemonProcess.from_pidfile(HERE / "job.pid")
running, code = handle.is_running(), handle.exitcode
doomed = DaemonProcess.from_pidfile(HERE / "doomed.pid")
os.kill(doomed.pid, signal.SIGKILL)
(HERE / "go").touch()
print(json.dumps({"pid": handle.pid, "running": running, "code_running": code, "result": handle.result(10),
                  "exitcode": handle.exitcode, "doomed": doomed.pid, "doomed_code": doomed.wait(10)}))
"""
    second = sandbox.run(attach, name="attach.py")
    assert second.returncode == 0, second
    data = json.loads(second.stdout)
    assert data["pid"] == pid and data["running"] is True and data["code_running"] is None
    assert data["result"] == {"job": "sync", "rows": 42} and data["exitcode"] == 0
    assert data["doomed"] == doomed and data["doomed_code"] == -signal.SIGKILL
    later = """
import json
from pathlib import Path
from daemondeco import DaemonProcess, DaemonError, WorkerError
HERE = Path(__file__).resolve().parent
job, doomed = DaemonProcess.from_pidfile(HERE / "job.pid"), DaemonProcess.from_pidfile(HERE / "doomed.pid")
try:
    doomed.result()
except WorkerError as exc:
    doomed_error = exc.summary
try:
    DaemonProcess.from_pidfile(HERE / "never.pid")
except DaemonError as exc:
    never = str(exc)
print(json.dumps({"pid": job.pid, "running": job.is_running(), "result": job.result(), "code": job.wait(0),
                  "doomed_error": doomed_error, "never": never}))
"""
    third = sandbox.run(later, name="later.py")
    assert third.returncode == 0, third
    data = json.loads(third.stdout)
    assert data["pid"] == pid and data["running"] is False and data["code"] == 0
    assert data["result"] == {"job": "sync", "rows": 42}
    assert data["doomed_error"] == f"worker (pid {doomed}) was killed by SIGKILL"
    assert "no worker runs under pidfile" in str(data["never"]) and "never.pid.exit" in str(data["never"])


def test_a_supervised_worker_reports_its_last_workers_exception_after_giving_up(sandbox: Sandbox) -> None:
    data = run_json(
        sandbox,
        """
from daemondeco import WorkerError

@process_daemonize(restart="on-failure", restart_delay=0.01, start_limit=(3, 60), stdout=HERE / "w.log")
def flaky():
    time.sleep(0.3)  # after startup_grace: a crash restarts
    raise RuntimeError(f"flaky {os.getpid()}")

handle = flaky()
code = handle.wait(30)
error = handle.exception()
report(pid=handle.pid, code=code, summary=error.summary, exc_type=error.exc_type, message=error.exc_message,
       traceback=error.worker_traceback, last_exit=handle.last_exit)
""",
    )
    assert data["code"] == 1, "the supervisor gave up: status 1"
    last = data["last_exit"]
    assert isinstance(last, dict) and last["exception"] == f"RuntimeError: flaky {last['pid']}"
    assert data["exc_type"] == "RuntimeError" and data["message"] == f"flaky {last['pid']}"
    assert data["summary"] == (
        f"supervisor (pid {data['pid']}): its last worker (pid {last['pid']}) raised RuntimeError: flaky {last['pid']}"
    )
    assert 'raise RuntimeError(f"flaky {os.getpid()}")' in str(data["traceback"])


def test_a_worker_can_start_a_worker_and_read_its_result(sandbox: Sandbox) -> None:
    """Each worker reports to its own monitor: the inner one's value reaches the outer one, and so on."""
    data = run_json(
        sandbox,
        """
@process_daemonize
def inner(n):
    return n * 10

@process_daemonize
def outer(n):
    return inner(n).result(timeout=10) + 1

report(value=outer(4).result(timeout=20))
""",
    )
    assert data["value"] == 41


def test_without_a_pidfile_the_record_is_private_and_gone_once_read(sandbox: Sandbox) -> None:
    """``$TMPDIR/daemondeco-<uid>/<pid>.exit``: removed by the handle that read it, never written for a dead caller."""
    result = sandbox.run_reporting(
        HEADER
        + """
@process_daemonize
def quick():
    return 5

@process_daemonize
def late():
    while not (HERE / "go").exists():
        time.sleep(0.01)
    return 6

private = Path(os.environ["TMPDIR"]) / f"daemondeco-{os.getuid()}"
handle = quick()
value = handle.result(10)
after_read = sorted(p.name for p in private.iterdir()) if private.exists() else []
orphan = late()
stat = (Path("/proc") / str(orphan.pid) / "stat").read_text()
report(value=value, after_read=after_read, mode=oct(private.stat().st_mode & 0o777), orphan=orphan.pid,
       monitor=int(stat[stat.rindex(")") + 2 :].split()[1]), private=str(private))
""",
        TMPDIR=str(sandbox.path),
    )
    data = result.reports()[-1]
    assert data["value"] == 5 and data["after_read"] == [], "read once, then removed"
    assert data["mode"] == "0o700"
    orphan, monitor = data["orphan"], data["monitor"]
    assert isinstance(orphan, int) and isinstance(monitor, int)
    (sandbox.path / "go").touch()
    assert wait_exit(orphan) and wait_exit(monitor)
    assert not (Path(str(data["private"])) / f"{orphan}.exit").exists(), "nobody could read it: not written"


def test_a_killed_monitor_loses_the_record_and_wait_says_so(sandbox: Sandbox) -> None:
    """The one way to lose the outcome: SIGKILL the monitor itself; wait() then raises, unlike a timeout."""
    data = run_json(
        sandbox,
        """
from daemondeco import WorkerError

@process_daemonize
def worker():
    while not (HERE / "go").exists():
        time.sleep(0.01)

handle = worker()
stat = (Path("/proc") / str(handle.pid) / "stat").read_text()
monitor = int(stat[stat.rindex(")") + 2 :].split()[1])
os.kill(monitor, signal.SIGTERM)  # blocked: the monitor stays while its worker runs, the signal pending
status = dict(line.split(":\t", 1) for line in Path(f"/proc/{monitor}/status").read_text().splitlines())
bit = 1 << (signal.SIGTERM - 1)
survived_term = bool(int(status["SigBlk"], 16) & bit) and bool(int(status["ShdPnd"], 16) & bit)
os.kill(monitor, signal.SIGKILL)
(HERE / "go").touch()
try:
    handle.wait(10)
    raised = None
except WorkerError as exc:
    raised = exc.summary
report(survived_term=survived_term, raised=raised, exitcode=handle.exitcode, pid=handle.pid,
       exception=handle.exception().summary)
""",
    )
    assert data["survived_term"] is True, "SIGTERM is blocked in the monitor: it stays pending, the monitor stays"
    expected = (
        f"worker (pid {data['pid']}) has exited, but left no record of how: its monitor was killed, "
        "or it was not started by process_daemonize"
    )
    assert data["raised"] == data["exception"] == expected
    assert data["exitcode"] is None
