"""listen= edge cases an operator meets: given sockets, bad addresses, activation by address, handover garbage.

Each case runs a real program (foreground ``.run()`` or ``start``) and checks
its exit code, its error message naming the entry at fault, or the sockets it
was given (fd, address, inode).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
from conftest import Sandbox, alive, read_pid, wait_until

import daemondeco

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


def test_a_malformed_handover_variable_is_an_error_naming_it(sandbox: Sandbox) -> None:
    result = sandbox.run(
        REPORTER
        + """
@daemon(pidfile=os.path.abspath("a.pid"), listen={"web": "tcp://127.0.0.1:0"})
def main():
    print("ran")
sys.exit(main.cli())
""",
        "start",
        DAEMONDECO_HANDOVER="garbage",
    )
    assert result.returncode != 0, result
    assert "DAEMONDECO_HANDOVER='garbage'" in result.stderr and "malformed" in result.stderr, result
    assert "ran" not in result.stdout


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


# -- upgrade: what the operator sees when the successor cannot take over -----------------

UPGRADABLE = r"""
import os, sys, time
from pathlib import Path
import daemondeco
from daemondeco import daemon

HERE = Path(__file__).resolve().parent
if (HERE / "HANG").exists() and os.environ.get("DAEMONDECO_HANDOVER"):
    time.sleep(60)  # the new version's launcher hangs before it starts anything

def drain():
    raise RuntimeError("drain broke")

@daemon(pidfile=HERE / "u.pid", stdout=HERE / "u.log", listen={"web": f"unix://{HERE}/u.sock"}, ready="notify",
        ready_timeout=1.0, stop_timeout=1.0, on_drain=drain, workdir=str(HERE / "work"))
def main():
    daemondeco.notify_ready()
    while True:
        time.sleep(0.05)

sys.exit(main.cli())
"""


def start_upgradable(sandbox: Sandbox) -> int:
    (sandbox.path / "work").mkdir()
    return sandbox.start_daemon(UPGRADABLE, "start", pidfile="u.pid", name="up.py")


def test_an_upgrade_whose_new_launcher_hangs_is_abandoned_and_the_old_daemon_keeps_serving(sandbox: Sandbox) -> None:
    old = start_upgradable(sandbox)
    (sandbox.path / "HANG").touch()
    result = sandbox.run_module("upgrade", str(sandbox.path / "u.pid"))
    assert result.returncode == 1, result
    assert "the successor's launcher did not finish within 2 s" in result.stderr, result
    assert daemondeco.Pidfile(sandbox.path / "u.pid").locked_by() == old
    with socket.socket(socket.AF_UNIX) as client:
        client.connect(str(sandbox.path / "u.sock"))  # still listening
    assert sandbox.run_module("status", str(sandbox.path / "u.pid")).returncode == 0


def test_an_upgrade_whose_workdir_is_gone_fails_naming_the_cause(sandbox: Sandbox) -> None:
    old = start_upgradable(sandbox)
    (sandbox.path / "work").rmdir()
    result = sandbox.run_module("upgrade", str(sandbox.path / "u.pid"))
    assert result.returncode == 1, result
    assert "its successor failed; the daemon keeps" in result.stderr, result
    assert f"workdir: the directory does not exist: '{sandbox.path / 'work'}'" in result.stderr, result
    assert daemondeco.Pidfile(sandbox.path / "u.pid").locked_by() == old


def test_an_on_drain_that_raises_is_logged_and_the_upgrade_completes(sandbox: Sandbox) -> None:
    old = start_upgradable(sandbox)
    result = sandbox.run_module("upgrade", str(sandbox.path / "u.pid"))
    assert result.returncode == 0, result
    new = read_pid(sandbox.path / "u.pid")
    assert new != old and daemondeco.Pidfile(sandbox.path / "u.pid").locked_by() == new
    wait_until(lambda: "on_drain raised RuntimeError: drain broke" in (sandbox.path / "u.log").read_text(), what="log")
    wait_until(lambda: not alive(old), what="the old daemon gone")


REFUSING = r"""
import os, signal, sys, time
from pathlib import Path
import daemondeco
from daemondeco import daemon

HERE = Path(__file__).resolve().parent

@daemon(pidfile=HERE / "u.pid", stdout=HERE / "u.log", listen={"web": f"unix://{HERE}/u.sock"}, ready="notify",
        {options})
def main():
    daemondeco.notify_ready()
    while True:
        time.sleep(0.05)

sys.exit(main.cli())
"""


@pytest.mark.parametrize(
    ("options", "refusal"),
    [
        pytest.param(
            'restart="on-failure"', "a supervised daemon (restart=) cannot be upgraded; use restart", id="restart"
        ),
        pytest.param(
            "signals={signal.SIGUSR2: lambda *_: None}",
            "the signals option handles SIGUSR2, which asks for an upgrade; use restart",
            id="sigusr2",
        ),
    ],
)
def test_a_daemon_that_cannot_hand_over_refuses_the_upgrade_and_keeps_serving(
    sandbox: Sandbox, options: str, refusal: str
) -> None:
    old = sandbox.start_daemon(REFUSING.replace("{options}", options), "start", pidfile="u.pid", name="up.py")
    result = sandbox.run_module("upgrade", str(sandbox.path / "u.pid"))
    assert result.returncode == 1, result
    assert refusal in result.stderr, result
    assert daemondeco.Pidfile(sandbox.path / "u.pid").locked_by() == old and alive(old)
