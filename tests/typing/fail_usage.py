"""Mistakes mypy --strict must catch: each line marked ``# E: <text>`` must give that error, and no other line may."""

from __future__ import annotations

from daemondeco import daemon, daemonize, process_daemonize


@daemon(pidfile="/tmp/typing-example.pid")
def serve(port: int) -> int:
    return 0


@process_daemonize
def work(account: str) -> None:
    pass


@process_daemonize(pidfile="/tmp/typing-shard-{i}.pid", instances=2)
def shards(i: int) -> None:
    pass


def mistakes() -> None:
    serve.statsu()  # E: has no attribute "statsu"
    serve.run("8080")  # E: incompatible type "str"; expected "int"
    work(42)  # E: incompatible type "int"; expected "str"
    work("alice").stopp()  # E: has no attribute "stopp"
    daemon(pidfle="/tmp/x.pid")  # E: Unexpected keyword argument "pidfle"
    daemonize(umask="022")  # E: Argument "umask" to "daemonize" has incompatible type "str"
    serve.start(8080, 1)  # E: Too many arguments


def misused_options() -> None:
    daemon(ready="notfiy")  # E: No overload variant of "daemon" matches argument type "str"
    daemonize(ready="notfiy")  # E: Argument "ready" to "daemonize" has incompatible type
    daemonize(restart="always")  # E: Unexpected keyword argument "restart" for "daemonize"
    daemon(instances=3)  # E: Unexpected keyword argument "instances" for overloaded function "daemon"
    len(work("alice"))  # E: Argument 1 to "len" has incompatible type "DaemonProcess"
    len(shards(0))
    print(shards(0).pid)  # E: "WorkerGroup" has no attribute "pid"
