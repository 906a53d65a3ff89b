"""Process plumbing and statistics for the benchmarks.

The harness makes itself a child subreaper (``PR_SET_CHILD_SUBREAPER``), so
every daemon the benchmarks detach is re-parented to it rather than to PID 1
(which does not reap on this machine): it can then kill each daemon by its
pid (through a pidfd, so a reused pid is never signalled) and reap it, and
nothing is left behind, not even a zombie. Children are started with
``posix_spawn``; the harness never uses ``subprocess`` (whose own ``waitpid``
bookkeeping would clash with the reaping here).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import random
import select
import signal
import statistics
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CHILD = os.path.join(HERE, "_child.py")
PR_SET_CHILD_SUBREAPER = 36


class Harness:
    """Spawns children, collects their reports, and kills/reaps everything it started."""

    def __init__(self, python: str) -> None:
        self.python = python
        self.tmpdir = tempfile.mkdtemp(prefix="daemondeco-bench-")
        self.errlog = os.path.join(self.tmpdir, "children.stderr")
        self.env = child_env(os.path.join(self.tmpdir, "pycache"))
        self._pidfds: dict[int, int] = {}  # every process we learnt of -> its pidfd
        self.spawned_at = 0  # CLOCK_MONOTONIC ns just before the last posix_spawn
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")

    # -- processes ----------------------------------------------------------

    def track(self, pid: int) -> None:
        """Remember *pid* (a process we caused to exist) so it is killed at the end."""
        if pid in self._pidfds:
            return
        try:
            self._pidfds[pid] = os.pidfd_open(pid)
        except ProcessLookupError:
            pass

    def spawn(self, argv: list[str], pass_fd: int | None = None, env: dict[str, str] | None = None) -> int:
        """posix_spawn *argv* (stdio: /dev/null and the error log), *pass_fd* inherited; track it."""
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
            (os.POSIX_SPAWN_OPEN, 2, self.errlog, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644),
        ]
        if pass_fd is not None:
            os.set_inheritable(pass_fd, True)
        try:
            self.spawned_at = time.monotonic_ns()  # the whole-start benchmarks count from here
            pid = os.posix_spawn(argv[0], argv, env if env is not None else self.env, file_actions=actions)
        finally:
            if pass_fd is not None:
                os.set_inheritable(pass_fd, False)
        self.track(pid)
        return pid

    def run_child(
        self, config: dict, timeout: float = 60.0, env: dict[str, str] | None = None
    ) -> tuple[list[str], int | None, int]:
        """Run ``_child.py`` with *config*; return (report lines, launcher exit time ns, pid).

        Reads the report pipe until end of file (every writer closed it) and
        waits for the launcher's exit (pidfd), both within *timeout*. *env*
        replaces the children's environment (``tree_env``: another source tree).
        """
        label = f"{config.get('job')}/{config.get('candidate')}"
        return self.run_argv(
            lambda fd: [self.python, CHILD, json.dumps({**config, "report_fd": fd, "tmpdir": self.tmpdir})],
            timeout=timeout,
            env=env,
            label=label,
        )

    def run_argv(
        self, make_argv, timeout: float = 60.0, env: dict[str, str] | None = None, label: str = "child"
    ) -> tuple[list[str], int | None, int]:
        """Spawn ``make_argv(report_fd)``; as ``run_child``, for any program (a report fd it inherits)."""
        read_end, write_end = os.pipe()
        try:
            pid = self.spawn(make_argv(write_end), pass_fd=write_end, env=env)
        finally:
            os.close(write_end)
        pidfd = self._pidfds[pid]
        poller = select.poll()
        poller.register(read_end, select.POLLIN)
        poller.register(pidfd, select.POLLIN)
        data, exited_at, eof = b"", None, False
        deadline = time.monotonic() + timeout
        try:
            while not (eof and exited_at is not None):
                wait_ms = int((deadline - time.monotonic()) * 1000)
                if wait_ms <= 0:
                    raise TimeoutError(f"child {label} timed out; see {self.errlog}")
                for fd, _ in poller.poll(wait_ms):
                    if fd == pidfd and exited_at is None:
                        exited_at = time.monotonic_ns()
                        poller.unregister(pidfd)
                    elif fd == read_end:
                        chunk = os.read(read_end, 65536)
                        if chunk:
                            data += chunk
                        else:
                            eof = True
                            poller.unregister(read_end)
        finally:
            os.close(read_end)
        self._reap(pid)
        lines = data.decode().splitlines()
        for line in lines:
            word, *rest = line.split()
            if word in ("body", "pid"):
                self.track(int(rest[0]))
            elif word == "pids":
                for item in rest:
                    self.track(int(item))
        return lines, exited_at, pid

    def _reap(self, pid: int) -> None:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
        fd = self._pidfds.pop(pid, None)
        if fd is not None:
            os.close(fd)

    def kill_all(self) -> int:
        """SIGKILL every tracked process still there (by pidfd), reap them all. Returns how many."""
        killed = 0
        for pid, fd in list(self._pidfds.items()):
            try:
                signal.pidfd_send_signal(fd, signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass  # already exited (maybe a zombie of ours: reaped below)
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            poller.poll(5000)
            os.close(fd)
            del self._pidfds[pid]
        self.reap_orphans()
        return killed

    def reap_orphans(self) -> None:
        """Reap exited processes re-parented to us (intermediate children, killed daemons)."""
        for _ in range(100000):  # bounded: at most that many zombies
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return

    def close(self) -> None:
        self.kill_all()
        import shutil

        shutil.rmtree(self.tmpdir, ignore_errors=True)

    def stderr_tail(self, n: int = 20) -> str:
        try:
            with open(self.errlog) as handle:
                return "".join(handle.readlines()[-n:])
        except OSError:
            return ""


def child_env(pycache: str) -> dict[str, str]:
    """The environment of benchmark children.

    This machine sets PYTHONDONTWRITEBYTECODE=1, so an editable install
    recompiles daemondeco's sources at every import; a real install has
    bytecode. Children get a bytecode cache in a temporary directory instead
    (warmed by the untimed first round) and default stdio buffering, and
    the current directory is kept off ``sys.path`` (``python -c`` would put
    it first, and a checkout there would shadow the installed package).
    """
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("PYTHONUNBUFFERED", None)
    env.pop("PYTHONPROFILEIMPORTTIME", None)
    env["PYTHONPYCACHEPREFIX"] = pycache
    env["PYTHONSAFEPATH"] = "1"  # never import daemondeco from the current directory by accident
    return env


def tree_env(base: dict[str, str], path: str) -> dict[str, str]:
    """*base* with another daemondeco source tree first on ``sys.path`` (``--compare-tree``).

    ``PYTHONPATH`` comes before site-packages, and an editable install's finder
    comes after the path entries, so ``import daemondeco`` loads *path*'s copy.
    """
    return {**base, "PYTHONPATH": os.path.abspath(path)}


# -- statistics -----------------------------------------------------------------


def summary(values: list[float]) -> dict[str, float]:
    """Median, quartiles, min, max and count of *values*."""
    vals = sorted(values)
    if not vals:
        return {"n": 0}
    if len(vals) >= 2:
        q1, _, q3 = statistics.quantiles(vals, n=4, method="inclusive")
    else:
        q1 = q3 = vals[0]
    return {"n": len(vals), "median": statistics.median(vals), "q1": q1, "q3": q3, "min": vals[0], "max": vals[-1]}


def interleaved(candidates: list[str], rounds: int, seed: int) -> list[tuple[int, str]]:
    """(round, candidate) in a shuffled order within each round, so drift hits all alike."""
    rng = random.Random(seed)
    order = []
    for r in range(rounds):
        names = list(candidates)
        rng.shuffle(names)
        order.extend((r, name) for name in names)
    return order


def paired_ratios(per_round: dict[int, dict[str, float]], name: str, base: str) -> list[float]:
    """name/base for every round in which both were measured."""
    return [row[name] / row[base] for row in per_round.values() if name in row and base in row and row[base] > 0]


def fmt_ms(ns: float) -> str:
    return f"{ns / 1e6:.3f}"
