# -*- coding: utf-8 -*-
# Copyright: Contributors to the codacy.selfhosted collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Progress reporting and the run queue shared by concurrent migrations on one host.

Progress: each migration rewrites a small JSON file (phase, tables done of total, bytes) that
the role's waiting task reads while the jobs run, so a long restore never looks hung.

Queue: the role starts one background job per database, largest first; at most `slots` of them
copy at a time. A job waits for a free slot (an flock'ed file, released by the kernel even if the
job dies) and defers to any live job ahead of it in the queue, so the largest start first.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import fcntl
import glob
import json
import os
import re
import time


class Progress:
    """Writes the progress file (atomically: the reader never sees half a file)."""

    def __init__(self, path, database):
        self.path = path
        self.state = {"database": database, "pid": os.getpid(), "phase": "starting", "since": time.time(), "done": None,
                      "total": None, "bytes": None, "finished": False}
        self.update()  # replaces what an earlier run left in the file

    def update(self, **fields):
        if "phase" in fields and fields["phase"] != self.state["phase"]:
            self.state.update(since=time.time(), done=None, total=None)
        self.state.update(fields)
        if not self.path:
            return
        tmp = "%s.%d.tmp" % (self.path, os.getpid())
        try:
            with open(tmp, "w") as handle:
                json.dump(self.state, handle)
            os.rename(tmp, self.path)
        except OSError:
            pass  # progress is informative only; never fail a migration over it


def count_lines(path, pattern):
    """How many lines of a client's verbose log match `pattern` (tables dumped or restored)."""
    try:
        with open(path, errors="replace") as handle:
            return sum(1 for line in handle if re.search(pattern, line))
    except OSError:
        return 0


def _alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


class Queue:
    """`slots` migrations at a time among the jobs sharing `directory`, in `position` order."""

    def __init__(self, directory, slots, position):
        self.directory = directory
        self.slots = max(1, slots)
        self.position = position
        self.handle = None
        self.waiting = os.path.join(directory, "waiting-%06d" % position)

    def _ahead_of_me(self):
        for path in glob.glob(os.path.join(self.directory, "waiting-*")):
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
                        handle = open(os.path.join(self.directory, "slot-%d" % slot), "w")
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
