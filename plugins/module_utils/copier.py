# -*- coding: utf-8 -*-
# Copyright: Contributors to the codacy.selfhosted collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The writing part of one database's run, once its Inspection decided to copy: under the guard
(signals, time limit, the controller's heartbeat) and the role's queue, in a private directory,
export the snapshot, record the run as in progress, empty the target, copy (the table-parallel
engine, or pg_dump and pg_restore alone: dumprestore.py), apply the database's properties,
verify, analyze and record the copy as complete.

Online migration's writing: online.OnlineCopier.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import shutil
import sys
import tempfile
import time

from ansible_collections.codacy.selfhosted.plugins.module_utils import (
    catalog, dbprops, dumprestore, fingerprint, guard, parallel, privatedir, progress, records, rundir, verify)
from ansible_collections.codacy.selfhosted.plugins.module_utils.connection import child_environment, write_passfile
from ansible_collections.codacy.selfhosted.plugins.module_utils.inspection import Failure
from ansible_collections.codacy.selfhosted.plugins.module_utils.version import COLLECTION_VERSION


class Copier:
    """Writes what the Inspection `seen` decided, reporting into the module's `result`."""

    # Whether replication brings the target what the source changes after the copy's snapshot.
    REPLICATED = False
    LEFT_BEHIND = "the target is left marked unfinished and the next run starts it again"

    def __init__(self, seen, result):
        self.seen = seen
        self.params = seen.params
        self.phases = seen.phases
        self.progress = seen.phases.progress
        self.result = result
        self.commands = result["commands"]
        self.warnings = []
        self.conns = []
        self.source_fp = seen.source_fp  # what the record says was copied (online migration reads it again)
        self.private_dir = None
        self.claim = None
        self.queue = None
        self.guard = None
        self.snap = None
        self.meter = None
        self.copied = None  # the parallel Engine that copied, whose counts verification uses

    def run(self):
        """Wait for a slot in the role's queue, then write under the guard; the private directory
        (dump, passfile) goes whatever happens."""
        with self.make_guard():
            self.wait_for_slot()
            self.guard.start_clock()
            self.private_dir = tempfile.mkdtemp(prefix=privatedir.PRIVATE_PREFIX, dir=self.params["work_dir"])
            self.claim = privatedir.claim(self.private_dir)  # released by the kernel if this process is killed
            try:
                self.copy(self.seen.action)
            finally:
                self.remove_private_dir()

    def close(self):
        if self.queue is not None:
            self.queue.release()
        for conn in self.conns:
            try:
                conn.close()
            except Exception:  # pylint: disable=broad-except
                pass

    def connect(self, endpoint, dbname, read_only=False, autocommit=True):
        conn = endpoint.connect(dbname, read_only=read_only, autocommit=autocommit)
        self.conns.append(conn)
        return conn

    # -- the copy (writes to the target only) -------------------------------------------------
    def take_snapshot(self):
        """Export the snapshot that the copy and verification read; return its id. The session
        holding it stays open until release_snapshot()."""
        self.snap = self.connect(self.seen.source, self.seen.database, read_only=True, autocommit=False)
        with self.snap.cursor() as cur:
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            cur.execute("SELECT pg_export_snapshot()")
            return cur.fetchone()[0]

    def release_snapshot(self):
        self.snap.rollback()

    def record_details(self):
        """What the run record holds from its start (online migration records its replication)."""
        return None

    def copy(self, action):
        seen = self.seen
        env = child_environment(write_passfile(self.private_dir, [seen.source, seen.target]))
        # The snapshot the copy reads, held open so that verification reads the same data.
        snapshot_id = self.take_snapshot()
        # (Counted on the inspection's session: online migration's snapshot is held by a replication connection.)
        tables = len(catalog.fetchall(seen.src, verify.TABLES_SQL, {"skip": records.SCHEMA,
                                                                    "schemas": seen.schemas or None}))
        self.meter = progress.Meter(self.progress, seen.tgt, seen.target_info["major"], records.SCHEMA,
                                    seen.source_db["size"])
        self.meter.totals(**progress.source_totals(seen.src, records.SCHEMA, seen.schemas))
        programs = dumprestore.DumpRestore(seen, snapshot_id, self.private_dir, env, self.phases, self.meter,
                                           self.guard.children, self.commands)
        try:
            if self.params["data_path"] == "parallel":
                run_id = self.copy_in_parallel(action, env, snapshot_id)
            else:
                try:
                    run_id = programs.copy(tables, lambda: self.start_writing(action))
                finally:
                    self.result["dump_bytes"] = programs.dump_bytes
            self.phases.timed("properties", dbprops.apply, seen.tgt, seen.target_database, seen.properties)
            self.phases.timed("verify", self.verify, snapshot_id)
            if self.params["analyze"] and self.params["data_path"] != "parallel":  # (parallel analyzes as it goes)
                programs.analyze()
        except dumprestore.CopyFailed as exc:
            raise Failure(exc.phase, str(exc)) from None
        self.release_snapshot()
        self.phases.timed("record", self.finish, run_id)

    def start_writing(self, action):
        """Record the run as in progress, then empty the target if it holds anything."""
        seen = self.seen
        run_id = self.phases.timed("record", records.start, seen.tgt, action, seen.source_identity, self.source_fp,
                                   COLLECTION_VERSION, self.record_details())
        if seen.record is not None or seen.content:
            # On a connection of its own, closed at once: a session reports the rows it wrote (large
            # objects unlinked) to the statistics when it ends, which finish() waits for, so they
            # cannot show up after the copy's fingerprint was read.
            conn = seen.target.connect(seen.target_database)
            try:
                self.phases.timed("clear", catalog.clear, conn, records.SCHEMA)
            finally:
                conn.close()
        return run_id

    def copy_in_parallel(self, action, env, snapshot_id):
        """The table-parallel engine (module_utils/parallel.py): it plans and dumps the definitions,
        the run is recorded as in progress, then it loads; its row counts serve verification."""
        def on_progress(**fields):  # (from the engine's threads)
            if "phase" in fields:
                self.phases.current = fields["phase"]
            self.progress.update(**fields)

        seen = self.seen
        settings = parallel.Settings(self.params["maintenance_work_mem"], self.params["max_parallel_maintenance_workers"],
                                     self.params["analyze"])
        engine = parallel.Engine(parallel.Request(
            seen.source, seen.database, seen.target, seen.target_database, snapshot_id, self.params["jobs"],
            seen.schemas, settings, seen.clients, self.private_dir, env, on_progress, self.guard.children),
            split=self.params["split_tables"])
        try:
            engine.prepare()
            run_id = self.start_writing(action)
            with self.meter.measuring():  # bytes and rows measured on the target, as on the other paths
                engine.load()
            self.copied = engine
        finally:
            for phase, seconds in engine.phases.items():
                self.phases.add(phase, seconds)
            self.commands.extend(engine.commands)
            self.result["dump_bytes"] = engine.dump_bytes
            self.result["parallelism"] = engine.parallelism
        return run_id

    def verify(self, snapshot_id):
        seen = self.seen
        source = verify.Side(lambda: seen.source.connect(seen.database, read_only=True), snapshot_id, "source")
        target = verify.Side(lambda: seen.target.connect(seen.target_database), name="target")
        try:
            copied = None
            if self.copied is not None and self.params["verify"] == "counts":
                # Read now, not when the load ended: a write in between must be seen.
                copied = parallel.confirmed_counts(seen.tgt, self.copied.rows, self.copied.load_started)
            tables, problems, warnings = verify.compare(source, target, self.params["verify"], self.params["jobs"],
                                                        records.SCHEMA, seen.schemas, copied=copied,
                                                        replicated=self.REPLICATED)
            moved = verify.sequence_differences(seen.src, seen.tgt, records.SCHEMA, seen.schemas)
        except verify.ReadError as exc:
            raise Failure("verify", self.unreadable(exc)) from None
        finally:
            source.close()
            target.close()
        self.warnings.extend(warnings)
        if not self.sequences_settled():
            self.warnings.extend(moved)
        else:
            problems += moved
        self.result["tables"] = tables
        self.result["verified"].update(tables=len(tables), rows=sum(t["target_rows"] or 0 for t in tables),
                                       equal=not problems)
        if problems:
            raise Failure("verify", "the copy of %s in %s on %s differs from the source: %s. It stays marked "
                          "unfinished; the next run copies it again"
                          % (seen.database, seen.target_database, seen.target.address, "; ".join(problems[:10])))

    def sequences_settled(self):
        """Whether the source's sequences must equal the copy's. Not while the application is
        running: its sequences may move after the dump, and the next run copies again."""
        return not self.seen.other_sessions

    def unreadable(self, exc):
        """The message for a verification that could not read what it compares: where, and what to do."""
        seen = self.seen
        endpoint = seen.source if exc.side == "source" else seen.target
        code = getattr(exc.error, "pgcode", None)
        if code == "42501":  # insufficient_privilege
            advice = ("Grant the %s user %s that privilege, or connect as a superuser or the managed service's "
                      "admin role" % (exc.side, endpoint.user))
        elif code is None or code.startswith(("08", "57")):  # connection lost, server shutting down
            advice = "Check that the %s server %s is up and reachable" % (exc.side, endpoint.address)
        else:
            advice = "Fix its cause on the %s server %s" % (exc.side, endpoint.address)
        return ("verification of %s (target database %s on %s) could not finish: %s. %s, then run again: the copy "
                "stays marked unfinished and the next run copies it again"
                % (seen.database, seen.target_database, seen.target.address, exc, advice))

    def finish(self, run_id):
        records.complete(self.seen.tgt, run_id, self.target_fingerprint(), {
            "phases": self.phases.seconds, "dump_bytes": self.result["dump_bytes"], "verified": self.result["verified"]})

    def target_fingerprint(self):
        """The target's fingerprint that a later run compares it with, with the verified row counts."""
        tgt = self.seen.tgt
        # Statistics of the restore's sessions are flushed when they end: wait for them before
        # reading the fingerprint that a later run compares the target with.
        deadline = time.time() + 30
        while time.time() < deadline and catalog.fetchall(
                tgt, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                     " AND pid <> pg_backend_pid() AND application_name = 'codacy_db_migrate'")[0][0]:
            time.sleep(0.2)
        target_fp = fingerprint.read(tgt, records.SCHEMA)
        # What a later run compares the target's rows with when its counters cannot tell (an
        # unpopulated materialized view has no rows; refreshing it changes the definitions).
        target_fp["rows"] = None if self.params["verify"] == "none" else \
            [[t["schema"], t["table"], t["target_rows"]] for t in self.result["tables"] if t["target_rows"] is not None]
        return target_fp

    # -- the run's frame ---------------------------------------------------------------------------
    def make_guard(self):
        """The guard of the writing part: signals, the run's time limit, and (for the role's
        background runs) the controller's heartbeat in the queue directory."""
        queue = self.params.get("queue") or {}
        heartbeat = rundir.RunDir(queue["dir"]).heartbeat if queue.get("heartbeat_timeout") else None
        self.guard = guard.Guard(time_limit=self.params["timeout"], heartbeat_file=heartbeat,
                                 heartbeat_timeout=queue.get("heartbeat_timeout") or 0, on_abort=self.abort)
        return self.guard

    def abort(self, reason):
        """Called by the watchdog when the main thread cannot clean up itself (it is blocked on
        a stalled connection): remove the dump and passfile, and print the module's failure."""
        seen = self.seen
        if self.private_dir:
            shutil.rmtree(self.private_dir, ignore_errors=True)
        self.progress.update(phase="failed", finished=True)
        phase = self.phases.current
        message = "%s: %s (phase %s; source %s, target %s); %s" % (
            seen.database, reason, phase, seen.source.address, seen.target.address, self.left_behind())
        sys.stdout.write(json.dumps({"failed": True, "changed": True, "phase": phase, "action": seen.action,
                                     "database": seen.database, "target_database": seen.target_database,
                                     "msg": message}) + "\n")
        sys.stdout.flush()

    def left_behind(self):
        """What a run stopped while writing leaves, and what to do (for the messages of a stopped run)."""
        return self.LEFT_BEHIND

    def wait_for_slot(self):
        """With the role's queue, wait until this migration may run (N at a time, largest first)."""
        queue = self.params.get("queue")
        if not queue:
            return
        self.queue = rundir.Queue(queue["dir"], queue["slots"], queue["position"])
        self.phases.timed("queued", self.queue.acquire)

    def remove_private_dir(self):
        """The dump and the passfile go, whatever happened; with keep_dump only the dump stays."""
        kept = [name for name in ("dump", "schema") if os.path.isdir(os.path.join(self.private_dir, name))]
        if self.params["keep_dump"] and kept:
            self.result["dump_dir"] = os.path.join(self.private_dir, kept[0])
            for name in os.listdir(self.private_dir):
                if name not in kept:
                    os.unlink(os.path.join(self.private_dir, name))
        else:
            shutil.rmtree(self.private_dir, ignore_errors=True)
