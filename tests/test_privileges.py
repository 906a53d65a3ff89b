"""Privilege drop, chroot and core dumps, checked on real daemons from outside.

The user/group tests switch identities and so need root (CI runs as root);
elsewhere they skip with a reason. What they check is what ``/proc`` shows of
the running daemon: its real/effective/saved/filesystem ids, its supplementary
groups, its capabilities, its root directory and its resource limits.

A daemon that dropped to ``nobody`` may not be able to reach or remove its
pidfile at exit; the pidfile tests pin down what happens then in directories
of three kinds (owned by root, owned by nobody, unreachable for nobody).

The launcher that runs *as* nobody (to prove a non-root launcher is refused)
needs a directory, an interpreter and a copy of the package that nobody can
read: those live in a world-readable temporary directory under ``/tmp``,
removed at teardown, because pytest's own ``tmp_path`` is private to root.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import (
    ROOT,
    Result,
    Sandbox,
    alive,
    proc_status,
    read_pid,
    wait_exit,
    wait_for_text,
    zombie_status_or_none,
)

IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="needs root to switch user")

NOBODY = pwd.getpwnam("nobody") if IS_ROOT else None


def nobody() -> pwd.struct_passwd:
    assert NOBODY is not None
    return NOBODY


def other_group() -> grp.struct_group:
    """An existing group that is neither root's nor nobody's primary group."""
    primary = {0, nobody().pw_gid}
    preferred = [g for g in grp.getgrall() if g.gr_gid not in primary]
    if not preferred:
        pytest.skip("this machine has no group besides root's and nobody's to switch to")
    by_name = {g.gr_name: g for g in preferred}
    return by_name.get("daemon", preferred[0])


def free_id() -> int:
    """A uid that has no passwd entry and is no group's gid either (for uid+gid tests)."""
    for candidate in range(54321, 60000):
        try:
            pwd.getpwuid(candidate)
        except KeyError:
            try:
                grp.getgrgid(candidate)
            except KeyError:
                return candidate
    pytest.skip("no free uid between 54321 and 60000")


def ids(status: dict[str, str], key: str) -> list[int]:
    """The four ids (real, effective, saved, filesystem) of a Uid:/Gid: line."""
    return [int(value) for value in status[key].split()]


def groups(status: dict[str, str]) -> set[int]:
    return {int(value) for value in status["Groups"].split()}


@pytest.fixture
def public_dir(sandbox: Sandbox) -> Iterator[Path]:
    """A root-owned 0755 directory under /tmp that nobody can traverse and read."""
    path = Path(tempfile.mkdtemp(prefix="daemondeco-test-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        sandbox.kill_all()  # before the files go: nothing of ours may still run
        shutil.rmtree(path, ignore_errors=True)


# -- a daemon that drops privileges -------------------------------------------

# Started with argv: pidfile, log. It reports its ids, tries to regain root,
# and answers SIGUSR1 with a "tick" line in its log (written after the drop,
# to a root-owned file it could not open itself).
DROPPER = """
import os, signal, sys, time
from daemondeco import AlreadyRunningError, daemon

PIDFILE, LOG = sys.argv[1], sys.argv[2]
ticks = 0

def tick(signum, frame):
    global ticks
    ticks += 1
    print("tick", ticks, flush=True)

@daemon(pidfile=PIDFILE, stdout=LOG, {options})
def main():
    signal.signal(signal.SIGUSR1, tick)
    print("up", os.getpid(), flush=True)
    try:
        os.setuid(0)
    except PermissionError as exc:
        print("regain root:", type(exc).__name__, exc.errno, flush=True)
    else:
        print("regain root: succeeded", flush=True)
    while True:
        time.sleep(3600)

try:
    main()
except AlreadyRunningError as exc:
    print("REFUSED", exc.pid, exc, file=sys.stderr)
    sys.exit(3)
"""


def start_dropper(sandbox: Sandbox, options: str, pidfile: Path, log: Path) -> int:
    """Start a DROPPER daemon with *options*; return its pid once its function runs."""
    pid = sandbox.start_daemon(DROPPER.format(options=options), str(pidfile), str(log), pidfile=pidfile)
    wait_for_text(log, "regain root:")
    return pid


def assert_keeps_logging(pid: int, log: Path) -> None:
    """SIGUSR1 makes the daemon write to its root-owned log after the drop."""
    os.kill(pid, signal.SIGUSR1)
    wait_for_text(log, "tick 1\n")
    assert log.stat().st_uid == 0, "the log was created by the launcher (root), before the drop"


@needs_root
@pytest.mark.parametrize("user", [pytest.param('"nobody"', id="name"), pytest.param("65534", id="numeric-uid")])
def test_user_nobody_drops_every_id_group_and_capability(sandbox: Sandbox, user: str) -> None:
    entry = nobody()
    if user == "65534" and entry.pw_uid != 65534:
        pytest.skip(f"nobody's uid here is {entry.pw_uid}, not 65534")
    pidfile, log = sandbox.path / "d.pid", sandbox.path / "d.log"
    pid = start_dropper(sandbox, f"user={user}", pidfile, log)

    status = proc_status(pid)
    assert ids(status, "Uid") == [entry.pw_uid] * 4, status["Uid"]
    assert ids(status, "Gid") == [entry.pw_gid] * 4, status["Gid"]
    assert groups(status) == set(os.getgrouplist("nobody", entry.pw_gid)), status["Groups"]
    assert 0 not in groups(status), "root's group must not survive the drop"
    assert status["CapEff"] == "0000000000000000"
    assert status["CapPrm"] == "0000000000000000"
    assert "regain root: PermissionError 1\n" in log.read_text(), "setuid(0) must fail with EPERM"
    assert pidfile.stat().st_uid == 0, "the pidfile was created by the launcher (root), before the drop"
    assert_keeps_logging(pid, log)
    assert "Traceback" not in log.read_text()


@needs_root
def test_group_alone_switches_only_the_group(sandbox: Sandbox) -> None:
    group = other_group()
    pidfile, log = sandbox.path / "d.pid", sandbox.path / "d.log"
    pid = start_dropper(sandbox, f"group={group.gr_name!r}", pidfile, log)

    status = proc_status(pid)
    assert ids(status, "Gid") == [group.gr_gid] * 4, status["Gid"]
    assert groups(status) == {group.gr_gid}, "root's supplementary groups are replaced by the one group"
    assert ids(status, "Uid") == [0] * 4, "without user= the daemon stays root"
    assert "regain root: succeeded" in log.read_text(), "still root: setuid(0) is a no-op that succeeds"
    assert_keeps_logging(pid, log)


@needs_root
@pytest.mark.parametrize("by", ["name", "id"])
def test_user_and_group_together(sandbox: Sandbox, by: str) -> None:
    entry, group = nobody(), other_group()
    value = repr(group.gr_name) if by == "name" else str(group.gr_gid)
    pidfile, log = sandbox.path / "d.pid", sandbox.path / "d.log"
    pid = start_dropper(sandbox, f'user="nobody", group={value}', pidfile, log)

    status = proc_status(pid)
    assert ids(status, "Uid") == [entry.pw_uid] * 4, status["Uid"]
    assert ids(status, "Gid") == [group.gr_gid] * 4, "group= overrides nobody's primary group"
    assert groups(status) == set(os.getgrouplist("nobody", group.gr_gid)), status["Groups"]
    assert status["CapEff"] == "0000000000000000"
    assert "regain root: PermissionError 1\n" in log.read_text()
    assert_keeps_logging(pid, log)


@needs_root
def test_numeric_ids_without_passwd_entry(sandbox: Sandbox) -> None:
    number = free_id()
    pidfile, log = sandbox.path / "d.pid", sandbox.path / "d.log"
    pid = start_dropper(sandbox, f"user={number}, group={number}", pidfile, log)

    status = proc_status(pid)
    assert ids(status, "Uid") == [number] * 4, status["Uid"]
    assert ids(status, "Gid") == [number] * 4, status["Gid"]
    assert groups(status) == {number}, "no passwd entry: the only group is the one given"
    assert status["CapEff"] == "0000000000000000"
    assert "regain root: PermissionError 1\n" in log.read_text()
    assert_keeps_logging(pid, log)


# -- what becomes of the pidfile after the drop --------------------------------


def pidfile_dir(kind: str, sandbox: Sandbox, public: Path) -> Path:
    if kind == "root-0755":  # nobody can read the directory but not unlink in it
        path = public / "run"
        path.mkdir(mode=0o755)
    elif kind == "owned-by-nobody":  # nobody may unlink its pidfile
        path = public / "run"
        path.mkdir(mode=0o755)
        os.chown(path, nobody().pw_uid, nobody().pw_gid)
    else:  # "unreachable": pytest's tmp_path has a 0700 root-owned ancestor
        path = sandbox.path / "run"
        path.mkdir(mode=0o755)
    return path


def control(sandbox: Sandbox, action: str, pidfile: Path) -> Result:
    """``python -m daemondeco ACTION PIDFILE`` as the test's user (root)."""
    return sandbox.run_module(action, str(pidfile))


@needs_root
@pytest.mark.parametrize(
    "kind",
    [
        pytest.param("root-0755", id="root-owned-0755-dir"),
        pytest.param("unreachable", id="dir-unreachable-for-nobody"),
        pytest.param("owned-by-nobody", id="nobody-owned-dir"),
    ],
)
def test_pidfile_after_the_drop(sandbox: Sandbox, public_dir: Path, kind: str) -> None:
    run = pidfile_dir(kind, sandbox, public_dir)
    pidfile, log = run / "d.pid", sandbox.path / "d.log"
    options = 'user="nobody"'
    pid = start_dropper(sandbox, options, pidfile, log)
    assert pidfile.stat().st_uid == 0

    # The lock still protects: the daemon holds it although it is nobody now.
    assert sandbox.inspect_pidfile(pidfile)["flock_held"] is True
    second = sandbox.run(DROPPER.format(options=options), str(pidfile), str(log), name="second.py")
    assert second.returncode == 3, second
    assert f"REFUSED {pid} " in second.stderr and f"locked by pid {pid}" in second.stderr, second
    assert read_pid(pidfile) == pid
    assert sandbox.live_pids() == [pid]

    stopped = control(sandbox, "stop", pidfile)
    assert stopped.returncode == 0, stopped
    assert wait_exit(pid)
    assert not alive(pid)
    exit_status = zombie_status_or_none(pid)
    assert exit_status in (None, 0), f"a stopped daemon exits 0, not with wait status {exit_status:#x}"
    # (Not "no Traceback at all": under coverage, nobody cannot save its data file.)
    assert str(pidfile) not in log.read_text(), "stopping must not fail on the pidfile:\n" + log.read_text()

    # Whether or not nobody could unlink in this directory, the stopper (root)
    # removes what the stopped daemon left: a clean stop is followed by status 3.
    status = control(sandbox, "status", pidfile)
    assert not pidfile.exists(), "the stopper removes the pidfile the stopped daemon left"
    assert status.returncode == 3, status

    # A new start takes over (or recreates) the file.
    again = start_dropper(sandbox, options, pidfile, log)
    assert again != pid
    assert alive(again)
    assert sandbox.live_pids() == [again]
    assert control(sandbox, "status", pidfile).returncode == 0


# -- chroot -------------------------------------------------------------------

CHROOTED = """
import os, sys, time
from daemondeco import daemon

HERE = os.path.dirname(os.path.abspath(__file__))

@daemon(pidfile=os.path.join(HERE, "d.pid"), stdout=os.path.join(HERE, "d.log"),
        chroot=os.path.join(HERE, "jail"), {options})
def main():
    # No import here: after the chroot the host's modules are out of reach.
    with open("/inside.txt", "w") as handle:
        handle.write(os.getcwd())
    with open("relative.txt", "w") as handle:
        handle.write("in the workdir")
    print("up", os.getpid(), os.getcwd(), flush=True)
    while True:
        time.sleep(3600)

main()
"""


@needs_root
@pytest.mark.parametrize(
    ("options", "workdir"),
    [
        pytest.param('workdir="/"', "/", id="default-workdir"),
        pytest.param('workdir="/srv/app"', "/srv/app", id="workdir-inside-the-jail"),
    ],
)
def test_chroot_confines_the_daemon(sandbox: Sandbox, options: str, workdir: str) -> None:
    jail = Path(os.path.realpath(sandbox.path / "jail"))
    (jail / "srv" / "app").mkdir(parents=True)
    result = sandbox.run(CHROOTED.format(options=options))
    assert result.returncode == 0, result
    pid = read_pid(sandbox.path / "d.pid")
    log = wait_for_text(sandbox.path / "d.log", "up ")

    assert os.readlink(f"/proc/{pid}/root") == str(jail)
    inside = jail / workdir.lstrip("/")
    assert os.readlink(f"/proc/{pid}/cwd") == str(inside).rstrip("/")
    assert log == f"up {pid} {workdir}\n", "the daemon sees its workdir relative to the jail"
    assert (jail / "inside.txt").read_text() == workdir, "'/inside.txt' is the jail's file"
    assert (inside / "relative.txt").read_text() == "in the workdir"
    assert not Path("/inside.txt").exists()


@needs_root
def test_chroot_after_a_launcher_that_imported_multiprocessing(sandbox: Sandbox) -> None:
    """The daemon resets multiprocessing's state after the detach: the code for it is loaded before the chroot."""
    jail = Path(os.path.realpath(sandbox.path / "jail"))
    jail.mkdir()
    result = sandbox.run("import multiprocessing\n" + CHROOTED.format(options='workdir="/"'))
    assert result.returncode == 0, result
    pid = read_pid(sandbox.path / "d.pid")
    assert wait_for_text(sandbox.path / "d.log", "up ") == f"up {pid} /\n"
    assert os.readlink(f"/proc/{pid}/root") == str(jail)


@needs_root
def test_chroot_and_user_together(sandbox: Sandbox) -> None:
    jail = Path(os.path.realpath(sandbox.path / "jail"))
    (jail / "srv" / "app").mkdir(parents=True)
    for path in (jail, jail / "srv" / "app"):
        os.chown(path, nobody().pw_uid, nobody().pw_gid)
    result = sandbox.run(CHROOTED.format(options='workdir="/srv/app", user="nobody"'))
    assert result.returncode == 0, result
    pid = read_pid(sandbox.path / "d.pid")
    wait_for_text(sandbox.path / "d.log", "up ")
    assert os.readlink(f"/proc/{pid}/root") == str(jail)
    assert ids(proc_status(pid), "Uid") == [nobody().pw_uid] * 4
    assert proc_status(pid)["CapEff"] == "0000000000000000"
    assert (jail / "inside.txt").stat().st_uid == nobody().pw_uid
    assert (jail / "srv" / "app" / "relative.txt").stat().st_uid == nobody().pw_uid


# -- core dumps ---------------------------------------------------------------

CORE = """
import os, resource, time
from daemondeco import daemon

HERE = os.path.dirname(os.path.abspath(__file__))
resource.setrlimit(resource.RLIMIT_CORE, (4096, 8192))  # what the daemon inherits

@daemon(pidfile=os.path.join(HERE, "d.pid"), stdout=os.path.join(HERE, "d.log"), {options})
def main():
    print("up", flush=True)
    while True:
        time.sleep(3600)

main()
"""


def core_limits(pid: int) -> tuple[str, str]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max core file size"):
            soft, hard = line[len("Max core file size") :].split()[:2]
            return soft, hard
    raise AssertionError(f"no core limit in /proc/{pid}/limits")


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        pytest.param("prevent_core=True", ("0", "0"), id="prevent_core"),
        pytest.param("prevent_core=False", ("4096", "8192"), id="inherited"),
    ],
)
def test_prevent_core_sets_rlimit_core_to_zero(sandbox: Sandbox, options: str, expected: tuple[str, str]) -> None:
    result = sandbox.run(CORE.format(options=options))
    assert result.returncode == 0, result
    pid = read_pid(sandbox.path / "d.pid")
    wait_for_text(sandbox.path / "d.log", "up")
    assert core_limits(pid) == expected


# -- a launcher that is not root ------------------------------------------------

UNPRIVILEGED = """
import os, sys
os.register_at_fork(before=lambda: print("FORK ATTEMPTED", file=sys.stderr, flush=True))
from daemondeco import daemon

OUT = sys.argv[1]

def P(name):
    return os.path.join(OUT, name)

try:
    @daemon(pidfile=P("d.pid"), stdout=P("d.log"), ready="start", {options})  # it ends at once, on purpose
    def main():
        with open(P("ran"), "w") as handle:
            handle.write(f"uid {{os.getuid()}}\\n")
    main()
except Exception as exc:
    print("RAISED", ",".join(cls.__name__ for cls in type(exc).__mro__), file=sys.stderr)
    print("MESSAGE", exc, file=sys.stderr)
    sys.exit(3)
print("NOT RAISED", flush=True)
"""


def interpreter_for(user: pwd.struct_passwd) -> str | None:
    """A Python >= 3.10 that *user* may execute (ours may live under a private /root)."""
    major, minor = sys.version_info[:2]
    candidates = [sys.executable, os.path.realpath(sys.executable), f"/usr/bin/python{major}.{minor}"]
    candidates += [found for name in ("python3", "python") if (found := shutil.which(name))]
    for candidate in dict.fromkeys(candidates):
        try:
            probe = subprocess.run(
                [candidate, "-c", "import sys; sys.exit(sys.version_info < (3, 10))"],
                user=user.pw_uid,
                group=user.pw_gid,
                extra_groups=[],
                capture_output=True,
                timeout=30,
                check=False,
            )
        except OSError:
            continue
        if probe.returncode == 0:
            return candidate
    return None


def run_unprivileged(sandbox: Sandbox, public: Path, options: str) -> tuple[Result, Path]:
    """Run the UNPRIVILEGED launcher as nobody (or as ourselves when we are not root).

    Returns the result and the directory the daemon would write to. As root,
    the launcher runs from *public* with a copy of daemondeco and wrapt that
    nobody can import (the checkout or the venv may not be readable by it).
    """
    out = public / "out"
    out.mkdir()
    script = public / "launcher.py"
    script.write_text(UNPRIVILEGED.format(options=options))
    if not IS_ROOT:
        return sandbox.run_file(script, str(out)), out

    import wrapt

    entry = nobody()
    os.chown(out, entry.pw_uid, entry.pw_gid)
    lib = public / "lib"
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(ROOT / "daemondeco", lib / "daemondeco", ignore=ignore)
    shutil.copytree(Path(wrapt.__file__).parent, lib / "wrapt", ignore=ignore)
    python = interpreter_for(entry)
    if python is None:
        pytest.skip("no Python >= 3.10 on this machine that the user nobody may execute")
    env = {k: v for k, v in sandbox.env(PYTHONPATH=str(lib)).items() if not k.startswith("COVERAGE_")}
    proc = subprocess.Popen(
        [python, "-s", str(script), str(out)],
        cwd=public,
        env=env,
        user=entry.pw_uid,
        group=entry.pw_gid,
        extra_groups=[],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    sandbox.extra_pids.append(proc.pid)
    stdout, stderr = proc.communicate(timeout=30)
    return Result(proc.returncode, stdout, stderr), out


def launcher_user() -> pwd.struct_passwd:
    return nobody() if IS_ROOT else pwd.getpwuid(os.geteuid())


def another_user() -> str:
    """A user other than root and the launcher's."""
    mine = launcher_user().pw_uid
    for entry in pwd.getpwall():
        if entry.pw_uid not in (0, mine):
            return entry.pw_name
    pytest.skip("this machine has no third user to switch to")


@pytest.mark.parametrize(
    ("options", "named"),
    [
        pytest.param('user="root"', "'root'", id="user-root"),
        pytest.param("user=0", "0", id="user-id-0"),
        pytest.param("user=ANOTHER", "ANOTHER", id="another-user"),
        pytest.param('group="root"', "'root'", id="group-root"),
        pytest.param('user=ME, group="root"', "'root'", id="own-user-but-root-group"),
    ],
)
def test_non_root_launcher_cannot_switch_user(sandbox: Sandbox, public_dir: Path, options: str, named: str) -> None:
    other, me = another_user(), launcher_user().pw_name
    options = options.replace("ANOTHER", repr(other)).replace("ME", repr(me))
    named = named.replace("ANOTHER", repr(other))
    result, out = run_unprivileged(sandbox, public_dir, options)
    assert result.returncode == 3, result
    assert "FORK ATTEMPTED" not in result.stderr, result
    assert "DaemonError" in result.stderr.split("RAISED ", 1)[1].split()[0].split(","), result
    message = result.stderr.split("MESSAGE ", 1)[1]
    assert "needs root" in message and named in message, message
    assert f"uid {launcher_user().pw_uid}" in message, message
    assert sandbox.live_pids() == []
    assert sorted(os.listdir(out)) == [], "nothing ran and no pidfile or log was created"


def test_non_root_launcher_cannot_chroot(sandbox: Sandbox, public_dir: Path) -> None:
    jail = public_dir / "jail"
    jail.mkdir()
    result, out = run_unprivileged(sandbox, public_dir, f"chroot={str(jail)!r}")
    assert result.returncode == 3, result
    assert "FORK ATTEMPTED" not in result.stderr, result
    assert "DaemonError" in result.stderr.split("RAISED ", 1)[1].split()[0].split(","), result
    message = result.stderr.split("MESSAGE ", 1)[1]
    assert "needs root" in message and str(jail) in message, message
    assert sandbox.live_pids() == []
    assert sorted(os.listdir(out)) == []


@pytest.mark.parametrize(
    "options",
    [
        pytest.param("user=ME", id="own-user"),
        pytest.param("user=ME, group=MYGID", id="own-user-and-group"),
        pytest.param("group=MYGID", id="own-group"),
    ],
)
def test_non_root_launcher_may_name_its_own_user(sandbox: Sandbox, public_dir: Path, options: str) -> None:
    """The control case: the same launcher, asking for the identity it already has, starts."""
    me = launcher_user()
    options = options.replace("ME", repr(me.pw_name)).replace("MYGID", str(me.pw_gid))
    result, out = run_unprivileged(sandbox, public_dir, options)
    assert result.returncode == 0, result
    assert "FORK ATTEMPTED" in result.stderr
    assert wait_for_text(out / "ran", "\n") == f"uid {me.pw_uid}\n"
