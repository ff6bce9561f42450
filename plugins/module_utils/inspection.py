# -*- coding: utf-8 -*-
# Copyright: Contributors to the codacy.selfhosted collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a run finds before it writes anything, and what it decides: the options' problems
(validate), the checks of both servers and the database (Inspection), and the outcome table
(decide). Reads only.

The migrate module inspects one database and hands the Inspection to its copier (copier.py);
the preflight module inspects every database the same way, so that the role knows every
outcome before anything is written. Online migration's inspection: online.OnlineInspection.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections
import os
import re
import tempfile

from ansible_collections.codacy.selfhosted.plugins.module_utils import (
    catalog, dbprops, fingerprint, parallel, pgtools, progress, records)
from ansible_collections.codacy.selfhosted.plugins.module_utils.connection import (
    ConnectionProblem, Endpoint, endpoint_problems)


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


class Inspection:
    """One database's inspection: connect to both servers, make every check that can refuse the
    run, and decide its action (read()). The connections stay open for the copy, the target's
    holding the run's lock; close() ends them."""

    # The actions that write (the copier does them); any other action reports and ends the run.
    WRITING_ACTIONS = COPYING_ACTIONS

    def __init__(self, params, database, target_database=None, phases=None):
        self.params = params
        self.database = database
        self.target_database = target_database or database
        timeout = params["connect_timeout"]
        self.source = Endpoint("source", params["source"], timeout)
        self.target = Endpoint("target", params["target"], timeout)
        self.schemas = params["schemas"]
        self.phases = phases or progress.Phases(progress.Progress(None, database))
        self.warnings = []
        self.report = {}  # what the module's result says of the inspection: versions, sizes, fingerprint
        self.conns = []
        self.src = self.tgt = None
        self.source_info = self.target_info = self.source_db = None
        self.clients = self.properties = None
        self.source_identity = self.other_sessions = self.source_fp = None
        self.record = self.content = None
        self.action, self.reasons = None, []

    def __enter__(self):
        return self

    def __exit__(self, *_exc):
        self.close()

    def read(self, lock=False):
        """Connect (with `lock`, taking the target database's run lock), check and decide; return
        self. Raises Failure, ConnectionProblem or pgtools.ToolProblem when the run cannot go on."""
        self.phases.timed("connect", self.connect_both)
        # One run at a time per target database; the lock is held until our connection closes.
        if lock and not records.try_lock(self.tgt):
            raise Failure("inspect", "another run is migrating into %s on %s right now: nothing was written; "
                          "wait for it to finish" % (self.target_database, self.target.address), "refused")
        self.action, self.reasons = self.phases.timed("inspect", self.examine)
        return self

    @property
    def writes(self):
        return self.action in self.WRITING_ACTIONS

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
        self.report["source_size"] = self.source_db["size"]

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

    def examine(self):
        """Every check that can refuse a copy, then the outcome table: (action, reasons)."""
        self.check_copy()
        self.source_identity = {"system_identifier": self.source_info["system_identifier"],
                                "host": self.source.host, "port": self.source.port, "database": self.database}
        self.other_sessions = catalog.other_sessions(self.src)
        # The fingerprint is read before the copy's snapshot is taken: a change committed after
        # this point is either in the copy or makes the next run's fingerprint differ.
        self.source_fp = fingerprint.read(self.src, records.SCHEMA)
        self.report["source_fingerprint"] = fingerprint.digest(self.source_fp)
        source = Look(self.source_fp, fingerprint.counting_problems(self.src), self.other_sessions)
        self.record = records.read_latest(self.tgt)
        self.content = catalog.content(self.tgt, records.SCHEMA)
        target = Look(fingerprint.read(self.tgt, records.SCHEMA) if self.record else None,
                      fingerprint.counting_problems(self.tgt), catalog.other_sessions(self.tgt))
        return decide(self.content, self.record, self.source_identity, source, target, self.params["force"],
                      self.prove_target_unwritten)

    def check_copy(self):
        """The checks of a copy: client programs, versions, the same database, encodings, schemas,
        connection room, roles. Raise Failure on the first that fails."""
        self.clients = pgtools.find_clients(self.params["bin_dir"])
        self.report["versions"] = {"client": self.clients["version"], "source_server": self.source_info["version"],
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

    def prove_target_unwritten(self):
        self.warnings.append("the write counters of %s on %s cannot tell whether it was written since its copy: "
                             "reading every table to find out" % (self.target_database, self.target.address))
        return fingerprint.rows_written_since(self.tgt, self.record["target_fingerprint"])

    def state_after(self):
        """The state of the target's record after a run that takes the decided action (for --diff)."""
        return records.COMPLETE

    def diff(self):
        """--diff: the target's record before and after the run (its state, and whose copy it holds)."""
        before = {"state": self.record["state"], "copy_of": fingerprint.digest(self.record["source_fingerprint"])} \
            if self.record else {"state": "absent"}
        after = before if not self.writes else {"state": self.state_after(), "copy_of": self.report["source_fingerprint"]}
        return {"before": before, "after": after}

    def copy_verified(self):
        """How the copy that stays (action unchanged) was verified when it was made, and when."""
        return dict(((self.record.get("details") or {}).get("verified") or {}), copied_at=self.record["finished_at"])
