"""Process control: the contenders' processes are started in sessions of their own, waited for with a
limit, stopped as a group, and (the harness being a child subreaper) reaped when they daemonize.
The process table is read from /proc."""

import os
import signal
import subprocess
import threading

_live = set()            # Popen objects of running contenders, killed on interrupt
_spawned = set()         # pids we started ourselves (their Popen reaps them)
_live_lock = threading.Lock()
PR_SET_CHILD_SUBREAPER = 36


def spawn(argv, **kwargs):
    """Popen in its own session (so the whole group can be stopped), registered for interrupts."""
    kwargs.setdefault("stdin", subprocess.DEVNULL)
    with _live_lock:
        proc = subprocess.Popen(argv, start_new_session=True, **kwargs)  # noqa: S603
        _live.add(proc)
        _spawned.add(proc.pid)
    return proc


def become_subreaper():
    """Orphaned descendants (ansible's async jobs daemonize: double fork) are re-parented to us rather
    than to init, so they stay in our process tree for the RSS/CPU sampling; reap_orphans() reaps them."""
    try:
        import ctypes
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except OSError:
        return False


def reap_orphans(procs):
    """Reap exited orphans re-parented to us (never a child that a Popen of ours waits for); their CPU
    then counts in getrusage(RUSAGE_CHILDREN)."""
    me = os.getpid()
    with _live_lock:
        for pid, info in procs.items():
            if info[0] == me and info[5] == "Z" and pid not in _spawned:
                try:
                    os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    pass


def finish(proc, timeout):
    """Wait for proc; on timeout stop its process group. Returns the exit code (None on timeout)."""
    try:
        proc.wait(timeout)
        return proc.returncode
    except subprocess.TimeoutExpired:
        kill_group(proc)
        return None
    finally:
        with _live_lock:
            _live.discard(proc)
            if proc.returncode is not None:
                _spawned.discard(proc.pid)


def kill_group(proc):
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except OSError:
            return
        try:
            proc.wait(5)
            return
        except subprocess.TimeoutExpired:
            continue


def kill_all():
    """Stop every contender process: our process groups, then any other descendant (daemonized
    ansible async jobs live in sessions of their own), never the PostgreSQL servers."""
    with _live_lock:
        procs = list(_live)
    for proc in procs:
        kill_group(proc)
    table = read_procs()
    for pid in descendants(table, os.getpid()):
        if table[pid][1] != "postgres" and table[pid][5] != "Z":
            try:
                os.kill(pid, signal.SIGTERM)
            except OSError:
                pass


def run_text(argv, **kwargs):
    try:
        return subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs).stdout  # noqa: S603
    except OSError:
        return ""


def read_procs():
    """{pid: (ppid, comm, cpu_ticks, children_cpu_ticks, rss_pages, state)} of every process."""
    procs = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name, "rb") as handle:
                data = handle.read()
        except OSError:
            continue
        right = data.rfind(b")")
        comm = data[data.find(b"(") + 1:right].decode("utf-8", "replace")
        fields = data[right + 2:].split()
        try:
            procs[int(name)] = (int(fields[1]), comm, int(fields[11]) + int(fields[12]),
                                int(fields[13]) + int(fields[14]), int(fields[21]), fields[0].decode())
        except (IndexError, ValueError):
            continue
    return procs


def descendants(procs, root):
    children = {}
    for pid, info in procs.items():
        children.setdefault(info[0], []).append(pid)
    out, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out
