"""Recipe 3, the ``DaemonMixin`` for ``HTTPServer``, restated with daemondeco.

The copied recipe is ``class DaemonTCPServer(DaemonMixin, HTTPServer)``: its
``serve_forever()`` daemonizes first, then serves. The constructor has
already bound and opened the listening socket, so the daemonize step must not
close it. Its flaws:

* recipes that close "all fds" after the fork close the listening socket
  too, and the daemon serves nothing (or loops on EBADF);
* a port already in use, or a bad address, is only noticed where it cannot be
  reported, and the parent has exited 0 regardless.

daemondeco's version names the address with ``listen=``: the launcher binds
it (a busy port fails right there, in the terminal), the socket survives the
detach, and the daemon finds it in ``daemondeco.sockets()``. Because
daemondeco owns the socket, ``upgrade`` can hand it to a new version of the
program without refusing a single connection: the new daemon starts, gets
ready, takes over the pidfile, and only then does the old one stop accepting
(``on_drain=server.shutdown``) and exit.

    python examples/recipes/03_http_server_mixin.py start    # prints the URL
    python examples/recipes/03_http_server_mixin.py upgrade  # new code, same socket
    python examples/recipes/03_http_server_mixin.py status   # 0 running, 3 stopped
    python examples/recipes/03_http_server_mixin.py stop

Listens on 127.0.0.1 only, on $RECIPE_PORT (default 0: a free port chosen
when the daemon first starts). Files go to $RECIPE_DIR (default: a per-user
temp directory).
"""

import os
import socket
import subprocess
import sys
import tempfile
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

from daemondeco import Pidfile, daemon, notify_ready, sockets

HOST = "127.0.0.1"  # loopback only: an example must not listen on the network
PORT = int(os.environ.get("RECIPE_PORT") or 0)
RECIPE_DIR = os.path.abspath(
    os.environ.get("RECIPE_DIR") or os.path.join(tempfile.gettempdir(), f"daemondeco-recipes-{os.getuid()}")
)
PIDFILE = os.path.join(RECIPE_DIR, "03.pid")
LOG = os.path.join(RECIPE_DIR, "03.log")


class DaemonMixin:
    """The recipe's mixin, restated: ``serve_daemon(address)`` is ``serve_forever()`` in a daemon."""

    socket: Any
    server_address: Any

    def serve_daemon(self, address: str, **options: Any) -> None:
        """Detach, then serve on *address* until SIGTERM or an upgrade. Never returns."""

        # on_drain: after an upgrade's successor is ready, stop accepting and finish the request in flight.
        @daemon(listen={"http": address}, on_drain=self.shutdown, ready="notify", **options)
        def serve() -> None:
            self.socket = sockets()["http"]  # bound by the launcher, or handed over by the previous daemon
            self.server_address = self.socket.getsockname()
            print(f"daemon {os.getpid()} serving on {self.server_address}")
            notify_ready()  # `start` (or `upgrade`) succeeds now
            try:
                self.serve_forever(poll_interval=0.1)
            finally:  # SIGTERM raises SystemExit out of serve_forever(); on_drain ends it
                self.server_close()
                print(f"daemon {os.getpid()} stopped serving")

        serve()


class DaemonHTTPServer(DaemonMixin, HTTPServer):
    """The recipe's ``DaemonTCPServer``: an HTTPServer that can serve as a daemon."""


class Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"hello from daemon {os.getpid()}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def free_port() -> int:
    """A port free now (the kernel's choice); an upgrade keeps the socket, whatever this says then."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def main(argv: list[str]) -> int:
    action = argv[0] if argv else ""
    if action in ("status", "stop", "upgrade"):
        # Control needs only the pidfile: daemondeco's own command line.
        return subprocess.call([sys.executable, "-m", "daemondeco", action, PIDFILE])
    if action != "start":
        print(f"usage: {os.path.basename(sys.argv[0])} start|upgrade|status|stop", file=sys.stderr)
        return 2
    os.makedirs(RECIPE_DIR, exist_ok=True)
    running = Pidfile(PIDFILE).locked_by()
    # (During an upgrade the holder is our parent, the old daemon, handing over to us.)
    if running is not None and running != os.getppid():
        print(f"already running (pid {running})")
        return 0
    port = PORT or free_port()
    server = DaemonHTTPServer((HOST, port), Hello, bind_and_activate=False)  # daemondeco binds
    print(f"serving on http://{HOST}:{port}/ (log {LOG})", flush=True)
    server.serve_daemon(f"tcp://{HOST}:{port}", pidfile=PIDFILE, stdout=LOG)  # request lines: stderr, the log
    return 1  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
