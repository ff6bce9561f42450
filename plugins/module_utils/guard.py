# -*- coding: utf-8 -*-
# Copyright: Contributors to the codacy.selfhosted collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lifetime of a migration: it ends, with its cleanup, when it is told to or when nobody
waits for it any more, and it never leaves pg_dump or pg_restore behind.

- SIGTERM, SIGINT and SIGHUP raise `Interrupted` in the main thread, so `finally` blocks clean up.
- A watchdog thread ends the run when the processes that started the module are gone
  (ansible-playbook killed, even with SIGKILL), when the controller stopped waiting for a background run (its
  heartbeat file is stale), or when the run's time limit has passed. It first signals the main
  thread; if that is stuck (a query on a stalled network), it stops the children, runs the
  abort callback (remove the dump, print the failure) and exits the process.
- On the way out, and before the watchdog exits the process, it stops the run's client programs
  (children.py).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import signal
import threading
import time

from ansible_collections.codacy.selfhosted.plugins.module_utils.children import Children


class Interrupted(BaseException):
    """The run must end now; raised in the main thread so that cleanup runs on the way out."""

    def __init__(self, reason):
        super(Interrupted, self).__init__(reason)
        self.reason = reason


ANSIBLE_PROGRAMS = ("ansible-playbook", "ansible", "ansible-console")


def _stat(pid):
    """(start time, parent pid) of process `pid`, or None when it is gone (or a zombie, ended)."""
    try:
        with open("/proc/%d/stat" % pid) as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return None if fields[0] == "Z" else (fields[19], int(fields[1]))
    except (OSError, IndexError, ValueError):
        return None


def _is_ansible(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            argv = handle.read().decode("utf-8", "replace").split("\0")
    except OSError:
        return False
    return any(os.path.basename(arg) in ANSIBLE_PROGRAMS for arg in argv[:2])


def _lineage(limit=8):
    """(pid, start time) of the processes that must live while this run does.

    Run by Ansible in the foreground: every process from our parent up to the Ansible worker that
    ran the module (a shell or two, sudo with become), and ansible-playbook, the worker's parent:
    killed with SIGKILL, it leaves its worker running, waiting for us. Otherwise (an async job,
    which leaves Ansible's process tree and has the heartbeat; a module run by other means): our
    parent and grandparent."""
    chain, pid = [], os.getppid()
    while pid > 1 and len(chain) < limit:
        seen = _stat(pid)
        if seen is None:
            break
        chain.append((pid, seen[0]))
        if _is_ansible(pid):
            # Its parent as it is now: were ansible-playbook killed before this (the worker's new
            # parent is then init or a subreaper), that goes unseen, and the run goes on unwatched.
            # Not calling it gone: with a strategy that runs modules elsewhere the parent may be anything.
            # (A parent pid of 0 is outside our pid namespace: nothing to watch there.)
            main = _stat(seen[1]) if seen[1] > 1 else None
            return chain + ([(seen[1], main and main[0])] if seen[1] > 1 else [])
        pid = seen[1]
    return chain[:2]


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
        self.children = Children()
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
        self._lineage = _lineage()
        self._thread = threading.Thread(target=self._watch, name="codacy-watchdog")
        self._thread.daemon = True
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self.children.stop_all()
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
        for pid, started in self._lineage:
            if started is None or (_stat(pid) or (None,))[0] != started:
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
            self.children.stop_all(grace=2.0)
            if self.on_abort is not None:
                self.on_abort(reason)
            os._exit(1)
