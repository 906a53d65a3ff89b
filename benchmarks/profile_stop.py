"""Why stopping a ``@daemon`` daemon takes what it takes: ``python benchmarks/profile_stop.py [--rounds N]``.

A diagnostic companion to run.py. Each round starts three ``@daemon``
daemons (pidfile, fresh launcher interpreter that exits, as in real use)
whose function sleeps; a fresh controller interpreter times ``.stop()``.
The daemons differ only in what their function does when SIGTERM's
``SystemExit`` arrives:

* ``as-is``   - nothing: SystemExit unwinds into normal interpreter shutdown;
* ``freeze``  - ``gc.freeze()`` first (shutdown's garbage collections then skip
                every object that existed before: a candidate engine fix);
* ``_exit``   - ``atexit._run_exitfuncs()`` then ``os._exit(0)`` (what
                ``process_daemonize`` workers already do).

Each daemon also reports when the SystemExit reached its function, so the
stop time splits into "signal -> SystemExit in the function" and "SystemExit
-> process gone" (finalization). Every process started is killed by pid and
reaped at the end (the script is a child subreaper).
"""

from __future__ import annotations

import argparse
import ctypes
import os
import random
import select
import signal
import statistics
import sys
import tempfile
import time

LAUNCH = r"""
import atexit, gc, os, sys, time
import daemondeco
mode, pidfile, report_fd = sys.argv[1], sys.argv[2], int(sys.argv[3])
def body():
    try:
        time.sleep(120)
    except SystemExit:
        os.write(report_fd, f"exit {time.monotonic_ns()}\n".encode())
        os.close(report_fd)
        if mode == "freeze":
            gc.freeze()
        elif mode == "_exit":
            atexit._run_exitfuncs()
            os._exit(0)
        raise
daemondeco.daemon(pidfile=pidfile, keep_fds=[report_fd])(body)()
"""

STOP = r"""
import sys, time, os, daemondeco
main = daemondeco.daemon(pidfile=sys.argv[1])(lambda: None)
time.sleep(0.02)
t0 = time.monotonic_ns()
ok = main.stop()
t1 = time.monotonic_ns()
print(t0, t1, ok)
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--python", default=sys.executable, help="interpreter (venv) to run daemons with")
    args = parser.parse_args()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    tmp = tempfile.mkdtemp(prefix="daemondeco-stop-")
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("PYTHONUNBUFFERED", None)
    env["PYTHONPYCACHEPREFIX"] = os.path.join(tmp, "pycache")
    launch, stop = os.path.join(tmp, "launch.py"), os.path.join(tmp, "stop.py")
    with open(launch, "w") as handle:
        handle.write(LAUNCH)
    with open(stop, "w") as handle:
        handle.write(STOP)
    modes = ["as-is", "freeze", "_exit"]
    res: dict[str, list[tuple[int, int]]] = {m: [] for m in modes}
    pidfds: list[int] = []
    rng = random.Random(3)
    py = args.python
    try:
        for rnd in range(args.rounds + 1):
            order = list(modes)
            rng.shuffle(order)
            for mode in order:
                pidfile = os.path.join(tmp, f"{mode}.pid")
                r, w = os.pipe()
                os.set_inheritable(w, True)
                pid = os.posix_spawn(py, [py, launch, mode, pidfile, str(w)], env)
                os.close(w)
                if os.waitpid(pid, 0)[1] != 0:
                    raise RuntimeError(f"launcher failed ({mode})")
                with open(pidfile) as handle:
                    daemon_pid = int(handle.read())
                pidfds.append(os.pidfd_open(daemon_pid))
                out = os.path.join(tmp, "stop.out")
                pid = os.posix_spawn(
                    py,
                    [py, stop, pidfile],
                    env,
                    file_actions=[(os.POSIX_SPAWN_OPEN, 1, out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)],
                )
                os.waitpid(pid, 0)
                with open(out) as handle:
                    t0, t1, ok = handle.read().split()
                exited = int(os.read(r, 100).split()[1])
                os.close(r)
                if ok != "True":
                    raise RuntimeError(f"stop failed ({mode})")
                if rnd:
                    res[mode].append((exited - int(t0), int(t1) - exited))
    finally:
        for fd in pidfds:
            try:
                signal.pidfd_send_signal(fd, signal.SIGKILL)
            except ProcessLookupError:
                pass
            select.select([fd], [], [], 5)
            os.close(fd)
        for _ in range(10000):
            try:
                if os.waitpid(-1, os.WNOHANG)[0] == 0:
                    break
            except ChildProcessError:
                break
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    med = statistics.median
    print(f"# @daemon stop() profile, {args.rounds} rounds, {py}")
    print("ms median: stop() call -> SystemExit in the function | SystemExit -> stop() returns | total")
    for mode, vals in res.items():
        a = [v[0] / 1e6 for v in vals]
        b = [v[1] / 1e6 for v in vals]
        tot = [x + y for x, y in zip(a, b, strict=True)]
        spread = f"(total min {min(tot):.2f}, max {max(tot):.2f})"
        print(f"  {mode:8} {med(a):7.2f} | {med(b):7.2f} | {med(tot):7.2f}  {spread}")
    return 0


if __name__ == "__main__":
    t = time.monotonic()
    code = main()
    print(f"({time.monotonic() - t:.1f} s)")
    sys.exit(code)
