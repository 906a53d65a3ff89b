"""Recipe 3, the ``DaemonMixin`` for ``HTTPServer``, restated with daemondeco.

The copied recipe is ``class DaemonTCPServer(DaemonMixin, HTTPServer)``: its
``serve_forever()`` daemonizes first, then serves. The constructor has
already bound and opened the listening socket, so the daemonize step must not
close it. Its flaws:

* recipes that close "all fds" after the fork close the listening socket
  too, and the daemon serves nothing (or loops on EBADF);
* a port already in use, or a bad address, is only noticed where it cannot be
  reported, and the parent has exited 0 regardless.

daemondeco's version binds in the launcher (a busy port fails right there,
in the terminal), keeps the socket through the detach with
``keep_fds=[server]``, and runs ``serve_forever()`` in the daemon. The socket
listens before the fork, so connections queue in its backlog from the first
moment: ``ready="start"`` is enough, and ``start`` returns when requests can
be made.

    python examples/recipes/03_http_server_mixin.py start    # prints the URL
    python examples/recipes/03_http_server_mixin.py status   # 0 running, 3 stopped
    python examples/recipes/03_http_server_mixin.py stop

Listens on 127.0.0.1 only, on $RECIPE_PORT (default 0: a free port chosen by
the kernel). Files go to $RECIPE_DIR (default: a per-user temp directory).
"""

import os
import subprocess
import sys
import tempfile
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

from daemondeco import Pidfile, daemon

HOST = "127.0.0.1"  # loopback only: an example must not listen on the network
PORT = int(os.environ.get("RECIPE_PORT") or 0)
RECIPE_DIR = os.path.abspath(
    os.environ.get("RECIPE_DIR") or os.path.join(tempfile.gettempdir(), f"daemondeco-recipes-{os.getuid()}")
)
PIDFILE = os.path.join(RECIPE_DIR, "03.pid")
LOG = os.path.join(RECIPE_DIR, "03.log")


class DaemonMixin:
    """The recipe's mixin, restated: ``serve_daemon()`` is ``serve_forever()`` in a daemon."""

    def serve_daemon(self, **options: Any) -> None:
        """Detach, then serve until SIGTERM. Never returns: the launcher exits 0 once the daemon runs."""

        @daemon(keep_fds=[self], **options)  # the bound socket survives the fd closing
        def serve() -> None:
            print(f"daemon {os.getpid()} serving on {self.server_address}")
            try:
                self.serve_forever()
            finally:  # SIGTERM raises SystemExit out of serve_forever()
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


def main(argv: list[str]) -> int:
    action = argv[0] if argv else ""
    if action in ("status", "stop"):
        # Control needs only the pidfile: daemondeco's own command line.
        return subprocess.call([sys.executable, "-m", "daemondeco", action, PIDFILE])
    if action != "start":
        print(f"usage: {os.path.basename(sys.argv[0])} start|status|stop", file=sys.stderr)
        return 2
    os.makedirs(RECIPE_DIR, exist_ok=True)
    running = Pidfile(PIDFILE).locked_by()
    if running is not None:  # check before binding: a fixed port would be busy
        print(f"already running (pid {running})")
        return 0
    server = DaemonHTTPServer((HOST, PORT), Hello)  # binds and listens here, in the launcher
    print(f"serving on http://{HOST}:{server.server_port}/ (log {LOG})", flush=True)
    server.serve_daemon(pidfile=PIDFILE, stdout=LOG)  # request lines go to stderr = the log
    return 1  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
