"""Every option value that could fail after the fork is refused when the options are given, naming the option.

Values that the value alone condemns (an int beyond any float, a uid that
``setuid`` would refuse, an fd number above any possible fd, a path that
cannot be encoded) raise ``TypeError``/``ValueError`` at decoration time, in
the caller's own process, for all three forms. Values only known when the
daemon starts (what a ``keep_fds`` object's ``fileno()`` says) are refused in
the launcher before any fork: those cases run a real launcher script that
records every fork attempt.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from conftest import Result, Sandbox, forbid_fork, forms_dispatch, proc_status, read_pid

import daemondeco

FORMS = ["daemon", "process_daemonize", "daemonize"]


def _work() -> None:  # pragma: no cover - never runs: validation refuses first
    raise AssertionError("the decorated function ran")


def apply_form(form: str, options: dict[str, object], tmp_path: Path) -> None:
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
        apply_form(form, options, tmp_path)
    assert type(info.value) is exc_class, f"{type(info.value).__name__}: {info.value}"
    message = str(info.value)
    assert message.startswith(f"{form}(): "), message
    for text in texts:
        assert text in message, f"{text!r} not in the message: {message!r}"


# -- defect 2: timeouts beyond any float ---------------------------------------

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
        apply_form("daemonize", options, tmp_path)


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


# -- defect 3: user and group ids setuid/setgid would refuse, names with NUL --------

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


# -- defect 4: keep_fds numbers no fd can have; paths whose __fspath__ fails ---------


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


# -- found while checking every option: values that validated, then failed later ---------

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
