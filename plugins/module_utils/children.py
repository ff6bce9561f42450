# -*- coding: utf-8 -*-
# Copyright: Contributors to the codacy.selfhosted collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The client programs of a migration (pg_dump, pg_restore, psql, vacuumdb): each runs in a session
and process group of its own, gets SIGKILL if the module process dies however it dies, and is
stopped as a whole group (its parallel workers too). The run's Guard (guard.py) stops them all
when the run must end.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ctypes
import os
import signal
import subprocess
import time


try:
    _PRCTL = ctypes.CDLL("libc.so.6", use_errno=True).prctl  # loaded here, so the child only calls it
except (OSError, AttributeError):
    _PRCTL = None


def _die_with_parent():
    # Runs in the child between fork and exec (so it only makes one system call): SIGKILL for
    # the child if the module process dies, however it dies.
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


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


def _popen(argv, env, stdin, stdout, log, pass_fds=()):
    # A session (and process group) of its own: the whole group, workers included, is stopped at
    # once, and a terminal's Ctrl-C reaches us first, so we clean up in order.
    return subprocess.Popen(argv, env=env, stdin=stdin, stdout=stdout, stderr=log, start_new_session=True,
                            close_fds=True, pass_fds=pass_fds,
                            preexec_fn=_die_with_parent)  # noqa: PLW1509 (one system call, no locks)


class Children:
    """The client programs running now, to stop them all when the run ends."""

    def __init__(self):
        self.procs = set()

    def stop_all(self, grace=5.0):
        for proc in list(self.procs):
            stop_group(proc, grace=grace)

    def start(self, argv, env, log_path, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, pass_fds=()):
        """Start a client program (by default one whose output the caller reads: proc.stdout); end it
        with finish()."""
        with open(log_path, "ab") as log:
            proc = _popen(argv, env, stdin, stdout, log, pass_fds)
        self.procs.add(proc)
        return proc

    def finish(self, proc, stop=False):
        """The exit code of a program from start(), once it ended (at once with `stop`: the reader
        gave up, so it may be blocked writing)."""
        try:
            if stop:
                if proc.stdout:
                    proc.stdout.close()
                stop_group(proc)
            return proc.wait()
        finally:
            if proc.stdout:
                proc.stdout.close()
            stop_group(proc)
            self.procs.discard(proc)

    def run(self, argv, env, log_path):
        """Run a client program with its output in log_path; return (returncode, seconds)."""
        returncodes, seconds = self.run_pipeline([(argv, log_path)], env)
        return returncodes[0], seconds

    def run_pipeline(self, commands, env):
        """Run [(argv, log_path), ...] connected stdout to stdin, like a shell pipeline;
        return ([returncode, ...], seconds). Each program's stderr goes to its log."""
        started = time.time()
        procs, upstream = [], subprocess.DEVNULL
        try:
            for index, (argv, log_path) in enumerate(commands):
                last = index == len(commands) - 1
                with open(log_path, "ab") as log:
                    proc = _popen(argv, env, upstream, log if last else subprocess.PIPE, log)
                if upstream is not subprocess.DEVNULL:
                    upstream.close()  # only the next program reads it now
                upstream = proc.stdout
                procs.append(proc)
                self.procs.add(proc)
            running = [proc for proc in procs if proc.poll() is None]
            while running:
                running[0].wait()  # (without a timeout: Popen.wait(timeout) polls every 50 ms)
                running = [proc for proc in procs if proc.poll() is None]
        finally:
            for proc in procs:
                stop_group(proc)
                self.procs.discard(proc)
        return [proc.returncode for proc in procs], time.time() - started
