# -*- coding: utf-8 -*-
# Copyright: Contributors to the codacy.selfhosted collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lifetime of a migration: it ends, with its cleanup, when it is told to or when nobody
waits for it any more, and it never leaves pg_dump or pg_restore behind.

- SIGTERM, SIGINT and SIGHUP raise `Interrupted` in the main thread, so `finally` blocks clean up.
- A watchdog thread ends the run when the processes that started the module are gone
  (ansible-playbook killed), when the controller stopped waiting for a background run (its
  heartbeat file is stale), or when the run's time limit has passed. It first signals the main
  thread; if that is stuck (a query on a stalled network), it stops the children, runs the
  abort callback (remove the dump, print the failure) and exits the process.
- Children run in their own process group, registered here, and get SIGKILL if we die.
- Its private directory (dump, passfile) is claimed with a lock the kernel releases if it is
  killed before its cleanup (kill -9, the OOM killer): the next run removes such a directory.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ctypes
import fcntl
import glob
import os
import shutil
import signal
import subprocess
import threading
import time

PRIVATE_PREFIX = "codacy_db_migrate-"
CLAIM = ".claimed"


class Interrupted(BaseException):
    """The run must end now; raised in the main thread so that cleanup runs on the way out."""

    def __init__(self, reason):
        super(Interrupted, self).__init__(reason)
        self.reason = reason


try:
    _PRCTL = ctypes.CDLL("libc.so.6", use_errno=True).prctl  # loaded here, so the child only calls it
except (OSError, AttributeError):
    _PRCTL = None


def _die_with_parent():
    # Runs in the child between fork and exec (so it only makes one system call): SIGKILL for
    # the child if the module process dies, however it dies.
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _start_time(pid):
    try:
        with open("/proc/%d/stat" % pid) as handle:
            return handle.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _ancestors(levels=2):
    """(pid, start time) of our parent and grandparent: the shell and the Ansible worker that ran us."""
    found, pid = [], os.getppid()
    for _level in range(levels):
        if pid <= 1:
            break
        found.append((pid, _start_time(pid)))
        try:
            with open("/proc/%d/stat" % pid) as handle:
                pid = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            break
    return found


def _group_alive(pgid):
    try:
        os.killpg(pgid, 0)
        return True
    except OSError:
        return False


def stop_group(proc, grace=5.0):
    """End a child's whole process group (pg_dump/pg_restore workers too, which can outlive their
    leader when it dies first), politely then firmly."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not _group_alive(proc.pid):
            break
        try:
            os.killpg(proc.pid, sig)
        except OSError:
            break
        deadline = time.time() + grace
        while time.time() < deadline and _group_alive(proc.pid):
            if proc.poll() is None:
                try:
                    proc.wait(0.1)
                except subprocess.TimeoutExpired:
                    pass
            else:
                time.sleep(0.1)  # workers are not our children: wait for init to reap them
    proc.poll()


class Guard:
    """Context manager around the part of a run that writes; see the module docstring."""

    SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
    NAMES = {signal.SIGTERM: "SIGTERM", signal.SIGHUP: "SIGHUP", signal.SIGINT: "SIGINT"}

    def __init__(self, time_limit=0, heartbeat_file=None, heartbeat_timeout=0, on_abort=None, grace=20.0):
        self.deadline = None
        self.time_limit = time_limit
        self.heartbeat_file = heartbeat_file
        self.heartbeat_timeout = heartbeat_timeout
        self.on_abort = on_abort
        self.grace = grace
        self.children = set()
        self.reason = None
        self._raised = False
        self._stop = threading.Event()

    # -- signals ---------------------------------------------------------------------------------
    def _raise(self, signum, frame):
        # Only once: a second signal must not break off the cleanup that the first one started.
        if self._raised:
            return
        self._raised = True
        raise Interrupted(self.reason or "interrupted by %s" % self.NAMES.get(signum, signum))

    def __enter__(self):
        self._previous = dict((s, signal.getsignal(s)) for s in self.SIGNALS)
        for sig in self.SIGNALS:
            signal.signal(sig, self._raise)
        self._ancestors = _ancestors()
        self._thread = threading.Thread(target=self._watch, name="codacy-watchdog")
        self._thread.daemon = True
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for proc in list(self.children):
            stop_group(proc)
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False

    def start_clock(self):
        """The time limit counts from now (not from a wait in the queue)."""
        if self.time_limit:
            self.deadline = time.time() + self.time_limit

    # -- the watchdog ------------------------------------------------------------------------------
    def why_end(self):
        """A reason to end the run now, or None."""
        for pid, started in self._ancestors:
            if _start_time(pid) != started:
                return "the process that started this migration (ansible-playbook) is gone"
        if self.heartbeat_file and self.heartbeat_timeout:
            try:
                age = time.time() - os.stat(self.heartbeat_file).st_mtime
            except OSError:
                return "the run that started this background migration was interrupted (it removed its heartbeat)"
            if age > self.heartbeat_timeout:
                return ("the controller stopped waiting for this background migration (no heartbeat for %d s: "
                        "ansible-playbook killed?)" % age)
        if self.deadline and time.time() > self.deadline:
            return "the migration did not finish within its time limit of %d s (timeout)" % self.time_limit
        return None

    def _watch(self):
        while not self._stop.wait(1.0):
            reason = self.why_end()
            if reason is None:
                continue
            self.reason = reason
            os.kill(os.getpid(), signal.SIGTERM)
            if self._stop.wait(self.grace):
                return
            # The main thread did not get to its cleanup (blocked on a stalled connection): do it here.
            for proc in list(self.children):
                stop_group(proc, grace=2.0)
            if self.on_abort is not None:
                self.on_abort(reason)
            os._exit(1)

    # -- children --------------------------------------------------------------------------------
    def run(self, argv, env, log_path, on_poll=None):
        """Run a client program with its output in log_path; return (returncode, seconds)."""
        returncodes, seconds = self.run_pipeline([(argv, log_path)], env, on_poll)
        return returncodes[0], seconds

    def run_pipeline(self, commands, env, on_poll=None):
        """Run [(argv, log_path), ...] connected stdout to stdin, like a shell pipeline;
        return ([returncode, ...], seconds). Each program's stderr goes to its log."""
        started = time.time()
        procs, upstream = [], subprocess.DEVNULL
        try:
            for index, (argv, log_path) in enumerate(commands):
                last = index == len(commands) - 1
                with open(log_path, "ab") as log:
                    # A session (and process group) of its own: the whole group, workers included, is
                    # stopped at once, and a terminal's Ctrl-C reaches us first, so we clean up in order.
                    proc = subprocess.Popen(argv, env=env, stdin=upstream, stdout=log if last else subprocess.PIPE,
                                            stderr=log, start_new_session=True, close_fds=True,
                                            preexec_fn=_die_with_parent)  # noqa: PLW1509 (one system call, no locks)
                if upstream is not subprocess.DEVNULL:
                    upstream.close()  # only the next program reads it now
                upstream = proc.stdout
                procs.append(proc)
                self.children.add(proc)
            running = [proc for proc in procs if proc.poll() is None]
            while running:
                try:  # wakes up as soon as a program ends, or every half second for progress
                    running[0].wait(0.5)
                except subprocess.TimeoutExpired:
                    pass
                if on_poll is not None:
                    on_poll()
                running = [proc for proc in procs if proc.poll() is None]
        finally:
            for proc in procs:
                stop_group(proc)
                self.children.discard(proc)
        return [proc.returncode for proc in procs], time.time() - started


def claim(directory):
    """Hold a private directory for as long as this process lives; returns the handle to keep. The
    claim appears already locked (renamed into place), so it is never seen unheld while alive."""
    unnamed = os.path.join(directory, "%s.%d" % (CLAIM, os.getpid()))
    handle = open(unnamed, "w")
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.rename(unnamed, os.path.join(directory, CLAIM))
    return handle


def remove_abandoned(work_dir):
    """Remove the private directories in `work_dir` of migrations killed before their cleanup: their
    claim is still there but nobody holds it. (A kept dump has no claim left; a live run holds its
    own.) Returns the directories removed."""
    removed = []
    for path in glob.glob(os.path.join(work_dir, PRIVATE_PREFIX + "*")):
        claimed = os.path.join(path, CLAIM)
        try:
            with open(claimed) as handle:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
        except OSError:
            continue  # no claim (a kept dump), or its process still holds it
    return removed
