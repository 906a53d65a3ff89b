"""Command lines with LSB init-script exit codes.

``main.cli()`` gives a ``@daemon`` function
``start|stop|restart|status|reload|run``; ``python -m daemondeco
status|stop|reload PIDFILE`` controls any daemondeco daemon by its pidfile.
Exit codes (LSB):

=========  ==============================================================
status     0 running, 1 dead but pidfile exists, 3 not running, 4 unknown
start      0 started or already running, 1 failed
stop       0 stopped or not running, 1 failed to stop
restart    0 restarted, 1 failed
reload     0 reloaded, 1 failed (or the daemon died), 7 not running
upgrade    0 upgraded, 1 refused or the successor failed, 7 not running
any        2 usage error
=========  ==============================================================

Both command lines are tables of :class:`Action` s: one ``argparse`` parser
per action (``prog ACTION -h``), built from the action's own :class:`Flag` s.
Adding an action is one entry in a table and one handler.

After ``start``, ``run`` and ``restart`` the action's own options come first;
the first word that is not one of them (exactly spelt: no abbreviations), or
everything after ``--``, goes to the function. So ``prog start --port 8080``
passes ``--port 8080`` to a function taking ``*args``, and ``prog restart
--timeout 3 --port 8080`` stops with a 3 s timeout. The words are bound to the
function's signature in the launcher: a mismatch is a usage error (2) and
nothing forks.
"""

from __future__ import annotations

import os
import sys

from ._control import (
    pidfile_path,
    reload_pidfile,
    restart_action,
    status_pidfile,
    status_report,
    stop_pidfile,
    upgrade_pidfile,
)
from ._errors import AlreadyRunningError, DaemonError, ReloadError, StartupError, UpgradeError
from ._options import STOP_TIMEOUT, reload_timeout, seconds
from ._version import __version__

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    import argparse
    import inspect
    from collections.abc import Callable, Sequence
    from typing import Any

    from ._options import Options

__all__ = ["main", "run_decorated_cli"]

STATUS_RUNNING, STATUS_DEAD, STATUS_STOPPED, STATUS_UNKNOWN = 0, 1, 3, 4
USAGE_ERROR = 2
NOT_RUNNING = 7  # LSB: "program is not running", for actions other than status
LOG_TAIL_LINES = 20
_LOG_TAIL_BYTES = 64 * 1024  # the tail of a huge log is read from its end, never all of it


# -- output ---------------------------------------------------------------------


def _say(text: str, *, error: bool = False) -> None:
    stream = sys.stderr if error else sys.stdout
    try:
        print(text, file=stream, flush=True)
    except UnicodeEncodeError:  # a strict stdout and a name that is not in its encoding
        encoding = getattr(stream, "encoding", None) or "ascii"
        print(text.encode(encoding, "backslashreplace").decode(encoding), file=stream, flush=True)


def _display(text: str) -> str:
    """*text* (a path, maybe with undecodable bytes) in a form any terminal can print."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def report_status(path: str, name: str, *, as_json: bool = False) -> int:
    """Print *name*'s status from pidfile *path* (a line, or one JSON object); return the LSB status code."""
    code, report = status_report(path)
    if as_json:
        import json

        _say(json.dumps(report))
        return code
    if code == STATUS_RUNNING:
        _say(f"{name} is running (pid {report['pid']}){_vitals(report)}")
    elif code == STATUS_DEAD:
        _say(f"{name} is not running, but its pidfile {_display(path)} exists (stale){_last_exit(report)}")
    else:
        _say(f"{name} is not running{_last_exit(report)}")
    return code


def _last_exit(report: dict[str, object]) -> str:
    """``; last run (pid N) exited with status 1 at 12:03:04: KeyError: 'port' (traceback in LOG)``, or nothing."""
    record = report.get("last_exit")
    if not isinstance(record, dict):
        return ""
    import time

    how, status, signal = record.get("how"), record.get("status"), record.get("signal")
    if signal:
        said = f"was killed by {signal}"
    elif how == "died":
        said = "died (killed or crashed without a word; exit status unknown)"
    elif how == "stopped":
        said = "stopped" if status == 0 else f"stopped with status {status}"
    elif status is None:
        said = "exited (exit status unknown)"
    elif how == "returned":
        said = "returned (exit status 0)"
    else:
        said = f"exited with status {status}"
    when = record.get("time")
    if isinstance(when, (int, float)):
        said += " at " + time.strftime("%H:%M:%S", time.localtime(when))
    error = record.get("error")
    if error:
        said += f": {error}"
        log = record.get("log")
        if log and log != os.devnull:
            said += f" (traceback in {_display(str(log))})"
    return f"; last run (pid {record.get('pid')}) {said}"


def _vitals(report: dict[str, object]) -> str:
    """``, ready, up 3m 12s, 10.2 MiB`` from a status report (what /proc could tell)."""
    parts = [str(report["state"])]
    uptime = report.get("uptime_s")
    if isinstance(uptime, (int, float)):
        seconds = int(uptime)
        hours, rest = divmod(seconds, 3600)
        minutes, seconds = divmod(rest, 60)
        span = f"{hours}h {minutes}m" if hours else f"{minutes}m {seconds}s" if minutes else f"{seconds}s"
        parts.append("up " + span)
    rss = report.get("rss_bytes")
    if isinstance(rss, int):
        parts.append(f"{rss / 2**20:.1f} MiB")
    if "restarts" in report:  # a supervisor (restart=)
        worker = report.get("worker_pid")
        parts.append(f"worker pid {worker}" if worker else "no worker")
        parts.append(f"{report['restarts']} restarts")
        last = report.get("last_exit")
        if isinstance(last, dict):
            how = f"killed by {last.get('signal')}" if last.get("signal") else f"exit status {last.get('status')}"
            parts.append(f"last exit: {how}")
        wait = report.get("next_restart_in")
        if isinstance(wait, (int, float)):
            parts.append(f"next restart in {wait:.1f} s")
    return ", " + ", ".join(parts)


def report_reload(path: str, name: str, timeout: float | None) -> int:
    """Reload *name*'s daemon by pidfile *path* and wait for it; 0, 1 (failed) or 7 (not running)."""
    return _report_acknowledged(
        path, name, "Reloading", lambda: f"{name} reloaded (pid {reload_pidfile(path, timeout)})"
    )


def report_upgrade(path: str, name: str, timeout: float | None) -> int:
    """Upgrade *name*'s daemon by pidfile *path* and wait for the successor; 0, 1 (refused, failed) or 7."""

    def upgrade() -> str:
        old, new = upgrade_pidfile(path, timeout)
        return f"{name} upgraded (pid {old} -> {new}); pid {old} drains and exits"

    return _report_acknowledged(path, name, "Upgrading", upgrade)


def _report_acknowledged(path: str, name: str, doing: str, act: Callable[[], str]) -> int:
    """Say what is asked of *name*'s daemon, *act* (a reload or an upgrade, acknowledged), report its outcome."""
    pid = status_pidfile(path)
    if pid is not None:
        _say(f"{doing} {name} (pid {pid})...", error=True)
    try:
        said = act()
    except (ReloadError, UpgradeError) as exc:
        if not exc.running:
            _say(f"{name} is not running", error=True)
            return NOT_RUNNING
        _say(f"{name}: {exc}", error=True)
        return 1
    _say(said)
    return 0


def report_stop(path: str, name: str, timeout: float) -> int:
    """Stop *name*'s daemon by pidfile *path*, print what happened; LSB code.

    The outcome goes to stdout; what it waits for (``Stopping NAME (pid
    N)...``) and a stop that had to SIGKILL go to stderr, as they happen.
    """
    pid = status_pidfile(path)
    if pid is not None:
        _say(f"Stopping {name} (pid {pid})...", error=True)

    def killing(pid: int, waited: float) -> None:
        _say(f"{name} (pid {pid}) did not exit on SIGTERM: sent SIGKILL after {waited:g} s", error=True)

    if not stop_pidfile(path, timeout, on_kill=killing):
        _say(f"{name}: failed to stop the daemon of {_display(path)} within {timeout:g} s", error=True)
        return 1
    _say(f"{name} stopped (pid {pid})" if pid is not None else f"{name} is not running")
    return 0


def _log_tail(path: str, lines: int = LOG_TAIL_LINES) -> str | None:
    """The last *lines* lines of the file *path*, or None when it cannot be read."""
    try:
        with open(path, "rb") as log:
            size = log.seek(0, os.SEEK_END)
            log.seek(max(0, size - _LOG_TAIL_BYTES))
            data = log.read()
    except OSError:
        return None
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


def _report_start_failure(options: Options, name: str, exc: StartupError) -> None:
    """The daemon's traceback (in *exc*), then each configured log's path and last lines."""
    _say(f"{name}: {exc}", error=True)
    logs = [os.path.abspath(p) for p in (options.stdout, options.stderr) if p is not None]
    for path in dict.fromkeys(logs):
        tail = _log_tail(path)
        if tail is None:
            continue
        shown = _display(path)
        if tail:
            _say(f"\nThe last lines of {shown}:\n{tail}", error=True)
        else:
            _say(f"\nThe log {shown} is empty.", error=True)


# -- the tables -------------------------------------------------------------------


def _seconds_arg(text: str) -> float:
    """Parse --timeout for argparse: a finite number of seconds >= 0."""
    import argparse

    try:
        return seconds("stop", "--timeout", float(text), positive=False)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _reload_timeout_arg(text: str) -> float | None:
    """Parse reload's --timeout for argparse: a finite number of seconds > 0."""
    import argparse

    try:
        return reload_timeout(float(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


class Flag:
    """One option of an action: its spellings, its help, and its value's parser (None: a switch).

    (Plain classes, not dataclasses: ``dataclasses`` imports ``inspect``, a
    cost every ``python -m daemondeco status`` would pay.)
    """

    __slots__ = ("help", "metavar", "names", "parse")

    def __init__(
        self,
        names: tuple[str, ...],
        help: str,
        parse: Callable[[str], Any] | None = None,
        metavar: str | None = None,
    ) -> None:
        self.names = names
        self.help = help
        self.parse = parse
        self.metavar = metavar

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        """Add this option to the action's *parser*."""
        if self.parse is None:
            parser.add_argument(*self.names, action="store_true", help=self.help)
        else:
            parser.add_argument(*self.names, type=self.parse, metavar=self.metavar, help=self.help)

    def consumes(self, word: str) -> int:
        """How many words *word* (and its value) take as this option; 0 if *word* is not it."""
        for name in self.names:
            if word == name:
                return 1 if self.parse is None else 2
            if self.parse is not None and name.startswith("--") and word.startswith(name + "="):
                return 1
        return 0


class Action:
    """One action of a command line: its help, its own options, whether it takes the function's words."""

    __slots__ = ("description", "flags", "name", "summary", "words")

    def __init__(
        self, name: str, summary: str, description: str, flags: tuple[Flag, ...] = (), words: bool = False
    ) -> None:
        self.name = name
        self.summary = summary  # one line in the list of actions
        self.description = description  # the action's own -h
        self.flags = flags
        self.words = words  # the words after its options go to the daemon's function


TIMEOUT_FLAG = Flag(
    ("--timeout",),
    "seconds to wait after SIGTERM before SIGKILL (default: the daemon's stop_timeout)",
    _seconds_arg,
    "S",
)
RELOAD_TIMEOUT_FLAG = Flag(
    ("--timeout",),
    "seconds to wait for the reload at most (default: as long as the daemon lives)",
    _reload_timeout_arg,
    "S",
)
UPGRADE_TIMEOUT_FLAG = Flag(
    ("--timeout",),
    "seconds to wait for the successor at most (default: as long as the daemon lives)",
    _reload_timeout_arg,
    "S",
)
JSON_FLAG = Flag(("--json",), "print one JSON object: pid, state, uptime_s, cpu_s, rss_bytes, threads, fds, ...")

DECORATED_ACTIONS = (
    Action(
        "start",
        "start the daemon; exits 0 once it is ready (0 also if it already runs)",
        "Start the daemon in the background; exit 0 once it is ready, 1 with its traceback if it fails.",
        words=True,
    ),
    Action(
        "stop",
        "stop it: SIGTERM, then SIGKILL after the stop timeout (0 also if not running)",
        "Stop the daemon: SIGTERM, then SIGKILL after the timeout; exit 0 also if it was not running.",
        (TIMEOUT_FLAG,),
    ),
    Action(
        "restart",
        "stop, then start (a daemon with listen= sockets: an upgrade, refusing no connection)",
        "Stop the daemon (if it runs), then start it. A daemon with listen= sockets that can be upgraded"
        " (see upgrade) is upgraded instead, when no words are given: its command line starts again.",
        (TIMEOUT_FLAG,),
        words=True,
    ),
    Action(
        "status",
        "0 running, 1 dead but pidfile exists, 3 not running, 4 unknown",
        "Say whether the daemon runs: exit 0 running, 1 dead but pidfile exists, 3 not running, 4 unknown.",
        (JSON_FLAG,),
    ),
    Action(
        "reload",
        "SIGHUP, and wait until the daemon has reloaded (0 done, 1 failed, 7 not running)",
        "Reload the daemon (reopen its logs, call on_reload) and wait for it: exit 0 done, 1 failed with its"
        " traceback (it keeps its previous state) or it died, 7 not running.",
        (RELOAD_TIMEOUT_FLAG,),
    ),
    Action(
        "run",
        "run in the foreground, without detaching",
        "Run the function in the foreground, without detaching (debugging, containers); Ctrl-C exits 130.",
        words=True,
    ),
    Action(
        "upgrade",
        "start a successor that takes over the listen= sockets; no connection refused (0, 1 failed, 7)",
        "Zero-downtime upgrade: the daemon starts its successor from the same command line and hands it its"
        " listen= sockets and pidfile; once the successor is ready the old daemon drains and exits. Exit 0"
        " upgraded, 1 refused or the successor failed (its traceback; the old daemon keeps serving), 7 not"
        " running.",
        (UPGRADE_TIMEOUT_FLAG,),
    ),
)


def _action_parser(prog: str, action: Action) -> argparse.ArgumentParser:
    import argparse

    parser = argparse.ArgumentParser(prog=f"{prog} {action.name}", description=action.description)
    for flag in action.flags:
        flag.add_to(parser)
    if action.words:
        parser.add_argument(
            "arg",
            nargs="*",
            metavar="ARG",
            help="passed to the function as a string; after -- even if it looks like an option",
        )
    return parser


def _split_words(action: Action, words: list[str]) -> tuple[list[str], list[str]]:
    """*words* after an action that takes the function's words: (the action's own options, the function's)."""
    own = (*action.flags, Flag(("-h", "--help"), ""))
    index = 0
    while index < len(words):
        if words[index] == "--":
            return words[:index], words[index + 1 :]
        taken = max(flag.consumes(words[index]) for flag in own)
        if not taken:
            break
        index += taken
    return words[:index], words[index:]


def _parse(parser: argparse.ArgumentParser, words: list[str]) -> argparse.Namespace | int:
    """*parser*'s namespace, or the exit code when argparse exits (-h: 0, a usage error: 2)."""
    try:
        return parser.parse_args(words)
    except SystemExit as leaving:
        return leaving.code if isinstance(leaving.code, int) else USAGE_ERROR


def _usage_error(parser: argparse.ArgumentParser, message: str) -> int:
    _say(f"{parser.format_usage().rstrip()}\n{parser.prog}: error: {message}", error=True)
    return USAGE_ERROR


# -- binding the words to the function ------------------------------------------------


def argument_problem(function: Callable[..., Any], words: Sequence[str]) -> str | None:
    """Why ``function(*words)`` cannot be called, naming the parameter; None when it binds.

    Checked in the launcher, before anything forks. A function whose
    signature cannot be read (some builtins) is not checked.
    """
    import inspect

    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return None
    try:
        signature.bind(*words)
    except TypeError as exc:
        return _explain(signature, words, exc)
    return None


def _explain(signature: inspect.Signature, words: Sequence[str], exc: TypeError) -> str:
    import inspect

    parameters = list(signature.parameters.values())
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(words) > len(positional) and not any(p.kind == p.VAR_POSITIONAL for p in parameters):
        takes = f"at most {len(positional)}" if positional else "none"
        return f"unexpected argument {words[len(positional)]!r} (the function takes {takes})"
    for parameter in positional[len(words) :]:
        if parameter.default is inspect.Parameter.empty:
            return f"missing argument {parameter.name!r}"
    for parameter in parameters:
        if parameter.kind == parameter.KEYWORD_ONLY and parameter.default is inspect.Parameter.empty:
            return f"the function's keyword-only parameter {parameter.name!r} cannot be given on the command line"
    return str(exc)  # pragma: no cover - every TypeError of bind(*words) is one of the above


# -- main.cli() ------------------------------------------------------------------------


def _help(prog: str, name: str, doc: str | None) -> str:
    width = max(len(action.name) for action in DECORATED_ACTIONS) + 2
    actions = "\n".join(f"  {action.name:<{width}}{action.summary}" for action in DECORATED_ACTIONS)
    about = f"Control the {name} daemon."
    if doc:
        about = f"{doc}\n\n{about}"
    return f"""{_usage(prog)}

{about}

actions:
{actions}

options:
  -h, --help  show this help; '{prog} ACTION -h' shows an action's own
  --version   print daemondeco's version

Words after start, run and restart (after their own options, or after --) are
passed to {name}() as string arguments."""


def _usage(prog: str) -> str:
    return f"usage: {prog} [-h] [--version] {{{'|'.join(action.name for action in DECORATED_ACTIONS)}}} [ARG ...]"


def _unknown_action(prog: str, word: str | None) -> int:
    if word is None:
        problem = "an action is required"
    else:
        import difflib

        problem = f"unknown action {word!r}"
        close = difflib.get_close_matches(word.lower(), [action.name for action in DECORATED_ACTIONS], n=1)
        if close:
            problem += f" (did you mean {close[0]!r}?)"
    _say(f"{_usage(prog)}\n{prog}: error: {problem}", error=True)
    return USAGE_ERROR


def _first_paragraph(text: str | None) -> str | None:
    if not text:
        return None
    import inspect

    return inspect.cleandoc(text).split("\n\n", 1)[0].strip() or None


def run_decorated_cli(options: Options, function: Callable[..., Any], argv: Sequence[str] | None) -> int:
    """The ``.cli()`` of a ``@daemon`` function decorated with *options*.

    Errors are caught only while acting as the launcher (checks, locking,
    waiting for readiness): in the daemon, or in the foreground ``run``, the
    function's own exceptions propagate with their tracebacks.
    """
    words = list(sys.argv[1:] if argv is None else argv)
    prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "daemon"
    name = str(getattr(function, "__qualname__", None) or getattr(function, "__name__", "daemon"))
    if words and words[0] in ("-h", "--help", "help"):
        _say(_help(prog, name, _first_paragraph(getattr(function, "__doc__", None))))
        return 0
    if words and words[0] == "--version":
        _say(f"daemondeco {__version__}")
        return 0
    action = next((action for action in DECORATED_ACTIONS if words and action.name == words[0]), None)
    if action is None:
        return _unknown_action(prog, words[0] if words else None)
    parser = _action_parser(prog, action)
    own, extra = _split_words(action, words[1:]) if action.words else (words[1:], [])
    parsed = _parse(parser, own)
    if isinstance(parsed, int):
        return parsed
    if action.words and (problem := argument_problem(function, extra)) is not None:
        return _usage_error(parser, problem)  # before anything is stopped, locked or forked
    if action.name == "run":
        return _run_foreground(options, function, name, extra)
    if action.name == "reload":
        return _guarded(name, "reload", lambda: report_reload(pidfile_path(options, "reload"), name, parsed.timeout))
    if action.name == "upgrade":
        return _guarded(name, "upgrade", lambda: report_upgrade(pidfile_path(options, "upgrade"), name, parsed.timeout))
    if action.name == "status":
        as_json = bool(parsed.json)
        return _guarded(name, "status", lambda: report_status(pidfile_path(options, "status"), name, as_json=as_json))
    timeout = getattr(parsed, "timeout", None)
    if timeout is None:
        timeout = options.stop_timeout
    return _control(options, function, name, action.name, extra=extra, timeout=timeout)


def _guarded(name: str, action: str, report: Callable[[], int]) -> int:
    """*report*'s exit code; a DaemonError or OSError said in one line (status: 4, else 1)."""
    try:
        return report()
    except (DaemonError, OSError) as exc:
        _say(f"{name}: {exc}", error=True)
        return STATUS_UNKNOWN if action == "status" else 1


def _control(
    options: Options, function: Callable[..., Any], name: str, action: str, *, extra: list[str], timeout: float
) -> int:
    """start, stop or restart, with errors as LSB codes."""
    try:
        if action in ("stop", "restart"):
            path = pidfile_path(options, action)
            if action == "stop":
                return report_stop(path, name, timeout)
            if restart_action(options, has_words=bool(extra)) == "upgrade":  # the handover: no connection refused
                return report_upgrade(path, name, None)
            if report_stop(path, name, timeout) != 0:
                return 1
        # A successor (an upgrade) starts while its predecessor holds the pidfile it hands over.
        from ._handover import HANDOVER_VARIABLE  # lazy: only a start gets here

        handing_over = HANDOVER_VARIABLE in os.environ
        if (
            options.pidfile is not None
            and not handing_over
            and (running := status_pidfile(os.path.abspath(options.pidfile))) is not None
        ):
            _say(f"{name} is already running (pid {running})")
            return 0
        # Returns only in the launcher, and only by raising: the daemon's own
        # errors end inside the daemon (run_in_daemon), never here.
        from ._engine import launch  # lazy: the control actions (status, stop, reload) never need the engine

        launch(options, function, tuple(extra), {}, lambda pid: _say(f"{name} started (pid {pid})"))
    except AlreadyRunningError as exc:
        _say(f"{name}: {exc}")
        return 0
    except StartupError as exc:
        _report_start_failure(options, name, exc)
        return 1
    except (DaemonError, OSError, ValueError, TypeError) as exc:
        _say(f"{name}: {exc}", error=True)
        return 1


def _run_foreground(options: Options, function: Callable[..., Any], name: str, extra: list[str]) -> int:
    try:
        from ._engine import Foreground  # lazy, as in _control()

        session = Foreground.for_debugging(options)
    except (DaemonError, OSError) as exc:
        _say(f"{name}: {exc}", error=True)
        return 1
    try:
        result = session.run(function, tuple(extra), {})
    except KeyboardInterrupt:
        return 130
    finally:
        session.close()
    return result if isinstance(result, int) and not isinstance(result, bool) else 0


# -- python -m daemondeco ----------------------------------------------------------------

MODULE_ACTIONS = (
    Action(
        "status",
        "0 running, 1 stale pidfile, 3 stopped, 4 unknown",
        "Say whether the daemon of PIDFILE runs: exit 0 running, 1 stale pidfile, 3 stopped, 4 unknown.",
        (JSON_FLAG,),
    ),
    Action(
        "reload",
        "SIGHUP, and wait until the daemon has reloaded (0 done, 1 failed, 7 not running)",
        "Reload the daemon of PIDFILE and wait for it: exit 0 done, 1 failed (its traceback on stderr) or it"
        " died, 7 not running.",
        (RELOAD_TIMEOUT_FLAG,),
    ),
    Action(
        "stop",
        "SIGTERM, then SIGKILL after --timeout (0 also if not running)",
        f"Stop the daemon of PIDFILE: SIGTERM, then SIGKILL after --timeout (default {STOP_TIMEOUT:g} s).",
        (
            Flag(
                ("--timeout",),
                f"seconds before stop escalates to SIGKILL (default {STOP_TIMEOUT:g})",
                _seconds_arg,
                "S",
            ),
        ),
    ),
    Action(
        "upgrade",
        "hand the listen= sockets to a successor (0 upgraded, 1 refused or failed, 7 not running)",
        "Zero-downtime upgrade of the daemon of PIDFILE: it starts its successor from its own command line and"
        " hands it its sockets and pidfile. Exit 0 upgraded, 1 refused or the successor failed (its traceback"
        " on stderr; the old daemon keeps serving), 7 not running.",
        (UPGRADE_TIMEOUT_FLAG,),
    ),
)


def _quick_parse(words: Sequence[str]) -> tuple[str, str, bool, float | None] | None:
    """(action, pidfile, --json, --timeout) for the common command lines; None for anything else.

    ``status|stop|reload PIDFILE`` with their own options spelt out in full,
    in any order, each at most once. Everything else (``-h``, ``--version``,
    abbreviations, a PIDFILE starting with ``-``, a bad value, a usage error)
    goes to argparse, which then prints what it always printed. This path
    exists because monitors and init scripts run ``status`` in loops, and
    argparse brings ``re``, ``gettext``, ``locale`` and ``shutil``: about
    15 ms of imports for a command that otherwise costs a few.
    """
    if not words or words[0] not in ("status", "stop", "reload"):
        return None
    action, path, as_json, timeout, index = words[0], None, False, None, 1
    while index < len(words):
        word = words[index]
        if word == "--json" and action == "status" and not as_json:
            as_json = True
        elif action != "status" and timeout is None and (word == "--timeout" or word.startswith("--timeout=")):
            if word == "--timeout":
                index += 1
                if index == len(words):
                    return None
                timeout = _quick_timeout(action, words[index])
            else:
                timeout = _quick_timeout(action, word[len("--timeout=") :])
            if timeout is None:
                return None
        elif word.startswith("-") or path is not None:
            return None
        else:
            path = word
        index += 1
    if path is None:
        return None
    return action, path, as_json, timeout


def _quick_timeout(action: str, text: str) -> float | None:
    """--timeout's value as argparse's type would give it; None when argparse must say what is wrong."""
    if text.startswith("-"):
        return None
    try:
        if action == "stop":
            return seconds("stop", "--timeout", float(text), positive=False)
        return reload_timeout(float(text))
    except ValueError:
        return None


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m daemondeco status|stop|reload|upgrade PIDFILE [--timeout S] [--json]``; ``--version``, ``-h``."""
    quick = _quick_parse(sys.argv[1:] if argv is None else argv)
    if quick is not None:
        return _control_by_pidfile(*quick)
    import argparse

    prog = "python -m daemondeco"
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Control a daemondeco daemon by its pidfile (LSB exit codes).",
    )
    parser.add_argument("--version", action="version", version=f"daemondeco {__version__}")
    names = ",".join(action.name for action in MODULE_ACTIONS)
    actions = parser.add_subparsers(dest="action", required=True, metavar=f"{{{names}}}")
    for action in MODULE_ACTIONS:
        sub = actions.add_parser(action.name, help=action.summary, description=action.description)
        sub.add_argument("pidfile", help="the daemon's pidfile")
        for flag in action.flags:
            flag.add_to(sub)
    args = parser.parse_args(argv)
    return _control_by_pidfile(args.action, args.pidfile, getattr(args, "json", False), getattr(args, "timeout", None))


def _control_by_pidfile(action: str, pidfile: str, as_json: bool, timeout: float | None) -> int:
    path = os.path.abspath(pidfile)
    name = _display(os.path.basename(path))
    try:
        if action == "status":
            return report_status(path, name, as_json=as_json)
        if action == "reload":
            return report_reload(path, name, timeout)
        if action == "upgrade":
            return report_upgrade(path, name, timeout)
        return report_stop(path, name, STOP_TIMEOUT if timeout is None else timeout)
    except (OSError, DaemonError) as exc:
        _say(f"{name}: {exc}", error=True)
        return STATUS_UNKNOWN if action == "status" else 1
