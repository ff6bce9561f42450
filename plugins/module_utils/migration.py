# -*- coding: utf-8 -*-
# Copyright: Contributors to the codacy.selfhosted collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One database's migration: validate the options, inspect both servers, decide the outcome,
and (unless only looking) copy, verify and record.

The module codacy_db_migrate runs it; the preflight module runs its inspection and decision
for every database at once, so that the role knows every outcome before anything is written.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

from ansible_collections.codacy.selfhosted.plugins.module_utils import (
    catalog, dbprops, fingerprint, guard, parallel, pgtools, privatedir, progress, records, rundir, verify)
from ansible_collections.codacy.selfhosted.plugins.module_utils.connection import (
    ConnectionProblem, Endpoint, child_environment, endpoint_problems, write_passfile)
from ansible_collections.codacy.selfhosted.plugins.module_utils.progress import dir_size
from ansible_collections.codacy.selfhosted.plugins.module_utils.version import COLLECTION_VERSION


class Failure(Exception):
    """Ends the run with a failed task: the phase and one message for the user."""

    def __init__(self, phase, message, action=None):
        super(Failure, self).__init__(message)
        self.phase = phase
        self.action = action


def validate(params, probe_write=True, name=None):
    """Problems with the options, as sentences naming the option, the value and what to do.

    Options that `params` lacks are not checked (the preflight has no `database`). `name` turns an
    option's name into the one the user wrote (the role's `db_migration_jobs` for `jobs`)."""
    name = name or (lambda option: option)
    problems = []
    for option in ("database", "target_database"):
        value = params.get(option)
        if value is not None and (value == "" or "\x00" in value):
            problems.append("%s must be a non-empty database name without NUL characters (got %r)" % (name(option), value))
    for side in ("source", "target"):
        endpoint = params[side]
        problems.extend(endpoint_problems(endpoint, name(side)))
        if endpoint.get("sslrootcert") and not os.path.isfile(endpoint["sslrootcert"]):
            problems.append("%s.sslrootcert %s is not a readable file: give the path of the CA bundle"
                            % (name(side), endpoint["sslrootcert"]))
    if params["jobs"] < 1 or params["jobs"] > 64:
        problems.append("%s must be between 1 and 64 (got %d): use about the number of CPU cores of the "
                        "servers, e.g. 2 or 4" % (name("jobs"), params["jobs"]))
    for option in ("connect_timeout", "timeout"):
        if params.get(option, 0) < 0:
            problems.append("%s must be 0 or more seconds (got %d)" % (name(option), params[option]))
    queue = params.get("queue")
    if queue and (queue["slots"] < 1 or queue["position"] < 0):
        problems.append("queue.slots must be at least 1 and queue.position 0 or more (got %d and %d)"
                        % (queue["slots"], queue["position"]))
    memory = params.get("maintenance_work_mem")
    if memory and not re.match(r"^([1-9][0-9]{0,9})(kB|MB|GB)$", memory):
        problems.append("maintenance_work_mem must be a size such as 256MB or 1GB (got %r): it is set for the "
                        "copy's index builds on the target, in their sessions only" % memory)
    workers = params.get("max_parallel_maintenance_workers")
    if workers is not None and not 0 <= workers <= 1024:
        problems.append("max_parallel_maintenance_workers must be between 0 and 1024 (got %d)" % workers)
    for schema in params["schemas"]:
        if not schema or "\x00" in schema:
            problems.append("%s must hold non-empty schema names (got %r)" % (name("schemas"), schema))
    problem = work_dir_problem(params["work_dir"], probe_write, name("work_dir"))
    if problem:
        problems.append(problem)
    return problems


def work_dir_problem(work_dir, probe_write=True, option="work_dir"):
    """A sentence when work_dir cannot hold dumps, else None. With probe_write it is proven
    writable by making and removing a directory in it (permission bits do not tell for root,
    read-only mounts or immutable directories)."""
    if not os.path.isdir(work_dir):
        return ("%s %s %s: create it, or choose a directory with room for the dump"
                % (option, work_dir, "is not a directory" if os.path.exists(work_dir) else "does not exist"))
    if probe_write:
        try:
            os.rmdir(tempfile.mkdtemp(prefix=".codacy_db_migrate-probe-", dir=work_dir))
            return None
        except OSError:
            pass
    elif os.access(work_dir, os.W_OK | os.X_OK):
        return None
    return "%s %s is not writable by this user: choose a writable directory" % (option, work_dir)


def same_database(source_info, target_info, source, target, database, target_database):
    """True when source and target are the same database — migrating onto itself would destroy it.

    The same server is recognised by its system identifier, whatever name or address reaches it;
    where that cannot be read (some managed services), by its start time (to the microsecond) or
    its address."""
    if database != target_database:
        return False
    sid, tid = source_info["system_identifier"], target_info["system_identifier"]
    if sid and tid:
        return sid == tid
    return source_info.get("started") == target_info.get("started") or \
        (source.host.lower(), source.port) == (target.host.lower(), target.port)


# What one run sees of a server: the fingerprint, why its write counters may not count, and the
# other sessions connected to the database.
Look = collections.namedtuple("Look", "fingerprint counting_problems sessions")

COPYING_ACTIONS = ("migrated", "refreshed", "resumed")


def decide(content, record, source_identity, source, target, force, prove_target_unwritten):
    """The outcome table: return (action, reasons), action being `refused` when nothing may be written.

    content: what the target holds outside the records schema; record: the latest migration record or None;
    source, target: Looks taken now (target.fingerprint is None without a record);
    prove_target_unwritten(): (written, unprovable) from the target's rows, for when its counters
    cannot tell; called only before replacing a copy, since it reads the whole target."""
    action, reasons = _decide(content, record, source_identity, source, target, force, prove_target_unwritten)
    if action in COPYING_ACTIONS and target.sessions:
        sessions = "%d other sessions are connected to the target database (%s)" % (
            len(target.sessions), "; ".join(target.sessions[:5]))
        if not force:
            return "refused", [sessions + ": after a cutover, the application is exactly such a session, and its "
                               "writes would be lost. Nothing was written. Stop them (or the application), or set "
                               "force: true to replace the target's content anyway"]
        reasons.append("force: replacing the content although " + sessions)
    return action, reasons


def _decide(content, record, source_identity, source, target, force, prove_target_unwritten):
    if record is None:
        if not content:
            return "migrated", ["the target database is empty"]
        described = catalog.describe_content(content)
        if force:
            return "migrated", ["force: replacing content this module did not put there: %s" % described]
        return "refused", ["the target database holds data this module did not put there (%s); nothing was "
                           "written. Point target_database at an empty database, or set force: true to "
                           "replace that content" % described]
    if record["state"] == records.FOLLOWING:
        # Writing there would race with the subscription's apply worker, whatever force says.
        return "refused", ["the target database follows the source by logical replication (an online migration "
                           "started at %s): finish it with mode: cutover, or remove the replication with mode: abort. "
                           "Nothing was written" % record["started_at"]]
    if record["state"] not in records.COMPLETED:
        return "resumed", ["the copy started at %s did not finish" % record["started_at"]]
    reasons = []
    if record["source"] != source_identity:
        if not force:
            return "refused", ["the target database holds a copy of another source (%s) made at %s; nothing "
                               "was written. Set force: true to replace it"
                               % (describe_source(record["source"]), record["finished_at"])]
        reasons.append("force: replacing a copy of another source")
    changes, doubt = target_changes(record, target)
    refusal = ("the target database changed since this module copied it at %s (%%s): the application may already "
               "be using it. Nothing was written. Set force: true to replace it with a new copy of the source"
               % record["finished_at"])
    if changes:
        if not force:
            return "refused", [refusal % "; ".join(fingerprint.limited(changes))]
        reasons.append("force: replacing a copy that changed on the target (%s)" % "; ".join(fingerprint.limited(changes)))
    reasons.extend("source: %s" % change for change in fingerprint.limited(source_changes(record, source)))
    if not reasons:
        return "unchanged", ["the source is unchanged since the copy of %s" % record["finished_at"]]
    if doubt and not force and not target.sessions:  # (sessions on the target refuse the run anyway: see decide())
        written, unprovable = prove_target_unwritten()
        if written:
            return "refused", [refusal % ("%s, so its rows were read: %s" % (doubt, "; ".join(fingerprint.limited(written))))]
        if unprovable:
            return "refused", ["the target database may have changed since this module copied it at %s, and this "
                               "cannot be proven otherwise: %s, and %s. Nothing was written. Set force: true to "
                               "replace it with a new copy of the source" % (record["finished_at"], doubt, unprovable)]
        reasons.append("the target's rows were read to prove it unchanged since the copy (%s)" % doubt)
    return "refreshed", reasons


def source_changes(record, source):
    """What may have changed on the source since the copy, as sentences (empty: proven or trusted unchanged)."""
    before, now = record["source_fingerprint"], source.fingerprint
    if not fingerprint.comparable(before):
        return ["the copy was recorded by an older version of this collection"]
    found = fingerprint.definition_changes(before, now)
    if not fingerprint.proven_unwritten(before, now):
        doubts = [fingerprint.counters_lost(before, now)] + source.counting_problems
        doubts = [doubt for doubt in doubts if doubt]
        if doubts:
            found += ["transactions ran on the server since the copy and its write counters cannot tell whether they "
                      "wrote to this database: %s" % doubt for doubt in doubts]
        else:
            found += fingerprint.write_changes(before, now)
    if source.sessions:
        found.append("%d other sessions are connected to the source database (%s), so it cannot be proven "
                     "unchanged: stop the application for the final copy"
                     % (len(source.sessions), "; ".join(source.sessions[:3])))
    return found


def target_changes(record, target):
    """(changes, doubt): what changed on the target since its copy (sentences), and, when its write
    counters cannot tell, why (then only its rows can: see fingerprint.rows_written_since)."""
    recorded = record["target_fingerprint"]
    if not fingerprint.comparable(recorded):
        return [], ("the copy was recorded by version %s of this collection, whose record cannot prove that the "
                    "target was not written since" % record.get("tool_version"))
    now = target.fingerprint
    changes = fingerprint.definition_changes(recorded, now)
    doubt = fingerprint.counters_lost(recorded, now) or "; ".join(target.counting_problems)
    if doubt:
        return changes, doubt
    return changes + fingerprint.write_changes(recorded, now), None


def describe_source(identity):
    return "%s:%s/%s" % (identity.get("host"), identity.get("port"), identity.get("database"))


class Migration:
    """One run of the module: inspect, decide, and (unless check mode) copy, verify and record."""

    # The actions that write (copy() does them); any other action reports and ends the run.
    WRITING_ACTIONS = COPYING_ACTIONS
    # Whether replication brings the target what the source changes after the copy's snapshot.
    REPLICATED = False

    def __init__(self, params, check_mode=False, diff=False):
        self.params = params
        self.check_mode = check_mode
        self.diff = diff
        self.database = self.params["database"]
        self.target_database = self.params["target_database"] or self.database
        timeout = self.params["connect_timeout"]
        self.source = Endpoint("source", self.params["source"], timeout)
        self.target = Endpoint("target", self.params["target"], timeout)
        self.schemas = self.params["schemas"]
        self.phases = {}
        self.commands = []
        self.result = dict(changed=False, action=None, database=self.database,
                           target_database=self.target_database, reasons=[], phases=self.phases,
                           dump_bytes=0, tables=[], verified={"mode": self.params["verify"], "tables": 0,
                                                              "rows": 0, "equal": None},
                           commands=self.commands)
        self.conns = []
        self.warnings = []
        self.phase = "validate"
        self.private_dir = None
        self.snap = None
        self.queue = None
        self.guard = None
        self.copied = None  # the parallel Engine that copied, whose counts verification uses
        # Check mode writes nothing anywhere, not even progress.
        self.progress = progress.Progress(None if check_mode else self.params.get("progress_file"), self.database)

    # -- helpers ---------------------------------------------------------------------------------
    def timed(self, phase, func, *args):
        self.phase = phase
        self.progress.update(phase=phase)
        started = time.time()
        try:
            return func(*args)
        finally:
            self.phases[phase] = round(self.phases.get(phase, 0) + time.time() - started, 3)

    def connect(self, endpoint, dbname, read_only=False):
        conn = endpoint.connect(dbname, read_only=read_only)
        self.conns.append(conn)
        return conn

    def close(self):
        for conn in self.conns:
            try:
                conn.close()
            except Exception:  # pylint: disable=broad-except
                pass

    # -- inspection (reads only) ----------------------------------------------------------------
    def connect_both(self):
        try:
            self.src = self.connect(self.source, self.database, read_only=True)
        except ConnectionProblem as exc:
            message = str(exc)
            if "does not exist" in message:
                message += ": check `database`%s" % self.list_source_databases()
            raise Failure("connect", message) from None
        self.source_info = catalog.server_info(self.src)
        self.source_db = catalog.database_info(self.src)
        try:
            self.tgt = self.connect(self.target, self.target_database)
        except ConnectionProblem as exc:
            message = str(exc)
            if "does not exist" in message:
                message += (": create it first (CREATE DATABASE %s TEMPLATE template0 ENCODING '%s' LC_COLLATE '%s' "
                            "LC_CTYPE '%s') or use the role codacy.selfhosted.db_migration, which creates it"
                            % (pgtools.pattern(self.target_database), self.source_db["encoding"],
                               self.source_db["lc_collate"], self.source_db["lc_ctype"]))
            raise Failure("connect", message) from None
        # This session writes the run's records. Its commits wait for the disk even on a server that
        # commits asynchronously (the load sessions do, on purpose): a completion lost in a crash would
        # make the next run copy everything again, and this flush makes every load commit before it
        # durable too.
        with self.tgt.cursor() as cur:
            cur.execute("SET synchronous_commit = on")
        self.target_info = catalog.server_info(self.tgt)
        self.result["source_size"] = self.source_db["size"]

    def list_source_databases(self):
        for maintenance_db in ("postgres", "template1"):
            try:
                conn = self.source.connect(maintenance_db, read_only=True)
            except ConnectionProblem:
                continue
            try:
                names = [r[0] for r in catalog.fetchall(
                    conn, "SELECT datname FROM pg_database WHERE NOT datistemplate ORDER BY 1")]
            finally:
                conn.close()
            return " (databases on the source: %s)" % ", ".join(names)
        return ""

    def inspect(self):
        """Every check that can refuse the run, before anything is written."""
        self.clients = pgtools.find_clients(self.params["bin_dir"])
        self.result["versions"] = {"client": self.clients["version"], "source_server": self.source_info["version"],
                                   "target_server": self.target_info["version"]}
        pgtools.check_client_version(self.clients, self.source_info["major"], self.source_info["version"])
        if same_database(self.source_info, self.target_info, self.source, self.target,
                         self.database, self.target_database):
            raise Failure("inspect", "source and target are the same database (%s on %s, system identifier %s): "
                          "migrating a database onto itself would destroy it; check target.host and target_database"
                          % (self.database, self.target.address, self.source_info["system_identifier"] or "n/a"))
        if self.target_info["major"] < self.source_info["major"]:
            raise Failure("inspect", "the target server (PostgreSQL %s) is older than the source (PostgreSQL %s): "
                          "a dump cannot be restored into an older major version; use a target of PostgreSQL %d "
                          "or newer" % (self.target_info["version"], self.source_info["version"],
                                        self.source_info["major"]))
        target_db = catalog.database_info(self.tgt)
        mismatched = [key for key in ("encoding", "lc_collate", "lc_ctype") if self.source_db[key] != target_db[key]]
        if mismatched:
            raise Failure("inspect", "target database %s has %s, the source has %s: text order and comparison would "
                          "silently change. Recreate it: DROP DATABASE %s; CREATE DATABASE %s TEMPLATE template0 "
                          "ENCODING '%s' LC_COLLATE '%s' LC_CTYPE '%s' (or let the role db_migration create it)"
                          % (self.target_database,
                             ", ".join("%s %s" % (k.upper(), target_db[k]) for k in mismatched),
                             ", ".join("%s %s" % (k.upper(), self.source_db[k]) for k in mismatched),
                             pgtools.pattern(self.target_database), pgtools.pattern(self.target_database),
                             self.source_db["encoding"], self.source_db["lc_collate"], self.source_db["lc_ctype"]))
        if self.schemas:
            losses = catalog.schema_restriction_losses(self.src, self.tgt, self.schemas)
            if losses:
                raise Failure("inspect", "schemas %s would not carry everything: %s. Use schemas: [] to migrate the "
                              "whole database" % (", ".join(self.schemas), "; ".join(losses)))
        jobs = self.params["jobs"]
        own = "jobs %d plus the module's own" % jobs
        target_needs = (jobs + 2, own)
        if self.params.get("data_path") == "parallel":
            target_needs = (parallel.target_connections(jobs),
                            "3 x jobs %d for the copy and the index builds, plus the module's own" % jobs)
        for endpoint, conn, (needed, what) in ((self.source, self.src, (jobs + 3, own)), (self.target, self.tgt, target_needs)):
            shortfall = catalog.connection_shortfall(conn, endpoint, needed, what)
            if shortfall:
                raise Failure("inspect", shortfall)
        self.properties = dbprops.read(self.src)
        missing = set(catalog.missing_roles(self.src, self.tgt, records.SCHEMA))
        missing.update(r for r in dbprops.roles_used(self.properties)
                       if r not in set(x[0] for x in catalog.fetchall(self.tgt, "SELECT rolname FROM pg_roles")))
        if missing:
            raise Failure("inspect", "roles %s own or are granted objects in %s but do not exist on the target "
                          "server %s: create them there first (CREATE ROLE ... ; passwords are not copied)"
                          % (", ".join(sorted(missing)), self.database, self.target.address))

        self.source_identity = {"system_identifier": self.source_info["system_identifier"],
                                "host": self.source.host, "port": self.source.port, "database": self.database}
        self.other_sessions = catalog.other_sessions(self.src)
        # The fingerprint is read before the dump's snapshot is taken: a change committed after
        # this point is either in the dump or makes the next run's fingerprint differ.
        self.source_fp = fingerprint.read(self.src, records.SCHEMA)
        self.result["source_fingerprint"] = fingerprint.digest(self.source_fp)
        source = Look(self.source_fp, fingerprint.counting_problems(self.src), self.other_sessions)
        self.record = records.read_latest(self.tgt)
        self.content = catalog.content(self.tgt, records.SCHEMA)
        target = Look(fingerprint.read(self.tgt, records.SCHEMA) if self.record else None,
                      fingerprint.counting_problems(self.tgt), catalog.other_sessions(self.tgt))
        return decide(self.content, self.record, self.source_identity, source, target, self.params["force"],
                      self.prove_target_unwritten)

    def prove_target_unwritten(self):
        self.warnings.append("the write counters of %s on %s cannot tell whether it was written since its copy: "
                             "reading every table to find out" % (self.target_database, self.target.address))
        return fingerprint.rows_written_since(self.tgt, self.record["target_fingerprint"])

    # -- the copy (writes to the target only) -------------------------------------------------
    def run_client(self, phase, argv, env, done_pattern=None, total=None):
        """Run pg_dump/pg_restore/vacuumdb for `phase`, reporting progress from its verbose log."""
        self.run_pipeline(phase, argv, None, env, done_pattern, total)

    def run_pipeline(self, phase, first, second, env, done_pattern=None, total=None):
        """Run one client program, or two piped together (pg_dump | pg_restore), for `phase`;
        report progress from the last one's verbose log and fail with the first errors."""
        commands = [(argv, os.path.join(self.private_dir, "%s-%s.log" % (phase, os.path.basename(argv[0]))))
                    for argv in (first, second) if argv]
        self.commands.append(" | ".join(" ".join(shlex.quote(a) for a in argv) for argv, _log in commands))
        log_path = commands[-1][1]
        self.progress.update(phase=phase, **({"tables_total": total} if total else {}))
        self.meter.follow(log_path, done_pattern)
        dump_dir = self.private_dir if phase == "dump" and self.params["data_path"] == "directory" else None
        with self.meter.measuring(dump_dir=dump_dir):
            returncodes, _seconds = self.timed(phase, self.guard.children.run_pipeline, commands, env)
        failed = [(argv, log, code) for (argv, log), code in zip(commands, returncodes) if code != 0]
        if not failed:
            self.meter.poll(force=True, dump_dir=dump_dir)
            return
        # In a pipeline one failure brings down the other program too: blame pg_restore unless it
        # only ran out of input (then pg_dump, reading the source, is the cause).
        argv, log, returncode = failed[0]
        if len(failed) > 1 and not any(re.search(r"end of file|could not read input", line, re.I)
                                       for line in pgtools.first_errors(failed[-1][1])):
            argv, log, returncode = failed[-1]
        program = os.path.basename(argv[0])
        on_source = program == "pg_dump"
        errors = pgtools.first_errors(log)
        hint = ""
        if any("No space left on device" in line for line in errors):
            hint = ". work_dir %s is full: free space there or choose another work_dir" % self.params["work_dir"]
        failed_phase = "dump" if on_source else phase
        raise Failure(failed_phase, "%s of %s failed on %s (exit %d): %s%s"
                      % (program, self.database if on_source else self.target_database,
                         self.source.address if on_source else self.target.address, returncode,
                         " | ".join(errors) or "no error output", hint))

    def take_snapshot(self):
        """Export the snapshot that pg_dump and verification read; return its id. The session
        holding it stays open until release_snapshot()."""
        self.snap = self.source.connect(self.database, read_only=True, autocommit=False)
        self.conns.append(self.snap)
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
        env = child_environment(write_passfile(self.private_dir, [self.source, self.target]))
        # The snapshot pg_dump reads, held open so that verification reads the same data.
        snapshot_id = self.take_snapshot()
        # (Counted on the module's own session: online migration's snapshot is held by a replication connection.)
        tables = len(catalog.fetchall(self.src, verify.TABLES_SQL, {"skip": records.SCHEMA,
                                                                    "schemas": self.schemas or None}))
        self.meter = progress.Meter(self.progress, self.tgt, self.target_info["major"], records.SCHEMA,
                                    self.source_db["size"])
        self.meter.totals(**progress.source_totals(self.src, records.SCHEMA, self.schemas))
        if self.params["data_path"] == "directory":
            run_id = self.copy_through_directory(action, env, snapshot_id, tables)
        elif self.params["data_path"] == "parallel":
            run_id = self.copy_in_parallel(action, env, snapshot_id)
        else:
            run_id = self.copy_streaming(action, env, snapshot_id, tables)
        self.progress.update(phase="properties")
        self.timed("properties", dbprops.apply, self.tgt, self.target_database, self.properties)
        self.progress.update(phase="verify")
        self.timed("verify", self.verify, snapshot_id)
        if self.params["analyze"] and self.params["data_path"] != "parallel":  # (parallel analyzes as it goes)
            argv = [self.clients["vacuumdb"], "--analyze-only", "--jobs=%d" % self.params["jobs"], "--no-password",
                    "--dbname=%s" % self.target.conninfo(self.target_database)]
            self.run_client("analyze", argv, env)
        self.release_snapshot()
        self.progress.update(phase="record")
        self.timed("record", self.finish, run_id)

    def pg_dump(self, snapshot_id, *options):
        argv = [self.clients["pg_dump"], "--no-password", "--verbose", "--snapshot=%s" % snapshot_id,
                "--exclude-schema=%s" % pgtools.pattern(records.SCHEMA)] + list(options)
        argv += ["--schema=%s" % pgtools.pattern(s) for s in self.schemas]
        return argv + ["--dbname=%s" % self.source.conninfo(self.database, read_only=True)]

    def pg_restore(self, *options):
        return [self.clients["pg_restore"], "--exit-on-error", "--no-tablespaces", "--no-password", "--verbose",
                "--dbname=%s" % self.target.conninfo(self.target_database)] + list(options)

    def start_writing(self, action):
        """Record the run as in progress, then empty the target if it holds anything."""
        run_id = self.timed("record", records.start, self.tgt, action, self.source_identity, self.source_fp,
                            COLLECTION_VERSION, self.record_details())
        if self.record is not None or self.content:
            # On a connection of its own, closed at once: a session reports the rows it wrote (large
            # objects unlinked) to the statistics when it ends, which finish() waits for, so they
            # cannot show up after the copy's fingerprint was read.
            conn = self.target.connect(self.target_database)
            try:
                self.timed("clear", catalog.clear, conn, records.SCHEMA)
            finally:
                conn.close()
        return run_id

    def copy_through_directory(self, action, env, snapshot_id, tables):
        """Dump to a directory with `jobs` workers, then restore it with `jobs` workers."""
        jobs = self.params["jobs"]
        dump_dir = os.path.join(self.private_dir, "dump")
        argv = self.pg_dump(snapshot_id, "--format=directory", "--jobs=%d" % jobs, "--compress=0", "--no-sync",
                            "--file=%s" % dump_dir)
        self.run_client("dump", argv, env, r"dumping contents of table", tables)
        self.result["dump_bytes"] = dir_size(dump_dir)
        run_id = self.start_writing(action)
        passes, table_data = self.restore_lists(dump_dir)
        self.restore_passes("restore", dump_dir, passes, env, (), r"processing data for table", table_data)
        return run_id

    def copy_streaming(self, action, env, snapshot_id, tables):
        """Dump the definitions (small) to a directory, create the tables from it, stream the data
        from pg_dump straight into pg_restore (no disk, the target busy from the first second),
        then build indexes, constraints and triggers with `jobs` workers. One snapshot throughout."""
        schema_dir = os.path.join(self.private_dir, "schema")
        # Every section but the data, rather than --schema-only: post-data then holds the REFRESH
        # of each populated materialized view (--schema-only leaves them unpopulated). -B: the
        # large objects travel with the data.
        argv = self.pg_dump(snapshot_id, "--format=directory", "--section=pre-data", "--section=post-data", "-B",
                            "--file=%s" % schema_dir)
        self.run_client("dump", argv, env)
        self.result["dump_bytes"] = dir_size(schema_dir)
        run_id = self.start_writing(action)
        passes, _table_data = self.restore_lists(schema_dir)
        argv = self.pg_restore("--format=directory", "--section=pre-data", "--use-list=%s" % passes[0][0], schema_dir)
        self.run_client("pre-data", argv, env)
        dump = self.pg_dump(snapshot_id, "--format=custom", "--compress=0", "--data-only")
        self.run_pipeline("restore", dump, self.pg_restore("--format=custom", "--data-only"), env,
                          r"processing data for table", tables)
        self.restore_passes("post-data", schema_dir, passes, env, ("--section=post-data",))
        return run_id

    def copy_in_parallel(self, action, env, snapshot_id):
        """The table-parallel engine (module_utils/parallel.py): it plans and dumps the definitions,
        the run is recorded as in progress, then it loads; its row counts serve verification."""
        def on_progress(**fields):  # (from the engine's threads)
            if "phase" in fields:
                self.phase = fields["phase"]
            self.progress.update(**fields)

        settings = parallel.Settings(self.params["maintenance_work_mem"], self.params["max_parallel_maintenance_workers"],
                                     self.params["analyze"])
        engine = parallel.Engine(parallel.Request(
            self.source, self.database, self.target, self.target_database, snapshot_id, self.params["jobs"],
            self.schemas, settings, self.clients, self.private_dir, env, on_progress, self.guard.children),
            split=self.params["split_tables"])
        try:
            engine.prepare()
            run_id = self.start_writing(action)
            with self.meter.measuring():  # bytes and rows measured on the target, as on the other paths
                engine.load()
            self.copied = engine
        except parallel.CopyFailed as exc:
            raise Failure(exc.phase, str(exc)) from None
        finally:
            for phase, seconds in engine.phases.items():
                self.phases[phase] = round(self.phases.get(phase, 0) + seconds, 3)
            self.commands.extend(engine.commands)
            self.result["dump_bytes"] = engine.dump_bytes
            self.result["parallelism"] = engine.parallelism
        return run_id

    def restore_passes(self, phase, dump_dir, passes, env, options, done_pattern=None, total=None):
        """Restore from `dump_dir` the lists of restore_lists(), one after the other; progress
        counts in the first, which restores the data."""
        for number, (toc_list, jobs) in enumerate(passes):
            argv = self.pg_restore("--format=directory", "--jobs=%d" % jobs, "--use-list=%s" % toc_list, *options)
            argv.append(dump_dir)
            if number == 0:
                self.run_client(phase, argv, env, done_pattern, total)
            else:
                self.run_client(phase, argv, env)

    def restore_lists(self, dump_dir):
        """The dump's table of contents, without CREATE SCHEMA for schemas the target already has,
        as the lists of the pg_restore runs that restore it one after the other (pgtools.restore_pass()),
        each with its number of workers: [(path, jobs)]; and how many tables' data it restores.

        With --schema, pg_dump emits CREATE SCHEMA even for `public`, which every database
        already has; restoring it would fail. Their owner, grants and comment still apply."""
        toc = subprocess.run([self.clients["pg_restore"], "--list", dump_dir], capture_output=True, text=True,
                             check=True).stdout
        existing = set(r[0] for r in catalog.fetchall(self.tgt, "SELECT nspname FROM pg_namespace"))
        kept = [line for line in toc.splitlines() if not pgtools.creates_existing_schema(line, existing)]
        lines = [[], [], []]
        for line in kept:
            lines[pgtools.restore_pass(line)].append(line)
        passes = []
        for number, chosen in enumerate(lines):
            if number == 0 or chosen:
                path = os.path.join(self.private_dir, "restore-%d.list" % (number + 1))
                with open(path, "w") as handle:
                    handle.write("\n".join(chosen) + "\n")
                passes.append((path, 1 if number == 1 else self.params["jobs"]))
        return passes, sum(1 for line in kept if " TABLE DATA " in line)

    def verify(self, snapshot_id):
        jobs = self.params["jobs"]
        source = verify.Side(lambda: self.source.connect(self.database, read_only=True), snapshot_id, "source")
        target = verify.Side(lambda: self.target.connect(self.target_database), name="target")
        try:
            copied = None
            if self.copied is not None and self.params["verify"] == "counts":
                # Read now, not when the load ended: a write in between must be seen.
                copied = parallel.confirmed_counts(self.tgt, self.copied.rows, self.copied.load_started)
            tables, problems, warnings = verify.compare(source, target, self.params["verify"], jobs, records.SCHEMA,
                                                        self.schemas, copied=copied, replicated=self.REPLICATED)
            moved = verify.sequence_differences(self.src, self.tgt, records.SCHEMA, self.schemas)
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
                          % (self.database, self.target_database, self.target.address, "; ".join(problems[:10])))

    def sequences_settled(self):
        """Whether the source's sequences must equal the copy's. Not while the application is
        running: its sequences may move after the dump, and the next run copies again."""
        return not self.other_sessions

    def unreadable(self, exc):
        """The message for a verification that could not read what it compares: where, and what to do."""
        endpoint = self.source if exc.side == "source" else self.target
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
                % (self.database, self.target_database, self.target.address, exc, advice))

    def finish(self, run_id):
        records.complete(self.tgt, run_id, self.target_fingerprint(),
                         {"phases": self.phases, "dump_bytes": self.result["dump_bytes"], "verified": self.result["verified"]})

    def target_fingerprint(self):
        """The target's fingerprint that a later run compares it with, with the verified row counts."""
        # Statistics of the restore's sessions are flushed when they end: wait for them before
        # reading the fingerprint that a later run compares the target with.
        deadline = time.time() + 30
        while time.time() < deadline and catalog.fetchall(
                self.tgt, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                          " AND pid <> pg_backend_pid() AND application_name = 'codacy_db_migrate'")[0][0]:
            time.sleep(0.2)
        target_fp = fingerprint.read(self.tgt, records.SCHEMA)
        # What a later run compares the target's rows with when its counters cannot tell (an
        # unpopulated materialized view has no rows; refreshing it changes the definitions).
        target_fp["rows"] = None if self.params["verify"] == "none" else \
            [[t["schema"], t["table"], t["target_rows"]] for t in self.result["tables"] if t["target_rows"] is not None]
        return target_fp

    # -- the run ---------------------------------------------------------------------------------
    def run(self):
        started = time.time()
        try:
            self.still_wanted()
            self.timed("connect", self.connect_both)
            # One run at a time per target database; the lock is held until our connection closes.
            if not self.check_mode and not records.try_lock(self.tgt):
                raise Failure("inspect", "another run is migrating into %s on %s right now: nothing was written; "
                              "wait for it to finish" % (self.target_database, self.target.address), "refused")
            action, reasons = self.timed("inspect", self.inspect)
            self.result.update(action=action, reasons=reasons)
            if self.diff:
                before = {"state": self.record["state"], "copy_of": fingerprint.digest(self.record["source_fingerprint"])} \
                    if self.record else {"state": "absent"}
                after = before if action not in self.WRITING_ACTIONS else \
                    {"state": self.state_after(action), "copy_of": self.result["source_fingerprint"]}
                self.result["diff"] = {"before": before, "after": after}
            if action == "refused":
                raise Failure("inspect", reasons[0], action)
            self.result["changed"] = action in self.WRITING_ACTIONS
            if action == "unchanged":
                # What the copy was verified with when it was made (tables and rows), for the report.
                self.result["verified"].update(((self.record.get("details") or {}).get("verified") or {}),
                                               copied_at=self.record["finished_at"])
            if not self.result["changed"] or self.check_mode:
                return self.result
            with self.make_guard():
                self.wait_for_slot()
                self.guard.start_clock()
                self.private_dir = tempfile.mkdtemp(prefix=privatedir.PRIVATE_PREFIX, dir=self.params["work_dir"])
                self.claim = privatedir.claim(self.private_dir)  # released by the kernel if this process is killed
                try:
                    self.copy(action)
                finally:
                    self.remove_private_dir()
            return self.result
        finally:
            self.phases["total"] = round(time.time() - started, 3)
            if self.queue is not None:
                self.queue.release()
            self.progress.update(phase="finished", finished=True, action=self.result["action"])
            self.close()

    def still_wanted(self):
        """A background run whose starter was interrupted (its heartbeat is gone) ends before it
        connects; once it runs, the guard watches the heartbeat."""
        queue = self.params.get("queue") or {}
        if queue.get("heartbeat_timeout") and not os.path.exists(rundir.RunDir(queue["dir"]).heartbeat):
            raise Failure("start", "%s: the run that started this migration was interrupted before it began; nothing "
                          "was written" % self.database)

    def state_after(self, action):
        """The state of the target's record after a run that takes `action` (for --diff)."""
        return records.COMPLETE

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
        if self.private_dir:
            shutil.rmtree(self.private_dir, ignore_errors=True)
        self.progress.update(phase="failed", finished=True)
        message = ("%s: %s (phase %s; source %s, target %s); the target is left marked unfinished and the next run "
                   "starts it again" % (self.database, reason, self.phase, self.source.address, self.target.address))
        sys.stdout.write(json.dumps({"failed": True, "changed": True, "phase": self.phase, "action": self.result["action"],
                                     "database": self.database, "target_database": self.target_database,
                                     "msg": message}) + "\n")
        sys.stdout.flush()

    def wait_for_slot(self):
        """With the role's queue, wait until this migration may run (N at a time, largest first)."""
        queue = self.params.get("queue")
        if not queue:
            return
        self.queue = rundir.Queue(queue["dir"], queue["slots"], queue["position"])
        self.progress.update(phase="queued")
        self.timed("queued", self.queue.acquire)

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
