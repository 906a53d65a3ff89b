"""Worker groups and keyed workers (issue 9, point 4), with real processes.

``process_daemonize(instances=N)`` with a ``{i}`` pidfile template starts N
workers, each holding its own pidfile; a template with other fields is
filled from the call's arguments, so "one worker per key" is a lock.
"""

from __future__ import annotations

import json
import os
import signal

import pytest
from conftest import Sandbox, alive, read_pid, wait_until

import daemondeco

GROUP = """
import json, os, sys, time
from pathlib import Path
import daemondeco
from daemondeco import process_daemonize

HERE = Path(__file__).resolve().parent

def report(**values):
    print(json.dumps(values), flush=True)

@process_daemonize(pidfile=str(HERE / "sync-{i}.pid"), instances=8, stdout=HERE / "group.log", {options})
def work():
{body}
"""

SERVE = """
try:
    daemondeco.notify_ready()  # inside the try: a stop after readiness always runs the finally
    while True:
        time.sleep(0.05)
finally:
    (HERE / f"finally-{os.getpid()}").touch()
"""


def group_script(sandbox: Sandbox, main: str, options: str = 'ready="notify"', body: str = SERVE) -> str:
    indented = "\n".join("    " + line for line in body.strip().splitlines())
    return GROUP.replace("{options}", options).replace("{body}", indented) + main


def pidfiles(sandbox: Sandbox) -> list[int | None]:
    return [daemondeco.Pidfile(sandbox.path / f"sync-{i}.pid").locked_by() for i in range(8)]


def test_eight_members_start_together_and_stop_together(sandbox: Sandbox) -> None:
    code = group_script(
        sandbox,
        """
group = work()
report(pids=group.pids, status=group.status(), n=len(group), members=[m.pid for m in group])
sys.stdin.readline()
report(stopped=group.stop(), status=group.status(), running=group.is_running())
""",
    )
    import subprocess

    proc = sandbox.popen(code, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdin is not None
    started = json.loads(proc.stdout.readline())
    assert started["n"] == 8 and len(set(started["pids"])) == 8
    assert started["status"] == started["pids"] == started["members"]
    assert pidfiles(sandbox) == started["pids"]  # each member holds its own pidfile
    proc.stdin.write("\n")
    proc.stdin.flush()
    stopped = json.loads(proc.stdout.readline())
    assert proc.wait(30) == 0
    assert stopped == {"stopped": True, "status": [None] * 8, "running": False}
    assert pidfiles(sandbox) == [None] * 8
    assert len(list(sandbox.path.glob("finally-*"))) == 8
    assert sandbox.live_pids() == []


def test_a_killed_member_is_the_only_one_restarted(sandbox: Sandbox) -> None:
    code = group_script(
        sandbox,
        """
group = work()
before = [m.worker_pid for m in group]
os.kill(before[3], 9)
deadline = time.monotonic() + 10
while group[3].worker_pid in (None, before[3]) and time.monotonic() < deadline:
    time.sleep(0.01)
report(before=before, after=[m.worker_pid for m in group], restarts=[m.restarts for m in group],
       supervisors=group.pids, status=group.status())
group.stop()
""",
        options='ready="start", restart="on-failure", restart_delay=0.05',
    )
    result = sandbox.run(code)
    assert result.returncode == 0, result
    [seen] = result.reports()
    before, after = seen["before"], seen["after"]
    assert isinstance(before, list) and isinstance(after, list)
    assert [a == b for a, b in zip(before, after, strict=True)] == [True] * 3 + [False] + [True] * 4
    assert seen["restarts"] == [0, 0, 0, 1, 0, 0, 0, 0]
    assert seen["status"] == seen["supervisors"]  # the supervisors never changed


def test_a_member_failing_at_start_fails_the_call_and_stops_the_others(sandbox: Sandbox) -> None:
    body = (
        """
slot = 0
while True:
    try:
        os.close(os.open(HERE / f"slot-{slot}", os.O_CREAT | os.O_EXCL))
        break
    except FileExistsError:
        slot += 1
if slot == 5:
    raise ValueError("no credentials for this slot")
"""
        + SERVE
    )
    code = group_script(
        sandbox,
        """
try:
    work()
except daemondeco.GroupStartError as exc:
    report(failed=sorted(exc.failures), kinds=[type(e).__name__ for e in exc.failures.values()],
           message=str(exc), is_startup=isinstance(exc, daemondeco.StartupError))
""",
        options='ready="notify", restart="always", restart_delay=0.05',
        body=body,
    )
    result = sandbox.run(code)
    assert result.returncode == 0, result
    [seen] = result.reports()
    assert seen["kinds"] == ["StartupError"] and len(seen["failed"]) == 1 and seen["is_startup"]
    assert "1 of 8 workers failed to start" in seen["message"] and "no credentials" in seen["message"]
    assert pidfiles(sandbox) == [None] * 8
    assert len(list(sandbox.path.glob("finally-*"))) == 7  # every member that had started was stopped
    assert sandbox.live_pids() == []


KEYED = """
import json, os, sys, time
from pathlib import Path
import daemondeco
from daemondeco import process_daemonize

HERE = Path(__file__).resolve().parent

def report(**values):
    print(json.dumps(values), flush=True)

@process_daemonize(pidfile=str(HERE / "sync-{account}.pid"))
def sync(account, full=False):
    time.sleep(60)

alice = sync("alice")
bob = sync(account="bob", full=True)
try:
    sync("alice", full=True)
except daemondeco.AlreadyRunningError as exc:
    report(message=str(exc), key=exc.key, pid=exc.pid, alice=alice.pid, bob=bob.pid,
           pidfiles=sorted(p.name for p in HERE.glob("sync-*.pid")))
alice.stop()
bob.stop()
"""


def test_keyed_workers_one_per_key(sandbox: Sandbox) -> None:
    result = sandbox.run(KEYED)
    assert result.returncode == 0, result
    [seen] = result.reports()
    assert seen["key"] == "account='alice'" and seen["pid"] == seen["alice"] != seen["bob"]
    assert str(seen["message"]).startswith("already running for account='alice': pidfile")
    assert seen["pidfiles"] == ["sync-alice.pid", "sync-bob.pid"]


@pytest.mark.parametrize(
    ("options", "text"),
    [
        pytest.param({"pidfile": "/tmp/x-{acount}.pid"}, "{acount} is not a parameter", id="typo"),
        pytest.param({"pidfile": "/tmp/x-{i}.pid"}, "{i} needs instances=N", id="index-without-instances"),
        pytest.param({"pidfile": "/tmp/x.pid", "instances": 3}, "needs a pidfile template with {i}", id="no-index"),
        pytest.param({"pidfile": "/tmp/x-{}.pid"}, "must name a parameter", id="positional"),
    ],
)
def test_bad_templates_fail_at_decoration(options: dict[str, object], text: str) -> None:
    def sync(account: str) -> None:
        pass

    with pytest.raises(ValueError) as info:
        daemondeco.process_daemonize(**options)(sync)  # type: ignore[call-overload]
    assert text in str(info.value)


KEYED_HEADER = """
import sys
from pathlib import Path
import daemondeco
from daemondeco import process_daemonize

HERE = Path(__file__).resolve().parent
"""


def test_a_pidfile_template_that_is_no_format_is_refused_at_decoration() -> None:
    with pytest.raises(ValueError, match=r"pidfile template '/tmp/sync-\{i\.pid'") as raised:
        daemondeco.process_daemonize(pidfile="/tmp/sync-{i.pid", instances=2)(print)
    assert "process_daemonize()" in str(raised.value)


@pytest.mark.parametrize(
    ("definition", "call", "error"),
    [
        pytest.param("def work(account):", "work('a', 'b', 'c')", "TypeError: work(): too many", id="wrong-arguments"),
        pytest.param("def work(**options):", "work()", "the call gives no value for {account}", id="missing-key"),
    ],
)
def test_a_keyed_call_that_gives_no_key_is_refused_before_any_fork(
    sandbox: Sandbox, definition: str, call: str, error: str
) -> None:
    result = sandbox.run(
        KEYED_HEADER
        + f"""
@process_daemonize(pidfile=str(HERE / "job-{{account}}.pid"))
{definition}
    pass
{call}
print("started")
""",
    )
    assert result.returncode == 1, result
    assert error in result.stderr, result
    assert "started" not in result.stdout
    assert not list(sandbox.path.glob("job-*.pid")), "nothing was started"
    assert sandbox.live_pids() == []


def test_a_keyed_worker_with_plain_parameters_runs_once_per_key(sandbox: Sandbox) -> None:
    result = sandbox.run(
        KEYED_HEADER
        + """
import time
@process_daemonize(pidfile=str(HERE / "job-{account}.pid"), ready="notify")
def work(account, pause=60):
    daemondeco.notify_ready()
    time.sleep(pause)
first = work("alpha")
try:
    work("alpha")
except daemondeco.AlreadyRunningError as exc:
    print("refused:", exc)
print(first.pid)
first.stop()
""",
    )
    assert result.returncode == 0, result
    assert "refused:" in result.stdout and "account='alpha'" in result.stdout, result
    pid = int(result.stdout.split()[-1])
    assert not alive(pid)
    assert not (sandbox.path / "job-alpha.pid").exists() or read_pid(sandbox.path / "job-alpha.pid") != pid


FORMATTED = """
import json, os, sys, time
from pathlib import Path
import daemondeco
from daemondeco import process_daemonize

HERE = Path(__file__).resolve().parent
os.register_at_fork(before=lambda: print(json.dumps({"fork": True}), flush=True))

def report(**values):
    print(json.dumps(values), flush=True)

@process_daemonize(pidfile=str(HERE / "member-{i:02d}-{i:x}.pid"), instances=11, ready="start")
def member():
    time.sleep(60)

@process_daemonize(pidfile=str(HERE / "account-{account:04d}.pid"), ready="start")
def sync(account):
    time.sleep(60)

try:
    sync("alice")
except ValueError as exc:
    report(refused=str(exc))
group = member()
one = sync(7)
report(pidfiles=sorted(p.name for p in HERE.glob("*.pid")),
       locked=[daemondeco.Pidfile(HERE / f"member-{i:02d}-{i:x}.pid").locked_by() for i in range(11)],
       pids=group.pids, account=daemondeco.Pidfile(HERE / "account-0007.pid").locked_by(), one=one.pid)
report(stopped=group.stop() and one.stop())
"""


def test_format_specs_in_pidfile_templates_format_the_index_and_the_key(sandbox: Sandbox) -> None:
    """{i:02d}, {i:x} and {account:04d} format the int; a key the spec cannot format is refused before any fork."""
    result = sandbox.run(FORMATTED)
    assert result.returncode == 0, result
    lines = result.reports()
    refused = lines[0]["refused"]
    assert isinstance(refused, str), lines
    assert "pidfile template" in refused and "{account:04d} cannot format account='alice'" in refused, refused
    assert "Unknown format code" in refused, refused
    assert lines[1] == {"fork": True}, "the refused key must not fork; the group's first member is the first fork"
    seen = next(line for line in lines if "pidfiles" in line)
    members = [f"member-{i:02d}-{i:x}.pid" for i in range(11)]
    assert seen["pidfiles"] == sorted([*members, "account-0007.pid"])
    assert seen["locked"] == seen["pids"] and seen["account"] == seen["one"]
    assert lines[-1] == {"stopped": True}
    assert sandbox.live_pids() == []


@pytest.mark.parametrize(
    ("template", "instances", "texts"),
    [
        pytest.param("/tmp/x-{i:{j}}.pid", 2, ["{i:{j}}", "cannot contain another field"], id="nested-index"),
        pytest.param("/tmp/x-{account:{width}}.pid", None, ["{account:{width}}", "cannot contain"], id="nested-key"),
        pytest.param("/tmp/x-{i:q}.pid", 2, ["{i:q} cannot format i=0", "Unknown format code 'q'"], id="bad-code"),
        pytest.param("/tmp/x-{i:.1}.pid", 2, ["{i:.1} cannot format i=0", "Precision not allowed"], id="precision"),
        pytest.param("/tmp/x-{i!s:.1}.pid", 12, ["members 1 and 10 would share one pidfile"], id="collision"),
        pytest.param("/tmp/x-{i:/>3}.pid", 2, ["i=0 cannot be part of a file name", "'//0'"], id="slash-fill"),
    ],
)
def test_format_specs_that_cannot_work_are_refused_at_decoration(
    sandbox: Sandbox, template: str, instances: int | None, texts: list[str]
) -> None:
    """The error names the pidfile template and the field, in the decorating process, before anything forks."""
    result = sandbox.run(
        f"""
import os, sys
os.register_at_fork(before=lambda: print("FORK ATTEMPTED", flush=True))
from daemondeco import process_daemonize

def sync(account):
    pass

try:
    process_daemonize(pidfile={template!r}, instances={instances!r})(sync)
except ValueError as exc:
    print("REFUSED", exc)
"""
    )
    assert result.returncode == 0, result
    assert "FORK ATTEMPTED" not in result.stdout
    assert result.stdout.startswith("REFUSED process_daemonize(): pidfile template " + repr(template)), result
    for text in texts:
        assert text in result.stdout, result
    assert sandbox.live_pids() == []


def test_a_key_that_cannot_be_a_file_name_is_refused_before_any_fork(sandbox: Sandbox) -> None:
    result = sandbox.run(
        """
from daemondeco import process_daemonize

@process_daemonize(pidfile="/tmp/never-{account}.pid")
def sync(account):
    pass

try:
    sync("../etc")
except ValueError as exc:
    print(exc)
"""
    )
    assert result.returncode == 0 and "account='../etc' cannot be part of a file name" in result.stdout, result
    assert sandbox.live_pids() == []


def test_a_member_restarts_alone_after_its_worker_is_signalled(sandbox: Sandbox) -> None:
    """A worker killed from outside by SIGTERM (a clean death) is restarted with restart='always' only."""
    code = group_script(
        sandbox,
        """
group = work()
print(json.dumps([m.worker_pid for m in group]), flush=True)
time.sleep(60)
""",
        options='ready="start", restart="always", restart_delay=0.05',
    )
    import subprocess

    proc = sandbox.popen(code, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    workers = json.loads(proc.stdout.readline())
    os.kill(workers[0], signal.SIGTERM)
    supervisor = daemondeco.Pidfile(sandbox.path / "sync-0.pid").locked_by()
    assert supervisor is not None

    def restarted() -> bool:
        state = json.loads((sandbox.path / "sync-0.pid.state").read_text() or "{}")
        return state.get("restarts") == 1 and state.get("worker_pid") not in (None, workers[0])

    wait_until(restarted, what="member 0's restart")
    assert alive(supervisor) and all(alive(pid) for pid in workers[1:])


def test_a_group_handle_waits_indexes_and_shows_itself(sandbox: Sandbox) -> None:
    code = group_script(
        sandbox,
        """
group = work()
report(repr=repr(group), first=group[0].pid, pids=group.pids, waited=group.wait(0.1))
os.kill(group[0].pid, 15)
for member in group:
    if member is not group[0]:
        member.stop()
report(waited=group.wait(10), running=group.is_running(), repr=repr(group))
""",
        body=SERVE,
    )
    result = sandbox.run(code)
    assert result.returncode == 0, result
    first, second = result.reports()
    assert first["repr"] == "<WorkerGroup 8 members, 8 running>" and first["waited"] is None
    assert first["first"] == first["pids"][0]  # type: ignore[index]
    assert second == {"waited": [0] * 8, "running": False, "repr": "<WorkerGroup 8 members, 0 running>"}


def test_a_group_reports_each_members_exit_code_and_result(sandbox: Sandbox) -> None:
    """Issue 18: ``exitcodes``, ``wait()`` (the codes), ``results()`` and each member's ``exception()``."""
    code = (
        GROUP.replace("instances=8", "instances=3")
        .replace("{options}", 'ready="start"')
        .replace(
            "{body}",
            """
    me = next(p.name for p in HERE.glob("sync-*.pid") if p.read_text().strip() == str(os.getpid()))
    while not (HERE / "go").exists():
        time.sleep(0.01)
    if me == "sync-1.pid":
        raise KeyError(me)
    if me == "sync-2.pid":
        os._exit(4)
    return me
""",
        )
        + """
from daemondeco import WorkerError
group = work()
running = dict(codes=group.exitcodes, waited=group.wait(0.1))
(HERE / "go").touch()
first_error = None
try:
    group.results(10)
except WorkerError as exc:
    first_error = exc.summary
report(**running, after=group.wait(10), codes_after=group.exitcodes, first_error=first_error,
       pids=group.pids, value=group[0].result(), errors=[type(m.exception()).__name__ for m in group],
       exc_types=[getattr(m.exception(), "exc_type", None) for m in group])
"""
    )
    result = sandbox.run(code)
    assert result.returncode == 0, result
    (data,) = result.reports()
    pids = data["pids"]
    assert isinstance(pids, list)
    assert data["codes"] == [None] * 3 and data["waited"] is None, "running: no exit code yet, wait() times out"
    assert data["after"] == data["codes_after"] == [0, 1, 4]
    assert data["first_error"] == f"worker (pid {pids[1]}) raised KeyError: 'sync-1.pid'"
    assert data["value"] == "sync-0.pid"
    assert data["errors"] == ["NoneType", "WorkerError", "WorkerError"]
    assert data["exc_types"] == [None, "KeyError", None]
