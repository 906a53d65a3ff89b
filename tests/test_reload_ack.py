"""An acknowledged reload and a status you can parse (issue 8, points 2 and 3), with real daemons.

``reload`` sends SIGHUP and returns only once the daemon has finished the
reload: exit 0 with the new configuration in effect, exit 1 with the
daemon's traceback when ``on_reload`` raised (the daemon keeps serving the
old one), exit 1 when the daemon died during the reload, 7 when none runs.
``status --json`` prints one object whose numbers match ``/proc``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading

import pytest
from conftest import LOCK_HOLDER, Result, Sandbox, alive, open_fds, proc_status, read_pid, wait_exit, wait_until

import daemondeco

# A service whose configuration is a JSON file, parsed in on_reload: a config
# without "value" is refused, "slow" makes the reload take that many seconds.
# The main loop publishes the value in effect in the file "served".
APP = """
import json, os, sys, time
from pathlib import Path
from daemondeco import daemon, notify_ready, notify_status

HERE = Path(__file__).resolve().parent
CONFIG = {}

def load():
    new = json.loads((HERE / "config.json").read_text())
    if new.get("slow"):
        (HERE / "reloading").touch()
        time.sleep(new["slow"])
    if "value" not in new:
        raise ValueError("config.json lacks 'value'")
    CONFIG.clear()
    CONFIG.update(new)

@daemon(pidfile=HERE / "app.pid", stdout=HERE / "app.log", ready="notify", on_reload=load)
def main():
    load()
    notify_status("serving value " + str(CONFIG["value"]))
    notify_ready()
    while True:
        (HERE / "served.tmp").write_text(str(CONFIG["value"]))
        os.replace(HERE / "served.tmp", HERE / "served")
        time.sleep(0.005)

if __name__ == "__main__":
    sys.exit(main.cli())
"""


def start_app(sandbox: Sandbox, value: object = 1) -> int:
    write_config(sandbox, {"value": value})
    result = sandbox.run(APP, "start", name="app.py")
    assert result.returncode == 0, result
    pid = read_pid(sandbox.path / "app.pid")
    wait_until(lambda: served(sandbox) == str(value), 10, what="the first value served")
    return pid


def write_config(sandbox: Sandbox, config: dict[str, object]) -> None:
    (sandbox.path / "config.json").write_text(json.dumps(config))


def served(sandbox: Sandbox) -> str | None:
    try:
        return (sandbox.path / "served").read_text()
    except FileNotFoundError:
        return None


def app(sandbox: Sandbox, *args: str) -> Result:
    return sandbox.run_file(sandbox.path / "app.py", *args)


def module(sandbox: Sandbox, *args: str) -> Result:
    return sandbox.run_module(*args)


def test_valid_config_reload_exits_0_with_the_new_value_in_effect(sandbox: Sandbox) -> None:
    pid = start_app(sandbox)
    write_config(sandbox, {"value": 2})
    result = app(sandbox, "reload")
    assert result.returncode == 0, result
    assert f"reloaded (pid {pid})" in result.stdout, result
    # Acknowledged means done: the next round of the main loop serves the new value.
    wait_until(lambda: served(sandbox) == "2", 5, what="the new value served")
    assert alive(pid)


def test_invalid_config_exits_1_with_the_traceback_and_keeps_the_old_value(sandbox: Sandbox) -> None:
    pid = start_app(sandbox, value=5)
    write_config(sandbox, {"valu": 6})
    result = app(sandbox, "reload")
    assert result.returncode == 1, result
    assert "Traceback (most recent call last)" in result.stderr, result
    assert "ValueError: config.json lacks 'value'" in result.stderr, result
    assert "keeps running with its previous state" in result.stderr, result
    assert alive(pid)
    assert served(sandbox) == "5"
    # A later good reload still works.
    write_config(sandbox, {"value": 7})
    assert app(sandbox, "reload").returncode == 0
    wait_until(lambda: served(sandbox) == "7", 5, what="the value of the good reload")


def test_kill_9_during_a_slow_reload_exits_1_saying_so(sandbox: Sandbox) -> None:
    pid = start_app(sandbox)
    write_config(sandbox, {"value": 2, "slow": 30})
    reloader = sandbox.popen_file(sandbox.path / "app.py", "reload", stdout=-1, stderr=-1)
    wait_until((sandbox.path / "reloading").exists, 10, what="the slow reload under way")
    os.kill(pid, signal.SIGKILL)
    stdout, stderr = reloader.communicate(timeout=10)
    assert reloader.returncode == 1, (stdout, stderr)
    assert f"daemon (pid {pid}) exited during reload" in stderr, stderr


def test_two_concurrent_reloads_both_return(sandbox: Sandbox) -> None:
    pid = start_app(sandbox)
    write_config(sandbox, {"value": 2, "slow": 0.3})
    results: list[Result] = []
    threads = [threading.Thread(target=lambda: results.append(app(sandbox, "reload"))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert [r.returncode for r in results] == [0, 0], results
    assert alive(pid)


def test_reload_of_nothing_running_is_7(sandbox: Sandbox) -> None:
    sandbox.write("app.py", APP)
    result = app(sandbox, "reload")
    assert result.returncode == 7, result
    assert "is not running" in result.stderr, result
    assert module(sandbox, "reload", str(sandbox.path / "app.pid")).returncode == 7


def test_python_m_daemondeco_reload(sandbox: Sandbox) -> None:
    pid = start_app(sandbox)
    write_config(sandbox, {"value": 3})
    result = module(sandbox, "reload", str(sandbox.path / "app.pid"))
    assert result.returncode == 0, result
    wait_until(lambda: served(sandbox) == "3", 5, what="the new value served")
    write_config(sandbox, {})
    failed = module(sandbox, "reload", str(sandbox.path / "app.pid"))
    assert failed.returncode == 1, failed
    assert "ValueError" in failed.stderr, failed
    assert alive(pid)


RELOAD_API = """
import json, sys
from pathlib import Path
import daemondeco
sys.path.insert(0, str(Path(__file__).resolve().parent))
from app import main

try:
    main.reload(timeout=30)
    print(json.dumps({"ok": True}))
except daemondeco.ReloadError as exc:
    print(json.dumps({"ok": False, "running": exc.running, "pid": exc.pid, "traceback": exc.daemon_traceback}))
"""


def test_the_reload_method_raises_reload_error_with_the_daemons_traceback(sandbox: Sandbox) -> None:
    pid = start_app(sandbox)
    write_config(sandbox, {"nope": 1})
    outcome = json.loads(sandbox.run(RELOAD_API, name="api.py").stdout)
    assert outcome["ok"] is False and outcome["running"] is True and outcome["pid"] == pid, outcome
    assert "ValueError: config.json lacks 'value'" in outcome["traceback"], outcome
    write_config(sandbox, {"value": 9})
    assert json.loads(sandbox.run(RELOAD_API, name="api.py").stdout) == {"ok": True}
    assert app(sandbox, "stop").returncode == 0
    stopped = json.loads(sandbox.run(RELOAD_API, name="api.py").stdout)
    assert stopped["ok"] is False and stopped["running"] is False, stopped


BAD_TIMEOUT = """
import sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
from app import main

try:
    main.reload(timeout=BAD)
except (TypeError, ValueError) as exc:
    print("REFUSED", exc)
"""


@pytest.mark.parametrize("bad", ["0", "-1", "'5'", "float('nan')"])
def test_a_bad_reload_timeout_is_refused_before_any_signal(sandbox: Sandbox, bad: str) -> None:
    pid = start_app(sandbox)
    result = sandbox.run(BAD_TIMEOUT.replace("BAD", bad), name="api.py")
    assert "REFUSED" in result.stdout and "timeout" in result.stdout, result
    assert alive(pid)
    assert json.loads(status_json(sandbox).stdout)["last_reload"] is None, "no reload happened"


@pytest.fixture
def bare_holder(sandbox: Sandbox) -> subprocess.Popen[str]:
    holder = sandbox.popen(
        LOCK_HOLDER, str(sandbox.path / "d.pid"), name="holder.py", stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
    return holder


@pytest.mark.parametrize(
    ("action", "message"),
    [
        pytest.param("reload", "keeps no state file", id="reload"),
        pytest.param(
            "upgrade", "keeps no state file next to its pidfile: an upgrade cannot be acknowledged", id="upgrade"
        ),
    ],
)
def test_a_pidfile_held_by_a_program_without_state_cannot_be_reloaded_or_upgraded(
    sandbox: Sandbox, bare_holder: subprocess.Popen[str], action: str, message: str
) -> None:
    result = sandbox.run_module(action, str(sandbox.path / "d.pid"))
    assert result.returncode == 1, result
    assert message in result.stderr and str(bare_holder.pid) in result.stderr, result
    assert alive(bare_holder.pid), "nothing was signalled"
    code, report = status_report(sandbox)
    assert code == 0 and report["pid"] == bare_holder.pid and report["state"] == "starting"


SLOW_RELOAD = """
import os, sys, threading, time
from pathlib import Path
from daemondeco import daemon, notify_ready

HERE = Path(__file__).resolve().parent

def on_reload():
    (HERE / "reloading").write_text(str(os.getpid()))
    time.sleep(30)

@daemon(pidfile=HERE / "d.pid", stdout=HERE / "d.log", ready="notify", on_reload=on_reload)
def main():
    notify_ready()
    while True:
        time.sleep(0.05)

sys.exit(main.cli())
"""


def test_a_reload_that_does_not_finish_in_time_fails_naming_the_timeout(sandbox: Sandbox) -> None:
    pid = sandbox.start_daemon(SLOW_RELOAD, "start")
    result = sandbox.run_module("reload", str(sandbox.path / "d.pid"), "--timeout", "1.5")
    assert result.returncode == 1, result
    assert f"daemon (pid {pid}) did not finish its reload within 1.5 s" in result.stderr, result
    assert (sandbox.path / "reloading").read_text() == str(pid), "the reload had started"
    assert alive(pid)


# -- status --json ----------------------------------------------------------------


def status_json(sandbox: Sandbox) -> Result:
    return module(sandbox, "status", "--json", str(sandbox.path / "app.pid"))


def test_status_json_matches_proc(sandbox: Sandbox) -> None:
    pid = start_app(sandbox)
    result = status_json(sandbox)
    assert result.returncode == 0, result
    report = json.loads(result.stdout)
    assert set(report) == {"pid", "state", "uptime_s", "cpu_s", "rss_bytes", "threads", "fds", "status", "last_reload"}
    assert report["pid"] == pid
    assert report["state"] == "ready"
    assert report["status"] == "serving value 1"
    assert report["last_reload"] is None
    status = proc_status(pid)
    assert report["threads"] == int(status["Threads"])
    rss = int(status["VmRSS"].split()[0]) * 1024
    assert abs(report["rss_bytes"] - rss) <= 0.2 * rss, (report["rss_bytes"], rss)
    assert abs(report["fds"] - len(open_fds(pid))) <= 1  # the daemon may open a file meanwhile
    assert 0 <= report["uptime_s"] < 60
    assert 0 <= report["cpu_s"] < 60
    # The same through the decorated CLI, and the human line shows uptime and memory.
    assert json.loads(app(sandbox, "status", "--json").stdout)["pid"] == pid
    human = app(sandbox, "status")
    assert human.returncode == 0, human
    assert f"is running (pid {pid}), ready, up " in human.stdout and " MiB" in human.stdout, human


def test_status_json_records_the_last_reload(sandbox: Sandbox) -> None:
    start_app(sandbox)
    write_config(sandbox, {})
    assert app(sandbox, "reload").returncode == 1
    last = json.loads(status_json(sandbox).stdout)["last_reload"]
    assert last["ok"] is False and "ValueError" in last["error"] and last["generation"] == 1, last
    write_config(sandbox, {"value": 2})
    assert app(sandbox, "reload").returncode == 0
    assert json.loads(status_json(sandbox).stdout)["last_reload"] == {"generation": 2, "ok": True, "error": None}


def test_status_json_of_stopped_stale_and_unknown(sandbox: Sandbox) -> None:
    sandbox.write("app.py", APP)
    stopped = status_json(sandbox)
    assert stopped.returncode == 3, stopped
    assert json.loads(stopped.stdout)["state"] == "stopped"
    (sandbox.path / "app.pid").write_text("999999\n")
    stale = status_json(sandbox)
    assert stale.returncode == 1, stale
    report = json.loads(stale.stdout)
    assert report["state"] == "stale" and report["pid"] is None, report
    (sandbox.path / "app.pid").unlink()
    os.mkfifo(sandbox.path / "app.pid")
    unknown = status_json(sandbox)
    assert unknown.returncode == 4, unknown
    assert "not a regular file" in unknown.stderr, unknown


def test_the_state_file_becomes_the_record_of_the_daemons_end(sandbox: Sandbox) -> None:
    pid = start_app(sandbox)
    state = sandbox.path / "app.pid.state"
    assert json.loads(state.read_text())["state"] == "ready"
    assert app(sandbox, "stop").returncode == 0
    assert wait_exit(pid)
    assert not (sandbox.path / "app.pid").exists()
    # What stays is how this run ended, for status (issue 18, item 2); the next start replaces it.
    ended = json.loads(state.read_text())
    assert ended["state"] == "exited" and ended["pid"] == pid, ended
    assert ended["last_exit"]["how"] == "stopped" and ended["last_exit"]["status"] == 0, ended
    # A daemon that was SIGKILLed leaves both; the next stop (nothing to stop) or start cleans up.
    pid = start_app(sandbox)
    os.kill(pid, signal.SIGKILL)
    assert wait_exit(pid)
    assert state.exists()
    assert json.loads(status_json(sandbox).stdout)["state"] == "stale"
    again = start_app(sandbox, value=4)
    assert json.loads(status_json(sandbox).stdout)["pid"] == again


def test_the_python_api_exports_reload_error() -> None:
    assert issubclass(daemondeco.ReloadError, daemondeco.DaemonError)
    assert "ReloadError" in daemondeco.__all__


def status_report(sandbox: Sandbox) -> tuple[int, dict[str, object]]:
    result = sandbox.run_module("status", str(sandbox.path / "d.pid"), "--json")
    return result.returncode, json.loads(result.stdout)


@pytest.mark.parametrize(
    "plant",
    [
        pytest.param("dir", id="a-directory"),
        pytest.param("", id="empty"),
        pytest.param('{"state": "ready", "pid": ', id="torn-json"),
        pytest.param('["ready"]', id="not-an-object"),
    ],
)
def test_status_of_a_holder_whose_state_file_is_unusable_says_starting(
    sandbox: Sandbox, bare_holder: subprocess.Popen[str], plant: str
) -> None:
    state = sandbox.path / "d.pid.state"
    if plant == "dir":
        state.mkdir()
    else:
        state.write_text(plant)
    code, report = status_report(sandbox)
    assert code == 0, report
    assert report["pid"] == bare_holder.pid and report["state"] == "starting" and report["status"] is None, report
    text = sandbox.run_module("status", str(sandbox.path / "d.pid"))
    assert text.returncode == 0 and str(bare_holder.pid) in text.stdout, text


def test_a_fifo_planted_at_the_state_path_is_left_alone_and_the_daemon_still_starts(sandbox: Sandbox) -> None:
    import os
    import stat

    state = sandbox.path / "d.pid.state"
    os.mkfifo(state)
    pid = sandbox.start_daemon(SLOW_RELOAD, "start")
    assert stat.S_ISFIFO(os.lstat(state).st_mode), "never truncated, replaced or written"
    code, report = status_report(sandbox)
    assert code == 0 and report["pid"] == pid and report["state"] == "starting", report
    refused = sandbox.run_module("reload", str(sandbox.path / "d.pid"))
    assert refused.returncode == 1 and "keeps no state file" in refused.stderr, refused
    assert sandbox.run_module("stop", str(sandbox.path / "d.pid")).returncode == 0
    assert not alive(pid)
