"""Mistakes mypy --strict must catch: each line marked ``# E: <text>`` must give that error, and no other line may."""

from __future__ import annotations

from daemondeco import daemon, daemonize, process_daemonize


@daemon(pidfile="/tmp/typing-example.pid")
def serve(port: int) -> int:
    return 0


@process_daemonize
def work(account: str) -> None:
    pass


def mistakes() -> None:
    serve.statsu()  # E: has no attribute "statsu"
    serve.run("8080")  # E: incompatible type "str"; expected "int"
    work(42)  # E: incompatible type "int"; expected "str"
    work("alice").stopp()  # E: has no attribute "stopp"
    daemon(pidfle="/tmp/x.pid")  # E: Unexpected keyword argument "pidfle"
    daemonize(umask="022")  # E: Argument "umask" to "daemonize" has incompatible type "str"
    serve.start(8080, 1)  # E: Too many arguments
