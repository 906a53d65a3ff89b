"""Command lines with LSB init-script exit codes.

``main.cli()`` gives a ``@daemon`` function ``start|stop|restart|status|run``;
``python -m daemondeco status|stop PIDFILE`` controls any daemondeco daemon
by its pidfile. Exit codes (LSB):

=========  ==============================================================
status     0 running, 1 dead but pidfile exists, 3 not running, 4 unknown
start      0 started or already running, 1 failed
stop       0 stopped or not running, 1 failed to stop
restart    0 restarted, 1 failed
any        2 usage error
=========  ==============================================================
"""

from __future__ import annotations

import os
import sys

from ._control import pidfile_path, reload_pidfile, status_pidfile, status_report, stop_pidfile
from ._engine import Foreground, launch
from ._errors import AlreadyRunningError, DaemonError, ReloadError
from ._options import STOP_TIMEOUT, seconds

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable, Sequence
    from typing import Any

    from ._options import Options

__all__ = ["main", "run_decorated_cli"]

ACTIONS = ("start", "stop", "restart", "status", "reload", "run")

STATUS_RUNNING, STATUS_DEAD, STATUS_STOPPED, STATUS_UNKNOWN = 0, 1, 3, 4
USAGE_ERROR = 2
NOT_RUNNING = 7  # LSB: "program is not running", for actions other than status


def _say(text: str, *, error: bool = False) -> None:
    stream = sys.stderr if error else sys.stdout
    try:
        print(text, file=stream, flush=True)
    except UnicodeEncodeError:  # a strict stdout and a name that is not in its encoding
        encoding = getattr(stream, "encoding", None) or "ascii"
        print(text.encode(encoding, "backslashreplace").decode(encoding), file=stream, flush=True)


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
        _say(f"{name} is not running, but its pidfile {_display(path)} exists (stale)")
    else:
        _say(f"{name} is not running")
    return code


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
    return ", " + ", ".join(parts)


def report_reload(path: str, name: str, timeout: float | None) -> int:
    """Reload *name*'s daemon by pidfile *path* and wait for it; 0, 1 (failed) or 7 (not running)."""
    try:
        pid = reload_pidfile(path, timeout)
    except ReloadError as exc:
        if not exc.running:
            _say(f"{name} is not running", error=True)
            return NOT_RUNNING
        _say(f"{name}: {exc}", error=True)
        return 1
    _say(f"{name} reloaded (pid {pid})")
    return 0


def report_stop(path: str, name: str, timeout: float) -> int:
    """Stop *name*'s daemon by pidfile *path*, print what happened; LSB code."""
    pid = status_pidfile(path)
    if not stop_pidfile(path, timeout):
        _say(f"{name}: failed to stop the daemon of {_display(path)} within {timeout:g} s", error=True)
        return 1
    _say(f"{name} stopped (pid {pid})" if pid is not None else f"{name} is not running")
    return 0


def _usage(prog: str) -> str:
    return f"usage: {prog} {{{'|'.join(ACTIONS)}}} [ARG ...]"


def _help(prog: str, name: str) -> str:
    return f"""{_usage(prog)}

Control the {name} daemon.

actions:
  start     start the daemon; exits 0 once it is ready (0 also if it already runs)
  stop      stop it: SIGTERM, then SIGKILL after the stop timeout (0 also if not running)
  restart   stop, then start
  status    0 running, 1 dead but pidfile exists, 3 not running, 4 unknown
  run       run in the foreground, without detaching

Words after the action are passed to {name}() as string arguments."""


def _seconds_arg(text: str) -> float:
    """Parse --timeout for argparse: a finite number of seconds >= 0."""
    import argparse

    try:
        return seconds("stop", "--timeout", float(text), positive=False)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _display(text: str) -> str:
    """*text* (a path, maybe with undecodable bytes) in a form any terminal can print."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


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
        _say(_help(prog, name))
        return 0
    if not words or words[0] not in ACTIONS:
        problem = f"unknown action {words[0]!r}" if words else "an action is required"
        _say(f"{_usage(prog)}\n{prog}: error: {problem}", error=True)
        return USAGE_ERROR
    action, extra = words[0], words[1:]
    if action == "run":
        return _run_foreground(options, function, name, extra)
    try:
        if action == "reload":
            return report_reload(pidfile_path(options, action), name, None)
        if action in ("status", "stop", "restart"):
            path = pidfile_path(options, action)
            if action == "status":
                return report_status(path, name, as_json="--json" in extra)
            if action == "stop":
                return report_stop(path, name, options.stop_timeout)
            if report_stop(path, name, options.stop_timeout) != 0:
                return 1
        if options.pidfile is not None and (running := status_pidfile(os.path.abspath(options.pidfile))) is not None:
            _say(f"{name} is already running (pid {running})")
            return 0
        # Returns only in the launcher, and only by raising: the daemon's own
        # errors end inside the daemon (run_in_daemon), never here.
        launch(options, function, tuple(extra), {}, lambda pid: _say(f"{name} started (pid {pid})"))
    except AlreadyRunningError as exc:
        _say(f"{name}: {exc}")
        return 0
    except (DaemonError, OSError, ValueError, TypeError) as exc:
        _say(f"{name}: {exc}", error=True)
        return STATUS_UNKNOWN if action == "status" else 1


def _run_foreground(options: Options, function: Callable[..., Any], name: str, extra: list[str]) -> int:
    try:
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


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m daemondeco status|stop PIDFILE [--timeout S]``."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m daemondeco",
        description="Control a daemondeco daemon by its pidfile (LSB exit codes).",
    )
    parser.add_argument(
        "action",
        choices=("status", "stop", "reload"),
        help="status: 0 running, 1 stale pidfile, 3 stopped; reload: 0 done, 1 failed, 7 not running",
    )
    parser.add_argument("--json", action="store_true", help="status: print one JSON object")
    parser.add_argument("pidfile", help="the daemon's pidfile")
    parser.add_argument(
        "--timeout",
        type=_seconds_arg,
        default=STOP_TIMEOUT,
        help=f"seconds before stop escalates to SIGKILL (default {STOP_TIMEOUT:g})",
    )
    args = parser.parse_args(argv)
    path = os.path.abspath(args.pidfile)
    name = _display(os.path.basename(path))
    try:
        if args.action == "status":
            return report_status(path, name, as_json=args.json)
        if args.action == "reload":
            return report_reload(path, name, None)
        return report_stop(path, name, args.timeout)
    except (OSError, DaemonError) as exc:
        _say(f"{name}: {exc}", error=True)
        return STATUS_UNKNOWN if args.action == "status" else 1
