"""multiprocessing's per-process state, reset in a fresh daemon (issue 20).

The detach closes every fd the launcher had open, among them those that
``multiprocessing`` keeps in module globals: the resource tracker's pipe (used
by every lock, queue, pool and shared memory block under the ``spawn`` and
``forkserver`` start methods) and the forkserver's socket and alive pipe. Left
as they are, the daemon's first multiprocessing call writes to an fd that is
closed (``OSError: [Errno 9] Bad file descriptor`` in
``resource_tracker.ensure_running``) or, worse, that a later ``open`` reused.
The daemon is also not the parent of the launcher's children, forkserver or
tracker, and must not run the launcher's finalizers (a pool's would terminate
the launcher's pool workers) nor remove the launcher's temporary directory.

So the daemon starts multiprocessing over as a new main process does: no
tracker, no forkserver (each is started again, as the daemon's own child, on
first use), no children, no finalizers, no temporary directory, no parent; the
objects registered with ``multiprocessing.util.register_after_fork`` are reset
as in a child that multiprocessing forks itself. What survives: the chosen
start method, the forkserver preload list and the authentication key.

Only when the launcher imported multiprocessing: ``import daemondeco`` and a
start that does not use it never import it. The private names read here are
listed in docs/internals.md.
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["reset_after_detach"]

# Attributes of multiprocessing.forkserver._forkserver naming the launcher's
# forkserver (3.10-3.13; _forkserver_authkey is 3.14's): None = not started.
_FORKSERVER_STATE = (
    "_forkserver_address",
    "_forkserver_alive_fd",
    "_forkserver_authkey",
    "_forkserver_pid",
    "_inherited_fds",
)


def reset_after_detach(*, worker: bool) -> None:
    """In a daemon just detached: make multiprocessing's state this process's own.

    Args:
        worker: the daemon is a ``process_daemonize`` worker, whose caller's
            atexit handlers were cleared: multiprocessing's own exit handler
            (join the daemon's children, run its finalizers) is registered again.

    """
    if "multiprocessing" not in sys.modules:
        return
    modules = sys.modules
    tracker_module = modules.get("multiprocessing.resource_tracker")
    tracker = getattr(tracker_module, "_resource_tracker", None)
    if tracker is not None:
        _forget(tracker, ("_fd", "_pid", "_exitcode"))
    forkserver_module = modules.get("multiprocessing.forkserver")
    forkserver = getattr(forkserver_module, "_forkserver", None)
    if forkserver is not None:
        _forget(forkserver, _FORKSERVER_STATE)
    process = modules.get("multiprocessing.process")
    if process is not None:
        config = process._current_process._config
        config.pop("tempdir", None)  # the launcher's: it removes it at its exit
        config.pop("daemon", None)  # a launcher that was a daemonic child: the daemon may have children
        vars(process).update(_parent_process=None, _children=set())  # not the launcher's children
    util = modules.get("multiprocessing.util")
    if util is not None:
        util._finalizer_registry.clear()
        util._run_after_forkers()  # what a child forked by multiprocessing runs first
        if worker:
            import atexit

            atexit.register(util._exit_function)


def _forget(state: Any, names: tuple[str, ...]) -> None:
    """Set the attributes *names* of *state* that exist to None."""
    for name in names:
        if hasattr(state, name):
            setattr(state, name, None)
