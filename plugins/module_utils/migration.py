# -*- coding: utf-8 -*-
# Copyright: Contributors to the codacy.selfhosted collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One database's migration: inspect both servers and decide (inspection.py, reads only), then,
unless only looking, write what was decided (copier.py; the copy itself: parallel.py or
dumprestore.py). Online migration's modes have their own inspection and copier (online.py).

The module codacy_db_migrate runs a Migration; the preflight module calls inspect() for every
database, so that the role knows every outcome before anything is written.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import time

from ansible_collections.codacy.selfhosted.plugins.module_utils import copier, inspection, online, progress, rundir
from ansible_collections.codacy.selfhosted.plugins.module_utils.inspection import Failure


def _kinds(params):
    """The (Inspection, Copier) classes of the migration mode that `params` ask for."""
    if (params.get("mode") or "offline") == "offline":
        return inspection.Inspection, copier.Copier
    return online.OnlineInspection, online.OnlineCopier


def inspect(params, database, target_database=None, online_checks=True):
    """Inspect `database` and decide what a run would do, writing nothing (no lock, no progress):
    the Inspection (action, reasons, facts), whose connections the caller closes (`with`).
    `params` are either module's options; online_checks=False leaves out online migration's checks
    of the servers, which the preflight makes once for every database."""
    seen = _kinds(params)[0](params, database, target_database)
    seen.online_checks = online_checks  # (online migration's inspection reads it)
    try:
        return seen.read()
    except BaseException:
        seen.close()
        raise


class Migration:
    """One run of the module codacy_db_migrate: inspect, decide, and (unless check mode) write."""

    def __init__(self, params, check_mode=False, diff=False):
        self.params = params
        self.check_mode = check_mode
        self.diff = diff
        inspection_kind, self.copier_kind = _kinds(params)
        # Check mode writes nothing anywhere, not even progress.
        self.phases = progress.Phases(progress.Progress(None if check_mode else params.get("progress_file"),
                                                        params["database"]))
        self.seen = inspection_kind(params, params["database"], params["target_database"], self.phases)
        self.copier = None
        self.result = dict(changed=False, action=None, database=self.seen.database,
                           target_database=self.seen.target_database, reasons=[], phases=self.phases.seconds,
                           dump_bytes=0, tables=[], verified={"mode": params["verify"], "tables": 0,
                                                              "rows": 0, "equal": None},
                           commands=[])
        self.result.update(self.seen.report)  # (online migration's mode, state and replication, even if it fails first)

    # What failures name: the database, the servers and the phase.
    database = property(lambda self: self.seen.database)
    source = property(lambda self: self.seen.source)
    target = property(lambda self: self.seen.target)
    phase = property(lambda self: self.phases.current)

    def left_behind(self):
        """What the run leaves when it is stopped while writing (for the failure's message)."""
        return self.copier.left_behind() if self.copier else copier.Copier.LEFT_BEHIND

    @property
    def warnings(self):
        return self.seen.warnings + (self.copier.warnings if self.copier else [])

    def run(self):
        try:
            self.still_wanted()
            try:
                self.seen.read(lock=not self.check_mode)
            finally:
                self.result.update(self.seen.report)
            seen = self.seen
            self.result.update(action=seen.action, reasons=seen.reasons)
            if self.diff:
                self.result["diff"] = seen.diff()
            if seen.action == "refused":
                raise Failure("inspect", seen.reasons[0], seen.action)
            self.result["changed"] = seen.writes
            if seen.action == "unchanged":
                # What the copy was verified with when it was made (tables and rows), for the report.
                self.result["verified"].update(seen.copy_verified())
            if seen.writes and not self.check_mode:
                self.copier = self.copier_kind(seen, self.result)
                self.copier.run()
            return self.result
        finally:
            self.phases.seconds["total"] = round(time.time() - self.phases.started, 3)
            if self.copier is not None:
                self.copier.close()
            self.phases.progress.update(phase="finished", finished=True, action=self.result["action"])
            self.seen.close()

    def still_wanted(self):
        """A background run whose starter was interrupted (its heartbeat is gone) ends before it
        connects; once it runs, the guard watches the heartbeat."""
        queue = self.params.get("queue") or {}
        if queue.get("heartbeat_timeout") and not os.path.exists(rundir.RunDir(queue["dir"]).heartbeat):
            raise Failure("start", "%s: the run that started this migration was interrupted before it began; nothing "
                          "was written" % self.seen.database)
