#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Contributors to the codacy.selfhosted collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: codacy_db_migrate
short_description: Migrate one PostgreSQL database of Codacy Self-hosted to another server, idempotently
version_added: 0.1.0
description:
  - Copies one database from a source server to an existing database on a target server with
    C(pg_dump) and C(pg_restore) (directory format, O(jobs) parallel workers on both sides), then
    carries the database-level properties, verifies the copy table by table and rebuilds the
    planner statistics.
  - Idempotent. The module records each migration in the target database, in a schema of its own
    (C(codacy_migration)) that the application never sees, together with a fingerprint of the
    source. A later run compares the source with that record and does nothing when the source is
    unchanged, copies again when it changed, and finishes a copy that was interrupted.
  - Never overwrites data it did not put there. A target database that holds tables, views,
    functions, schemas or large objects that this module did not restore is refused unless
    O(force=true); so is a completed copy that was changed on the target since (for example because
    the application already writes to it).
  - "Outcomes (RV(action)): V(migrated) (the target was empty), V(unchanged) (nothing to do),
    V(refreshed) (the source changed since the last copy), V(resumed) (the last copy did not finish),
    V(refused) (the task fails and nothing was written)."
  - Refused before anything is written, each with a message naming the value and what to do, are an
    unknown source database, a missing target database, unreachable servers, failed authentication,
    C(pg_dump) older than the source server, a target whose encoding, C(LC_COLLATE) or C(LC_CTYPE)
    differ from the source's, a target server older than the source, roles missing on the target,
    a schema restriction that would lose objects, and a source that is the target itself.
author:
  - Codacy Self-hosted platform engineering
extends_documentation_fragment:
  - codacy.selfhosted.endpoints
options:
  database:
    description:
      - Name of the database on the source server.
    type: str
    required: true
  target_database:
    description:
      - Name of the database on the target server. It must exist (the role
        M(codacy.selfhosted.db_migration) creates missing ones) with the encoding, C(LC_COLLATE) and
        C(LC_CTYPE) of the source database.
      - Defaults to O(database).
    type: str
  work_dir:
    description:
      - Directory in which a private (0700) directory is made for the dump. It needs free space for
        an uncompressed dump of the database (roughly its size without indexes).
      - The private directory is removed when the module ends, whatever happens, unless O(keep_dump=true).
    type: path
    default: /var/tmp
  jobs:
    description:
      - Number of parallel workers of C(pg_dump), C(pg_restore), verification and C(ANALYZE).
      - Each worker holds one connection to each server.
    type: int
    default: 2
  schemas:
    description:
      - Migrate only these schemas. Empty (the default) migrates the whole database.
      - V([public]) reproduces the vendor guide's C(pg_restore -n public). The module refuses, before
        writing anything, when the restriction would lose extensions that the target database does
        not have, large objects, or objects that the kept schemas depend on.
    type: list
    elements: str
    default: []
  verify:
    description:
      - How the restored copy is compared with the source, table by table, in the very snapshot that
        was dumped. V(counts) compares exact row counts; V(checksums) also compares a content hash of
        every table (reads every row on both sides); V(none) only compares object counts.
      - Object counts, index validity and sequence values are always compared.
      - A mismatch fails the task and leaves the copy marked unfinished; the next run does it again.
    type: str
    choices: [counts, checksums, none]
    default: counts
  force:
    description:
      - Replace the content of a target database that holds data this module did not put there, or
        a completed copy that was changed on the target since. That content is dropped.
    type: bool
    default: false
  keep_dump:
    description:
      - Keep the dump directory under O(work_dir) after the run (for inspection). Its path is returned
        in RV(dump_dir).
    type: bool
    default: false
  analyze:
    description:
      - Rebuild the planner statistics of the target database after a copy (C(vacuumdb --analyze-only)),
        so the application is not slow on first use.
    type: bool
    default: true
  bin_dir:
    description:
      - Directory with C(pg_dump), C(pg_restore) and C(vacuumdb).
      - By default the newest client found on C(PATH), in C(/usr/lib/postgresql/*/bin) or in
        C(/usr/pgsql-*/bin) is used.
    type: path
  connect_timeout:
    description:
      - Seconds to wait for each connection to a server before failing.
    type: int
    default: 10
  timeout:
    description:
      - Limit in seconds for the dump and for the restore of this database, each. V(0) means no limit.
      - A stalled network is also detected by TCP keepalives after about 60 seconds of silence.
    type: int
    default: 0
attributes:
  check_mode:
    support: full
    description: Connects to both servers and reports the RV(action) it would take; writes nothing anywhere.
  diff_mode:
    support: partial
    description: Shows the target's migration record before and after.
  idempotent:
    support: full
    description: A second run over an unchanged source changes nothing and reports RV(action=unchanged).
notes:
  - The application should be stopped while the last copy is made. Sessions connected to the source
    database make the module copy again rather than report V(unchanged), since the statistics that
    the fingerprint reads may still be pending in those sessions.
  - Tablespaces are not carried (C(pg_restore --no-tablespaces)); everything lands in the target's
    default tablespace.
  - The record of migrations lives in the C(codacy_migration) schema of each target database; drop it
    after the cutover if you like (C(DROP SCHEMA codacy_migration CASCADE)). Without it, a target
    holding data is refused.
seealso:
  - name: Codacy database migration guide
    description: The manual procedure that this module automates.
    link: https://docs.codacy.com/chart/maintenance/database-migration/
  - module: community.postgresql.postgresql_db
"""

EXAMPLES = r"""
- name: Migrate the analysis database to RDS
  codacy.selfhosted.codacy_db_migrate:
    database: analysis
    source:
      host: codacy-postgresql.codacy.svc
      user: postgres
      password: "{{ vault_source_password }}"
    target:
      host: codacy.abcdefghij.eu-west-1.rds.amazonaws.com
      user: codacy_admin
      password: "{{ vault_target_password }}"
      sslmode: verify-full
      sslrootcert: /etc/ssl/certs/rds-global-bundle.pem
    jobs: 4
    work_dir: /data/migration
  register: migration

- name: Show what happened
  ansible.builtin.debug:
    msg: "{{ migration.database }}: {{ migration.action }} in {{ migration.phases.total }} s"

- name: Only the public schema, as the vendor guide does, into a renamed database, with content hashes
  codacy.selfhosted.codacy_db_migrate:
    database: results
    target_database: codacy_results
    schemas: [public]
    verify: checksums
    source: "{{ codacy_source }}"
    target: "{{ codacy_target }}"

- name: Would this run copy anything? (check mode writes nothing)
  codacy.selfhosted.codacy_db_migrate:
    database: accounts
    source: "{{ codacy_source }}"
    target: "{{ codacy_target }}"
  check_mode: true
  register: plan
"""

RETURN = r"""
action:
  description: What the run did (or, in check mode, would do).
  returned: always
  type: str
  sample: migrated
  choices: [migrated, unchanged, refreshed, resumed, refused]
database:
  description: The source database.
  returned: always
  type: str
  sample: analysis
target_database:
  description: The target database.
  returned: always
  type: str
  sample: analysis
reasons:
  description: Why this action was chosen (what changed on the source, why the target was refused, ...).
  returned: always
  type: list
  elements: str
  sample: ["rows written in public.issue"]
phase:
  description: The phase in which the run failed (C(validate), C(connect), C(inspect), C(dump), C(restore),
    C(properties), C(verify), C(analyze), C(record)).
  returned: failure
  type: str
  sample: restore
phases:
  description: Seconds spent in each phase, and C(total).
  returned: always
  type: dict
  sample: {inspect: 0.2, dump: 12.5, restore: 30.1, properties: 0.1, verify: 4.2, analyze: 3.3, total: 50.6}
dump_bytes:
  description: Size of the dump that was moved, in bytes (0 when nothing was copied).
  returned: always
  type: int
  sample: 834123776
source_size:
  description: C(pg_database_size) of the source database, in bytes.
  returned: when connected
  type: int
  sample: 2147483648
dump_dir:
  description: The dump directory, when O(keep_dump=true).
  returned: when kept
  type: str
tables:
  description: Per-table verification figures (empty when nothing was copied or O(verify=none)).
  returned: always
  type: list
  elements: dict
  sample: [{schema: public, table: issue, source_rows: 1200, target_rows: 1200, equal: true}]
verified:
  description: Totals of the verification.
  returned: always
  type: dict
  sample: {mode: counts, tables: 42, rows: 1234567, equal: true}
versions:
  description: Versions of the client programs and of both servers.
  returned: when connected
  type: dict
  sample: {client: "17.2", source_server: "13.16", target_server: "17.2"}
commands:
  description: The commands that ran, without secrets (connection strings carry no password).
  returned: always
  type: list
  elements: str
source_fingerprint:
  description: Short identifier of the source fingerprint this copy corresponds to.
  returned: when connected
  type: str
  sample: 3f1c9a0d2b7e4410
"""

import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.codacy.selfhosted.plugins.module_utils import (
    catalog, dbprops, fingerprint, marker, pgtools, verify)
from ansible_collections.codacy.selfhosted.plugins.module_utils.connection import (
    HAS_PSYCOPG2, PSYCOPG2_IMPORT_ERROR, SSLMODES, ConnectionProblem, Endpoint, child_environment,
    write_passfile)
from ansible_collections.codacy.selfhosted.plugins.module_utils.version import COLLECTION_VERSION


def endpoint_spec():
    return dict(
        type="dict", required=True,
        options=dict(
            host=dict(type="str", required=True),
            port=dict(type="int", default=5432),
            user=dict(type="str", required=True),
            password=dict(type="str", no_log=True),
            sslmode=dict(type="str", default="prefer", choices=SSLMODES),
            sslrootcert=dict(type="path"),
        ),
    )


ARGUMENT_SPEC = dict(
    database=dict(type="str", required=True),
    target_database=dict(type="str"),
    source=endpoint_spec(),
    target=endpoint_spec(),
    work_dir=dict(type="path", default="/var/tmp"),
    jobs=dict(type="int", default=2),
    schemas=dict(type="list", elements="str", default=[]),
    verify=dict(type="str", default="counts", choices=["counts", "checksums", "none"]),
    force=dict(type="bool", default=False),
    keep_dump=dict(type="bool", default=False),
    analyze=dict(type="bool", default=True),
    bin_dir=dict(type="path"),
    connect_timeout=dict(type="int", default=10),
    timeout=dict(type="int", default=0),
)


class Failure(Exception):
    """Ends the run with a failed task: the phase and one message for the user."""

    def __init__(self, phase, message, action=None):
        super(Failure, self).__init__(message)
        self.phase = phase
        self.action = action


def validate(params, probe_write=True):
    """Problems with the options, as sentences naming the option, the value and what to do.

    With probe_write, work_dir is proven writable by making and removing a directory in it
    (permission bits do not tell for root, read-only mounts or immutable directories)."""
    problems = []
    for option in ("database", "target_database"):
        value = params[option]
        if value is not None and (value == "" or "\x00" in value):
            problems.append("%s must be a non-empty database name without NUL characters (got %r)" % (option, value))
    for side in ("source", "target"):
        endpoint = params[side]
        if not 1 <= endpoint["port"] <= 65535:
            problems.append("%s.port must be between 1 and 65535 (got %d)" % (side, endpoint["port"]))
        for key in ("host", "user"):
            if not endpoint[key] or "\x00" in endpoint[key]:
                problems.append("%s.%s must not be empty (got %r)" % (side, key, endpoint[key]))
        if endpoint["sslrootcert"] and not os.path.isfile(endpoint["sslrootcert"]):
            problems.append("%s.sslrootcert %s is not a readable file: give the path of the CA bundle"
                            % (side, endpoint["sslrootcert"]))
        if endpoint["password"] is not None and "\x00" in endpoint["password"]:
            problems.append("%s.password must not contain NUL characters" % side)
    if params["jobs"] < 1 or params["jobs"] > 64:
        problems.append("jobs must be between 1 and 64 (got %d): use about the number of CPU cores of the "
                        "servers, e.g. 2 or 4" % params["jobs"])
    for option in ("connect_timeout", "timeout"):
        if params[option] < 0:
            problems.append("%s must be 0 or more seconds (got %d)" % (option, params[option]))
    for schema in params["schemas"]:
        if not schema or "\x00" in schema:
            problems.append("schemas must hold non-empty schema names (got %r)" % (schema,))
    work_dir = params["work_dir"]
    if not os.path.isdir(work_dir):
        problems.append("work_dir %s %s: create it, or choose a directory with room for the dump"
                        % (work_dir, "is not a directory" if os.path.exists(work_dir) else "does not exist"))
    elif not writable(work_dir, probe_write):
        problems.append("work_dir %s is not writable by this user: choose a writable directory" % work_dir)
    return problems


def writable(directory, probe):
    if not probe:
        return os.access(directory, os.W_OK | os.X_OK)
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".codacy_db_migrate-probe-", dir=directory))
        return True
    except OSError:
        return False


def same_database(source_info, target_info, source, target, database, target_database):
    """True when source and target are the same database (same server by system identifier,
    or by address when an identifier cannot be read) — migrating onto itself would destroy it."""
    if database != target_database:
        return False
    sid, tid = source_info["system_identifier"], target_info["system_identifier"]
    if sid and tid:
        return sid == tid
    return (source.host.lower(), source.port) == (target.host.lower(), target.port)


def decide(content, record, source_fp, source_identity, target_fp, other_sessions, force):
    """The outcome table: return (action, reasons), action being `refused` when nothing may be written.

    content: what the target holds outside the marker schema; record: the marker's last run or None;
    source_fp/target_fp: fingerprints read now; other_sessions: sessions on the source database."""
    if record is None:
        if not content:
            return "migrated", ["the target database is empty"]
        described = catalog.describe_content(content)
        if force:
            return "migrated", ["force: replacing content this module did not put there: %s" % described]
        return "refused", ["the target database holds data this module did not put there (%s); nothing was "
                           "written. Point target_database at an empty database, or set force: true to "
                           "replace that content" % described]
    if record["state"] != marker.COMPLETE:
        return "resumed", ["the copy started at %s did not finish" % record["started_at"]]
    reasons = []
    if record["source"] != source_identity:
        if not force:
            return "refused", ["the target database holds a copy of another source (%s) made at %s; nothing "
                               "was written. Set force: true to replace it"
                               % (describe_source(record["source"]), record["finished_at"])]
        reasons.append("force: replacing a copy of another source")
    target_changes = fingerprint.differences(record["target_fingerprint"], target_fp)
    if target_changes:
        if not force:
            return "refused", ["the target database changed since this module copied it at %s (%s): the "
                               "application may already be using it. Nothing was written. Set force: true "
                               "to replace it with a new copy of the source"
                               % (record["finished_at"], "; ".join(target_changes))]
        reasons.append("force: replacing a copy that changed on the target (%s)" % "; ".join(target_changes))
    reasons.extend("source: %s" % change for change in fingerprint.differences(record["source_fingerprint"], source_fp))
    if other_sessions:
        reasons.append("%d other sessions are connected to the source database (%s), so it cannot be proven "
                       "unchanged: stop the application for the final copy"
                       % (len(other_sessions), "; ".join(other_sessions[:3])))
    return ("refreshed", reasons) if reasons else ("unchanged", ["the source is unchanged since the copy of %s"
                                                                 % record["finished_at"]])


def describe_source(identity):
    return "%s:%s/%s" % (identity.get("host"), identity.get("port"), identity.get("database"))


def creates_existing_schema(toc_line, existing):
    """True for a `pg_restore --list` line such as `5; 2615 2200 SCHEMA - public postgres`
    whose schema is in `existing`."""
    match = re.match(r"^\d+; \d+ \d+ SCHEMA - (.*)$", toc_line)
    return bool(match) and any(match.group(1).startswith(name + " ") for name in existing)


def dir_size(path):
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except OSError:
                pass
    return total


def pattern(name):
    """An exact-name pattern for pg_dump --schema (its patterns fold case and treat * ? as wildcards)."""
    return '"%s"' % name.replace('"', '""')


class Migration:
    """One run of the module: inspect, decide, and (unless check mode) copy, verify and record."""

    def __init__(self, module):
        self.module = module
        self.params = module.params
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

    # -- helpers ---------------------------------------------------------------------------------
    def timed(self, phase, func, *args):
        self.phase = phase
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
                            % (pattern(self.target_database), self.source_db["encoding"],
                               self.source_db["lc_collate"], self.source_db["lc_ctype"]))
            raise Failure("connect", message) from None
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
                             pattern(self.target_database), pattern(self.target_database),
                             self.source_db["encoding"], self.source_db["lc_collate"], self.source_db["lc_ctype"]))
        if self.schemas:
            losses = catalog.schema_restriction_losses(self.src, self.tgt, self.schemas)
            if losses:
                raise Failure("inspect", "schemas %s would not carry everything: %s. Use schemas: [] to migrate the "
                              "whole database" % (", ".join(self.schemas), "; ".join(losses)))
        self.properties = dbprops.read(self.src)
        missing = set(catalog.missing_roles(self.src, self.tgt, marker.SCHEMA))
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
        self.source_fp = fingerprint.read(self.src, marker.SCHEMA)
        self.result["source_fingerprint"] = fingerprint.digest(self.source_fp)
        self.record = marker.read_latest(self.tgt)
        self.content = catalog.content(self.tgt, marker.SCHEMA)
        target_fp = fingerprint.read(self.tgt, marker.SCHEMA, include_server=False) if self.record else None
        return decide(self.content, self.record, self.source_fp, self.source_identity, target_fp,
                      self.other_sessions, self.params["force"])

    # -- the copy (writes to the target only) -------------------------------------------------
    def run_client(self, phase, argv, env, log_path, guard):
        self.commands.append(" ".join(shlex.quote(a) for a in argv))
        returncode, _ = self.timed(phase, pgtools.run, argv, env, log_path, guard, self.params["timeout"] or None)
        if returncode != 0:
            errors = pgtools.first_errors(log_path)
            server = self.source.address if phase == "dump" else self.target.address
            raise Failure(phase, "%s of %s failed on %s (exit %d): %s"
                          % (os.path.basename(argv[0]), self.database if phase == "dump" else self.target_database,
                             server, returncode, " | ".join(errors) or "no error output"))

    def copy(self, action, private_dir, guard):
        jobs = self.params["jobs"]
        env = child_environment(write_passfile(private_dir, [self.source, self.target]))
        dump_dir = os.path.join(private_dir, "dump")
        log_path = os.path.join(private_dir, "client.log")

        # The snapshot pg_dump reads, held open so that verification reads the same data.
        snap = self.source.connect(self.database, read_only=True, autocommit=False)
        self.conns.append(snap)
        with snap.cursor() as cur:
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            cur.execute("SELECT pg_export_snapshot()")
            snapshot_id = cur.fetchone()[0]

        argv = [self.clients["pg_dump"], "--format=directory", "--jobs=%d" % jobs, "--compress=0", "--no-sync",
                "--no-password", "--snapshot=%s" % snapshot_id, "--file=%s" % dump_dir,
                "--exclude-schema=%s" % pattern(marker.SCHEMA)]
        argv += ["--schema=%s" % pattern(s) for s in self.schemas]
        argv.append("--dbname=%s" % self.source.conninfo(self.database, read_only=True))
        self.run_client("dump", argv, env, log_path, guard)
        self.result["dump_bytes"] = dir_size(dump_dir)

        run_id = self.timed("record", marker.start, self.tgt, action, self.source_identity, self.source_fp,
                            COLLECTION_VERSION)
        if self.record is not None or self.content:
            self.timed("restore", catalog.clear, self.tgt, marker.SCHEMA)
        argv = [self.clients["pg_restore"], "--format=directory", "--jobs=%d" % jobs, "--exit-on-error",
                "--no-tablespaces", "--no-password", "--dbname=%s" % self.target.conninfo(self.target_database),
                "--use-list=%s" % self.restore_list(dump_dir, private_dir), dump_dir]
        self.run_client("restore", argv, env, log_path, guard)
        self.timed("properties", dbprops.apply, self.tgt, self.target_database, self.properties)
        self.timed("verify", self.verify, snapshot_id)
        if self.params["analyze"]:
            argv = [self.clients["vacuumdb"], "--analyze-only", "--jobs=%d" % jobs, "--no-password",
                    "--dbname=%s" % self.target.conninfo(self.target_database)]
            self.run_client("analyze", argv, env, log_path, guard)
        snap.rollback()
        self.timed("record", self.finish, run_id)

    def restore_list(self, dump_dir, private_dir):
        """The dump's table of contents without CREATE SCHEMA for schemas the target already has.

        With --schema, pg_dump emits CREATE SCHEMA even for `public`, which every database
        already has; restoring it would fail. Their owner, grants and comment still apply."""
        toc = subprocess.run([self.clients["pg_restore"], "--list", dump_dir], capture_output=True, text=True,
                             check=True).stdout
        existing = set(r[0] for r in catalog.fetchall(self.tgt, "SELECT nspname FROM pg_namespace"))
        kept = [line for line in toc.splitlines() if not creates_existing_schema(line, existing)]
        path = os.path.join(private_dir, "restore.list")
        with open(path, "w") as handle:
            handle.write("\n".join(kept) + "\n")
        return path

    def verify(self, snapshot_id):
        jobs = self.params["jobs"]
        source = verify.Side(lambda: self.source.connect(self.database, read_only=True), snapshot_id)
        target = verify.Side(lambda: self.target.connect(self.target_database))
        try:
            tables, problems = verify.compare(source, target, self.params["verify"], jobs, marker.SCHEMA,
                                              self.schemas)
        finally:
            source.close()
            target.close()
        moved = verify.sequence_differences(self.src, self.tgt, marker.SCHEMA, self.schemas)
        if self.other_sessions:
            # The application is running: its sequences may move after the dump. The next run copies again.
            self.warnings.extend(moved)
        else:
            problems += moved
        self.result["tables"] = tables
        self.result["verified"].update(tables=len(tables), rows=sum(t["target_rows"] for t in tables),
                                       equal=not problems)
        if problems:
            raise Failure("verify", "the copy of %s in %s on %s differs from the source: %s. It stays marked "
                          "unfinished; the next run copies it again"
                          % (self.database, self.target_database, self.target.address, "; ".join(problems[:10])))

    def finish(self, run_id):
        # Statistics of the restore's sessions are flushed when they end: wait for them before
        # reading the fingerprint that a later run compares the target with.
        deadline = time.time() + 30
        while time.time() < deadline and catalog.fetchall(
                self.tgt, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                          " AND pid <> pg_backend_pid() AND application_name = 'codacy_db_migrate'")[0][0]:
            time.sleep(0.2)
        target_fp = fingerprint.read(self.tgt, marker.SCHEMA, include_server=False)
        marker.complete(self.tgt, run_id, target_fp, {"phases": self.phases, "dump_bytes": self.result["dump_bytes"],
                                                      "verified": self.result["verified"]})

    # -- the run ---------------------------------------------------------------------------------
    def run(self):
        started = time.time()
        try:
            self.timed("connect", self.connect_both)
            # One run at a time per target database; the lock is held until our connection closes.
            if not self.module.check_mode and not marker.try_lock(self.tgt):
                raise Failure("inspect", "another run is migrating into %s on %s right now: nothing was written; "
                              "wait for it to finish" % (self.target_database, self.target.address), "refused")
            action, reasons = self.timed("inspect", self.inspect)
            self.result.update(action=action, reasons=reasons)
            if self.module._diff:
                before = {"state": self.record["state"], "copy_of": fingerprint.digest(self.record["source_fingerprint"])} \
                    if self.record else {"state": "absent"}
                after = before if action in ("refused", "unchanged") else \
                    {"state": marker.COMPLETE, "copy_of": self.result["source_fingerprint"]}
                self.result["diff"] = {"before": before, "after": after}
            if action == "refused":
                raise Failure("inspect", reasons[0], action)
            self.result["changed"] = action != "unchanged"
            if action == "unchanged" or self.module.check_mode:
                return self.result
            private_dir = tempfile.mkdtemp(prefix="codacy_db_migrate-", dir=self.params["work_dir"])
            try:
                with pgtools.SignalGuard() as guard:
                    self.copy(action, private_dir, guard)
            finally:
                if self.params["keep_dump"]:
                    self.result["dump_dir"] = os.path.join(private_dir, "dump")
                    for name in os.listdir(private_dir):
                        if name != "dump":
                            os.unlink(os.path.join(private_dir, name))
                else:
                    shutil.rmtree(private_dir, ignore_errors=True)
            return self.result
        finally:
            self.phases["total"] = round(time.time() - started, 3)
            self.close()


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    if not HAS_PSYCOPG2:
        module.fail_json(msg=missing_required_lib("psycopg2"), exception=PSYCOPG2_IMPORT_ERROR)
    problems = validate(module.params, probe_write=not module.check_mode)
    if problems:
        module.fail_json(msg="; ".join(problems), phase="validate", action="refused", changed=False)
    migration = Migration(module)
    try:
        result = migration.run()
    except Failure as exc:
        touched = exc.phase in ("record", "restore", "properties", "verify", "analyze")
        module.fail_json(msg=str(exc), phase=exc.phase,
                         **dict(migration.result, action=exc.action or migration.result["action"], changed=touched))
    except (ConnectionProblem, pgtools.ToolProblem) as exc:
        module.fail_json(msg=str(exc), phase="inspect", **dict(migration.result, changed=False))
    except pgtools.Interrupted as exc:
        module.fail_json(msg="%s: %s during phase %s; the target is left marked unfinished and the next run starts "
                         "it again" % (migration.database, exc, migration.phase), phase=migration.phase,
                         **migration.result)
    except Exception as exc:  # pylint: disable=broad-except
        module.fail_json(msg="%s: unexpected error in phase %s (source %s, target %s): %s"
                         % (migration.database, migration.phase, migration.source.address, migration.target.address,
                            exc), phase=migration.phase, exception=traceback.format_exc(), **migration.result)
    for warning in migration.warnings:
        module.warn(warning)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
