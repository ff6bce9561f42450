# -*- coding: utf-8 -*-
# Copyright: Contributors to the codacy.selfhosted collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The run directory: one per installation on its migration host, shared by the role's waiting
task (codacy_db_wait, its action on the controller) and the background migrations it starts.

    <run_dir>/heartbeat              touched by the waiting task; a migration ends when it goes stale
                                     or is removed (queue.heartbeat_timeout of codacy_db_migrate)
    <run_dir>/progress-<N>.json      the progress file of the job at queue position N (progress.py)
    <run_dir>/waiting-<N>, slot-<K>  the queue
    <run_dir>/xids-<server>          ids of the transactions our cutovers ran on a source server to drop
                                     their publications (online.py: they wrote nothing else)

Queue: the role starts one background job per database, largest first; at most `slots` of them
copy at a time. A job waits for a free slot (an flock'ed file, released by the kernel even if the
job dies) and defers to any live job ahead of it in the queue, so the largest start first.

Paths are POSIX paths on the migration host (the action plugin builds them on the controller).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import fcntl
import glob
import hashlib
import os
import posixpath
import time

from ansible_collections.codacy.selfhosted.plugins.module_utils import progress


class RunDir:
    """The run directory at `path`: where its heartbeat and progress files are, and who runs."""

    def __init__(self, path):
        self.path = path
        self.heartbeat = posixpath.join(path, "heartbeat")

    @classmethod
    def of_progress_file(cls, path):
        """The run directory that holds the progress file `path`."""
        return cls(posixpath.dirname(path))

    def progress_file(self, position):
        return posixpath.join(self.path, "progress-%d.json" % position)

    def result_file(self, position):
        """Where the migration at `position` writes its result (codacy_db_migrate's `batch`)."""
        return posixpath.join(self.path, "result-%d.json" % position)

    def result_files(self):
        return glob.glob(posixpath.join(self.path, "result-*.json*"))

    def progress_files(self):
        return sorted(glob.glob(posixpath.join(self.path, "progress-*.json")))

    def heartbeat_age(self):
        try:
            return time.time() - os.stat(self.heartbeat).st_mtime
        except OSError:
            return None

    def _xids_file(self, server):
        return posixpath.join(self.path, "xids-%s" % hashlib.sha256(str(server).encode("utf-8")).hexdigest()[:16])

    def note_transaction(self, server, xid):
        """Record that transaction `xid` on `server` is ours (before it commits: a reader that
        does not find it yet only proves less)."""
        fd = os.open(self._xids_file(server), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, b"%d\n" % xid)  # one write to a file opened O_APPEND: lines never mix
        finally:
            os.close(fd)

    def our_transactions(self, server):
        """The transaction ids noted for `server`."""
        try:
            with open(self._xids_file(server)) as handle:
                return set(int(line) for line in handle if line.strip().isdigit())
        except OSError:
            return set()

    def live_migrations(self):
        """{database: pid} of the migrations whose progress files say they still run (an earlier
        run's, interrupted or still going)."""
        live = {}
        for path in self.progress_files():
            state = progress.read(path)
            if state and not state["finished"] and state["pid"] and _alive(state["pid"]) and \
                    _runs_a_migration(state["pid"]):
                live[state["database"]] = state["pid"]
        return live


def _alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


def _runs_a_migration(pid):
    """Whether process `pid` runs codacy_db_migrate (and not some process that reused the pid)."""
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            return b"codacy_db_migrate" in handle.read()
    except OSError:
        return not os.path.isdir("/proc/self")  # no /proc: trust the pid


class Queue:
    """`slots` migrations at a time among the jobs sharing the run directory `directory`, in
    `position` order."""

    def __init__(self, directory, slots, position):
        self.directory = directory
        self.slots = max(1, slots)
        self.position = position
        self.handle = None
        self.waiting = posixpath.join(directory, "waiting-%06d" % position)

    def _ahead_of_me(self):
        for path in glob.glob(posixpath.join(self.directory, "waiting-*")):
            try:
                position = int(path.rsplit("-", 1)[1])
                with open(path) as handle:
                    pid = int(handle.read().strip() or 0)
            except (OSError, ValueError):
                continue
            if position < self.position and _alive(pid):
                return True
        return False

    def acquire(self, on_wait=None, poll=0.5):
        os.makedirs(self.directory, exist_ok=True)
        with open(self.waiting, "w") as handle:
            handle.write(str(os.getpid()))
        try:
            while True:
                if not self._ahead_of_me():
                    for slot in range(self.slots):
                        handle = open(posixpath.join(self.directory, "slot-%d" % slot), "w")
                        try:
                            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        except OSError:
                            handle.close()
                            continue
                        self.handle = handle
                        return
                if on_wait is not None:
                    on_wait()
                time.sleep(poll)
        finally:
            os.unlink(self.waiting)

    def release(self):
        if self.handle is not None:
            self.handle.close()
            self.handle = None
