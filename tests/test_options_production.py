"""Bad values for the production options fail in the launcher, before any fork.

The options of issue 3 (``user``, ``group``, ``chroot``, ``prevent_core``,
``detach``, ``on_reload``, ``signals``) are checked like the core ones: each
case runs a real launcher script that records any fork attempt, catches the
exception and prints its type and message. The checks: the right exception,
a message naming the value at fault, no fork, nothing running afterwards, the
function never ran, and no pidfile or log left behind (every case also asks
for both).

Last, the thread warning: a ``@daemon`` launcher with a live thread gets one
``DaemonWarning`` pointing at its own line.
"""

from __future__ import annotations

import grp
import json
import os
import pwd

import pytest
from conftest import Result, Sandbox, forms_dispatch

LAUNCHER = """
import os, signal, sys
HERE = os.path.dirname(os.path.abspath(__file__))

def P(name):
    return os.path.join(HERE, name)

os.register_at_fork(before=lambda: print("FORK ATTEMPTED", file=sys.stderr, flush=True))

from daemondeco import daemon, daemonize, process_daemonize

def ran():
    open(P("ran"), "w").close()

def handler(signum, frame):
    ran()

""" + forms_dispatch('dict(pidfile=P("d.pid"), stdout=P("out.log"), stderr=P("err.log"), **OPTIONS)')

# Files and directories present before the launcher runs.
BEFORE = {"prog.py", "adir", "afile", "jail"}


def _missing_name(lookup: object, stem: str) -> str:
    """A user or group name this machine does not have."""
    for suffix in range(1000):
        name = f"{stem}{suffix}"
        try:
            lookup(name)  # type: ignore[operator]
        except KeyError:
            return name
    raise AssertionError(f"every {stem}N name exists")


def _free_uid() -> int:
    """A uid without a passwd entry."""
    for candidate in range(54321, 60000):
        try:
            pwd.getpwuid(candidate)
        except KeyError:
            return candidate
    raise AssertionError("no free uid between 54321 and 60000")


NO_USER = _missing_name(pwd.getpwnam, "daemondeco-no-user-")
NO_GROUP = _missing_name(grp.getgrnam, "daemondeco-no-group-")
FREE_UID = _free_uid()

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: without it a chroot is refused first")

# (options expression, exception class expected in the MRO, texts the message must contain).
# In texts, {dir} is the sandbox directory.
CASES = [
    # user / group
    pytest.param(f"dict(user={NO_USER!r})", "DaemonError", [repr(NO_USER), "does not exist"], id="user-unknown"),
    pytest.param(f"dict(group={NO_GROUP!r})", "DaemonError", [repr(NO_GROUP), "does not exist"], id="group-unknown"),
    pytest.param(
        f"dict(user={FREE_UID})",
        "DaemonError",
        [str(FREE_UID), "no passwd entry", "group="],
        id="uid-no-passwd-no-group",
    ),
    pytest.param('dict(user="")', "ValueError", ["user", "empty"], id="user-empty"),
    pytest.param("dict(user=True)", "TypeError", ["user", "True"], id="user-bool"),
    pytest.param("dict(user=-1)", "ValueError", ["user", "-1"], id="user-negative"),
    pytest.param("dict(user=1.0)", "TypeError", ["user", "1.0"], id="user-float"),
    pytest.param("dict(group=3.5)", "TypeError", ["group", "3.5"], id="group-float"),
    pytest.param('dict(group="")', "ValueError", ["group", "empty"], id="group-empty"),
    pytest.param("dict(group=-2)", "ValueError", ["group", "-2"], id="group-negative"),
    # chroot
    pytest.param('dict(chroot=P("missing"))', "OSError", ["{dir}/missing", "chroot"], id="chroot-missing"),
    pytest.param(
        'dict(chroot=P("afile"))', "OSError", ["{dir}/afile", "chroot", "Not a directory"], id="chroot-a-file"
    ),
    pytest.param('dict(chroot="")', "ValueError", ["chroot", "empty"], id="chroot-empty"),
    pytest.param("dict(chroot=7)", "TypeError", ["chroot", "7"], id="chroot-int"),
    pytest.param(
        'dict(chroot=P("jail"), workdir=HERE)',
        "OSError",
        ["workdir", "{dir}/jail{dir}"],
        id="workdir-missing-inside-chroot",
        marks=needs_root,
    ),
    # flags
    pytest.param('dict(prevent_core="yes")', "TypeError", ["prevent_core", "'yes'"], id="prevent_core-str"),
    pytest.param("dict(prevent_core=None)", "TypeError", ["prevent_core", "None"], id="prevent_core-None"),
    pytest.param("dict(prevent_core=1)", "TypeError", ["prevent_core", "1"], id="prevent_core-int"),
    pytest.param('dict(detach="no")', "TypeError", ["detach", "'no'"], id="detach-str"),
    pytest.param("dict(detach=0)", "TypeError", ["detach", "0"], id="detach-int"),
    # on_reload
    pytest.param("dict(on_reload=42)", "TypeError", ["on_reload", "42"], id="on_reload-int"),
    pytest.param('dict(on_reload="reload")', "TypeError", ["on_reload", "'reload'"], id="on_reload-str"),
    # signals
    pytest.param("dict(signals=[1, 2])", "TypeError", ["signals", "dict", "[1, 2]"], id="signals-list"),
    pytest.param("dict(signals={99999: handler})", "ValueError", ["signals", "99999"], id="signals-unknown-number"),
    pytest.param('dict(signals={"SIGUSR1": handler})', "ValueError", ["signals", "'SIGUSR1'"], id="signals-str-key"),
    pytest.param(
        "dict(signals={signal.SIGKILL: handler})", "ValueError", ["SIGKILL", "cannot be caught"], id="signals-SIGKILL"
    ),
    pytest.param(
        "dict(signals={signal.SIGSTOP: handler})", "ValueError", ["SIGSTOP", "cannot be caught"], id="signals-SIGSTOP"
    ),
    pytest.param(
        "dict(signals={signal.SIGTERM: handler})", "ValueError", ["SIGTERM", "SystemExit"], id="signals-SIGTERM"
    ),
    pytest.param(
        "dict(signals={signal.SIGUSR1: 42})", "TypeError", ["SIGUSR1", "callable", "42"], id="signals-handler-int"
    ),
]


def run_launcher(sandbox: Sandbox, options: str, form: str) -> Result:
    (sandbox.path / "adir").mkdir(exist_ok=True)
    (sandbox.path / "afile").touch()
    (sandbox.path / "jail").mkdir(exist_ok=True)
    return sandbox.run(LAUNCHER.replace("OPTIONS", options), form)


def assert_refused(sandbox: Sandbox, result: Result, exc_class: str, texts: list[str]) -> None:
    """The launcher caught *exc_class* naming *texts*; nothing forked, ran or was left behind."""
    assert result.returncode == 3, result
    assert "FORK ATTEMPTED" not in result.stderr, result
    raised = next(line for line in result.stderr.splitlines() if line.startswith("RAISED "))
    assert exc_class in raised.split()[1].split(","), result
    message = result.stderr.split("MESSAGE ", 1)[1]
    for text in texts:
        expected = text.format(dir=sandbox.path)
        assert expected in message, f"{expected!r} not in the message: {message!r}"
    assert sandbox.live_pids() == []
    assert not (sandbox.path / "ran").exists(), "the function must never run"
    left = set(os.listdir(sandbox.path)) - BEFORE
    assert not left, f"a refused start left files behind: {sorted(left)}"


@pytest.mark.parametrize(("options", "exc_class", "texts"), CASES)
def test_bad_production_option_fails_in_the_launcher(
    sandbox: Sandbox, options: str, exc_class: str, texts: list[str]
) -> None:
    result = run_launcher(sandbox, options, "daemon")
    assert_refused(sandbox, result, exc_class, texts)


OTHER_FORM_CASES = [
    pytest.param(f"dict(user={NO_USER!r})", "DaemonError", [repr(NO_USER)], id="user-unknown"),
    pytest.param(f"dict(group={NO_GROUP!r})", "DaemonError", [repr(NO_GROUP)], id="group-unknown"),
    pytest.param("dict(group=3.5)", "TypeError", ["group", "3.5"], id="group-float"),
    pytest.param('dict(chroot=P("missing"))', "OSError", ["{dir}/missing"], id="chroot-missing"),
    pytest.param('dict(prevent_core="yes")', "TypeError", ["prevent_core", "'yes'"], id="prevent_core-str"),
    pytest.param("dict(on_reload=42)", "TypeError", ["on_reload", "42"], id="on_reload-int"),
    pytest.param("dict(signals={signal.SIGKILL: handler})", "ValueError", ["SIGKILL"], id="signals-SIGKILL"),
]


@pytest.mark.parametrize("form", ["process_daemonize", "daemonize"])
@pytest.mark.parametrize(("options", "exc_class", "texts"), OTHER_FORM_CASES)
def test_other_forms_validate_production_options(
    sandbox: Sandbox, form: str, options: str, exc_class: str, texts: list[str]
) -> None:
    result = run_launcher(sandbox, options, form)
    assert_refused(sandbox, result, exc_class, texts)


def test_process_daemonize_refuses_detach_false(sandbox: Sandbox) -> None:
    result = run_launcher(sandbox, "dict(detach=False)", "process_daemonize")
    assert_refused(sandbox, result, "ValueError", ["process_daemonize()", "detach=False", "__wrapped__"])


def test_detach_false_is_accepted_by_daemon(sandbox: Sandbox) -> None:
    """The control case for the table: the launcher itself is sound (detach=False runs here)."""
    result = run_launcher(sandbox, "dict(detach=False)", "daemon")
    assert result.returncode == 0, result
    assert "FORK ATTEMPTED" not in result.stderr, "detach=False never forks"
    assert (sandbox.path / "ran").exists()
    assert sandbox.live_pids() == []


# -- the thread warning -----------------------------------------------------------

THREADED = """
import json, os, sys, threading, warnings
from daemondeco import DaemonWarning, StartupError, daemon

HERE = os.path.dirname(os.path.abspath(__file__))
stop = threading.Event()
helper = threading.Thread(target=stop.wait, name="poller")
helper.start()

@daemon(pidfile=os.path.join(HERE, "d.pid"), ready="notify")
def main():
    raise SystemExit(7)  # never ready: the launcher comes back with StartupError

with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    try:
        main()  # the warned line
    except StartupError as exc:
        failed = str(exc)
stop.set()
helper.join()
ours = [w for w in caught if issubclass(w.category, DaemonWarning)]
print(json.dumps({
    "count": len(ours),
    "total": len(caught),
    "message": str(ours[0].message) if ours else "",
    "filename": ours[0].filename if ours else "",
    "lineno": ours[0].lineno if ours else 0,
    "runtime": issubclass(DaemonWarning, RuntimeWarning),
    "failed": failed,
}))
"""


def test_daemon_with_live_thread_warns_once_at_the_callers_line(sandbox: Sandbox) -> None:
    result = sandbox.run(THREADED)
    assert result.returncode == 0, result
    data = json.loads(result.stdout.strip().splitlines()[-1])
    assert data["count"] == 1, data
    assert data["total"] == 1, "no other warning"
    assert "poller" in data["message"] and "will not exist in the daemon" in data["message"], data
    assert data["filename"] == str(sandbox.path / "prog.py"), "the warning points at the launcher script"
    warned_line = next(n for n, line in enumerate(THREADED.lstrip().splitlines(), 1) if "# the warned line" in line)
    assert data["lineno"] == warned_line
    assert data["runtime"] is True
    assert "status 7" in data["failed"], data
    assert sandbox.live_pids() == []
