"""listen=, sockets(), listen_fds(), socket activation and the systemd fd store (issue 10).

Real processes on loopback: a small server script (``APP``) takes its
``listen=`` dict from ``$APP_LISTEN``, writes what ``daemondeco.sockets()``
gave it into ``$APP_REPORT`` and answers every connection with its pid.
"""

from __future__ import annotations

import array
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Sandbox, alive, assert_refused, open_fds, read_pid, run_options_launcher, wait_exit, wait_until

import daemondeco

APP = r"""
import json, os, selectors, socket, sys
import daemondeco
from daemondeco import daemon

LISTEN = json.loads(os.environ.get("APP_LISTEN") or "null")
stopped = __import__("threading").Event()
wake = []  # the pipe on_drain wakes the accept loop with (made in the daemon: fds opened before are closed)

def drain():
    os.write(wake[1], b"x")
    stopped.wait(10)

def describe():
    info = {}
    for name, sock in daemondeco.sockets().items():
        fd = sock.fileno()
        info[name] = {
            "fd": fd,
            "family": socket.AddressFamily(sock.family).name,
            "type": socket.SocketKind(sock.type).name,
            "inheritable": sock.get_inheritable(),
            "inode": os.stat(f"/proc/self/fd/{fd}").st_ino,
        }
    return {
        "pid": os.getpid(),
        "sockets": info,
        "listen_fds": sorted(daemondeco.listen_fds()),
        "environ": sorted(k for k in os.environ if k.startswith("LISTEN_")),
        "child_environ": sorted(
            line.split("=", 1)[0]
            for line in __import__("subprocess").run(["env"], capture_output=True, text=True).stdout.splitlines()
            if line.startswith("LISTEN_")
        ),
        "pidfile": open("app.pid").read().strip() if os.path.exists("app.pid") else None,
    }

@daemon(pidfile=os.path.abspath("app.pid"), stdout=os.path.abspath("app.log"), listen=LISTEN,
        ready="notify", on_drain=drain, workdir=os.getcwd())
def main():
    if os.path.exists("FAIL"):
        raise RuntimeError("this version is broken")
    report = describe()
    with open(os.environ["APP_REPORT"] + ".tmp", "w") as out:
        json.dump(report, out)
    os.rename(os.environ["APP_REPORT"] + ".tmp", os.environ["APP_REPORT"])
    selector = selectors.DefaultSelector()
    for sock in daemondeco.sockets().values():
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
    wake.extend(os.pipe())
    selector.register(wake[0], selectors.EVENT_READ)
    daemondeco.notify_ready()
    answer = f"{os.getpid()}\n".encode()
    try:
        while True:
            for key, _ in selector.select():
                if key.fileobj == wake[0]:
                    return
                try:
                    conn, _ = key.fileobj.accept()
                except BlockingIOError:
                    continue
                with conn:
                    try:
                        conn.setblocking(True)
                        conn.sendall(answer)
                    except OSError:  # a client that left at once (a probe)
                        pass
    finally:
        stopped.set()

sys.exit(main.cli())
"""


def free_port(family: int = socket.AF_INET, host: str = "127.0.0.1") -> int:
    with socket.socket(family) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def ask(family: int, address: object, timeout: float = 5.0) -> int:
    """Connect, read the server's pid."""
    with socket.socket(family) as client:
        client.settimeout(timeout)
        client.connect(address)
        data = b""
        while chunk := client.recv(64):
            data += chunk
    return int(data)


def socket_inode(pid: int, fd: int) -> int:
    target = os.readlink(f"/proc/{pid}/fd/{fd}")
    assert target.startswith("socket:["), target
    return int(target[len("socket:[") : -1])


class App:
    """The server script in a sandbox, with its report."""

    def __init__(self, sandbox: Sandbox, listen: dict[str, str] | None) -> None:
        self.sandbox = sandbox
        self.script = sandbox.write("app.py", APP)
        self.report_path = sandbox.path / "report.json"
        self.env = {"APP_LISTEN": json.dumps(listen), "APP_REPORT": str(self.report_path)}
        self.pidfile = sandbox.path / "app.pid"

    def run(self, *args: str, **env: str) -> object:
        return self.sandbox.run_file(self.script, *args, **{**self.env, **env})

    def report(self) -> dict[str, object]:
        wait_until(self.report_path.exists, what="the app's report")
        data: dict[str, object] = json.loads(self.report_path.read_text())
        return data

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, str(self.script), *args]


# -- listen= ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("family", "template"),
    [
        pytest.param(socket.AF_INET, "tcp://127.0.0.1:{port}", id="ipv4"),
        pytest.param(socket.AF_INET6, "tcp://[::1]:{port}", id="ipv6"),
        pytest.param(socket.AF_UNIX, "unix://{path}", id="unix"),
    ],
)
def test_listen_binds_in_the_launcher_and_the_daemon_serves(sandbox: Sandbox, family: int, template: str) -> None:
    if family == socket.AF_INET6 and not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    port = free_port(family, "::1" if family == socket.AF_INET6 else "127.0.0.1") if family != socket.AF_UNIX else 0
    path = str(sandbox.path / "app.sock")
    app = App(sandbox, {"main": template.format(port=port, path=path)})
    started = app.run("start")
    assert started.returncode == 0, started
    pid = read_pid(app.pidfile)
    report = app.report()
    main = report["sockets"]["main"]  # type: ignore[index]
    assert main["family"] == socket.AddressFamily(family).name
    assert main["type"] == "SOCK_STREAM"
    assert main["inheritable"] is False, "close-on-exec in the daemon"
    assert open_fds(pid)[main["fd"]] == f"socket:[{main['inode']}]", "kept through the fd closing"
    address: object = path if family == socket.AF_UNIX else ("::1" if family == socket.AF_INET6 else "127.0.0.1", port)
    assert ask(family, address) == pid
    if family == socket.AF_UNIX:
        assert os.stat(path).st_mode & 0o777 == 0o755, "the mode follows the umask (0o022)"
    assert app.run("stop").returncode == 0


def test_a_busy_address_fails_in_the_launcher_naming_it(sandbox: Sandbox) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        address = f"tcp://127.0.0.1:{busy.getsockname()[1]}"
        app = App(sandbox, {"http": address})
        result = app.run("start")
    assert result.returncode == 1, result
    assert address in result.stderr and "in use" in result.stderr, result
    assert "listen['http']" in result.stderr
    assert not app.pidfile.exists(), "nothing started: the pidfile is gone"
    assert not (sandbox.path / "app.log").exists() or "serving" not in (sandbox.path / "app.log").read_text()
    assert sandbox.live_pids() == []


def test_a_stale_unix_socket_file_is_replaced_but_a_live_one_is_not(sandbox: Sandbox) -> None:
    path = sandbox.path / "app.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # the file stays; connect() to it is refused
    app = App(sandbox, {"main": f"unix://{path}"})
    assert app.run("start").returncode == 0
    pid = read_pid(app.pidfile)
    assert ask(socket.AF_UNIX, str(path)) == pid
    other = App(sandbox, {"main": f"unix://{path}"})
    other.pidfile = sandbox.path / "other.pid"
    result = sandbox.run(
        APP.replace('"app.pid"', '"other.pid"').replace('"app.log"', '"other.log"'),
        "start",
        name="other.py",
        **app.env,
    )
    assert result.returncode == 1, result
    assert f"unix://{path}" in result.stderr, result
    assert ask(socket.AF_UNIX, str(path)) == pid, "the live socket file was left alone"
    assert app.run("stop").returncode == 0


@pytest.mark.parametrize(
    ("listen", "problem"),
    [
        pytest.param({"http": "http://127.0.0.1:80"}, "tcp://host:port", id="scheme"),
        pytest.param({"http": "tcp://127.0.0.1"}, "port is missing", id="no-port"),
        pytest.param({"http": "tcp://::1:80"}, "brackets", id="bare-ipv6"),
        pytest.param({"http": "unix://relative"}, "absolute", id="relative-unix"),
        pytest.param({"http": 8080}, "address string", id="not-a-string"),
        pytest.param({"a:b": "tcp://127.0.0.1:1"}, "is not a name", id="bad-name"),
        pytest.param(["tcp://127.0.0.1:1"], "must be a dict", id="not-a-dict"),
    ],
)
def test_bad_listen_values_are_refused_at_decoration(listen: object, problem: str) -> None:
    with pytest.raises((TypeError, ValueError), match=problem):
        daemondeco.daemon(listen=listen)


@pytest.mark.parametrize("form", ["daemon", "process_daemonize", "daemonize"])
@pytest.mark.parametrize(
    ("address", "texts"),
    [
        pytest.param(r"tcp://a..b:80", ["'a..b' is not a host name"], id="empty-label"),
        pytest.param("tcp://" + "a" * 64 + ":80", ["a" * 64 + "' is not a host name"], id="64-letter-label"),
        pytest.param(r"tcp://\udcff:80", [r"'\udcff' is not a host name"], id="lone-surrogate"),
        pytest.param(r"tcp://[a..b]:80", ["'a..b' is not a host name"], id="ipv6-brackets-idna"),
        pytest.param(r"tcp://127.0.0.1\x00junk:0", ["NUL byte", r"\x00junk"], id="nul-in-host"),
        pytest.param(r"unix:///tmp/daemondeco-\x00.sock", ["NUL byte"], id="nul-in-unix-path"),
        pytest.param("tcp://127.0.0.1:" + "9" * 5000, ["the port must be a number", "5000 characters"], id="huge-port"),
    ],
)
def test_listen_addresses_that_cannot_be_bound_are_refused_before_the_fork(
    sandbox: Sandbox, form: str, address: str, texts: list[str]
) -> None:
    """Hosts IDNA cannot encode, NUL bytes, a 5,000-digit port: a ValueError naming listen, nothing starts."""
    result = run_options_launcher(sandbox, f'dict(WITH_FILES, listen={{"http": "{address}"}})', form)
    assert_refused(sandbox, result, "ValueError", ["listen['http']", *texts])


def test_sockets_is_empty_outside_a_daemon_and_works_under_run(sandbox: Sandbox) -> None:
    assert daemondeco.sockets() == {}
    port = free_port()
    app = App(sandbox, {"http": f"tcp://127.0.0.1:{port}"})
    proc = subprocess.Popen(app.argv("run"), cwd=sandbox.path, env={**sandbox.env(), **app.env}, text=True)
    sandbox.extra_pids.append(proc.pid)
    report = app.report()
    assert report["sockets"]["http"]["family"] == "AF_INET"  # type: ignore[index]
    assert ask(socket.AF_INET, ("127.0.0.1", port)) == proc.pid
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0


# A foreground program: prints {name: [fd, port or path, inode]} of what sockets() gave it.
REPORTER = r"""
import json, os, socket, sys
import daemondeco
from daemondeco import daemon

def describe():
    out = {}
    for name, sock in daemondeco.sockets().items():
        where = sock.getsockname()
        out[name] = [sock.fileno(), where if isinstance(where, str) else where[1],
                     os.fstat(sock.fileno()).st_ino]
    return out
"""


def run_with_fds(sandbox: Sandbox, code: str, fds: list[int]) -> subprocess.CompletedProcess[str]:
    script = sandbox.write("prog.py", REPORTER + code)
    return subprocess.run(
        [sys.executable, str(script)],
        cwd=sandbox.path,
        env=sandbox.env(),
        pass_fds=fds,
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        pytest.param("tcp://[::1]", r"an IPv6 address is tcp://\[::1\]:port", id="ipv6-no-port"),
        pytest.param("tcp://[]:80", r"an IPv6 address is tcp://\[::1\]:port", id="ipv6-empty-host"),
        pytest.param("tcp://127.0.0.1:99999", "not '99999'", id="port-too-big"),
        pytest.param("tcp://127.0.0.1:http", "not 'http'", id="port-not-a-number"),
    ],
)
def test_bad_addresses_are_refused_at_decoration_naming_the_entry(address: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem) as raised:
        daemondeco.daemon(listen={"web": address})
    assert f"listen['web'] = {address!r}" in str(raised.value)


def test_a_socket_bound_by_the_caller_is_the_one_served(sandbox: Sandbox) -> None:
    with socket.socket() as mine:
        mine.bind(("127.0.0.1", 0))
        mine.listen()
        port, inode = mine.getsockname()[1], os.fstat(mine.fileno()).st_ino
        done = run_with_fds(
            sandbox,
            f"""
mine = socket.socket(fileno=os.dup({mine.fileno()}))
@daemon(pidfile=os.path.abspath("a.pid"), listen={{"web": mine}})
def main():
    print(json.dumps(describe()))
main.run()
""",
            [mine.fileno()],
        )
    assert done.returncode == 0, done
    _fd, got_port, got_inode = json.loads(done.stdout)["web"]
    assert (got_port, got_inode) == (port, inode), "the caller's own socket, not a new one"


def test_a_closed_socket_is_refused_before_the_start_naming_the_entry(sandbox: Sandbox) -> None:
    result = sandbox.run(
        REPORTER
        + """
dead = socket.socket()
dead.close()
@daemon(pidfile=os.path.abspath("a.pid"), stdout=os.path.abspath("a.log"), listen={"admin": dead})
def main():
    print("ran")
sys.exit(main.cli())
""",
        "start",
    )
    assert result.returncode == 1, result
    assert "listen['admin']" in result.stderr and "closed" in result.stderr, result
    assert not (sandbox.path / "a.pid").exists()
    assert sandbox.live_pids() == []


def test_an_unresolvable_host_is_refused_naming_the_address(sandbox: Sandbox) -> None:
    result = sandbox.run(
        REPORTER
        + """
@daemon(pidfile=os.path.abspath("a.pid"), listen={"web": "tcp://no-such-host.invalid:8080"})
def main():
    print("ran")
sys.exit(main.cli())
""",
        "start",
    )
    assert result.returncode == 1, result
    assert "listen['web']" in result.stderr and "cannot resolve tcp://no-such-host.invalid:8080" in result.stderr
    assert "ran" not in result.stdout


def test_a_unix_path_that_is_a_regular_file_is_left_alone_and_refused(sandbox: Sandbox) -> None:
    path = sandbox.path / "data.sock"
    path.write_text("precious\n")
    result = sandbox.run(
        REPORTER
        + f"""
@daemon(pidfile=os.path.abspath("a.pid"), listen={{"web": "unix://{path}"}})
def main():
    print("ran")
sys.exit(main.cli())
""",
        "start",
    )
    assert result.returncode == 1, result
    assert f"unix://{path}" in result.stderr, result
    assert path.read_text() == "precious\n", "a file that is not a socket is never removed"


def test_a_unix_path_whose_connect_fails_otherwise_is_left_alone(sandbox: Sandbox) -> None:
    # A socket file of the wrong type: connect() fails with EPROTOTYPE, not a refusal.
    path = sandbox.path / "dgram.sock"
    dgram = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    dgram.bind(str(path))
    try:
        result = sandbox.run(
            REPORTER
            + f"""
@daemon(pidfile=os.path.abspath("a.pid"), listen={{"web": "unix://{path}"}})
def main():
    print("ran")
sys.exit(main.cli())
""",
            "start",
        )
        assert result.returncode == 1, result
        assert f"unix://{path}" in result.stderr, result
        assert path.exists(), "a live socket of another kind is not removed"
    finally:
        dgram.close()


def test_a_daemon_started_with_a_socket_given_serves_after_start(sandbox: Sandbox) -> None:
    result = sandbox.run(
        REPORTER
        + """
given = socket.socket(socket.AF_UNIX)
given.bind(os.path.abspath("given.sock"))
given.listen()
@daemon(pidfile=os.path.abspath("a.pid"), stdout=os.path.abspath("a.log"), listen={"admin": given},
        ready="notify")
def main():
    sock = daemondeco.sockets()["admin"]
    daemondeco.notify_ready()
    while True:
        conn, _ = sock.accept()
        with conn:
            conn.sendall(str(os.getpid()).encode())
sys.exit(main.cli())
""",
        "start",
    )
    assert result.returncode == 0, result
    pid = read_pid(sandbox.path / "a.pid")
    with socket.socket(socket.AF_UNIX) as client:
        client.settimeout(5)
        client.connect(str(sandbox.path / "given.sock"))
        assert int(client.recv(64)) == pid


# -- socket activation ------------------------------------------------------------------

ACTIVATE = shutil.which("systemd-socket-activate")
needs_activate = pytest.mark.skipif(
    ACTIVATE is None, reason="systemd-socket-activate is missing (Debian package systemd)"
)


def _activated_run(sandbox: Sandbox, app: App, listen_arg: str, *extra: str) -> tuple[subprocess.Popen[str], int]:
    """systemd-socket-activate -l ADDR app.py run; returns (activator, inode of its listening socket)."""
    assert ACTIVATE is not None
    env = {**sandbox.env(), **app.env}
    # The activator gives its child only LISTEN_* and the variables named with -E.
    passed = [f"-E{name}={env[name]}" for name in ("PYTHONPATH", "PATH", "DAEMONDECO_TEST_ID", *app.env) if name in env]
    activator = subprocess.Popen(
        [ACTIVATE, "-l", listen_arg, *passed, *extra, *app.argv("run")],
        cwd=sandbox.path,
        env={**sandbox.env(), **app.env},
        text=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    sandbox.extra_pids.append(activator.pid)
    assert activator.stderr is not None
    line = activator.stderr.readline()  # "Listening on ADDR as 3." once it listens (the test's timeout bounds it)
    assert "Listening on" in line, line
    return activator, socket_inode(activator.pid, 3)


@needs_activate
@pytest.mark.parametrize(
    ("family", "fdname"),
    [
        pytest.param(socket.AF_INET, True, id="ipv4-by-name"),
        pytest.param(socket.AF_INET, False, id="ipv4-by-address"),
        pytest.param(socket.AF_INET6, True, id="ipv6-by-name"),
        pytest.param(socket.AF_UNIX, False, id="unix-by-address"),
    ],
)
def test_socket_activation_serves_on_the_activated_fd(sandbox: Sandbox, family: int, fdname: bool) -> None:
    path = str(sandbox.path / "act.sock")
    if family == socket.AF_UNIX:
        listen_arg, address, connect_to = path, f"unix://{path}", path
    elif family == socket.AF_INET6:
        port = free_port(family, "::1")
        listen_arg, address, connect_to = f"[::1]:{port}", f"tcp://[::1]:{port}", ("::1", port)
    else:
        port = free_port()
        listen_arg, address, connect_to = f"127.0.0.1:{port}", f"tcp://127.0.0.1:{port}", ("127.0.0.1", port)
    app = App(sandbox, {"http": address})
    activator, inode = _activated_run(sandbox, app, listen_arg, *(["--fdname=http"] if fdname else []))
    # The activator starts the program at the first connection; that one is served too.
    first = ask(family, connect_to, timeout=15)
    report = app.report()
    assert report["pid"] == first
    http = report["sockets"]["http"]  # type: ignore[index]
    assert http["inode"] == inode, "the activated socket, not a new one"
    assert http["family"] == socket.AddressFamily(family).name
    assert report["environ"] == [] and report["child_environ"] == [], "LISTEN_* consumed and removed"
    # What an operator sees: the kernel's copy of the environment the process started with.
    environ = Path(f"/proc/{first}/environ").read_bytes().split(b"\0")
    assert [entry for entry in environ if entry.startswith(b"LISTEN_")] == [], "gone from /proc/<pid>/environ"
    assert any(entry.startswith(b"PATH=") for entry in environ), "the other variables are left alone"
    assert report["listen_fds"] == (["http"] if fdname else ["unknown"])
    assert set(report["sockets"]) == {"http"}, "a matched activated fd is not listed twice"  # type: ignore[arg-type]
    activator.send_signal(signal.SIGTERM)
    assert wait_exit(first)
    activator.wait(10)


@needs_activate
def test_activated_fds_that_match_no_name_keep_their_name(sandbox: Sandbox) -> None:
    port, other = free_port(), free_port()
    app = App(sandbox, {"http": f"tcp://127.0.0.1:{other}"})
    activator, inode = _activated_run(sandbox, app, f"127.0.0.1:{port}", "--fdname=metrics")
    pid = ask(socket.AF_INET, ("127.0.0.1", port), timeout=15)
    report = app.report()
    assert report["sockets"]["metrics"]["inode"] == inode  # type: ignore[index]
    assert report["sockets"]["http"]["inode"] != inode  # type: ignore[index]
    assert ask(socket.AF_INET, ("127.0.0.1", other)) == pid, "http was bound now (source c)"
    activator.send_signal(signal.SIGTERM)
    activator.wait(10)


def test_listen_pid_of_another_process_is_ignored(sandbox: Sandbox) -> None:
    port = free_port()
    app = App(sandbox, {"http": f"tcp://127.0.0.1:{port}"})
    with socket.socket() as foreign:
        foreign.bind(("127.0.0.1", 0))
        foreign.listen()
        os.set_inheritable(foreign.fileno(), True)
        wrapper = sandbox.write(
            "wrap.py",
            f"""
            import os, sys
            os.dup2({foreign.fileno()}, 3)
            os.environ.update(LISTEN_FDS="1", LISTEN_PID="1", LISTEN_FDNAMES="http")
            os.execv(sys.executable, [sys.executable, {str(app.script)!r}, "start"])
            """,
        )
        done = subprocess.run(
            [sys.executable, str(wrapper)],
            cwd=sandbox.path,
            env={**sandbox.env(), **app.env},
            pass_fds=[foreign.fileno()],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0, done
        pid = read_pid(app.pidfile)
        report = app.report()
        assert report["listen_fds"] == []
        assert set(report["sockets"]) == {"http"}  # type: ignore[arg-type]
        assert report["sockets"]["http"]["inode"] != os.fstat(foreign.fileno()).st_ino  # type: ignore[index]
        assert report["environ"] == []
        assert ask(socket.AF_INET, ("127.0.0.1", port)) == pid
    assert app.run("stop").returncode == 0


def test_activation_matches_unnamed_fds_by_address(sandbox: Sandbox) -> None:
    """LISTEN_FDS=2: fd 3 (another port) stays under its own name, unnamed fd 4 matches 'web' by its address."""
    with socket.socket() as other, socket.socket() as wanted:
        for sock in (other, wanted):
            sock.bind(("127.0.0.1", 0))
            sock.listen()
        port = wanted.getsockname()[1]
        done = run_with_fds(
            sandbox,
            f"""
made = socket.socket()
made.bind(("127.0.0.1", 0))
made.listen()
given = socket.socket(fileno=os.dup2(made.fileno(), 20))  # out of the activated range
made.close()
os.dup2({other.fileno()}, 3)
os.dup2({wanted.fileno()}, 4)
os.environ.update(LISTEN_FDS="2", LISTEN_PID=str(os.getpid()), LISTEN_FDNAMES="metrics:")
@daemon(pidfile=os.path.abspath("a.pid"),
        listen={{"web": "tcp://127.0.0.1:{port}", "admin": given, "spare": "unix://{sandbox.path}/spare.sock"}})
def main():
    print(json.dumps({{"sockets": describe(), "activated": sorted(daemondeco.listen_fds())}}))
main.run()
""",
            [other.fileno(), wanted.fileno()],
        )
        assert done.returncode == 0, done
        report = json.loads(done.stdout)
        sockets = report["sockets"]
        assert sockets["web"][0] == 4 and sockets["web"][1] == port, "matched by its address"
        assert sockets["web"][2] == os.fstat(wanted.fileno()).st_ino
        assert sockets["metrics"][0] == 3, "an activated fd that matched no entry keeps its LISTEN_FDNAMES name"
        assert sockets["spare"][1] == f"{sandbox.path}/spare.sock", "no activated fd for it: bound now"
        assert report["activated"] == ["metrics", "unknown"], "an empty LISTEN_FDNAMES entry reads 'unknown'"
        assert sockets["admin"][0] == 20, "the given socket, on its own fd"


# -- the fd store ------------------------------------------------------------------------


def _receive_all(receiver: socket.socket, until: str) -> list[tuple[str, list[int]]]:
    """Datagrams (text, fds) until one contains *until*."""
    got: list[tuple[str, list[int]]] = []
    receiver.settimeout(15)
    while True:
        fds = array.array("i")
        data, ancillary, _, _ = receiver.recvmsg(4096, socket.CMSG_SPACE(16 * fds.itemsize))
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
        got.append((data.decode(), list(fds)))
        if until in data.decode():
            return got


@pytest.mark.parametrize("store", [pytest.param(True, id="FDSTORE=4"), pytest.param(False, id="no-FDSTORE")])
def test_the_fd_store_gets_each_socket_once_with_its_name(sandbox: Sandbox, store: bool) -> None:
    port = free_port()
    notify_path = str(sandbox.path / "notify.sock")
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(notify_path)
    app = App(sandbox, {"http": f"tcp://127.0.0.1:{port}"})
    env = {**sandbox.env(), **app.env, "NOTIFY_SOCKET": notify_path}
    if store:
        env["FDSTORE"] = "4"
    service = subprocess.Popen(app.argv("start"), cwd=sandbox.path, env=env, text=True)
    sandbox.extra_pids.append(service.pid)
    try:
        got = _receive_all(receiver, "READY=1")
        if store:
            got += _receive_all(receiver, "FDSTORE=1")
        stored = [(text, fds) for text, fds in got if "FDSTORE=1" in text]
        report = app.report()
        if not store:
            assert stored == []
            return
        assert len(stored) == 1, got
        text, fds = stored[0]
        assert "FDNAME=http" in text.split("\n")
        assert len(fds) == 1
        assert os.fstat(fds[0]).st_ino == report["sockets"]["http"]["inode"]  # type: ignore[index]
        # The manager stops the service, keeps the fd, and hands it back at the next start.
        service.send_signal(signal.SIGTERM)
        assert service.wait(10) == 0
        with socket.socket(fileno=fds[0]) as kept:
            os.set_inheritable(kept.fileno(), True)
            app.report_path.unlink()
            wrapper = sandbox.write(
                "wrap.py",
                f"""
                import os, sys
                os.dup2({kept.fileno()}, 3)
                os.environ.update(LISTEN_FDS="1", LISTEN_PID=str(os.getpid()), LISTEN_FDNAMES="http")
                os.execv(sys.executable, [sys.executable, {str(app.script)!r}, "start"])
                """,
            )
            again = subprocess.Popen(
                [sys.executable, str(wrapper)], cwd=sandbox.path, env=env, pass_fds=[kept.fileno()], text=True
            )
            sandbox.extra_pids.append(again.pid)
            _receive_all(receiver, "READY=1")
            second = app.report()
            assert second["sockets"]["http"]["inode"] == report["sockets"]["http"]["inode"]  # type: ignore[index]
            assert ask(socket.AF_INET, ("127.0.0.1", port)) == again.pid
            again.send_signal(signal.SIGTERM)
            assert again.wait(10) == 0
    finally:
        receiver.close()
        if service.poll() is None:
            service.kill()
            service.wait(10)


def test_under_notify_socket_upgrade_is_refused_with_a_pointer_to_the_fd_store(sandbox: Sandbox) -> None:
    port = free_port()
    notify_path = str(sandbox.path / "notify.sock")
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(notify_path)
    app = App(sandbox, {"http": f"tcp://127.0.0.1:{port}"})
    env = {**sandbox.env(), **app.env, "NOTIFY_SOCKET": notify_path}
    service = subprocess.Popen(app.argv("start"), cwd=sandbox.path, env=env, text=True)
    sandbox.extra_pids.append(service.pid)
    try:
        _receive_all(receiver, "READY=1")
        result = sandbox.run_module("upgrade", str(app.pidfile))
        assert result.returncode == 1, result
        assert "fd store" in result.stderr and "FileDescriptorStoreMax" in result.stderr, result
        assert alive(service.pid)
    finally:
        receiver.close()
        service.send_signal(signal.SIGTERM)
        service.wait(10)


def test_listen_fds_without_listen_option(sandbox: Sandbox) -> None:
    with socket.socket() as activated:
        activated.bind(("127.0.0.1", 0))
        activated.listen()
        script = sandbox.write(
            "lf.py",
            f"""
            import json, os
            os.dup2({activated.fileno()}, 3)
            os.environ.update(LISTEN_FDS="1", LISTEN_PID=str(os.getpid()), LISTEN_FDNAMES="web")
            import daemondeco
            fds = daemondeco.listen_fds()
            print(json.dumps({{n: [s.fileno(), s.getsockname()[1], s.get_inheritable()] for n, s in fds.items()}}))
            print(json.dumps(sorted(k for k in os.environ if k.startswith("LISTEN_"))))
            """,
        )
        done = subprocess.run(
            [sys.executable, str(script)],
            cwd=sandbox.path,
            env=sandbox.env(),
            pass_fds=[activated.fileno()],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0, done
        lines = done.stdout.splitlines()
        assert json.loads(lines[0]) == {"web": [3, activated.getsockname()[1], False]}
        assert json.loads(lines[1]) == []


def test_public_names() -> None:
    assert "sockets" in daemondeco.__all__ and "listen_fds" in daemondeco.__all__
    assert daemondeco.sockets.__doc__ and daemondeco.listen_fds.__doc__
    assert daemondeco.listen_fds() == {}
    assert issubclass(daemondeco.UpgradeError, daemondeco.DaemonError)
    assert daemondeco.UpgradeError.__module__ == "daemondeco"
