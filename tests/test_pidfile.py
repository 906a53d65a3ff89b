"""The locked pidfile: ``Pidfile`` on its own, and as ``@daemon`` uses it.

Every lock check that matters is made from another process (a lock held by
one process is seen by the others through ``flock``), and every daemon is a
real one started by a launcher script.
"""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import Sandbox, alive, open_fds, proc_stat, read_pid, wait_exit, wait_for_text
from test_reliability import last_json, service

from daemondeco import AlreadyRunningError, DaemonError, Pidfile

# A @daemon program: no argument starts it by calling the function, words
# are handed to .cli(). Its pidfile and log live next to the script.
SERVICE = """
import os, sys, time
from daemondeco import daemon

HERE = os.path.dirname(os.path.abspath(__file__))

@daemon(pidfile=os.path.join(HERE, "d.pid"), stdout=os.path.join(HERE, "d.log"))
def main():
    print("daemon up", os.getpid(), flush=True)
    while True:
        time.sleep(60)

if __name__ == "__main__":
    if len(sys.argv) > 1:
        sys.exit(main.cli())
    main()
"""

# Holds a Pidfile until told (one line on stdin) to release it.
HOLDER = """
import sys
from daemondeco import Pidfile
pf = Pidfile(sys.argv[1]).acquire()
print("held", flush=True)
sys.stdin.readline()
pf.release()
print("released", flush=True)
"""


@pytest.fixture
def holder(sandbox: Sandbox) -> Iterator[Callable[[Path], subprocess.Popen[str]]]:
    """Start a process that holds a pidfile until a line arrives on its stdin."""
    started: list[subprocess.Popen[str]] = []

    def start(path: Path) -> subprocess.Popen[str]:
        proc = sandbox.popen(HOLDER, str(path), name="holder.py", stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        started.append(proc)
        assert proc.stdout is not None
        assert proc.stdout.readline() == "held\n"
        return proc

    yield start
    for proc in started:
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()
        proc.kill()
        proc.wait()


def seen_from_outside(read_pid: int | None, locked_by: int | None, *, locked: bool) -> dict[str, object]:
    """What ``sandbox.inspect_pidfile`` must show: the raw flock and ``Pidfile.is_locked`` agree on *locked*."""
    return {"flock_held": locked, "read_pid": read_pid, "locked_by": locked_by, "is_locked": locked}


def release_holder(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    assert proc.stdout is not None
    proc.stdin.write("go\n")
    proc.stdin.flush()
    assert proc.stdout.readline() == "released\n"
    assert proc.wait(timeout=10) == 0


def start_service(sandbox: Sandbox) -> int:
    """Start SERVICE; return the daemon's pid (the launcher exits once it is ready)."""
    return sandbox.start_daemon(SERVICE, name="svc.py")


# -- Pidfile on its own --------------------------------------------------------


def test_acquire_writes_our_pid_and_locks_it_for_everyone(
    sandbox: Sandbox, holder: Callable[[Path], subprocess.Popen[str]]
) -> None:
    path = sandbox.path / "job.pid"
    proc = holder(path)

    assert path.read_text() == f"{proc.pid}\n"
    assert sandbox.inspect_pidfile(path) == seen_from_outside(proc.pid, proc.pid, locked=True)
    here = Pidfile(path)
    assert here.locked_by() == proc.pid
    assert here.is_locked()
    with pytest.raises(AlreadyRunningError) as caught:
        here.acquire()
    assert caught.value.pid == proc.pid
    assert f"pid {proc.pid}" in str(caught.value)
    assert str(path) in str(caught.value)
    assert not here.is_held
    assert path.read_text() == f"{proc.pid}\n", "a failed acquire must not write into the file"

    release_holder(proc)
    assert not path.exists()
    assert sandbox.inspect_pidfile(path) == seen_from_outside(None, None, locked=False)


def test_acquire_and_release_in_this_process(sandbox: Sandbox) -> None:
    path = sandbox.path / "self.pid"
    pidfile = Pidfile(path)
    assert pidfile.acquire() is pidfile
    try:
        assert pidfile.is_held
        assert path.read_text() == f"{os.getpid()}\n"
        assert pidfile.locked_by() == os.getpid()
        assert sandbox.inspect_pidfile(path)["locked_by"] == os.getpid()
        with pytest.raises(DaemonError, match="already held"):
            pidfile.acquire()
    finally:
        pidfile.release()
    assert not pidfile.is_held
    assert not path.exists()
    pidfile.release()  # a second release is a no-op
    assert sandbox.inspect_pidfile(path)["is_locked"] is False


def test_refused_acquire_and_lookups_leave_no_fd_open(
    sandbox: Sandbox, holder: Callable[[Path], subprocess.Popen[str]]
) -> None:
    """A long-lived process that polls a pidfile (or retries a refused acquire) must not leak fds."""
    path = sandbox.path / "job.pid"
    proc = holder(path)
    here = Pidfile(path)
    before = open_fds(os.getpid())
    for _ in range(3):
        with pytest.raises(AlreadyRunningError):
            here.acquire()
        assert here.read_pid() == proc.pid
        assert here.locked_by() == proc.pid
        assert here.is_locked()
    assert open_fds(os.getpid()) == before
    release_holder(proc)


def test_acquire_that_cannot_write_the_pid_leaves_no_lock_and_no_file(sandbox: Sandbox) -> None:
    """The pid write fails (RLIMIT_FSIZE 0 makes it EFBIG): acquire raises, lets go of the lock, removes the file."""
    result = sandbox.run_reporting(
        """
        import os, resource
        from daemondeco import Pidfile
        path = os.path.abspath("w.pid")
        pidfile = Pidfile(path)
        fds = sorted(os.listdir("/proc/self/fd"))
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (0, hard))  # Python ignores SIGXFSZ: EFBIG
        try:
            pidfile.acquire()
            error = None
        except OSError as exc:
            error = str(exc)
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        report(error=error, held=pidfile.is_held, exists=os.path.exists(path),
               locked=Pidfile(path).is_locked(), same_fds=sorted(os.listdir("/proc/self/fd")) == fds)
        """
    )
    data = result.reports()[-1]
    assert data["error"] is not None and "w.pid" in str(data["error"]), data
    assert data == {"error": data["error"], "held": False, "exists": False, "locked": False, "same_fds": True}


def test_context_manager_holds_the_lock_and_cleans_up_on_error(sandbox: Sandbox) -> None:
    path = sandbox.path / "ctx.pid"
    seen: list[dict[str, object]] = []

    def job() -> None:
        with Pidfile(path) as pidfile:
            assert pidfile.is_held
            seen.append(sandbox.inspect_pidfile(path))
            raise KeyError("boom")

    with pytest.raises(KeyError):
        job()
    assert seen == [seen_from_outside(os.getpid(), os.getpid(), locked=True)]
    assert not path.exists()
    assert sandbox.inspect_pidfile(path)["is_locked"] is False


def test_relative_path_is_made_absolute(sandbox: Sandbox) -> None:
    result = sandbox.run(
        """
        import os
        from daemondeco import Pidfile
        pf = Pidfile("rel.pid")
        os.chdir("/")
        with pf:
            print(pf.path)
        """,
        name="rel.py",
    )
    assert result.returncode == 0, result
    assert result.stdout.strip() == str(sandbox.path / "rel.pid")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param("4242\n", 4242, id="pid-newline"),
        pytest.param("  4242  \nmore\n", 4242, id="spaces-and-second-line"),
        pytest.param("4242", 4242, id="no-newline"),
        pytest.param("", None, id="empty"),
        pytest.param("0\n", None, id="zero"),
        pytest.param("-5\n", None, id="negative"),
        pytest.param("12abc\n", None, id="garbage-suffix"),
        pytest.param("not a pid\n", None, id="text"),
        pytest.param("99999999999\n", None, id="too-long"),
    ],
)
def test_read_pid_parses_only_a_pid(tmp_path: Path, content: str, expected: int | None) -> None:
    path = tmp_path / "x.pid"
    path.write_text(content)
    assert Pidfile(path).read_pid() == expected
    assert Pidfile(path).locked_by() is None, "nobody holds the lock: stale whatever it says"


def test_missing_file_reads_as_nothing(tmp_path: Path) -> None:
    pidfile = Pidfile(tmp_path / "none.pid")
    assert (pidfile.read_pid(), pidfile.locked_by(), pidfile.is_locked()) == (None, None, False)
    assert not (tmp_path / "none.pid").exists(), "looking must not create the file"


def test_pidfile_mode_is_0o644_even_under_umask_0(sandbox: Sandbox) -> None:
    result = sandbox.run(
        """
        import os, stat
        from daemondeco import Pidfile
        os.umask(0)
        with Pidfile("m.pid") as pf:
            print(oct(stat.S_IMODE(os.stat(pf.path).st_mode)))
        """,
        name="mode.py",
    )
    assert result.returncode == 0, result
    assert result.stdout.strip() == "0o644"


def test_daemon_pidfile_mode_is_0o644(sandbox: Sandbox) -> None:
    result = sandbox.run(
        """
        import os, time
        from daemondeco import daemon
        HERE = os.path.dirname(os.path.abspath(__file__))
        os.umask(0)

        @daemon(pidfile=os.path.join(HERE, "d.pid"), umask=0)
        def main():
            time.sleep(60)

        main()
        """
    )
    assert result.returncode == 0, result
    assert (sandbox.path / "d.pid").stat().st_mode & 0o7777 == 0o644


def test_a_pidfile_shows_whether_it_is_held(sandbox: Sandbox) -> None:
    result = sandbox.run(
        """
import daemondeco
pidfile = daemondeco.Pidfile("d.pid")
print(repr(pidfile))
pidfile.acquire()
print(repr(pidfile))
""",
    )
    assert result.returncode == 0, result
    free, held = result.stdout.splitlines()
    assert free == f"Pidfile({str(sandbox.path / 'd.pid')!r}, not held)"
    assert held.startswith(f"Pidfile({str(sandbox.path / 'd.pid')!r}, held, pid ")


# -- symlinks ------------------------------------------------------------------


@pytest.fixture(params=[pytest.param(True, id="target-exists"), pytest.param(False, id="dangling")])
def planted_link(request: pytest.FixtureRequest, sandbox: Sandbox) -> tuple[Path, Path]:
    """A pidfile path that is a symlink to a precious file (or to nothing)."""
    target = sandbox.path / "precious.txt"
    if request.param:
        target.write_text("do not overwrite\n")
        os.utime(target, (1_000_000_000, 1_000_000_000))
    link = sandbox.path / "link.pid"
    link.symlink_to(target)
    return link, target


def assert_target_untouched(target: Path, existed: bool) -> None:
    if existed:
        assert target.read_text() == "do not overwrite\n"
        assert target.stat().st_mtime == 1_000_000_000
    else:
        assert not target.exists(), "the symlink's target was created"


def test_symlink_pidfile_is_refused(planted_link: tuple[Path, Path]) -> None:
    link, target = planted_link
    existed = target.exists()
    pidfile = Pidfile(link)
    with pytest.raises(DaemonError, match="symbolic link") as caught:
        pidfile.acquire()
    assert str(link) in str(caught.value)
    assert not pidfile.is_held
    assert (pidfile.read_pid(), pidfile.locked_by(), pidfile.is_locked()) == (None, None, False)
    assert link.is_symlink()
    assert_target_untouched(target, existed)


def test_daemon_refuses_symlink_pidfile_in_the_launcher(sandbox: Sandbox, planted_link: tuple[Path, Path]) -> None:
    link, target = planted_link
    existed = target.exists()
    result = sandbox.run(
        """
        import os, sys, time
        from daemondeco import daemon
        HERE = os.path.dirname(os.path.abspath(__file__))

        @daemon(pidfile=os.path.join(HERE, "link.pid"))
        def main():
            open(os.path.join(HERE, "ran"), "w").close()
            time.sleep(60)

        main()
        """
    )
    assert result.returncode != 0, result
    assert "DaemonError" in result.stderr, result
    assert str(link) in result.stderr, result
    assert sandbox.live_pids() == []
    assert not (sandbox.path / "ran").exists()
    assert_target_untouched(target, existed)


# -- FIFOs, directories, sockets and devices at the pidfile path: refused at once, left alone ------


REFUSAL = 5.0  # a refusal is immediate; today a FIFO hangs until this timeout


def _make_fifo(path: Path) -> None:
    os.mkfifo(path)


def _make_directory(path: Path) -> None:
    path.mkdir()


def _make_socket(path: Path) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(path))  # the socket file stays after the socket is closed


def _make_chardev(path: Path) -> None:
    os.mknod(path, stat.S_IFCHR | 0o644, os.makedev(1, 3))  # a second /dev/null


MAKERS: dict[str, Callable[[Path], None]] = {
    "fifo": _make_fifo,
    "directory": _make_directory,
    "socket": _make_socket,
    "chardev": _make_chardev,
}


# (how it is run, what is run, the expected exit code)
CLI_ACTIONS = {
    "prog.py-start": ("prog", "start", 1),
    "prog.py-status": ("prog", "status", 4),
    "prog.py-stop": ("prog", "stop", 1),
    "python-m-status": ("module", "status", 4),
    "python-m-stop": ("module", "stop", 1),
}


needs_root_for_mknod = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create a device node")


def _special_params(actions: list[str]) -> list[object]:
    params: list[object] = []
    for kind in MAKERS:
        for action in actions:
            marks: list[pytest.MarkDecorator] = [needs_root_for_mknod] if kind == "chardev" else []
            params.append(pytest.param(kind, action, marks=marks, id=f"{kind}-{action}"))
    return params


@pytest.mark.parametrize(
    ("kind", "action"),
    _special_params(list(CLI_ACTIONS)),
)
def test_special_file_at_the_pidfile_path_is_refused_by_the_command_lines(
    sandbox: Sandbox, kind: str, action: str
) -> None:
    pidfile = sandbox.path / "d.pid"
    MAKERS[kind](pidfile)
    how, word, expected = CLI_ACTIONS[action]
    if how == "prog":
        service(sandbox)
        result = sandbox.run_file(sandbox.path / "prog.py", word, timeout=REFUSAL)
    else:
        result = sandbox.run_module(word, str(pidfile), timeout=REFUSAL)
    assert result.returncode == expected, result
    assert "Traceback" not in result.stderr, result
    said = result.stdout + result.stderr
    assert "d.pid" in said, result
    if word == "start":
        assert str(pidfile) in said, result
        assert "not a regular file" in said, result
    assert sandbox.live_pids() == [], "nothing was started"
    assert stat.S_IFMT(pidfile.lstat().st_mode) != stat.S_IFREG, "the special file is left alone"


PIDFILE_CALL = """
import json, sys
import daemondeco
try:
    value = getattr(daemondeco.Pidfile(sys.argv[1]), sys.argv[2])()
except daemondeco.DaemonError as exc:
    print(json.dumps({"raised": "DaemonError", "text": str(exc)}), flush=True)
except BaseException as exc:
    print(json.dumps({"raised": type(exc).__name__, "text": str(exc)}), flush=True)
else:
    print(json.dumps({"returned": repr(value)}), flush=True)
"""


@pytest.mark.parametrize(
    ("kind", "method"),
    _special_params(["read_pid", "locked_by", "is_locked", "acquire"]),
)
def test_special_file_at_the_pidfile_path_makes_pidfile_methods_raise(sandbox: Sandbox, kind: str, method: str) -> None:
    pidfile = sandbox.path / "d.pid"
    MAKERS[kind](pidfile)
    result = sandbox.run(PIDFILE_CALL, str(pidfile), method, name="call.py", timeout=REFUSAL)
    assert result.returncode == 0, result
    data = last_json(result)
    assert data.get("raised") == "DaemonError", data
    assert str(pidfile) in str(data["text"]), data
    assert stat.S_IFMT(pidfile.lstat().st_mode) != stat.S_IFREG, "the special file is left alone"


@pytest.mark.parametrize("kind", ["directory", "socket"])
def test_a_pidfile_path_that_is_no_regular_file_fails_the_start_naming_it(sandbox: Sandbox, kind: str) -> None:
    import socket

    path = sandbox.path / "d.pid"
    keep = None
    if kind == "directory":
        path.mkdir()
    else:
        keep = socket.socket(socket.AF_UNIX)
        keep.bind(str(path))
    try:
        result = sandbox.run(
            """
import sys
from pathlib import Path
from daemondeco import daemon
HERE = Path(__file__).resolve().parent

@daemon(pidfile=HERE / "d.pid", stdout=HERE / "d.log")
def main():
    (HERE / "ran").touch()

sys.exit(main.cli())
""",
            "start",
        )
    finally:
        if keep is not None:
            keep.close()
    assert result.returncode == 1, result
    assert str(path) in result.stderr and "regular file" in result.stderr, result
    assert not (sandbox.path / "ran").exists() and sandbox.live_pids() == []


# -- stale pidfiles ---------------------------------------------------------


@pytest.fixture
def stale_content(request: pytest.FixtureRequest, sandbox: Sandbox) -> Iterator[tuple[str, int | None, bool]]:
    """Text for an unlocked pidfile, the pid it names, and whether that pid is a live process."""
    kind = request.param
    if kind == "garbage":
        yield "no pid here at all, just a long line of garbage\n", None, False
    elif kind == "empty":
        yield "", None, False
    elif kind == "dead":
        proc = subprocess.Popen(["true"])
        proc.wait()
        yield f"{proc.pid}\n", proc.pid, False
    elif kind == "zombie":
        proc = subprocess.Popen(["true"])
        assert wait_exit(proc.pid)
        stat = proc_stat(proc.pid)
        assert stat is not None
        assert stat.state == "Z"
        yield f"{proc.pid}\n", proc.pid, False
        proc.wait()
    else:
        assert kind == "live-unrelated"
        proc = subprocess.Popen(["sleep", "60"])
        sandbox.extra_pids.append(proc.pid)
        yield f"{proc.pid}\n", proc.pid, True
        proc.kill()
        proc.wait()


STALE_KINDS = [
    pytest.param("dead", id="dead-pid"),
    pytest.param("garbage", id="garbage"),
    pytest.param("empty", id="empty"),
    pytest.param("zombie", id="zombie-pid"),
    pytest.param("live-unrelated", id="live-unrelated-pid"),
]


@pytest.mark.parametrize("stale_content", STALE_KINDS, indirect=True)
def test_unlocked_pidfile_is_stale_and_taken_over(
    sandbox: Sandbox, stale_content: tuple[str, int | None, bool]
) -> None:
    content, named, named_is_live = stale_content
    path = sandbox.path / "d.pid"
    path.write_text(content)

    assert sandbox.inspect_pidfile(path) == seen_from_outside(named, None, locked=False)
    sandbox.write("svc.py", SERVICE)
    status = sandbox.run("import svc; print(svc.main.status())", name="status.py")
    assert status.returncode == 0, status
    assert status.stdout.strip() == "None", status

    pid = start_service(sandbox)
    assert pid != named
    assert path.read_text() == f"{pid}\n", "the stale content must be replaced entirely"
    assert sandbox.inspect_pidfile(path) == seen_from_outside(pid, pid, locked=True)
    assert sandbox.live_pids() == [pid]
    if named_is_live:
        assert named is not None
        assert alive(named), "the unrelated process named by the stale pidfile was signalled"


@pytest.mark.parametrize("stale_content", STALE_KINDS, indirect=True)
def test_pidfile_acquire_takes_over_stale_file(sandbox: Sandbox, stale_content: tuple[str, int | None, bool]) -> None:
    content, _, _ = stale_content
    path = sandbox.path / "s.pid"
    path.write_text(content)
    with Pidfile(path):
        assert path.read_text() == f"{os.getpid()}\n"
    assert not path.exists()


# -- removal only if still ours -----------------------------------------------


def test_release_leaves_a_replaced_file_alone(tmp_path: Path) -> None:
    path = tmp_path / "r.pid"
    pidfile = Pidfile(path).acquire()
    replacement = tmp_path / "new"
    replacement.write_text(f"{os.getpid()}\n")  # even naming us: another inode is not ours
    os.replace(replacement, path)
    pidfile.release()
    assert path.read_text() == f"{os.getpid()}\n"
    assert not pidfile.is_held


def test_holder_does_not_vouch_for_a_file_that_replaced_its_own(tmp_path: Path) -> None:
    """A file put in place of the one we hold is not locked by us: its pid is not "locked_by" anybody."""
    path = tmp_path / "r.pid"
    pidfile = Pidfile(path).acquire()
    try:
        replacement = tmp_path / "new"
        replacement.write_text("12345\n")
        os.replace(replacement, path)
        assert pidfile.is_held
        assert pidfile.locked_by() is None
        assert not pidfile.is_locked()
    finally:
        pidfile.release()


def test_release_leaves_a_rewritten_file_alone(tmp_path: Path) -> None:
    path = tmp_path / "r.pid"
    pidfile = Pidfile(path).acquire()
    path.write_text("1\n")  # same inode, another pid
    pidfile.release()
    assert path.read_text() == "1\n"


def test_release_after_the_file_was_removed(tmp_path: Path) -> None:
    path = tmp_path / "r.pid"
    pidfile = Pidfile(path).acquire()
    path.unlink()
    pidfile.release()
    assert not path.exists()
    assert not pidfile.is_held


def test_release_in_a_forked_child_keeps_the_file_and_lock(sandbox: Sandbox) -> None:
    result = sandbox.run(
        """
        import os
        from daemondeco import Pidfile
        pf = Pidfile("f.pid").acquire()
        child = os.fork()
        if child == 0:
            pf.release()
            os._exit(0)
        os.waitpid(child, 0)
        print(os.path.exists(pf.path), Pidfile("f.pid").locked_by() == os.getpid())
        pf.release()
        print(os.path.exists(pf.path))
        """,
        name="fork.py",
    )
    assert result.returncode == 0, result
    assert result.stdout.split() == ["True", "True", "False"]


def test_daemon_leaves_a_replaced_pidfile_at_exit(sandbox: Sandbox) -> None:
    pid = start_service(sandbox)
    path = sandbox.path / "d.pid"
    replacement = sandbox.path / "other"
    replacement.write_text(f"{pid}\n")
    os.replace(replacement, path)
    os.kill(pid, signal.SIGTERM)
    assert wait_exit(pid)
    assert path.read_text() == f"{pid}\n", "the daemon removed a pidfile that was no longer its own"


def test_daemon_removes_its_pidfile_when_it_returns(sandbox: Sandbox) -> None:
    result = sandbox.run(
        """
        import os, sys
        from daemondeco import daemon, notify_ready
        HERE = os.path.dirname(os.path.abspath(__file__))

        @daemon(pidfile=os.path.join(HERE, "d.pid"), stdout=os.path.join(HERE, "d.log"), ready="notify")
        def main():
            print(os.getpid())
            notify_ready()
            sys.stdin.read()  # /dev/null: returns at once

        main()
        """
    )
    assert result.returncode == 0, result
    pid = int((sandbox.path / "d.log").read_text())
    assert wait_exit(pid)
    assert sandbox.live_pids() == []
    assert not (sandbox.path / "d.pid").exists()


# -- kill -9, and races ----------------------------------------------------------


def test_start_again_after_kill_9(sandbox: Sandbox) -> None:
    first = start_service(sandbox)
    os.kill(first, signal.SIGKILL)
    assert wait_exit(first)
    stat = proc_stat(first)
    assert stat is None or stat.state == "Z"  # PID 1 here does not reap
    path = sandbox.path / "d.pid"
    assert path.read_text() == f"{first}\n"
    assert sandbox.inspect_pidfile(path) == seen_from_outside(first, None, locked=False)

    second = start_service(sandbox)
    assert second != first
    assert path.read_text() == f"{second}\n"
    assert sandbox.live_pids() == [second]


def _launch_many(sandbox: Sandbox, script: Path, count: int, *args: str) -> list[tuple[int, str, str]]:
    """Start *count* copies of *script* at once; their exit codes, stdout and stderr."""
    procs = [
        sandbox.popen_file(script, *args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(count)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=30)
        results.append((proc.returncode, out, err))
    return results


def test_eight_simultaneous_starts_make_exactly_one_daemon(sandbox: Sandbox) -> None:
    script = sandbox.write("svc.py", SERVICE)
    results = _launch_many(sandbox, script, 8)

    winners = [r for r in results if r[0] == 0]
    assert len(winners) == 1, results
    pid = read_pid(sandbox.path / "d.pid")
    assert alive(pid)
    assert sandbox.live_pids() == [pid]
    for code, _, err in results:
        if code != 0:
            assert "AlreadyRunningError" in err, err
            assert f"pid {pid}" in err, f"the refusal does not name the running daemon {pid}:\n{err}"
    assert wait_for_text(sandbox.path / "d.log", "daemon up").count("daemon up") == 1


def test_eight_simultaneous_cli_starts_all_exit_0_with_one_daemon(sandbox: Sandbox) -> None:
    script = sandbox.write("svc.py", SERVICE)
    results = _launch_many(sandbox, script, 8, "start")

    assert [r[0] for r in results] == [0] * 8, results
    pid = read_pid(sandbox.path / "d.pid")
    assert sandbox.live_pids() == [pid]
    outputs = [out for _, out, _ in results]
    assert sum(f"started (pid {pid})" in out for out in outputs) == 1, outputs
    assert sum("already running" in out for out in outputs) == 7, outputs


def test_pidfile_is_complete_when_the_launcher_exits(sandbox: Sandbox) -> None:
    script = sandbox.write("svc.py", SERVICE)
    path = sandbox.path / "d.pid"
    for _ in range(3):
        result = sandbox.run_file(script)
        # Read at once, as systemd's Type=forking does: no waiting allowed.
        content = path.read_text()
        assert result.returncode == 0, result
        assert content.endswith("\n"), repr(content)
        assert content.strip().isdigit(), repr(content)
        pid = int(content)
        assert alive(pid)
        assert Pidfile(path).locked_by() == pid
        os.kill(pid, signal.SIGTERM)
        assert wait_exit(pid)
        assert not path.exists()


# Started with sandbox.paused_launcher: it pauses right before its fork.
PAUSED_LAUNCHER = """
import os, time
from daemondeco import daemon

HERE = os.path.dirname(os.path.abspath(__file__))

@daemon(pidfile=os.path.join(HERE, "d.pid"), stdout=os.path.join(HERE, "d.log"))
def main():
    time.sleep(60)

main()
"""


def test_locked_by_never_reports_the_stale_pid_while_a_start_holds_the_lock(sandbox: Sandbox) -> None:
    sleeper = subprocess.Popen(["sleep", "60"])
    sandbox.extra_pids.append(sleeper.pid)
    path = sandbox.path / "d.pid"
    path.write_text(f"{sleeper.pid}\n")

    with sandbox.paused_launcher(PAUSED_LAUNCHER) as launcher:
        # The lock is now held by a start whose daemon has no pid yet: the
        # old pid in the file is not the holder and must not be reported.
        seen = sandbox.inspect_pidfile(path)
        assert seen["is_locked"] is True
        assert seen["flock_held"] is True
        assert seen["locked_by"] != sleeper.pid, "locked_by() reports the stale pid of an unrelated process"
    assert launcher.returncode == 0
    pid = read_pid(path)
    assert pid != sleeper.pid
    assert alive(pid)
    assert alive(sleeper.pid)
    sleeper.kill()
    sleeper.wait()


def test_start_refused_during_another_start_names_the_daemon_pid(sandbox: Sandbox) -> None:
    """A start that loses the race while the winner's daemon has no pid yet still names that daemon."""
    with sandbox.paused_launcher(PAUSED_LAUNCHER) as first:
        sandbox.write("svc.py", SERVICE)
        second = sandbox.popen(
            'import svc\nprint("trying", flush=True)\nsvc.main()\n',
            name="second.py",
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert second.stdout is not None
        assert second.stdout.readline() == "trying\n"
        # The loser waits (at most 1 s) for the winner's pid; the winner goes
        # on well within that window.
        assert not wait_exit(second.pid, timeout=0.2), "the loser gave up before the winner wrote its pid"
    assert first.returncode == 0
    pid = read_pid(sandbox.path / "d.pid")
    _, err = second.communicate(timeout=30)
    assert second.returncode != 0
    assert "AlreadyRunningError" in err, err
    assert f"pid {pid}" in err, f"the refusal does not name the daemon {pid}:\n{err}"
    assert sandbox.live_pids() == [pid]
