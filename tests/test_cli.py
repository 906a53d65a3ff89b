"""The decorated CLI never lies and shows its work (issue 8, point 4); ``python -m daemondeco`` alike.

Real processes: ``svc.py ACTION ...`` is a script ending in ``sys.exit(target.cli())``;
what an operator sees is checked (exit codes, stdout/stderr, pidfile, /proc).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import Result, Sandbox, alive, read_pid, wait_for_text

import daemondeco

SERVICE = """
import os, sys, time
from daemondeco import daemon, notify_ready

HERE = os.path.dirname(os.path.abspath(__file__))
os.register_at_fork(before=lambda: print("FORK ATTEMPTED", file=sys.stderr, flush=True))

def P(name):
    return os.path.join(HERE, name)

OPTIONS = dict(pidfile=P("d.pid"), stdout=P("d.log"), ready="notify", ready_timeout=10, stop_timeout=5)

@daemon(**OPTIONS)
def main(*args):
    '''Serve the test service.'''
    print("up", os.getpid(), list(args), flush=True)
    if args[:1] == ("fail",):
        raise ValueError("bad config in " + P("conf.ini"))
    if args[:1] == ("exit",):
        print("giving up quietly", flush=True)
        sys.exit(3)
    try:
        notify_ready()
        if args[:1] == ("crash-later",):  # after readiness: start exits 0, status tells the end
            open(P("state.db"))
        if args[:1] == ("quit-later",):
            sys.exit(int(args[1]))
        while True:
            time.sleep(60)
    finally:
        print("finally", flush=True)
        if args[:1] == ("slow",):
            time.sleep(60)

@daemon(**OPTIONS)
def none():
    notify_ready()
    time.sleep(60)

@daemon(**OPTIONS)
def port(port, host="localhost"):
    notify_ready()
    time.sleep(60)

@daemon(**OPTIONS)
def kwonly(*, level):
    notify_ready()
    time.sleep(60)

class Service:
    @daemon(**OPTIONS)
    def serve(self, port):
        print("serving", port, flush=True)
        notify_ready()
        time.sleep(60)

if __name__ == "__main__":
    name = os.environ.get("SVC_TARGET", "main")
    target = Service().serve if name == "method" else {"main": main, "none": none, "port": port, "kwonly": kwonly}[name]
    sys.exit(target.cli())
"""


@pytest.fixture
def svc(sandbox: Sandbox) -> Path:
    return sandbox.write("svc.py", SERVICE)


def ctl(sandbox: Sandbox, *argv: str, target: str = "main") -> Result:
    """``svc.py ARGV`` with the target function *target*."""
    return sandbox.run_file(sandbox.path / "svc.py", *argv, SVC_TARGET=target)


def start(sandbox: Sandbox, *words: str) -> int:
    result = ctl(sandbox, "start", *words)
    assert result.returncode == 0, result
    pid = read_pid(sandbox.path / "d.pid")
    assert f"main started (pid {pid})" in result.stdout, result
    return pid


def log(sandbox: Sandbox) -> str:
    return (sandbox.path / "d.log").read_text()


# -- the words are bound to the signature before anything forks -----------------------


@pytest.mark.usefixtures("svc")
@pytest.mark.parametrize(
    ("target", "argv", "problem"),
    [
        pytest.param("none", ["start", "extra"], "unexpected argument 'extra'", id="start-extra-on-no-parameters"),
        pytest.param("port", ["start"], "missing argument 'port'", id="start-missing-port"),
        pytest.param("port", ["start", "1", "h", "x"], "unexpected argument 'x'", id="start-one-too-many"),
        pytest.param("port", ["run"], "missing argument 'port'", id="run-missing-port"),
        pytest.param("none", ["restart", "extra"], "unexpected argument 'extra'", id="restart-extra"),
        pytest.param("kwonly", ["start", "x"], "unexpected argument 'x'", id="keyword-only-extra"),
        pytest.param("kwonly", ["start"], "keyword-only parameter 'level'", id="keyword-only-required"),
        pytest.param("method", ["start"], "missing argument 'port'", id="method-self-is-bound"),
        pytest.param("none", ["start", "--", "-h"], "unexpected argument '-h'", id="after-double-dash"),
    ],
)
def test_words_that_do_not_fit_the_signature_are_a_usage_error_and_nothing_forks(
    sandbox: Sandbox, target: str, argv: list[str], problem: str
) -> None:
    result = ctl(sandbox, *argv, target=target)
    assert result.returncode == 2, result
    assert problem in result.stderr, result
    assert f"usage: svc.py {argv[0]}" in result.stderr, result
    assert "Traceback" not in result.stderr, result
    assert "FORK ATTEMPTED" not in result.stderr, result
    assert result.stdout == "", result
    assert sandbox.live_pids() == []
    assert not (sandbox.path / "d.pid").exists()
    assert not (sandbox.path / "d.log").exists()


@pytest.mark.usefixtures("svc")
def test_a_restart_with_bad_words_leaves_the_running_daemon_alone(sandbox: Sandbox) -> None:
    pid = start(sandbox, "first")
    result = ctl(sandbox, "restart", "a", "b", "c", target="port")
    assert result.returncode == 2, result
    assert "unexpected argument 'c'" in result.stderr, result
    assert alive(pid), "a rejected command line must not stop the daemon"
    assert read_pid(sandbox.path / "d.pid") == pid


@pytest.mark.usefixtures("svc")
def test_a_bound_method_starts_with_its_words(sandbox: Sandbox) -> None:
    result = ctl(sandbox, "start", "8080", target="method")
    assert result.returncode == 0, result
    pid = read_pid(sandbox.path / "d.pid")
    assert f"serve started (pid {pid})" in result.stdout, result
    assert "serving 8080" in wait_for_text(sandbox.path / "d.log", "serving")


@pytest.mark.usefixtures("svc")
@pytest.mark.parametrize(
    ("words", "received"),
    [
        pytest.param(["--port", "8080"], "['--port', '8080']", id="option-like-words"),
        pytest.param(["--", "--timeout", "3"], "['--timeout', '3']", id="own-option-after-double-dash"),
        pytest.param(["a", "-h"], "['a', '-h']", id="help-after-a-word"),
    ],
)
def test_words_that_look_like_options_reach_the_function(sandbox: Sandbox, words: list[str], received: str) -> None:
    pid = start(sandbox, *words)
    assert f"up {pid} {received}" in log(sandbox)


# -- a failed start shows why ------------------------------------------------------------


@pytest.mark.usefixtures("svc")
def test_a_failed_start_prints_the_traceback_and_the_log_tail_with_its_path(sandbox: Sandbox) -> None:
    (sandbox.path / "d.log").write_text("".join(f"old line {n}\n" for n in range(50)))
    result = ctl(sandbox, "start", "fail")
    assert result.returncode == 1, result
    assert "main: daemon (pid" in result.stderr, result
    assert "Daemon traceback:" in result.stderr, result
    assert 'raise ValueError("bad config in " + P("conf.ini"))' in result.stderr, result
    assert f"ValueError: bad config in {sandbox.path / 'conf.ini'}" in result.stderr, result
    tail = result.stderr.split(f"The last lines of {sandbox.path / 'd.log'}:\n", 1)[1]
    assert "up " in tail and "['fail']" in tail, result
    assert "old line 49" in tail and "old line 20" not in tail, "only the last 20 lines"
    assert len(tail.splitlines()) == 20, result
    assert sandbox.live_pids() == []
    assert ctl(sandbox, "status").returncode == 3


@pytest.mark.usefixtures("svc")
def test_a_start_that_exits_without_a_traceback_shows_the_log(sandbox: Sandbox) -> None:
    result = ctl(sandbox, "start", "exit")
    assert result.returncode == 1, result
    assert "exited with status 3 before it was ready" in result.stderr, result
    assert f"The last lines of {sandbox.path / 'd.log'}:" in result.stderr, result
    assert "giving up quietly" in result.stderr, result
    assert sandbox.live_pids() == []


# -- stop and restart say what they wait for --------------------------------------------


@pytest.mark.usefixtures("svc")
def test_stop_says_what_it_waits_for(sandbox: Sandbox) -> None:
    pid = start(sandbox)
    result = ctl(sandbox, "stop")
    assert (result.returncode, result.stdout) == (0, f"main stopped (pid {pid})\n"), result
    assert result.stderr == f"Stopping main (pid {pid})...\n", result
    assert "SIGKILL" not in result.stderr
    assert not alive(pid)


@pytest.mark.usefixtures("svc")
@pytest.mark.parametrize("action", ["stop", "restart"])
def test_a_stop_that_had_to_sigkill_says_so(sandbox: Sandbox, action: str) -> None:
    pid = start(sandbox, "slow")
    result = ctl(sandbox, action, "--timeout", "0.3", *(["again"] if action == "restart" else []))
    assert result.returncode == 0, result
    assert f"main stopped (pid {pid})" in result.stdout, result
    assert f"Stopping main (pid {pid})...\nmain (pid {pid}) did not exit on SIGTERM: sent SIGKILL after 0.3 s\n" in (
        result.stderr
    ), result
    assert not alive(pid)
    assert "finally" in log(sandbox), "SIGTERM came first"
    if action == "restart":
        second = read_pid(sandbox.path / "d.pid")
        assert f"main started (pid {second})" in result.stdout, result
        assert f"up {second} ['again']" in log(sandbox)


@pytest.mark.usefixtures("svc")
@pytest.mark.parametrize("action", ["stop", "restart"])
@pytest.mark.parametrize(
    "timeout",
    [
        pytest.param(["--timeout", "nan"], id="nan"),
        pytest.param(["--timeout=-1"], id="negative"),
        pytest.param(["--timeout", "soon"], id="not-a-number"),
        pytest.param(["--timeout"], id="missing"),
    ],
)
def test_a_bad_timeout_is_a_usage_error_and_signals_nothing(sandbox: Sandbox, action: str, timeout: list[str]) -> None:
    pid = start(sandbox)
    result = ctl(sandbox, action, *timeout)
    assert result.returncode == 2, result
    assert "--timeout" in result.stderr, result
    assert f"usage: svc.py {action}" in result.stderr, result
    assert "Traceback" not in result.stderr, result
    assert alive(pid), "the daemon was signalled although the command line was rejected"
    assert "finally" not in log(sandbox)


@pytest.mark.usefixtures("svc")
@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["stop", "extra"], id="stop-extra"),
        pytest.param(["status", "extra"], id="status-extra"),
        pytest.param(["stat"], id="misspelt-action"),
    ],
)
def test_stray_words_and_misspelt_actions_are_usage_errors(sandbox: Sandbox, argv: list[str]) -> None:
    pid = start(sandbox)
    result = ctl(sandbox, *argv)
    assert result.returncode == 2, result
    assert "usage:" in result.stderr, result
    assert alive(pid)
    if argv == ["stat"]:
        assert "unknown action 'stat' (did you mean 'start'?)" in result.stderr, result


# -- --version and -h everywhere -----------------------------------------------------------


@pytest.mark.usefixtures("svc")
@pytest.mark.parametrize("where", ["decorated", "module"])
def test_version_prints_daemondecos_version(sandbox: Sandbox, where: str) -> None:
    result = ctl(sandbox, "--version") if where == "decorated" else sandbox.run_module("--version")
    assert (result.returncode, result.stdout) == (0, f"daemondeco {daemondeco.__version__}\n"), result


@pytest.mark.usefixtures("svc")
@pytest.mark.parametrize(
    ("action", "texts"),
    [
        pytest.param("start", ["usage: svc.py start [-h] [ARG ...]", "ready"], id="start"),
        pytest.param("stop", ["usage: svc.py stop [-h] [--timeout S]", "SIGKILL"], id="stop"),
        pytest.param("restart", ["usage: svc.py restart [-h] [--timeout S] [ARG ...]"], id="restart"),
        pytest.param("status", ["usage: svc.py status [-h]", "4 unknown"], id="status"),
        pytest.param("run", ["usage: svc.py run [-h] [ARG ...]", "foreground"], id="run"),
    ],
)
@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_every_action_has_its_own_help(sandbox: Sandbox, action: str, texts: list[str], flag: str) -> None:
    result = ctl(sandbox, action, flag)
    assert result.returncode == 0, result
    for text in texts:
        assert text in result.stdout, result
    assert "FORK ATTEMPTED" not in result.stderr, result
    assert sandbox.live_pids() == []
    assert not (sandbox.path / "d.pid").exists()


@pytest.mark.usefixtures("svc")
def test_the_help_shows_the_docstring_and_how_to_get_an_actions_help(sandbox: Sandbox) -> None:
    result = ctl(sandbox, "--help")
    assert result.returncode == 0, result
    assert "Serve the test service." in result.stdout, result
    assert "--version" in result.stdout, result
    assert "'svc.py ACTION -h'" in result.stdout, result


@pytest.mark.parametrize(
    ("action", "texts"),
    [
        pytest.param("status", ["usage: python -m daemondeco status [-h] [--json] pidfile", "stale"], id="status"),
        pytest.param("stop", ["usage: python -m daemondeco stop [-h] [--timeout S] pidfile", "SIGKILL"], id="stop"),
    ],
)
def test_every_module_action_has_its_own_help(sandbox: Sandbox, action: str, texts: list[str]) -> None:
    result = sandbox.run_module(action, "-h")
    assert result.returncode == 0, result
    for text in texts:
        assert text in result.stdout, result


@pytest.mark.usefixtures("svc")
def test_the_module_stop_says_what_it_waits_for(sandbox: Sandbox) -> None:
    pid = start(sandbox, "slow")
    result = sandbox.run_module("stop", "--timeout", "0.3", str(sandbox.path / "d.pid"))
    assert (result.returncode, result.stdout) == (0, f"d.pid stopped (pid {pid})\n"), result
    assert f"Stopping d.pid (pid {pid})..." in result.stderr, result
    assert "sent SIGKILL after 0.3 s" in result.stderr, result
    assert not alive(pid)


# -- status says how the last run ended (issue 18, item 2) ------------------------------


def _start_ending(sandbox: Sandbox, *words: str) -> int:
    """Start a daemon that ends right after readiness; its pid, from the launcher's line."""
    import re

    result = ctl(sandbox, "start", *words)
    assert result.returncode == 0, result
    found = re.search(r"main started \(pid (\d+)\)", result.stdout)
    assert found is not None, result
    return int(found.group(1))


def _ended(sandbox: Sandbox, pid: int) -> None:
    """Wait until the daemon *pid* is gone and its pidfile released."""
    from conftest import wait_exit, wait_until

    assert wait_exit(pid)
    wait_until(lambda: not (sandbox.path / "d.pid").exists(), what="the pidfile removed at the daemon's exit")


@pytest.mark.usefixtures("svc")
def test_status_after_a_crash_names_the_status_time_error_and_log(sandbox: Sandbox) -> None:
    import json
    import re

    pid = _start_ending(sandbox, "crash-later")
    _ended(sandbox, pid)
    result = ctl(sandbox, "status")
    assert result.returncode == 3, result
    line = result.stdout.strip()
    pattern = (
        rf"main is not running; last run \(pid {pid}\) exited with status 1 at \d\d:\d\d:\d\d: "
        r"FileNotFoundError: \[Errno 2\] No such file or directory: '.*state\.db' \(traceback in .*d\.log\)"
    )
    assert re.fullmatch(pattern, line), line
    report = json.loads(ctl(sandbox, "status", "--json").stdout)
    last = report["last_exit"]
    assert last["pid"] == pid and last["status"] == 1 and last["signal"] is None, last
    assert last["error"].startswith("FileNotFoundError: [Errno 2]"), last
    assert last["log"] == str(sandbox.path / "d.log"), last
    assert abs(last["time"] - __import__("time").time()) < 60, last
    module = sandbox.run_module("status", "d.pid")  # python -m daemondeco status: the same line
    assert module.returncode == 3, module
    assert f"last run (pid {pid}) exited with status 1 at " in module.stdout, module
    assert "FileNotFoundError" in module.stdout, module


@pytest.mark.usefixtures("svc")
def test_status_after_sys_exit_names_the_status(sandbox: Sandbox) -> None:
    pid = _start_ending(sandbox, "quit-later", "5")
    _ended(sandbox, pid)
    result = ctl(sandbox, "status")
    assert result.returncode == 3, result
    assert f"main is not running; last run (pid {pid}) exited with status 5 at " in result.stdout, result


@pytest.mark.usefixtures("svc")
def test_status_after_a_clean_stop_says_stopped(sandbox: Sandbox) -> None:
    pid = start(sandbox)
    stopped = ctl(sandbox, "stop")
    assert stopped.returncode == 0, stopped
    result = ctl(sandbox, "status")
    assert result.returncode == 3, result
    assert f"main is not running; last run (pid {pid}) stopped at " in result.stdout, result
    assert "status" not in result.stdout.split("stopped at")[1], result


@pytest.mark.usefixtures("svc")
def test_status_after_sigkill_says_what_can_be_known(sandbox: Sandbox) -> None:
    import json
    import os
    import signal

    from conftest import wait_exit, zombie_status_or_none

    pid = start(sandbox)
    os.kill(pid, signal.SIGKILL)
    assert wait_exit(pid)
    zombie_before = zombie_status_or_none(pid) is not None
    result = ctl(sandbox, "status")
    last = json.loads(ctl(sandbox, "status", "--json").stdout)["last_exit"]
    zombie_after = zombie_status_or_none(pid) is not None
    assert result.returncode == 1, result  # dead, but its pidfile exists
    assert last["pid"] == pid and last["how"] == "died", last
    killed = f"last run (pid {pid}) was killed by SIGKILL"
    unknown = f"last run (pid {pid}) died (killed or crashed without a word; exit status unknown)"
    if zombie_after:  # unreaped (this machine's PID 1): /proc still has its status
        assert killed in result.stdout, result
        assert last["signal"] == "SIGKILL", last
    elif not zombie_before:  # reaped by an init: nobody can know
        assert unknown in result.stdout, result
    else:  # reaped while status ran: either is true
        assert killed in result.stdout or unknown in result.stdout, result
