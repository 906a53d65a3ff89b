"""Bad options fail before any fork, naming what is wrong; grouped by option.

Two kinds of refusal:

- A value wrong on its own (a type, a range, an unknown name) is refused when
  ``@daemon(...)`` / ``@process_daemonize(...)`` is applied or ``daemonize(...)``
  is called. Those cases run in this process, under all three forms, inside
  ``forbid_fork()``: the right exception, a message naming the caller and the
  value, no fork, the function never ran, no file created.
- A value the machine refuses (a path, an fd, a user, a chroot, a running
  daemon) is only known in the launcher, right before the fork. Those cases run
  a real launcher script that records any fork attempt (an
  ``os.register_at_fork`` hook), so that they prove "no fork, nothing running,
  nothing left behind" from outside (``run_options_launcher``/``assert_refused``).

Values beyond what the machine can take (a timeout beyond any float, a uid
``setuid`` would refuse, an fd number no fd can have, a path that cannot be
encoded) are refused when given too, naming the option.

Last, the thread warning: a ``@daemon`` launcher with a live thread gets one
``DaemonWarning`` pointing at its own line.
"""

from __future__ import annotations

import grp
import io
import json
import math
import os
import pwd
import re
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import (
    Result,
    Sandbox,
    alive,
    assert_refused,
    forbid_fork,
    forms_dispatch,
    proc_stat,
    proc_status,
    read_pid,
    run_options_launcher,
    wait_for_text,
    wait_until,
)

import daemondeco


def _missing_name(lookup: Callable[[str], object], stem: str) -> str:
    """A user or group name this machine does not have."""
    for suffix in range(1000):
        name = f"{stem}{suffix}"
        try:
            lookup(name)
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

FORMS = ["daemon", "process_daemonize", "daemonize"]


def handler(signum: int, frame: object) -> None:
    """A valid signal handler, for the ``signals`` cases."""


# -- values wrong on their own: refused in this process -----------------------------


class _OpenLog:
    """An open file as python-daemon users pass it (``stderr=open(path, "a")``), without an fd to leak."""

    name = "/var/log/app.log"

    def write(self, text: str) -> int:
        raise AssertionError("daemondeco must not write to it")


# (options, exception class, texts the message must contain).
INVALID = [
    # unknown options
    pytest.param({"pidfle": "d.pid"}, TypeError, ["'pidfle'", "did you mean 'pidfile'"], id="typo-pidfile"),
    pytest.param({"stop_timout": 1}, TypeError, ["'stop_timout'", "did you mean 'stop_timeout'"], id="typo-stop"),
    pytest.param({"colour": "red"}, TypeError, ["'colour'", "valid options"], id="unknown-option"),
    # pidfile
    pytest.param({"pidfile": ""}, ValueError, ["pidfile", "empty"], id="pidfile-empty"),
    pytest.param({"pidfile": 42}, TypeError, ["pidfile", "42"], id="pidfile-int"),
    pytest.param({"pidfile": "a\0b"}, ValueError, ["pidfile", "NUL"], id="pidfile-nul"),
    # stdin, stdout, stderr
    pytest.param({"stdout": 3.0}, TypeError, ["stdout", "3.0"], id="stdout-float"),
    pytest.param({"stdin": None}, TypeError, ["stdin", "None"], id="stdin-None"),
    pytest.param(
        {"stdout": io.TextIOWrapper(io.BytesIO(), encoding="utf-8")},  # python-daemon's style: an open file...
        TypeError,
        ["stdout must be a path", "TextIOWrapper"],
        id="stdout-file-without-a-name",
    ),
    pytest.param(
        {"stderr": _OpenLog()},  # ... whose name is its path
        TypeError,
        ["stderr must be a path", "_OpenLog", "pass its path, stderr='/var/log/app.log'"],
        id="stderr-open-file",
    ),
    # workdir
    pytest.param({"workdir": None}, TypeError, ["workdir", "None"], id="workdir-None"),
    # umask
    pytest.param({"umask": 0o1000}, ValueError, ["umask", "0o1000"], id="umask-too-big"),
    pytest.param({"umask": -1}, ValueError, ["umask"], id="umask-negative"),
    pytest.param({"umask": "022"}, TypeError, ["umask", "'022'"], id="umask-str"),
    pytest.param({"umask": True}, TypeError, ["umask", "True"], id="umask-bool"),
    pytest.param({"umask": 18.0}, TypeError, ["umask", "18.0"], id="umask-float"),
    # keep_fds
    pytest.param({"keep_fds": "3"}, TypeError, ["keep_fds", "'3'"], id="keep_fds-str"),
    pytest.param({"keep_fds": 3}, TypeError, ["keep_fds", "int"], id="keep_fds-int"),
    pytest.param({"keep_fds": [-1]}, ValueError, ["keep_fds", "-1"], id="keep_fds-negative"),
    pytest.param({"keep_fds": [True]}, TypeError, ["keep_fds", "True"], id="keep_fds-bool"),
    pytest.param({"keep_fds": [3.5]}, TypeError, ["keep_fds", "3.5"], id="keep_fds-float"),
    # ready
    pytest.param({"ready": "later"}, ValueError, ["ready", "'later'", "'notify'"], id="ready-later"),
    pytest.param({"ready": None}, ValueError, ["ready", "None"], id="ready-None"),
    # ready_timeout
    pytest.param({"ready_timeout": -1}, ValueError, ["ready_timeout", "-1"], id="ready_timeout-negative"),
    pytest.param({"ready_timeout": 0}, ValueError, ["ready_timeout", "0"], id="ready_timeout-zero"),
    pytest.param({"ready_timeout": math.nan}, ValueError, ["ready_timeout", "nan"], id="ready_timeout-nan"),
    pytest.param({"ready_timeout": math.inf}, ValueError, ["ready_timeout", "inf"], id="ready_timeout-inf"),
    pytest.param({"ready_timeout": True}, TypeError, ["ready_timeout", "True"], id="ready_timeout-bool"),
    pytest.param({"ready_timeout": "5"}, TypeError, ["ready_timeout", "'5'"], id="ready_timeout-str"),
    # stop_timeout
    pytest.param({"stop_timeout": -0.5}, ValueError, ["stop_timeout", "-0.5"], id="stop_timeout-negative"),
    pytest.param({"stop_timeout": math.nan}, ValueError, ["stop_timeout", "nan"], id="stop_timeout-nan"),
    pytest.param({"stop_timeout": -math.inf}, ValueError, ["stop_timeout", "inf"], id="stop_timeout-inf"),
    pytest.param({"stop_timeout": False}, TypeError, ["stop_timeout", "False"], id="stop_timeout-bool"),
    pytest.param({"stop_timeout": None}, TypeError, ["stop_timeout", "None"], id="stop_timeout-None"),
    # startup_grace
    pytest.param({"startup_grace": -1}, ValueError, ["startup_grace", "-1"], id="startup_grace-negative"),
    pytest.param({"startup_grace": math.nan}, ValueError, ["startup_grace", "nan"], id="startup_grace-nan"),
    pytest.param({"startup_grace": math.inf}, ValueError, ["startup_grace", "inf"], id="startup_grace-inf"),
    pytest.param({"startup_grace": True}, TypeError, ["startup_grace", "True"], id="startup_grace-bool"),
    # detach
    pytest.param({"detach": "no"}, TypeError, ["detach", "'no'"], id="detach-str"),
    pytest.param({"detach": 0}, TypeError, ["detach", "0"], id="detach-int"),
    # user, group
    pytest.param({"user": ""}, ValueError, ["user", "empty"], id="user-empty"),
    pytest.param({"user": True}, TypeError, ["user", "True"], id="user-bool"),
    pytest.param({"user": -1}, ValueError, ["user", "-1"], id="user-negative"),
    pytest.param({"user": 1.0}, TypeError, ["user", "1.0"], id="user-float"),
    pytest.param({"group": 3.5}, TypeError, ["group", "3.5"], id="group-float"),
    pytest.param({"group": ""}, ValueError, ["group", "empty"], id="group-empty"),
    pytest.param({"group": -2}, ValueError, ["group", "-2"], id="group-negative"),
    # chroot
    pytest.param({"chroot": ""}, ValueError, ["chroot", "empty"], id="chroot-empty"),
    pytest.param({"chroot": 7}, TypeError, ["chroot", "7"], id="chroot-int"),
    # prevent_core
    pytest.param({"prevent_core": "yes"}, TypeError, ["prevent_core", "'yes'"], id="prevent_core-str"),
    pytest.param({"prevent_core": None}, TypeError, ["prevent_core", "None"], id="prevent_core-None"),
    pytest.param({"prevent_core": 1}, TypeError, ["prevent_core", "1"], id="prevent_core-int"),
    # on_reload
    pytest.param({"on_reload": 42}, TypeError, ["on_reload", "42"], id="on_reload-int"),
    pytest.param({"on_reload": "reload.sh"}, TypeError, ["on_reload", "'reload.sh'"], id="on_reload-str"),
    # signals
    pytest.param({"signals": [1, 2]}, TypeError, ["signals", "dict", "[1, 2]"], id="signals-list"),
    pytest.param({"signals": [(signal.SIGUSR1, handler)]}, TypeError, ["signals"], id="signals-list-of-pairs"),
    pytest.param({"signals": {99999: handler}}, ValueError, ["signals", "99999"], id="signals-unknown-number"),
    pytest.param({"signals": {"SIGUSR1": handler}}, ValueError, ["signals", "'SIGUSR1'"], id="signals-str-key"),
    pytest.param(
        {"signals": {signal.SIGKILL: handler}}, ValueError, ["SIGKILL", "cannot be caught"], id="signals-SIGKILL"
    ),
    pytest.param(
        {"signals": {signal.SIGSTOP: handler}}, ValueError, ["SIGSTOP", "cannot be caught"], id="signals-SIGSTOP"
    ),
    pytest.param({"signals": {signal.SIGTERM: handler}}, ValueError, ["SIGTERM", "SystemExit"], id="signals-SIGTERM"),
    pytest.param({"signals": {signal.SIGUSR1: 42}}, TypeError, ["SIGUSR1", "callable", "42"], id="signals-handler-int"),
    pytest.param(
        {"signals": {signal.SIGUSR1: "not callable"}}, TypeError, ["SIGUSR1", "callable"], id="signals-handler-str"
    ),
]


def with_files(directory: Path, **options: object) -> dict[str, object]:
    """*options* over a pidfile and both logs in *directory*, none of which a refusal may create.

    The workdir does not exist: should a value be accepted after all, the
    start fails in the launcher's machine checks, still before any fork.
    """
    files: dict[str, object] = {
        "pidfile": directory / "d.pid",
        "stdout": directory / "out.log",
        "stderr": directory / "err.log",
        "workdir": directory / "no-such-workdir",
    }
    return {**files, **options}


def apply_form(form: str, options: dict[str, object], function: Callable[[], None]) -> None:
    """``@daemon(**options)`` or ``@process_daemonize(**options)`` applied to *function*, or ``daemonize(**options)``.

    The function is never called by the decorator forms; after a
    ``daemonize()`` that returned (it must not), it is.
    """
    if form == "daemon":
        daemondeco.daemon(**options)(function)
    elif form == "process_daemonize":
        daemondeco.process_daemonize(**options)(function)
    else:
        daemondeco.daemonize(**options)
        function()


def refuse_in_process(
    form: str, options: dict[str, object], exc_class: type[Exception], texts: list[str], directory: Path
) -> str:
    """Apply *options* under *form* in this process: *exc_class* naming *texts*, no fork, nothing run or made.

    Returns the message.
    """
    ran: list[str] = []

    def function() -> None:
        ran.append("ran")

    with forbid_fork(), pytest.raises(exc_class, match=re.escape(texts[0])) as caught:
        apply_form(form, options, function)
    assert type(caught.value) is exc_class, f"{type(caught.value).__name__}, not exactly {exc_class.__name__}"
    message = str(caught.value)
    assert f"{form}()" in message, f"the message does not name the caller {form}(): {message!r}"
    for text in texts:
        assert text in message, f"{text!r} not in the message: {message!r}"
    assert ran == [], "the function must never run"
    assert sorted(os.listdir(directory)) == [], "a refused start left files behind"
    return message


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize(("options", "exc_class", "texts"), INVALID)
def test_invalid_value_is_refused_when_applied(
    tmp_path: Path, form: str, options: dict[str, object], exc_class: type[Exception], texts: list[str]
) -> None:
    refuse_in_process(form, with_files(tmp_path, **options), exc_class, texts, tmp_path)


def test_process_daemonize_refuses_detach_false(tmp_path: Path) -> None:
    options = with_files(tmp_path, detach=False)
    refuse_in_process(
        "process_daemonize", options, ValueError, ["process_daemonize()", "detach=False", "__wrapped__"], tmp_path
    )


class _PIDLockFile:
    """What python-daemon users pass as pidfile=: a lockfile ``PIDLockFile`` (acquire/release, a path)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def acquire(self, timeout: float | None = None) -> None:
        raise AssertionError("daemondeco must not call it")


# python-daemon's DaemonContext names: the message names daemondeco's (issue 18).
PYTHON_DAEMON_NAMES = [
    ("working_directory", "/", "'workdir'"),
    ("files_preserve", [], "'keep_fds'"),
    ("detach_process", True, "'detach'"),
    ("uid", 0, "'user'"),
    ("gid", 0, "'group'"),
    ("chroot_directory", "/", "'chroot'"),
    ("signal_map", {}, "'signals'"),
    ("initgroups", True, "supplementary groups of user="),
]


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize(
    ("name", "value", "suggestion"), PYTHON_DAEMON_NAMES, ids=[n for n, _, _ in PYTHON_DAEMON_NAMES]
)
def test_python_daemons_option_names_suggest_daemondecos(
    tmp_path: Path, form: str, name: str, value: object, suggestion: str
) -> None:
    message = refuse_in_process(
        form,
        with_files(tmp_path, **{name: value}),
        TypeError,
        [repr(name), "python-daemon's name", suggestion],
        tmp_path,
    )
    assert "valid options" not in message, message


@pytest.mark.parametrize("form", FORMS)
def test_a_lockfile_object_as_pidfile_asks_for_its_path(tmp_path: Path, form: str) -> None:
    lock = _PIDLockFile(str(tmp_path / "app.pid"))
    refuse_in_process(
        form,
        with_files(tmp_path, pidfile=lock),
        TypeError,
        ["pidfile must be a path", "_PIDLockFile", f"pass its path, pidfile={lock.path!r}"],
        tmp_path,
    )


@pytest.mark.parametrize(
    ("form", "refused"),
    [("daemon", {"instances"}), ("daemonize", {"instances", "restart"}), ("process_daemonize", set())],
)
def test_the_valid_options_listed_are_those_the_form_takes(tmp_path: Path, form: str, refused: set[str]) -> None:
    message = refuse_in_process(
        form, with_files(tmp_path, colour="red"), TypeError, ["'colour'", "valid options"], tmp_path
    )
    listed = set(message.split("valid options: ", 1)[1].split(", "))
    assert "pidfile" in listed and "on_drain" in listed, message
    assert not listed & refused, f"{form}() lists options it refuses: {sorted(listed & refused)}"
    assert refused or "instances" in listed


def test_detach_false_is_accepted_by_daemon(sandbox: Sandbox) -> None:
    """The control case for the launcher: it is sound (detach=False runs here, no fork)."""
    result = run_options_launcher(sandbox, "dict(WITH_FILES, detach=False)", "daemon")
    assert result.returncode == 0, result
    assert "FORK ATTEMPTED" not in result.stderr, "detach=False never forks"
    assert (sandbox.path / "ran").exists()
    assert sandbox.live_pids() == []


@pytest.mark.parametrize(
    "apply",
    [
        pytest.param(lambda d: daemondeco.daemon("x.pid"), id="daemon-path"),
        pytest.param(lambda d: daemondeco.daemon(str(d / "x.pid"), stdout=d / "x.log"), id="daemon-path-and-option"),
        pytest.param(lambda d: daemondeco.process_daemonize("x.pid"), id="process_daemonize-path"),
        pytest.param(lambda d: daemondeco.daemon(pidfile=d / "x.pid")("not a function"), id="decorating-a-string"),
    ],
)
def test_positional_misuse_is_a_clear_type_error(tmp_path: Path, apply: Callable[[Path], object]) -> None:
    with forbid_fork(), pytest.raises(TypeError, match="keyword"):
        apply(tmp_path)
    assert os.listdir(tmp_path) == []


# -- values the machine refuses: a real launcher, from outside ---------------------------

# (options expression, exception class expected in the MRO, texts the message must contain).
# In texts, {dir} is the sandbox directory and {closed} the closed fd's number.
REFUSED_BY_THE_MACHINE = [
    # pidfile
    pytest.param(
        'dict(pidfile=P("missing/d.pid"))',
        "FileNotFoundError",
        ["{dir}/missing/d.pid", "cannot open pidfile", "the directory '{dir}/missing' does not exist"],
        id="pidfile-missing-dir",
    ),
    pytest.param(
        'dict(pidfile=P("afile/d.pid"))',
        "NotADirectoryError",
        ["{dir}/afile/d.pid", "cannot open pidfile", "'{dir}/afile' is not a directory"],
        id="pidfile-under-a-file",
    ),
    pytest.param(
        'dict(pidfile=P("adir"))', "DaemonError", ["{dir}/adir", "not a regular file"], id="pidfile-is-directory"
    ),
    # stdin, stdout, stderr
    pytest.param(
        'dict(stdout=P("missing/out.log"))',
        "OSError",
        ["{dir}/missing/out.log", "stdout", "the directory '{dir}/missing' does not exist"],
        id="stdout-missing-dir",
    ),
    pytest.param(
        'dict(stdout=P("adir"))', "OSError", ["{dir}/adir", "stdout", "Is a directory"], id="stdout-not-writable"
    ),
    pytest.param(
        'dict(stderr=P("missing/err.log"))',
        "OSError",
        ["{dir}/missing/err.log", "stderr", "the directory '{dir}/missing' does not exist"],
        id="stderr-missing-dir",
    ),
    pytest.param('dict(stderr=P("adir"))', "OSError", ["{dir}/adir", "stderr"], id="stderr-not-writable"),
    pytest.param(
        'dict(stdin=P("missing.txt"))', "OSError", ["{dir}/missing.txt", "stdin", "No such file"], id="stdin-missing"
    ),
    # workdir
    pytest.param(
        'dict(workdir=P("missing"))',
        "OSError",
        ["{dir}/missing", "workdir", "the directory does not exist"],
        id="workdir-missing",
    ),
    pytest.param(
        'dict(workdir=P("afile"))', "OSError", ["{dir}/afile", "workdir", "not a directory"], id="workdir-is-file"
    ),
    pytest.param(
        'dict(WITH_FILES, chroot=P("jail"), workdir=HERE)',
        "OSError",
        ["workdir", "{dir}/jail{dir}"],
        id="workdir-missing-inside-chroot",
        marks=needs_root,
    ),
    # keep_fds
    pytest.param("dict(keep_fds=[CLOSED])", "OSError", ["keep_fds", "{closed}", "not open"], id="keep_fds-closed"),
    # user, group
    pytest.param(
        f"dict(WITH_FILES, user={NO_USER!r})", "DaemonError", [repr(NO_USER), "does not exist"], id="user-unknown"
    ),
    pytest.param(
        f"dict(WITH_FILES, group={NO_GROUP!r})", "DaemonError", [repr(NO_GROUP), "does not exist"], id="group-unknown"
    ),
    pytest.param(
        f"dict(WITH_FILES, user={FREE_UID})",
        "DaemonError",
        [str(FREE_UID), "no passwd entry", "group="],
        id="uid-no-passwd-no-group",
    ),
    # chroot
    pytest.param('dict(WITH_FILES, chroot=P("missing"))', "OSError", ["{dir}/missing", "chroot"], id="chroot-missing"),
    pytest.param(
        'dict(WITH_FILES, chroot=P("afile"))',
        "OSError",
        ["{dir}/afile", "chroot", "Not a directory"],
        id="chroot-a-file",
    ),
]


@pytest.mark.parametrize(("options", "exc_class", "texts"), REFUSED_BY_THE_MACHINE)
def test_option_refused_by_the_machine_fails_in_the_launcher(
    sandbox: Sandbox, options: str, exc_class: str, texts: list[str]
) -> None:
    result = run_options_launcher(sandbox, options, "daemon")
    assert_refused(sandbox, result, exc_class, texts)


OTHER_FORM_CASES = [
    pytest.param("dict(keep_fds=[CLOSED])", "OSError", ["{closed}"], id="keep_fds-closed"),
    pytest.param(
        'dict(pidfile=P("missing/d.pid"))',
        "FileNotFoundError",
        ["{dir}/missing/d.pid", "cannot open pidfile", "the directory '{dir}/missing' does not exist"],
        id="pidfile-missing-dir",
    ),
    pytest.param('dict(stdout=P("adir"))', "OSError", ["{dir}/adir", "stdout"], id="stdout-not-writable"),
    pytest.param('dict(stdin=P("missing.txt"))', "OSError", ["{dir}/missing.txt"], id="stdin-missing"),
    pytest.param('dict(workdir=P("afile"))', "OSError", ["{dir}/afile"], id="workdir-is-file"),
    pytest.param(f"dict(WITH_FILES, user={NO_USER!r})", "DaemonError", [repr(NO_USER)], id="user-unknown"),
    pytest.param(f"dict(WITH_FILES, group={NO_GROUP!r})", "DaemonError", [repr(NO_GROUP)], id="group-unknown"),
    pytest.param('dict(WITH_FILES, chroot=P("missing"))', "OSError", ["{dir}/missing"], id="chroot-missing"),
]


@pytest.mark.parametrize("form", [pytest.param("process_daemonize", id="process_daemonize"), "daemonize"])
@pytest.mark.parametrize(("options", "exc_class", "texts"), OTHER_FORM_CASES)
def test_other_forms_check_the_machine_the_same_way(
    sandbox: Sandbox, form: str, options: str, exc_class: str, texts: list[str]
) -> None:
    result = run_options_launcher(sandbox, options, form)
    assert_refused(sandbox, result, exc_class, texts)


@pytest.mark.parametrize(
    ("options", "exc_class"),
    [
        pytest.param(
            'dict(stdout=P("out.log"), pidfile=P("missing/d.pid"))', "OSError", id="log-ok-pidfile-missing-dir"
        ),
        pytest.param('dict(stdout=P("out.log"), pidfile=P("adir"))', "DaemonError", id="log-ok-pidfile-is-directory"),
        pytest.param(
            'dict(stdout=P("out.log"), stderr=P("missing/err.log"))', "OSError", id="log-ok-stderr-missing-dir"
        ),
        pytest.param(
            'dict(pidfile=P("d.pid"), stdout=P("missing/out.log"))', "OSError", id="pidfile-ok-log-missing-dir"
        ),
        pytest.param(
            'dict(pidfile=P("d.pid"), stdout=P("out.log"), workdir=P("afile"))', "OSError", id="workdir-is-file"
        ),
        pytest.param('dict(pidfile=P("d.pid"), stdout=P("out.log"), stdin=P("nope"))', "OSError", id="stdin-missing"),
        pytest.param(
            'dict(pidfile=P("d.pid"), stdout=P("out.log"), keep_fds=[CLOSED])', "OSError", id="keep_fds-closed"
        ),
    ],
)
def test_failed_start_leaves_no_log_or_pidfile_behind(sandbox: Sandbox, options: str, exc_class: str) -> None:
    result = run_options_launcher(sandbox, options, "daemon")
    assert_refused(sandbox, result, exc_class, [])


# -- values beyond what the machine can take: refused when given, not after the fork ---------------

# Values that the value alone condemns (an int beyond any float, a uid that ``setuid`` would refuse,
# an fd number above any possible fd, a path that cannot be encoded) raise TypeError/ValueError at
# decoration time, in the caller's own process, for all three forms. Values only known when the
# daemon starts (what a ``keep_fds`` object's ``fileno()`` says) are refused in the launcher before
# any fork: those cases run a real launcher script that records every fork attempt.


def _work() -> None:  # pragma: no cover - never runs: validation refuses first
    raise AssertionError("the decorated function ran")


def apply_form_guarded(form: str, options: dict[str, object], tmp_path: Path) -> None:
    """Give *options* to *form* in this process, as a program would.

    ``daemonize()`` forks once its options validate; a pidfile in a missing
    directory makes the launcher fail (OSError) right after validation,
    before any fork, should a value slip through. (The option under test
    wins when it is ``pidfile`` itself.)
    """
    if form == "daemon":
        daemondeco.daemon(**options)
    elif form == "process_daemonize":
        daemondeco.process_daemonize(**options)(_work)
    else:
        guarded = {"pidfile": str(tmp_path / "missing" / "guard.pid"), **options}
        daemondeco.daemonize(**guarded)


def check_refused(
    form: str, options: dict[str, object], tmp_path: Path, exc_class: type[Exception], texts: list[str]
) -> None:
    """*options* raise *exc_class* (not a subclass of it such as OverflowError) naming *texts*."""
    with forbid_fork(), pytest.raises(exc_class) as info:
        apply_form_guarded(form, options, tmp_path)
    assert type(info.value) is exc_class, f"{type(info.value).__name__}: {info.value}"
    message = str(info.value)
    assert message.startswith(f"{form}(): "), message
    for text in texts:
        assert text in message, f"{text!r} not in the message: {message!r}"


# -- timeouts beyond any float ---------------------------------------------------------------------

TIMEOUT_CASES = [
    pytest.param({"ready_timeout": 10**400}, ["ready_timeout", "an int of 1329 bits"], id="ready_timeout-10**400"),
    pytest.param({"startup_grace": 10**400}, ["startup_grace"], id="startup_grace-10**400"),
    pytest.param({"stop_timeout": 10**400}, ["stop_timeout"], id="stop_timeout-10**400"),
    pytest.param({"stop_timeout": -(10**400)}, ["stop_timeout", "negative"], id="stop_timeout--10**400"),
    # No decimal repr exists for this one (int_max_str_digits): the message must not fail to build.
    pytest.param({"ready_timeout": 10**5000}, ["ready_timeout", "bits"], id="ready_timeout-10**5000"),
]


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize(("options", "texts"), TIMEOUT_CASES)
def test_timeout_beyond_any_float_is_a_value_error(
    tmp_path: Path, form: str, options: dict[str, object], texts: list[str]
) -> None:
    check_refused(form, options, tmp_path, ValueError, texts)


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"ready_timeout": 1e9}, id="ready_timeout-1e9"),
        # (ready="start": with the default "auto" the grace must be shorter than ready_timeout)
        pytest.param({"ready": "start", "startup_grace": 1e9, "stop_timeout": 10**9}, id="grace-and-stop-1e9"),
        pytest.param({"startup_grace": 1e9, "ready_timeout": 1e12}, id="auto-grace-1e9"),
        pytest.param({"ready_timeout": 2**1000}, id="ready_timeout-2**1000"),
    ],
)
def test_huge_finite_timeouts_stay_valid(tmp_path: Path, options: dict[str, object]) -> None:
    decorated = daemondeco.daemon(**options)(_work)
    assert callable(decorated.start)
    daemondeco.process_daemonize(**options)(_work)
    # daemonize() validated and went on to the launcher's checks: the guard pidfile's missing directory.
    with pytest.raises(OSError, match=r"guard\.pid"):
        apply_form_guarded("daemonize", options, tmp_path)


def test_stop_timeout_beyond_any_float_is_a_value_error(tmp_path: Path) -> None:
    decorated = daemondeco.daemon(pidfile=str(tmp_path / "d.pid"))(_work)
    with pytest.raises(ValueError, match="timeout") as info:
        decorated.stop(timeout=10**400)
    assert type(info.value) is ValueError
    assert not (tmp_path / "d.pid").exists()


def test_cli_timeout_beyond_any_float_is_a_usage_error(sandbox: Sandbox) -> None:
    result: Result = sandbox.run_module("stop", str(sandbox.path / "d.pid"), "--timeout", "1" + "0" * 400)
    assert result.returncode == 2, result
    assert "--timeout" in result.stderr, result
    assert "Traceback" not in result.stderr, result


# -- user and group ids setuid/setgid would refuse, names with NUL ---------------------------------

ACCOUNT_CASES = [
    pytest.param({"group": 2**32}, ["group", "4294967296", "4294967294"], id="group-2**32"),
    pytest.param({"group": 2**32 - 1}, ["group", "4294967295"], id="group-(gid_t)-1"),
    pytest.param({"group": 2**64}, ["group", str(2**64)], id="group-2**64"),
    pytest.param({"user": 2**32}, ["user", "4294967296"], id="user-2**32"),
    pytest.param({"user": 2**32 - 1}, ["user", "4294967295"], id="user-(uid_t)-1"),
    pytest.param({"user": 10**400, "group": 0}, ["user", "bits"], id="user-10**400"),
    pytest.param({"user": "root\0x"}, ["user", "NUL", "'root\\x00x'"], id="user-nul"),
    pytest.param({"group": "\0"}, ["group", "NUL"], id="group-nul"),
    pytest.param({"user": "root", "group": "wheel\0"}, ["group", "NUL"], id="group-nul-with-user"),
]


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize(("options", "texts"), ACCOUNT_CASES)
def test_account_setuid_would_refuse_is_a_value_error(
    tmp_path: Path, form: str, options: dict[str, object], texts: list[str]
) -> None:
    check_refused(form, options, tmp_path, ValueError, texts)


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"user": 2**32 - 2, "group": 2**32 - 2}, id="largest-ids"),
        pytest.param({"user": 0, "group": 0}, id="root-ids"),
    ],
)
def test_account_ids_in_range_stay_valid(options: dict[str, object]) -> None:
    daemondeco.daemon(**options)(_work)
    daemondeco.process_daemonize(**options)(_work)


# -- keep_fds numbers no fd can have; paths whose __fspath__ fails ---------------------------------


class FsPath:
    """An os.PathLike whose ``__fspath__`` returns *value*, or raises it when it is an exception."""

    def __init__(self, value: object) -> None:
        self.value = value

    def __fspath__(self) -> object:
        if isinstance(self.value, Exception):
            raise self.value
        return self.value

    def __repr__(self) -> str:
        return f"FsPath({self.value!r})"


KEEP_FDS_CASES = [
    pytest.param([2**31], ["keep_fds item 2147483648", "2147483647"], id="2**31"),
    pytest.param([0, 1, 2**63], ["keep_fds item 9223372036854775808"], id="2**63-after-good-items"),
    pytest.param([10**400], ["keep_fds item an int of 1329 bits"], id="10**400"),
    pytest.param([-(2**40)], ["keep_fds item -1099511627776", "negative"], id="-2**40"),
]


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize(("keep_fds", "texts"), KEEP_FDS_CASES)
def test_keep_fds_number_no_fd_can_have_is_a_value_error(
    tmp_path: Path, form: str, keep_fds: list[int], texts: list[str]
) -> None:
    check_refused(form, {"keep_fds": keep_fds}, tmp_path, ValueError, texts)


PATH_OPTIONS = ["pidfile", "stdin", "stdout", "stderr", "workdir", "chroot"]


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("name", PATH_OPTIONS)
@pytest.mark.parametrize(
    ("value", "texts"),
    [
        pytest.param(FsPath(3), ["FsPath(3)", "return str or bytes, not int"], id="fspath-returns-int"),
        pytest.param(FsPath(None), ["FsPath(None)", "not NoneType"], id="fspath-returns-None"),
        pytest.param(FsPath(RuntimeError("no path yet")), ["RuntimeError: no path yet"], id="fspath-raises"),
    ],
)
def test_path_whose_fspath_fails_is_a_type_error(
    tmp_path: Path, form: str, name: str, value: FsPath, texts: list[str]
) -> None:
    check_refused(form, {name: value}, tmp_path, TypeError, [f"{name}: ", *texts])


@pytest.mark.parametrize("name", PATH_OPTIONS)
def test_path_whose_fspath_returns_bytes_stays_valid(tmp_path: Path, name: str) -> None:
    daemondeco.daemon(**{name: FsPath(os.fsencode(tmp_path / "x"))})(_work)
    daemondeco.process_daemonize(**{name: FsPath(str(tmp_path / "x"))})(_work)


# What fileno() says is known only when the daemon starts: refused in a real launcher, before any fork.
CALL_TIME_LAUNCHER = """
import os, sys
HERE = os.path.dirname(os.path.abspath(__file__))

def P(name):
    return os.path.join(HERE, name)

os.register_at_fork(before=lambda: print("FORK ATTEMPTED", file=sys.stderr, flush=True))

from daemondeco import daemon, daemonize, process_daemonize

class Fd:
    def __init__(self, value):
        self.value = value
    def fileno(self):
        if isinstance(self.value, Exception):
            raise self.value
        return self.value
    def __repr__(self):
        return f"Fd({self.value!r})"

CLOSED_FILE = open(P("afile"))
CLOSED_FILE.close()
print("CLOSED_FILE", repr(CLOSED_FILE), flush=True)

def ran():
    open(P("ran"), "w").close()

""" + forms_dispatch('dict(pidfile=P("d.pid"), stdout=P("out.log"), keep_fds=[0, KEEP])')

# (the item's expression, its repr in the message or None for CLOSED_FILE's, exception class, what is wrong)
CALL_TIME_CASES = [
    pytest.param("Fd(2**31)", "Fd(2147483648)", "ValueError", "fileno() returned 2147483648, above", id="fileno-2**31"),
    pytest.param(
        "Fd(10**400)", "Fd(1000", "ValueError", "fileno() returned an int of 1329 bits, above", id="fileno-10**400"
    ),
    pytest.param("Fd(-1)", "Fd(-1)", "ValueError", "fileno() returned -1, a negative", id="fileno-negative"),
    pytest.param('Fd("3")', "Fd('3')", "TypeError", "fileno() returned str '3', not an int", id="fileno-str"),
    pytest.param("Fd(3.0)", "Fd(3.0)", "TypeError", "fileno() returned float 3.0, not an int", id="fileno-float"),
    pytest.param("Fd(True)", "Fd(True)", "TypeError", "fileno() returned bool True, not an int", id="fileno-bool"),
    pytest.param(
        'Fd(RuntimeError("not bound yet"))',
        "Fd(RuntimeError('not bound yet'))",
        "ValueError",
        "fileno() raised RuntimeError: not bound yet",
        id="fileno-raises",
    ),
    pytest.param(
        "CLOSED_FILE",
        None,
        "ValueError",
        "fileno() raised ValueError: I/O operation on closed file",
        id="closed-file",
    ),
]


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize(("item", "shown", "exc_class", "text"), CALL_TIME_CASES)
def test_keep_fds_object_with_a_bad_fileno_fails_before_the_fork(
    sandbox: Sandbox, form: str, item: str, shown: str | None, exc_class: str, text: str
) -> None:
    (sandbox.path / "afile").touch()
    result = sandbox.run(CALL_TIME_LAUNCHER.replace("KEEP", item), form)
    assert result.returncode == 3, result
    assert "FORK ATTEMPTED" not in result.stderr, result
    raised = next(line for line in result.stderr.splitlines() if line.startswith("RAISED "))
    assert raised.split()[1].split(",")[0] == exc_class, result
    if shown is None:
        shown = result.stdout.split(" ", 1)[1].strip()
    message = result.stderr.split("MESSAGE ", 1)[1].strip()
    assert message.startswith(f"{form}(): keep_fds item {shown[:60]}"), message
    assert text in message, message
    assert sandbox.live_pids() == []
    assert not (sandbox.path / "ran").exists()
    left = set(os.listdir(sandbox.path)) - {"prog.py", "afile"}
    assert not left, f"a failed start left files behind: {sorted(left)}"


# -- values that validated, then failed later: unencodable paths and names, odd signal handlers ----

LONE_SURROGATE = "\ud800"  # not from surrogateescape: no bytes encode it


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("name", PATH_OPTIONS)
def test_path_that_cannot_be_encoded_is_a_value_error(tmp_path: Path, form: str, name: str) -> None:
    check_refused(form, {name: f"{tmp_path}/x{LONE_SURROGATE}"}, tmp_path, ValueError, [name, "cannot be encoded"])


@pytest.mark.parametrize("name", PATH_OPTIONS)
def test_path_from_undecodable_bytes_stays_valid(tmp_path: Path, name: str) -> None:
    path = os.fsdecode(os.fsencode(tmp_path) + b"/\xff")  # surrogateescape: encodes back to the same bytes
    daemondeco.daemon(**{name: path})(_work)
    daemondeco.process_daemonize(**{name: path})(_work)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize(
    ("options", "texts"),
    [
        pytest.param({"user": "r" + LONE_SURROGATE}, ["user", "cannot be encoded"], id="user"),
        pytest.param({"group": LONE_SURROGATE}, ["group", "cannot be encoded"], id="group"),
    ],
)
def test_account_name_that_cannot_be_encoded_is_a_value_error(
    tmp_path: Path, form: str, options: dict[str, object], texts: list[str]
) -> None:
    check_refused(form, options, tmp_path, ValueError, texts)


class EqualsRaises:
    """A non-callable signal handler whose comparison raises."""

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("cannot compare")

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        return "EqualsRaises()"


@pytest.mark.parametrize("form", FORMS)
def test_signal_handler_whose_comparison_raises_is_a_type_error(tmp_path: Path, form: str) -> None:
    options = {"signals": {signal.SIGUSR1: EqualsRaises()}}
    check_refused(form, options, tmp_path, TypeError, ["signals", "SIGUSR1", "EqualsRaises()"])


def test_signal_handler_equal_to_sig_ign_is_installed_as_sig_ign(sandbox: Sandbox) -> None:
    """A value equal to SIG_IGN but not int() convertible validated, then failed after the fork."""
    result = sandbox.run(
        """
        import os, signal, time
        from daemondeco import daemon
        HERE = os.path.dirname(os.path.abspath(__file__))

        class Same:
            # A configuration wrapper that compares equal to what it wraps (no __int__).
            def __init__(self, value):
                self.value = value
            def __eq__(self, other):
                return other == self.value
            __hash__ = object.__hash__

        @daemon(pidfile=os.path.join(HERE, "d.pid"), stdout=os.path.join(HERE, "d.log"),
                signals={signal.SIGUSR1: Same(signal.SIG_IGN)})
        def main():
            time.sleep(60)

        main()
        """
    )
    assert result.returncode == 0, result
    pid = read_pid(sandbox.path / "d.pid")
    ignored = int(proc_status(pid)["SigIgn"], 16)
    assert ignored & (1 << (signal.SIGUSR1 - 1)), f"SIGUSR1 is not ignored: SigIgn={ignored:#x}"
    assert sandbox.live_pids() == [pid]


# -- a daemon already running ----------------------------------------------------


def test_already_running_error_names_the_running_pid(sandbox: Sandbox) -> None:
    code = """
        import os, sys, time
        from daemondeco import daemon
        HERE = os.path.dirname(os.path.abspath(__file__))

        @daemon(pidfile=os.path.join(HERE, "d.pid"), stdout=os.path.join(HERE, "d.log"))
        def main():
            print("started", os.getpid(), flush=True)
            time.sleep(60)

        try:
            main()
        except Exception as exc:
            print("RAISED", type(exc).__name__, exc.pid, file=sys.stderr)
            raise
        """
    pid = sandbox.start_daemon(code)

    second = sandbox.run(code)
    assert second.returncode == 1, second
    assert f"RAISED AlreadyRunningError {pid}" in second.stderr
    assert f"AlreadyRunningError: already running: pidfile '{sandbox.path / 'd.pid'}' is locked by pid {pid}" in (
        second.stderr
    )
    assert read_pid(sandbox.path / "d.pid") == pid
    assert wait_for_text(sandbox.path / "d.log", "\n") == f"started {pid}\n"
    assert alive(pid)
    assert sandbox.live_pids() == [pid]


def test_process_daemonize_second_call_names_the_running_worker(sandbox: Sandbox) -> None:
    result = sandbox.run(
        """
        import os, time
        from daemondeco import AlreadyRunningError, process_daemonize
        HERE = os.path.dirname(os.path.abspath(__file__))

        @process_daemonize(pidfile=os.path.join(HERE, "w.pid"))
        def work():
            time.sleep(60)

        handle = work()
        try:
            work()
        except AlreadyRunningError as exc:
            print(handle.pid, exc.pid, str(handle.pid) in str(exc))
        """
    )
    assert result.returncode == 0, result
    worker, named, in_message = result.stdout.split()
    assert worker == named
    assert in_message == "True"
    stat = proc_stat(int(worker))
    assert stat is not None
    assert sorted(sandbox.live_pids()) == sorted([int(worker), stat.ppid]), "the worker and its monitor (its parent)"
    assert Path(sandbox.path / "w.pid").read_text() == f"{worker}\n"


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


# -- durations (issue 17, point 3): any value validation accepts works wherever it is waited on --------

HUGE = "1.7976931348623157e+308"  # the largest finite float: validation accepts it


def test_the_largest_duration_works_in_the_launcher_of_a_worker(sandbox: Sandbox) -> None:
    """startup_grace and ready_timeout at the largest float: the caller waits, it does not raise after the fork."""
    result = sandbox.run(
        f"""
        import os, sys, time
        from daemondeco import notify_ready, process_daemonize

        @process_daemonize(startup_grace={HUGE}, ready_timeout={HUGE}, stop_timeout={HUGE}, ready="notify")
        def work():
            notify_ready()
            time.sleep(0.2)  # then returns: status 0 ends the grace

        handle = work()
        print("handle", handle.pid, flush=True)
        print("waited", handle.wait(timeout={HUGE}), flush=True)
        """
    )
    assert result.returncode == 0, result
    assert "OverflowError" not in result.stderr, result
    assert "waited 0" in result.stdout, result  # wait() gives the exit code (issue 18)


def test_the_largest_durations_work_in_a_supervisor(sandbox: Sandbox) -> None:
    """restart_delay, restart_max_delay and stop_timeout at the largest float: the supervisor waits and stops."""
    result = sandbox.run(
        f"""
        import os, sys, time
        from pathlib import Path
        from daemondeco import daemon, notify_ready

        HERE = Path(__file__).resolve().parent

        @daemon(pidfile=HERE / "d.pid", stdout=HERE / "d.log", ready="notify", restart="always",
                restart_delay={HUGE}, restart_max_delay={HUGE}, stop_timeout={HUGE},
                restart_reset_after={HUGE}, startup_grace=0)
        def main():
            notify_ready()
            if not (HERE / "crashed").exists():
                (HERE / "crashed").touch()
                sys.exit(3)  # the supervisor now waits restart_delay before the next worker
            time.sleep(60)

        sys.exit(main.cli())
        """,
        "start",
    )
    assert result.returncode == 0, result
    supervisor = read_pid(sandbox.path / "d.pid")
    wait_until(lambda: "restarting in" in (sandbox.path / "d.log").read_text(), what="the planned restart")
    status = sandbox.run_module("status", "--json", str(sandbox.path / "d.pid"))
    assert status.returncode == 0, (status, (sandbox.path / "d.log").read_text())
    assert json.loads(status.stdout)["state"] == "restarting", status
    assert alive(supervisor)
    stop = sandbox.run_module("stop", str(sandbox.path / "d.pid"))
    assert stop.returncode == 0, stop
    assert not alive(supervisor)
    assert "OverflowError" not in (sandbox.path / "d.log").read_text()
