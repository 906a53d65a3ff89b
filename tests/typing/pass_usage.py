"""Correct use of daemondeco, as a user writes it: mypy --strict must accept every line."""

from __future__ import annotations

import sys

from daemondeco import (
    DaemonFunction,
    DaemonProcess,
    Pidfile,
    StartupError,
    WorkerError,
    WorkerFunction,
    WorkerGroup,
    WorkerGroupFunction,
    daemon,
    daemonize,
    notify_ready,
    notify_status,
    process_daemonize,
)


@daemon(pidfile="/tmp/typing-example.pid", stdout="/tmp/typing-example.log", ready="notify", stop_timeout=5, ready_fd=3)
def serve(port: int, *, verbose: bool = False) -> int:
    notify_ready()
    notify_status(f"listening on {port}")
    return 0


@daemon
def bare() -> None:
    pass


@process_daemonize(stop_timeout=2.5)
def sync_account(account: str) -> None:
    pass


@process_daemonize
def bare_worker(n: int) -> str:
    return str(n)


@process_daemonize(pidfile="/tmp/typing-sync-{i}.pid", instances=4, restart="on-failure", ready="start")
def sync_shard(i: int) -> None:
    pass


@daemon(ready="auto")
def auto_ready() -> None:
    pass


def control() -> None:
    wrapper: DaemonFunction[[int], int] = serve
    result: int = serve.run(8080, verbose=True)
    pid: int | None = serve.status()
    stopped: bool = serve.stop(timeout=3.0)
    code: int = serve.cli(["status"])
    handle: DaemonProcess = sync_account("alice")
    running: bool = handle.is_running()
    exited: int | None = handle.wait(1.0)
    exitcode: int | None = handle.exitcode
    value: object = handle.result(timeout=1.0)
    error: WorkerError | None = handle.exception(timeout=1.0)
    again: DaemonProcess = DaemonProcess.from_pidfile("/tmp/typing-example.pid")
    print(exitcode, value, error, again)
    worker: WorkerFunction[[int], str] = bare_worker
    other: DaemonProcess = worker(3)
    with Pidfile("/tmp/typing-example-2.pid") as lock:
        holder: int | None = lock.read_pid()
    print(wrapper, result, pid, stopped, code, running, exited, other, holder)
    bare.run()
    try:
        serve.start(8080)
    except StartupError as exc:
        print(exc.daemon_traceback, file=sys.stderr)
    serve.reload(timeout=5.0)
    daemonize(pidfile="/tmp/typing-example-3.pid", ready="notify")


def groups() -> None:
    maker: WorkerGroupFunction[[int], None] = sync_shard
    group: WorkerGroup = maker(0)
    count: int = len(group)
    pids: list[int] = group.pids
    states: list[int | None] = group.status()
    for member in group:
        last = member.last_exit
        if last is not None:
            code: int | None = last["status"]
            signal: str | None = last["signal"]
            print(code, signal, last["exception"])
    print(count, pids, states, group.wait(1.0), group.stop(timeout=2.0))
