"""The daemon's signal handling.

* Inherited state is reset: the launcher's signal mask (a launcher started
  with SIGTERM blocked) and inherited ``SIG_IGN`` dispositions (``nohup``,
  ``cmd &`` in a script) do not reach the daemon.
* SIGTERM raises ``SystemExit(0)`` in the main thread, once, after telling
  the service manager ``STOPPING=1``: ``finally`` blocks and context managers
  run and a stopped daemon exits 0. A second SIGTERM during cleanup is
  ignored (``stop()`` escalates to SIGKILL if cleanup hangs).
* SIGHUP reloads: ``RELOADING=1``, reopen the stdout/stderr targets, call
  ``on_reload``, ``READY=1``.
* The ``signals`` option adds handlers or overrides SIGHUP's.

Python runs signal handlers in the main thread between bytecodes. Async
daemons get the same meanings through ``loop.add_signal_handler``, so their
handlers run as event-loop callbacks, outside the signal frame.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    import signal
else:
    try:
        # The C module behind `signal`, loaded at interpreter start. `signal`
        # wraps it in enums and costs ~1.8 ms to import -- in every daemon,
        # after the fork, when nothing else imported it (measured: benchmarks/).
        import _signal as signal
    except ImportError:  # pragma: no cover - other interpreters
        import signal

from ._ready import Runtime  # noqa: E402 - after the choice of signal module above

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable
    from typing import Any

    from ._options import Options

    Handler = Callable[[int, Any], object] | int | None

__all__ = ["install", "on_sigterm", "reset_inherited", "restore"]

# Signals an inherited SIG_IGN is taken off in the daemon. SIGPIPE stays
# ignored: Python relies on that to raise BrokenPipeError.
_RESET_IF_IGNORED = ("SIGHUP", "SIGINT", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGALRM", "SIGCHLD", "SIGTERM")

_stopping = False


def inherited() -> tuple[bool, tuple[int, ...]]:
    """What a child would inherit: is any signal blocked, which ones are ignored.

    Asked in the launcher before the fork (the child inherits exactly this),
    so the daemon touches its signal state only when there is something to
    undo: every page a freshly forked child touches costs a copy.
    """
    blocked = bool(signal.pthread_sigmask(signal.SIG_BLOCK, ()))
    ignored = []
    for name in _RESET_IF_IGNORED:
        signum = getattr(signal, name, None)
        if signum is not None and signal.getsignal(signum) == signal.SIG_IGN:
            ignored.append(signum)
    return blocked, tuple(ignored)


def reset_inherited(state: tuple[bool, tuple[int, ...]] | None = None) -> None:
    """Empty the signal mask and undo inherited ``SIG_IGN`` dispositions.

    Args:
        state: what ``inherited()`` found before the fork; None: look now.

    """
    blocked, ignored = inherited() if state is None else state
    if blocked:
        signal.pthread_sigmask(signal.SIG_SETMASK, ())
    for signum in ignored:
        signal.signal(signum, signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL)


def begin_stop() -> bool:
    """Record that a stop began; False if one already had (ignore repeats)."""
    global _stopping
    if _stopping:
        return False
    _stopping = True
    runtime = Runtime.current
    if runtime is not None:
        runtime.notify("STOPPING=1")
    return True


def on_sigterm(signum: int, frame: object) -> None:
    """SIGTERM: raise SystemExit(0) in the main thread, once, so cleanup runs."""
    if begin_stop():
        raise SystemExit(0)


def on_sighup(signum: int, frame: object) -> None:
    """SIGHUP: reload (reopen logs, ``on_reload``), telling systemd around it."""
    runtime = Runtime.current
    if runtime is not None:
        runtime.reload()


def install(options: Options) -> dict[int, Handler]:
    """Install the daemon's handlers; return the previous ones (for ``restore``)."""
    global _stopping
    _stopping = False
    wanted: dict[int, Handler] = {signal.SIGTERM: on_sigterm, signal.SIGHUP: on_sighup}
    for signum, handler in options.signals:
        # SIG_IGN/SIG_DFL arrive as signal.Handlers enums; _signal wants plain ints.
        wanted[signum] = handler if callable(handler) else int(handler)
    return {signum: signal.signal(signum, handler) for signum, handler in wanted.items()}


def restore(previous: dict[int, Handler]) -> None:
    """Put back the handlers ``install`` replaced."""
    for signum, handler in previous.items():
        signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


def in_main_thread() -> bool:
    """Signal handlers can only be installed from the main thread."""
    import threading

    return threading.current_thread() is threading.main_thread()
