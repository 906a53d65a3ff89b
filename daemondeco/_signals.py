"""Signal primitives: the daemon's handlers and the signal state it inherits.

* Inherited state is reset: the launcher's signal mask (a launcher started
  with SIGTERM blocked) and inherited ``SIG_IGN`` dispositions (``nohup``,
  ``cmd &`` in a script) do not reach the daemon (``daemondeco.compat`` puts
  the dispositions back outside ``signal_map``, as python-daemon leaves them).
* SIGTERM raises ``SystemExit(0)`` in the main thread, once (the runtime's
  ``begin_stop`` says whether a stop already began): ``finally`` blocks and
  context managers run and a stopped daemon exits 0. A second SIGTERM during
  cleanup is ignored (``stop()`` escalates to SIGKILL if cleanup hangs).
* SIGHUP only *asks* for a reload (``runtime.request_reload``): the reload
  itself runs in a thread of its own, never inside the handler. A Python
  handler runs between two bytecodes of the main thread, which may be in the
  middle of a write to the very stream the reload flushes (``RuntimeError:
  reentrant call``); gunicorn's rule, "a handler only records", avoids that.
* SIGUSR2 asks a daemon that listens (``listen=``) for an upgrade
  (``runtime.request_upgrade``, which starts a thread); elsewhere it keeps
  its default.
* The ``signals`` option adds handlers or overrides SIGHUP's (and SIGUSR2's).

This module is the package's one way to reach signal numbers and functions:
``_signal``, the C module behind ``signal``, is loaded at interpreter start,
while ``signal`` wraps it in enums and costs ~1.8 ms to import -- in every
daemon, after the fork, when nothing else imported it (measured:
``benchmarks/``). It imports nothing of the package: the runtime is passed in.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    import signal
    from collections.abc import Callable
    from typing import Protocol

    from ._options import Options
    from ._types import Handler

    class Stoppable(Protocol):
        """What the handlers need of the daemon's runtime."""

        def begin_stop(self) -> bool:
            """Record that a stop began; False if one already had."""

        def request_reload(self) -> None:
            """Ask for a reload; returns at once."""

        def request_upgrade(self) -> None:
            """Ask for an upgrade; returns at once."""

        @property
        def upgrade_plan(self) -> object | None:
            """How to start a successor, when this daemon can be upgraded."""

else:
    try:
        import _signal as signal
    except ImportError:  # pragma: no cover - other interpreters
        import signal

__all__ = [
    "RESET_IF_IGNORED",
    "SIGCONT",
    "SIGHUP",
    "SIGKILL",
    "SIGSTOP",
    "SIGTERM",
    "SIGUSR2",
    "block_all",
    "forward",
    "ignore_interrupts",
    "in_main_thread",
    "inherited",
    "install",
    "reset_inherited",
    "restore",
    "signal_name",
    "wait_for_children",
]

SIGCONT: int = signal.SIGCONT
SIGHUP: int = signal.SIGHUP
SIGINT: int = signal.SIGINT
SIGKILL: int = signal.SIGKILL
SIGSTOP: int = signal.SIGSTOP
SIGTERM: int = signal.SIGTERM
SIGUSR2: int = signal.SIGUSR2

# Signals an inherited SIG_IGN is taken off in the daemon (compat restores them:
# python-daemon leaves them alone). SIGPIPE stays ignored: Python relies on
# that to raise BrokenPipeError. SIGTERM and SIGHUP are also the ones install() handles.
RESET_IF_IGNORED = ("SIGHUP", "SIGINT", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGALRM", "SIGCHLD", "SIGTERM")


def signal_name(signum: int) -> str:
    """``"SIGKILL"`` for 9: the name, without importing ``signal``'s enums."""
    for name in dir(signal):
        if name.startswith("SIG") and not name.startswith("SIG_") and getattr(signal, name) == signum:
            return name
    return f"signal {signum}"


class Inherited:
    """What a child inherits: whether any signal is blocked, which ones are ignored."""

    __slots__ = ("blocked", "ignored")

    def __init__(self, blocked: bool, ignored: tuple[int, ...]) -> None:
        self.blocked = blocked
        self.ignored = ignored


def inherited() -> Inherited:
    """The signal state a child would inherit now.

    Asked in the launcher before the fork (the child inherits exactly this),
    so the daemon touches its signal state only when there is something to
    undo: every page a freshly forked child touches costs a copy.
    """
    blocked = bool(signal.pthread_sigmask(signal.SIG_BLOCK, ()))
    ignored = []
    for name in RESET_IF_IGNORED:
        signum = getattr(signal, name, None)
        if signum is not None and signal.getsignal(signum) == signal.SIG_IGN:
            ignored.append(signum)
    return Inherited(blocked, tuple(ignored))


def reset_inherited(state: Inherited | None = None) -> None:
    """Empty the signal mask and undo inherited ``SIG_IGN`` dispositions.

    Args:
        state: what ``inherited()`` found before the fork; None: look now.

    """
    state = inherited() if state is None else state
    if state.blocked:
        signal.pthread_sigmask(signal.SIG_SETMASK, ())
    for signum in state.ignored:
        signal.signal(signum, signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL)


def block_all() -> None:
    """Block every catchable signal in this thread: a process that must only wait (a worker's monitor)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())


def wait_for_children(state: Inherited) -> None:
    """Undo an inherited ``SIG_IGN`` of SIGCHLD, with which the kernel reaps children before ``waitpid``."""
    if signal.SIGCHLD in state.ignored:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)


def install(options: Options, runtime: Stoppable) -> dict[int, Handler]:
    """Install the daemon's handlers; return the previous ones (for ``restore``)."""

    def on_sigterm(signum: int, frame: object) -> None:
        if runtime.begin_stop():
            raise SystemExit(0)

    def on_sighup(signum: int, frame: object) -> None:
        runtime.request_reload()

    def on_sigusr2(signum: int, frame: object) -> None:
        runtime.request_upgrade()

    wanted: dict[int, Handler] = {signal.SIGTERM: on_sigterm, signal.SIGHUP: on_sighup}
    if runtime.upgrade_plan is not None:  # SIGUSR2 keeps its default meaning elsewhere
        wanted[signal.SIGUSR2] = on_sigusr2
    for signum, handler in options.signals:
        # SIG_IGN/SIG_DFL arrive as signal.Handlers enums; _signal wants plain ints.
        wanted[signum] = handler if callable(handler) else int(handler)
    return {signum: signal.signal(signum, handler) for signum, handler in wanted.items()}


def forward(names: tuple[str, ...], handler: Callable[[int, object], None]) -> None:
    """Install *handler* for each signal named in *names* that this platform has."""
    for name in names:
        signum = getattr(signal, name, None)
        if signum is not None:
            signal.signal(signum, handler)


def restore(previous: dict[int, Handler]) -> None:
    """Put back the handlers ``install`` replaced."""
    for signum, handler in previous.items():
        signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


def ignore_interrupts() -> Callable[[], None]:
    """Ignore SIGINT (a second Ctrl-C) for a while; return the function that restores it.

    Ignored rather than blocked, so that no Ctrl-C stays pending to interrupt
    what follows. Only the main thread may change a disposition: elsewhere
    this does nothing.
    """
    if not in_main_thread():
        return lambda: None
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)

    def restore() -> None:
        signal.signal(signal.SIGINT, previous)

    return restore


def in_main_thread() -> bool:
    """Signal handlers can only be installed from the main thread."""
    import threading

    return threading.current_thread() is threading.main_thread()
