"""Issue 6, defects 2 (runtime part), 5, 9, 10 and 11, proven with real processes.

* #2  huge finite timeouts (``1e9`` s, 31 years) must work, not overflow ``poll()``;
* #5  a FIFO, a directory, a socket or a device at the pidfile path is refused at once;
* #9  a daemon keeps exactly its stdio, its pidfile and ``keep_fds`` of 5,000 inherited fds;
* #10 a subreaper caller collects no zombies of ``@process_daemonize`` workers, and keeps its own;
* #11 a non-UTF-8 pidfile name is printed safely under a strict UTF-8 stdout.

Each check is run in a subprocess with a short timeout, so a hang shows as a failure.
"""

from __future__ import annotations

import json
import os
import resource
import socket
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Result, Sandbox, alive, open_fds, read_pid, wait_exit, wait_until

from daemondeco import Pidfile

# Every subprocess here gets this long: today's hangs show as TimeoutExpired, not as a stuck suite.
QUICK = 10.0
REFUSAL = 5.0  # a refusal is immediate; today a FIFO hangs until this timeout

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


# -- #2: huge finite timeouts work -------------------------------------------------


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


# -- #5: special files at the pidfile path are refused at once -----------------------


def _make_fifo(path: Path) -> None:
    os.mkfifo(path)


def _make_directory(path: Path) -> None:
    path.mkdir()


def _make_socket(path: Path) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(path))  # the socket file stays after the socket is closed


def _make_chardev(path: Path) -> None:
    os.mknod(path, stat.S_IFCHR | 0o644, os.makedev(1, 3))  # a second /dev/null


MAKERS: dict[str, Callable[[Path], None]] = {
    "fifo": _make_fifo,
    "directory": _make_directory,
    "socket": _make_socket,
    "chardev": _make_chardev,
}

# (how it is run, what is run, the expected exit code)
CLI_ACTIONS = {
    "prog.py-start": ("prog", "start", 1),
    "prog.py-status": ("prog", "status", 4),
    "prog.py-stop": ("prog", "stop", 1),
    "python-m-status": ("module", "status", 4),
    "python-m-stop": ("module", "stop", 1),
}

needs_root_for_mknod = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create a device node")


def _special_params(actions: list[str]) -> list[object]:
    params: list[object] = []
    for kind in MAKERS:
        for action in actions:
            marks: list[pytest.MarkDecorator] = [needs_root_for_mknod] if kind == "chardev" else []
            params.append(pytest.param(kind, action, marks=marks, id=f"{kind}-{action}"))
    return params


@pytest.mark.parametrize(
    ("kind", "action"),
    _special_params(list(CLI_ACTIONS)),
)
def test_special_file_at_the_pidfile_path_is_refused_by_the_command_lines(
    sandbox: Sandbox, kind: str, action: str
) -> None:
    pidfile = sandbox.path / "d.pid"
    MAKERS[kind](pidfile)
    how, word, expected = CLI_ACTIONS[action]
    if how == "prog":
        service(sandbox)
        result = sandbox.run_file(sandbox.path / "prog.py", word, timeout=REFUSAL)
    else:
        result = sandbox.run_module(word, str(pidfile), timeout=REFUSAL)
    assert result.returncode == expected, result
    assert "Traceback" not in result.stderr, result
    said = result.stdout + result.stderr
    assert "d.pid" in said, result
    if word == "start":
        assert str(pidfile) in said, result
        assert "not a regular file" in said, result
    assert sandbox.live_pids() == [], "nothing was started"
    assert stat.S_IFMT(pidfile.lstat().st_mode) != stat.S_IFREG, "the special file is left alone"


PIDFILE_CALL = """
import json, sys
import daemondeco
try:
    value = getattr(daemondeco.Pidfile(sys.argv[1]), sys.argv[2])()
except daemondeco.DaemonError as exc:
    print(json.dumps({"raised": "DaemonError", "text": str(exc)}), flush=True)
except BaseException as exc:
    print(json.dumps({"raised": type(exc).__name__, "text": str(exc)}), flush=True)
else:
    print(json.dumps({"returned": repr(value)}), flush=True)
"""


@pytest.mark.parametrize(
    ("kind", "method"),
    _special_params(["read_pid", "locked_by", "is_locked", "acquire"]),
)
def test_special_file_at_the_pidfile_path_makes_pidfile_methods_raise(sandbox: Sandbox, kind: str, method: str) -> None:
    pidfile = sandbox.path / "d.pid"
    MAKERS[kind](pidfile)
    result = sandbox.run(PIDFILE_CALL, str(pidfile), method, name="call.py", timeout=REFUSAL)
    assert result.returncode == 0, result
    data = last_json(result)
    assert data.get("raised") == "DaemonError", data
    assert str(pidfile) in str(data["text"]), data
    assert stat.S_IFMT(pidfile.lstat().st_mode) != stat.S_IFREG, "the special file is left alone"


# -- #9: exactly the kept fds survive, out of 5,000 ------------------------------------

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


# -- #10: a subreaper caller and its zombies -----------------------------------------

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


# -- #11: a non-UTF-8 pidfile name ------------------------------------------------------

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
