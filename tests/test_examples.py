"""The examples run for real: the README's ticker and the six recipes of docs/recipes.md.

Each test runs an example script as an operator would (start, status, stop,
...) with its files pointed into the sandbox, and checks what the operator
sees: exit codes, printed lines, the pidfile, the logs, an HTTP answer. A
successful start returns only once the daemon is ready, so what a daemon
writes before it reports ready is checked at once; ``wait_until`` is used
only for lines written after that.
"""

from __future__ import annotations

import functools
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import ROOT, Result, Sandbox, alive, open_fds, proc_stat, read_pid, wait_exit, wait_until

EXAMPLES = ROOT / "examples"
TICKER = EXAMPLES / "ticker.py"
RECIPES = EXAMPLES / "recipes"


DOCS = ROOT / "docs"


def recipe(name: str) -> Path:
    return next(RECIPES.glob(f"{name}_*.py"))


def text(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def assert_detached(pid: int) -> None:
    """*pid* runs as a daemon: no controlling tty, not a session leader."""
    assert alive(pid), f"daemon {pid} is not running"
    stat_ = proc_stat(pid)
    assert stat_ is not None
    assert stat_.tty_nr == 0, "the daemon has a controlling terminal"
    assert stat_.session != pid, "the daemon is a session leader"


def daemondeco_cli(sandbox: Sandbox, *args: str) -> Result:
    """``python -m daemondeco ARGS`` as an operator runs it."""
    return sandbox.run_module(*args)


def test_ticker_start_status_stop(sandbox: Sandbox) -> None:
    run = functools.partial(sandbox.run_file, TICKER, TICKER_DIR=str(sandbox.path))
    pidfile, log = sandbox.path / "ticker.pid", sandbox.path / "ticker.log"

    started = run("start")
    assert started.returncode == 0, started
    assert f"ticker: log in {log}" in started.stdout
    pid = read_pid(pidfile)
    assert f"ticker started (pid {pid})" in started.stdout
    assert_detached(pid)
    assert f"ticker {pid} ready, resuming after tick 0\n" in text(log), "written before notify_ready()"
    wait_until(lambda: "tick 1\n" in text(log), what="the first tick in the log")

    status = run("status")
    assert status.returncode == 0, status
    assert re.fullmatch(rf"ticker is running \(pid {pid}\), ready, up \d+s, [\d.]+ MiB\n", status.stdout), status
    again = run("start")
    assert again.returncode == 0, again
    assert f"already running (pid {pid})" in again.stdout
    assert read_pid(pidfile) == pid

    stopped = run("stop")
    assert (stopped.returncode, stopped.stdout) == (0, f"ticker stopped (pid {pid})\n"), stopped
    assert not alive(pid)
    assert not pidfile.exists()
    assert re.search(rf"^ticker {pid} stopping after tick \d+$", text(log), re.M), "finally: ran on SIGTERM"

    status = run("status")
    assert status.returncode == 3, status
    # how the last run ended (issue 18, item 2)
    ended = rf"ticker is not running; last run \(pid {pid}\) stopped at \d\d:\d\d:\d\d\n"
    assert re.fullmatch(ended, status.stdout), status
    assert run("stop").returncode == 0, "stop of a stopped daemon is a success (LSB)"
    assert sandbox.live_pids() == []


def test_ticker_restart_resumes_from_its_state(sandbox: Sandbox) -> None:
    run = functools.partial(sandbox.run_file, TICKER, TICKER_DIR=str(sandbox.path))
    pidfile, log = sandbox.path / "ticker.pid", sandbox.path / "ticker.log"
    assert run("start", "0.05").returncode == 0
    first = read_pid(pidfile)
    wait_until(lambda: "tick 3\n" in text(log), what="three ticks")

    restarted = run("restart", "0.05")
    assert restarted.returncode == 0, restarted
    second = read_pid(pidfile)
    assert second != first
    assert not alive(first)
    assert_detached(second)
    resumed = re.search(rf"^ticker {second} ready, resuming after tick (\d+)$", text(log), re.M)
    assert resumed, text(log)
    assert int(resumed.group(1)) >= 3, text(log)
    assert run("stop").returncode == 0


def test_ticker_bad_argument_fails_start_with_the_traceback(sandbox: Sandbox) -> None:
    result = sandbox.run_file(TICKER, "start", "0", TICKER_DIR=str(sandbox.path))
    assert result.returncode == 1, result
    assert "failed before it was ready: ValueError: interval must be a positive number" in result.stderr
    assert "Daemon traceback:" in result.stderr
    assert f'File "{TICKER}"' in result.stderr
    assert not (sandbox.path / "ticker.pid").exists()
    assert sandbox.live_pids() == []
    status = sandbox.run_file(TICKER, "status", TICKER_DIR=str(sandbox.path))
    assert status.returncode == 3, status


def test_ticker_run_in_the_foreground_ends_on_sigterm(sandbox: Sandbox) -> None:
    proc = subprocess.Popen(
        [sys.executable, str(TICKER), "run", "0.05"],
        cwd=sandbox.path,
        env=sandbox.env(TICKER_DIR=str(sandbox.path)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    sandbox.extra_pids.append(proc.pid)
    assert proc.stdout is not None
    assert proc.stdout.readline() == f"ticker {proc.pid} ready, resuming after tick 0\n"
    assert proc.stdout.readline() == "tick 1\n"
    assert read_pid(sandbox.path / "ticker.pid") == proc.pid, "run holds the same pidfile"
    status = sandbox.run_file(TICKER, "status", TICKER_DIR=str(sandbox.path))
    assert status.returncode == 0, status
    assert re.fullmatch(rf"ticker is running \(pid {proc.pid}\), ready, up \d+s, [\d.]+ MiB\n", status.stdout), status

    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert re.search(rf"^ticker {proc.pid} stopping after tick \d+$", out, re.M), out
    assert not (sandbox.path / "ticker.pid").exists()


@pytest.mark.parametrize(
    ("args", "code"),
    [
        pytest.param((), 2, id="no-action"),
        pytest.param(("bogus",), 2, id="unknown-action"),
        pytest.param(("--help",), 0, id="help"),
    ],
)
def test_ticker_command_line(sandbox: Sandbox, args: tuple[str, ...], code: int) -> None:
    result = sandbox.run_file(TICKER, *args, TICKER_DIR=str(sandbox.path))
    assert result.returncode == code, result
    assert "start|stop|restart|status|reload|run" in result.stdout + result.stderr
    assert sandbox.live_pids() == []


# -- recipe 1: daemonize() with a pidfile ---------------------------------------


def test_recipe1_daemonize_function(sandbox: Sandbox) -> None:
    script, env = recipe("01"), {"RECIPE_DIR": str(sandbox.path)}
    pidfile, log, data = (sandbox.path / f"01.{ext}" for ext in ("pid", "log", "data"))

    started = sandbox.run_file(script, **env)
    assert started.returncode == 0, started
    assert f"pidfile {pidfile}" in started.stdout
    pid = read_pid(pidfile)
    assert_detached(pid)
    assert f"daemon {pid} ready\n" in text(log)
    assert stat.S_IMODE(data.stat().st_mode) == 0o644, "umask 0o022, not the recipe's 0"
    wait_until(lambda: "still here" in text(data), what="the daemon's first data line")

    again = sandbox.run_file(script, **env)
    assert (again.returncode, again.stdout.splitlines()[-1]) == (0, f"already running (pid {pid})"), again

    status = daemondeco_cli(sandbox, "status", str(pidfile))
    assert status.returncode == 0, status
    assert re.fullmatch(rf"01\.pid is running \(pid {pid}\), ready, up \d+s, [\d.]+ MiB\n", status.stdout), status
    stopped = daemondeco_cli(sandbox, "stop", str(pidfile))
    assert stopped.returncode == 0, stopped
    assert not alive(pid)
    assert f"daemon {pid} stopping\n" in text(log)
    assert not pidfile.exists()
    assert daemondeco_cli(sandbox, "status", str(pidfile)).returncode == 3


def test_recipe1_setup_error_after_the_fork_reaches_the_launcher(sandbox: Sandbox) -> None:
    (sandbox.path / "01.data").mkdir()  # the daemon's open() will fail
    result = sandbox.run_file(recipe("01"), RECIPE_DIR=str(sandbox.path))
    assert result.returncode == 1, result
    assert "StartupError" in result.stderr
    assert "IsADirectoryError" in result.stderr
    assert "Daemon traceback:" in result.stderr
    assert not (sandbox.path / "01.pid").exists()
    assert sandbox.live_pids() == []


# -- recipe 2: a Daemon-style class ---------------------------------------------


def test_recipe2_daemon_class(sandbox: Sandbox) -> None:
    run = functools.partial(sandbox.run_file, recipe("02"), RECIPE_DIR=str(sandbox.path))
    pidfile, log = sandbox.path / "02.pid", sandbox.path / "02.log"

    started = run("start", "hi")
    assert started.returncode == 0, started
    pid = read_pid(pidfile)
    assert_detached(pid)
    assert f"hi #1 from Greeter {pid}\n" in text(log), "the method ran with its instance and argument"
    assert run("status").returncode == 0

    restarted = run("restart", "hey")
    assert restarted.returncode == 0, restarted
    new = read_pid(pidfile)
    assert new != pid
    assert not alive(pid)
    assert f"Greeter {pid} stopping after" in text(log)
    assert f"hey #1 from Greeter {new}\n" in text(log)

    stopped = run("stop")
    assert stopped.returncode == 0, stopped
    assert not alive(new)
    assert run("status").returncode == 3


# -- recipe 3: an HTTPServer bound before the detach -------------------------------


def free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def listening_addresses(pid: int, port: int) -> set[str]:
    """Local addresses (hex, as in /proc/net/tcp*) where *pid*'s netns listens on *port*."""
    found = set()
    for table in ("tcp", "tcp6"):
        path = Path(f"/proc/{pid}/net/{table}")
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, _, hex_port = local.partition(":")
            if int(hex_port, 16) == port and state == "0A":  # 0A: LISTEN
                found.add(address)
    return found


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:  # http://127.0.0.1 only
        assert response.status == 200
        return str(response.read().decode())


@pytest.mark.parametrize("given_port", [pytest.param(False, id="ephemeral"), pytest.param(True, id="env-port")])
def test_recipe3_http_server_mixin(sandbox: Sandbox, given_port: bool) -> None:
    env = {"RECIPE_DIR": str(sandbox.path)}
    if given_port:
        env["RECIPE_PORT"] = str(free_loopback_port())
    run = functools.partial(sandbox.run_file, recipe("03"), **env)
    pidfile, log = sandbox.path / "03.pid", sandbox.path / "03.log"

    started = run("start")
    assert started.returncode == 0, started
    match = re.search(r"serving on (http://127\.0\.0\.1:(\d+)/)", started.stdout)
    assert match, started
    url, port = match.group(1), int(match.group(2))
    if given_port:
        assert port == int(env["RECIPE_PORT"])
    pid = read_pid(pidfile)
    assert_detached(pid)
    assert listening_addresses(pid, port) == {"0100007F"}, "listens on 127.0.0.1 only"
    assert any(target.startswith("socket:") for target in open_fds(pid).values()), "the socket was kept"

    assert get(url) == f"hello from daemon {pid}\n"
    wait_until(lambda: '"GET / HTTP/1.1" 200' in text(log), what="the request line in the log")

    again = run("start")
    assert (again.returncode, again.stdout) == (0, f"already running (pid {pid})\n"), again
    status = run("status")
    assert status.returncode == 0, status

    stopped = run("stop")
    assert stopped.returncode == 0, stopped
    assert not alive(pid)
    assert f"daemon {pid} stopped serving" in text(log)
    with pytest.raises(urllib.error.URLError):
        get(url)
    assert run("status").returncode == 3
    assert run().returncode == 2


def test_recipe3_upgrade_under_load_refuses_no_request(sandbox: Sandbox) -> None:
    run = functools.partial(sandbox.run_file, recipe("03"), RECIPE_DIR=str(sandbox.path))
    started = run("start")
    assert started.returncode == 0, started
    match = re.search(r"serving on (http://127\.0\.0\.1:(\d+)/)", started.stdout)
    assert match, started
    url, pidfile = match.group(1), sandbox.path / "03.pid"
    old = read_pid(pidfile)
    answers: dict[str, int] = {}
    errors: list[str] = []
    stop = threading.Event()

    def load() -> None:  # one request every millisecond, bounded
        deadline = time.monotonic() + 20
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                body = get(url)
                answers[body] = answers.get(body, 0) + 1
            except (OSError, urllib.error.URLError) as exc:
                errors.append(repr(exc))
            stop.wait(0.001)

    client = threading.Thread(target=load, daemon=True)
    client.start()
    try:
        wait_until(lambda: f"hello from daemon {old}\n" in answers, what="the old daemon answering")
        upgraded = run("upgrade")
        assert upgraded.returncode == 0, upgraded
        new = read_pid(pidfile)
        assert new != old
        wait_until(lambda: f"hello from daemon {new}\n" in answers, what="the new daemon answering")
        assert wait_exit(old)
    finally:
        stop.set()
        client.join(30)
    assert errors == [], errors[:5]
    assert set(answers) == {f"hello from daemon {old}\n", f"hello from daemon {new}\n"}
    log = text(sandbox.path / "03.log")
    assert f"daemon {old} stopped serving" in log, "on_drain ended serve_forever() and the finally block ran"
    assert run("stop").returncode == 0
    assert run("status").returncode == 3


def test_recipe3_busy_port_fails_in_the_launcher(sandbox: Sandbox) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = sandbox.run_file(recipe("03"), "start", RECIPE_DIR=str(sandbox.path), RECIPE_PORT=str(port))
    assert result.returncode == 1, result
    assert "Address already in use" in result.stderr
    assert not (sandbox.path / "03.pid").exists()
    assert sandbox.live_pids() == []


# -- recipe 4: process_daemonize workers ------------------------------------------


def test_recipe4_process_daemonize(sandbox: Sandbox) -> None:
    result = sandbox.run_file(recipe("04"), RECIPE_DIR=str(sandbox.path))
    assert result.returncode == 0, result
    out, log = result.stdout, text(sandbox.path / "04.log")

    handles = re.search(r"started <DaemonProcess pid=(\d+) running> and <DaemonProcess pid=(\d+) running>", out)
    assert handles, out
    finite, endless = int(handles.group(1)), int(handles.group(2))
    assert "caller cwd and session unchanged: True" in out
    assert "finite worker exited with status 0" in out
    assert "endless worker running: True" in out
    assert "endless worker stopped: True" in out
    assert "endless worker running: False" in out
    assert out.count("atexit handler ran") == 1, "the caller's atexit handler ran once, in the caller"
    assert "atexit" not in log, "the workers did not run the caller's atexit handlers"

    assert f"finite {finite} ready\n" in log
    assert "finite 3\n" in log
    assert "finite 4\n" not in log
    assert f"finite {finite} done after 3\n" in log
    assert re.search(rf"^endless {endless} done after \d+$", log, re.M), "finally: ran on stop()"
    assert not alive(finite)
    assert not alive(endless)
    assert sandbox.live_pids() == []


# -- recipe 5: stdio to files, logging configured before the detach ---------------


def test_recipe5_stdio_and_logging(sandbox: Sandbox) -> None:
    result = sandbox.run_file(recipe("05"), RECIPE_DIR=str(sandbox.path))
    assert result.returncode == 0, result
    assert (result.stdout, result.stderr) == ("", "")
    pidfile, out, err, log = (sandbox.path / f"05.{ext}" for ext in ("pid", "out", "err", "log"))
    pid = read_pid(pidfile)
    assert_detached(pid)

    assert re.search(r" INFO launcher \d+ configured logging$", text(log), re.M)
    assert f"{pid} INFO daemon {pid} started\n" in text(log), "the FileHandler works in the daemon"
    assert text(out) == f"daemon {pid}: stdout goes to {out}\n"
    assert text(err) == f"daemon {pid}: stderr goes to {err}\n"
    fds = open_fds(pid)
    assert str(log) in fds.values(), "the handler's fd was kept"
    assert (fds[1], fds[2]) == (str(out), str(err))
    wait_until(lambda: "INFO heartbeat 1\n" in text(log), what="a heartbeat logged by the daemon")

    stopped = daemondeco_cli(sandbox, "stop", str(pidfile))
    assert stopped.returncode == 0, stopped
    assert not alive(pid)
    assert f"INFO daemon {pid} stopping\n" in text(log)


# -- recipe 6: the Cookbook's start|stop script --------------------------------------


def test_recipe6_stale_pidfile_after_a_crash_does_not_block_start(sandbox: Sandbox) -> None:
    run = functools.partial(sandbox.run_file, recipe("06"), RECIPE_DIR=str(sandbox.path))
    pidfile, log = sandbox.path / "06.pid", sandbox.path / "06.log"

    assert run("start").returncode == 0
    crashed = read_pid(pidfile)
    wait_until(lambda: f"Daemon started with pid {crashed}\n" in text(log), what="the line written after ready")
    os.kill(crashed, signal.SIGKILL)
    assert wait_exit(crashed)

    status = run("status")
    assert status.returncode == 1, status
    assert "stale" in status.stdout
    started = run("start")
    assert started.returncode == 0, started
    pid = read_pid(pidfile)
    assert pid != crashed
    assert_detached(pid)

    stopped = run("stop")
    assert (stopped.returncode, stopped.stdout) == (0, f"main stopped (pid {pid})\n"), stopped
    assert not alive(pid)
    again = run("stop")
    assert (again.returncode, again.stdout) == (0, "main is not running\n"), again
    assert run("status").returncode == 3


def test_recipe6_pidfile_naming_another_live_process_is_stale(sandbox: Sandbox) -> None:
    run = functools.partial(sandbox.run_file, recipe("06"), RECIPE_DIR=str(sandbox.path))
    pidfile = sandbox.path / "06.pid"
    pidfile.write_text(f"{os.getpid()}\n")  # a live pid, but nobody holds the lock

    assert run("status").returncode == 1
    stop = run("stop")
    assert stop.returncode == 0, stop
    assert alive(os.getpid()), "stop never signals a pid whose pidfile is not locked"
    started = run("start")
    assert started.returncode == 0, started
    pid = read_pid(pidfile)
    assert pid != os.getpid()
    assert run("stop").returncode == 0
    assert not alive(pid)


@pytest.mark.parametrize("args", [pytest.param((), id="no-action"), pytest.param(("bogus",), id="unknown-action")])
def test_recipe6_usage_error(sandbox: Sandbox, args: tuple[str, ...]) -> None:
    result = sandbox.run_file(recipe("06"), *args, RECIPE_DIR=str(sandbox.path))
    assert result.returncode == 2, result
    assert "usage:" in result.stderr


# -- the docs show the examples as they are ------------------------------------------


@pytest.mark.parametrize("name", ["01", "02", "03", "04", "05", "06"])
def test_recipes_page_includes_the_example_verbatim(name: str) -> None:
    source = recipe(name).read_text()
    assert f"```python\n{source}```\n" in (DOCS / "recipes.md").read_text(), (
        f"docs/recipes.md does not show {recipe(name).name} as it is: copy the file into its section"
    )
