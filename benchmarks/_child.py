"""What runs inside the benchmark's fresh subprocesses: launchers, callers, daemons.

Started by ``_harness.spawn`` as ``python _child.py '<json config>'``. The
config names a job (``detach``, ``workers``, ``stop``) and a candidate. The
process reports to the harness by writing short lines on an inherited pipe
(fd ``report_fd``); every timestamp is ``time.monotonic_ns()``, which is
``CLOCK_MONOTONIC`` and so comparable across processes.

Every daemon started here sleeps for at most ``SLEEP`` seconds and is killed
by pid by the harness long before that; nothing here loops without bound.
"""

from __future__ import annotations

import json
import os
import select
import signal
import sys
import time

SLEEP = 120.0  # a daemon's life if the harness never kills it (it always should)
SETTLE = 0.02  # stop job: let the daemon reach time.sleep() before timing the stop

CFG: dict = json.loads(sys.argv[1]) if __name__ == "__main__" else {}
REPORT = int(CFG.get("report_fd", -1))


def report(line: str) -> None:
    data = (line + "\n").encode()
    while data:
        data = data[os.write(REPORT, data) :]


def now() -> int:
    return time.monotonic_ns()


# -- daemon bodies -------------------------------------------------------------


def body_report(*_args: object) -> None:
    """Bench 1/4 daemon body: say when user code started, then sleep until killed."""
    t = now()
    report(f"body {os.getpid()} {os.getppid()} {t}")
    os.close(REPORT)
    time.sleep(SLEEP)


def body_sleep(*_args: object) -> None:
    """Bench 2/3 daemon body: sleep until stopped or killed."""
    time.sleep(SLEEP)


# -- the raw floor: fork, setsid, fork, report over a pipe ---------------------


def _naive_close(limit: int, keep: set[int]) -> None:
    for fd in range(3, limit):
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def _closerange(limit: int, keep: set[int]) -> None:
    start = 3
    for fd in sorted(keep):
        if fd >= start:
            os.closerange(start, fd)
            start = fd + 1
    os.closerange(start, limit)


def raw_spawn(then, *, close: str | None = None, sigterm_exit: bool = False) -> int:
    """Bare double fork. Returns the daemon's pid in the caller once it reported ready.

    In the daemon, writes its pid on the pipe (that is the readiness report)
    and calls *then* (which must not return into the caller's code).
    """
    read_end, write_end = os.pipe()
    child = os.fork()
    if child:
        os.close(write_end)
        os.waitpid(child, 0)
        data = b""
        for _ in range(8):  # a pid is at most 7 digits; bounded
            chunk = os.read(read_end, 16)
            if not chunk:
                break
            data += chunk
        os.close(read_end)
        return int(data)
    os.close(read_end)
    os.setsid()
    if os.fork():
        os._exit(0)
    if close is not None:
        import resource

        limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        keep = {REPORT, write_end}
        (_naive_close if close == "naive" else _closerange)(limit, keep)
    if sigterm_exit:
        signal.signal(signal.SIGTERM, _raise_exit)
    os.write(write_end, str(os.getpid()).encode())
    os.close(write_end)
    then()
    os._exit(0)


def _raise_exit(signum: int, frame: object) -> None:
    raise SystemExit(0)


# -- job: detach (benchmarks 1 and 4) ------------------------------------------


def job_detach() -> None:
    cand = CFG["candidate"]
    for name in CFG.get("preload", ()):
        __import__(name)
    nofile = CFG.get("nofile")
    if nofile:
        import resource

        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, hard))
    tmp = CFG["tmpdir"]

    if cand in ("raw", "raw-naive-close", "raw-closerange"):
        close = {"raw": None, "raw-naive-close": "naive", "raw-closerange": "range"}[cand]

        def then() -> None:
            body_report()

        t0 = now()
        report(f"t0 {t0}")
        raw_spawn(then, close=close)
        report(f"known {now()}")
        os._exit(0)

    if cand in ("daemondeco", "daemondeco-pidfile"):
        from daemondeco import daemon

        opts = {"keep_fds": [REPORT]}
        if cand == "daemondeco-pidfile":
            opts["pidfile"] = os.path.join(tmp, f"dd-{os.getpid()}.pid")
        main = daemon(**opts)(body_report)
        t0 = now()
        report(f"t0 {t0}")
        main()  # the launcher leaves with status 0 once the daemon is ready
        raise AssertionError("unreachable")

    if cand == "daemondeco-worker":
        from daemondeco import process_daemonize

        worker = process_daemonize(keep_fds=[REPORT])(body_report)
        t0 = now()
        report(f"t0 {t0}")
        worker()
        report(f"known {now()}")
        os._exit(0)

    if cand == "python-daemon":
        import daemon as pydaemon

        ctx = pydaemon.DaemonContext(files_preserve=[REPORT], detach_process=True)
        t0 = now()
        report(f"t0 {t0}")
        with ctx:
            body_report()
        os._exit(0)

    if cand == "daemonize":
        from daemonize import Daemonize

        d = Daemonize(app="bench", pid=os.path.join(tmp, f"dz-{os.getpid()}.pid"), action=body_report, keep_fds=[REPORT])
        t0 = now()
        report(f"t0 {t0}")
        d.start()
        os._exit(0)

    if cand == "daemonocle":
        import daemonocle

        d = daemonocle.Daemon(name="bench", worker=body_report, detach=True)
        t0 = now()
        report(f"t0 {t0}")
        d.start()  # the launcher waits 1 s for its first child, by design
        os._exit(0)

    raise SystemExit(f"unknown candidate {cand!r}")


# -- job: workers (benchmark 2) ------------------------------------------------


def job_workers() -> None:
    import daemondeco  # both candidates: same imports, same memory to fork

    cand, count = CFG["candidate"], int(CFG["count"])
    pids: list[int] = []
    each: list[int] = []
    if cand == "raw":

        def then() -> None:
            os.close(REPORT)
            body_sleep()

        start = now()
        for _ in range(count):
            t = now()
            pids.append(raw_spawn(then))
            each.append(now() - t)
    elif cand == "daemondeco":
        worker = daemondeco.process_daemonize(body_sleep)
        start = now()
        for _ in range(count):
            t = now()
            pids.append(worker().pid)
            each.append(now() - t)
    else:
        raise SystemExit(f"unknown candidate {cand!r}")
    total = now() - start
    for i in range(0, len(pids), 200):
        report("pids " + " ".join(map(str, pids[i : i + 200])))
    report("result " + json.dumps({"total": total, "each": each}))
    os._exit(0)


# -- job: stop (benchmark 3) ---------------------------------------------------


def _pidfd_kill_wait(pid: int, timeout: float = 10.0) -> bool:
    pidfd = os.pidfd_open(pid)
    try:
        os.kill(pid, signal.SIGTERM)
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        return bool(poller.poll(int(timeout * 1000)))
    finally:
        os.close(pidfd)


def job_stop() -> None:
    import daemondeco

    cand, cycles, tmp = CFG["candidate"], int(CFG["cycles"]), CFG["tmpdir"]
    results = []
    for cycle in range(cycles):
        pidfile = os.path.join(tmp, f"stop-{os.getpid()}-{cycle}.pid")
        if cand == "raw-kill":
            # default SIGTERM disposition: the kernel ends the process
            pid = raw_spawn(lambda: (os.close(REPORT), body_sleep()))
            report(f"pid {pid}")
            time.sleep(SETTLE)
            t = now()
            ok = _pidfd_kill_wait(pid)
        elif cand == "raw-sysexit":
            # SIGTERM -> SystemExit, unwound through Python and interpreter exit
            pid = raw_spawn(lambda: (os.close(REPORT), body_sleep()), sigterm_exit=True)
            report(f"pid {pid}")
            time.sleep(SETTLE)
            t = now()
            ok = _pidfd_kill_wait(pid)
        elif cand in ("daemondeco-worker", "daemondeco-worker-pidfile"):
            opts = {"pidfile": pidfile} if cand.endswith("pidfile") else {}
            handle = daemondeco.process_daemonize(**opts)(body_sleep)()
            pid = handle.pid
            report(f"pid {pid}")
            time.sleep(SETTLE)
            t = now()
            ok = handle.stop()
        elif cand == "daemondeco-daemon-pidfile":
            main = daemondeco.daemon(pidfile=pidfile)(body_sleep)
            launcher = os.fork()
            if launcher == 0:
                os.close(REPORT)
                main()  # launcher: exits 0 when ready; daemon: SIGTERM -> SystemExit -> interpreter exit
                os._exit(3)
            _, status = os.waitpid(launcher, 0)
            if status != 0:
                raise SystemExit(f"launcher failed: {status}")
            pid = daemondeco.Pidfile(pidfile).locked_by()
            report(f"pid {pid}")
            time.sleep(SETTLE)
            t = now()
            ok = main.stop()
        else:
            raise SystemExit(f"unknown candidate {cand!r}")
        elapsed = now() - t
        results.append({"ns": elapsed, "ok": bool(ok)})
    report("result " + json.dumps(results))
    os._exit(0)


if __name__ == "__main__":
    {"detach": job_detach, "workers": job_workers, "stop": job_stop}[CFG["job"]]()
