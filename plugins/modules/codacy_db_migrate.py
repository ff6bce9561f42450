#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Contributors to the codacy.selfhosted collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: codacy_db_migrate
short_description: Migrate one PostgreSQL database of Codacy Self-hosted to another server, idempotently
version_added: 1.0.0
description:
  - Copies one database from a source server to an existing database on a target server, then
    carries the database-level properties, verifies the copy table by table and rebuilds the
    planner statistics. By default (O(data_path=parallel)) O(jobs) workers copy the tables with
    C(COPY), largest first, in one snapshot of the source, and build each table's indexes as soon as
    its rows are in; O(data_path=stream) pipes C(pg_dump) straight into C(pg_restore) (the default of
    1.0); O(data_path=directory) dumps to O(work_dir) first (directory format, O(jobs) workers on both sides).
  - Idempotent. The module records each migration in the target database, in a schema of its own
    (C(codacy_migration)) that the application never sees, together with a fingerprint of the
    source. A later run compares the source with that record and does nothing when the source is
    unchanged, copies again when it changed, and finishes a copy that was interrupted.
  - Never overwrites data it did not put there. A target database that holds tables, views,
    functions, schemas, large objects or objects outside schemas (publications, event triggers, foreign
    servers, casts...) that this module did not restore is refused unless O(force=true); so is a completed
    copy that was changed on the target since, or cannot be proven unchanged (for example because the
    application already writes to it), and any run that would write while other sessions are connected to
    the target database.
  - "Outcomes (RV(action)): V(migrated) (the target was empty), V(unchanged) (nothing to do),
    V(refreshed) (the source changed since the last copy), V(resumed) (the last copy did not finish),
    V(refused) (the task fails and nothing was written); with O(mode) other than V(offline) also
    V(following) (the target follows the source; nothing changed), V(cut_over) and V(aborted)."
  - Online migration (O(mode=online)) copies while the application runs and leaves the target following the
    source by native logical replication; O(mode=cutover), once the application is stopped, ends it with a
    downtime of seconds; O(mode=abort) removes it. See O(mode).
  - Refused before anything is written, each with a message naming the value and what to do, are an
    unknown source database, a missing target database, unreachable servers, failed authentication,
    C(pg_dump) older than the source server, a target whose encoding, C(LC_COLLATE) or C(LC_CTYPE)
    differ from the source's, a target server older than the source, roles missing on the target,
    a schema restriction that would lose objects, and a source that is the target itself.
author:
  - Codacy Self-hosted team (@codacy)
extends_documentation_fragment:
  - codacy.selfhosted.endpoints
  - codacy.selfhosted.endpoints.source_from_target
options:
  database:
    description:
      - Name of the database on the source server.
      - Required unless O(batch) is given.
    type: str
  batch:
    description:
      - Several migrations in one module run, each in a process of its own forked from the module's (so that
        starting each costs no new interpreter, imports or, in the background, async_wrapper). Each item names a
        database and where its result goes; every other option applies to all of them. The module waits for all
        and returns their RV(results) (the other return values below are then in each of the results, not at
        the top). M(codacy.selfhosted.codacy_db_wait) starts the role's migrations this way.
      - Each migration writes its result, as the module would return it for that database alone, to its
        O(batch[].result_file) (mode 0600); one whose process ended without writing it (killed) gets a failed
        result saying so.
      - Mutually exclusive with O(database).
    type: list
    elements: dict
    version_added: 1.1.0
    suboptions:
      database:
        description: Name of the database on the source server.
        type: str
        required: true
      target_database:
        description: Name of the database on the target server (default O(batch[].database)).
        type: str
      position:
        description: Its place in O(queue) (0 first).
        type: int
        default: 0
      progress_file:
        description: Its progress file (see O(progress_file)).
        type: path
      result_file:
        description: Where its result is written (an earlier file there is removed first).
        type: path
        required: true
  target_database:
    description:
      - Name of the database on the target server. It must exist (the role
        C(codacy.selfhosted.db_migration) creates missing ones) with the encoding, C(LC_COLLATE) and
        C(LC_CTYPE) of the source database.
      - Defaults to O(database).
    type: str
  work_dir:
    description:
      - Directory in which a private (0700) directory is made for the dump. With O(data_path=parallel) and
        O(data_path=stream) only the definitions of tables, indexes and constraints are written there; with
        O(data_path=directory) it needs free space for an uncompressed dump of the database (roughly its size without indexes).
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
        was dumped. V(counts) compares exact row counts of every table, partition and populated
        materialized view; V(checksums) also compares a content hash of every one (reads every row on
        both sides) and the content of every large object; V(none) compares no rows.
      - Always compared, by kind and name, every object (tables, views, materialized views and whether
        they are populated, sequences, indexes and their validity, constraints and whether they are
        validated, triggers, rules, policies, functions, types, schemas, extensions); the columns of
        every table; the owner, grants and comment of every large object; and sequence values.
      - What C(pg_dump) does not carry by design is judged by its rule and named in a warning. An invalid
        index is not dumped; a stale materialized view arrives refreshed (the target must hold what its
        query gives); an inheritance child gets its parent's column order; constraints PostgreSQL clones
        for partitions are named anew.
      - A mismatch fails the task and leaves the copy marked unfinished; the next run does it again. So
        does a failure to read (a server that stops, a missing privilege), with a message naming the
        database, what was being read where, and what to do.
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
        in RV(dump_dir). With O(data_path=parallel) or O(data_path=stream) it holds the definitions only.
    type: bool
    default: false
  analyze:
    description:
      - Rebuild the planner statistics of the target database after a copy, so the application is not
        slow on first use. With O(data_path=parallel), C(ANALYZE) of each table as soon as its rows and
        indexes are in (with a PostgreSQL 18 client and target, the source's statistics are carried
        instead); with the other paths, C(vacuumdb --analyze-only) after the restore.
    type: bool
    default: true
  bin_dir:
    description:
      - Directory with C(pg_dump), C(pg_restore), C(vacuumdb) and C(psql) (O(data_path=parallel) copies the rows with it).
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
      - Limit in seconds for the whole copy of this database (dump, restore, verification, ANALYZE), from
        the moment it starts. When it passes, the run ends with an error, its children are stopped, the dump
        is removed and the copy stays marked unfinished. V(0) means no limit.
      - This is what ends a run on a network that stalls without breaking (a proxy or firewall that stops
        forwarding); a dead peer is also detected by TCP keepalives after about 60 seconds, and each
        connection attempt gives up after O(connect_timeout).
    type: int
    default: 0
  data_path:
    description:
      - How the data travels.
      - V(stream) (the default of 1.0) creates the tables from a small dump of the definitions, pipes the data from
        C(pg_dump) straight into C(pg_restore), so the target works from the first second and no disk is
        needed for the data, then builds indexes, constraints and triggers with O(jobs) parallel
        C(pg_restore) workers. All of it reads one snapshot of the source.
      - V(directory) dumps to O(work_dir) with O(jobs) workers (uncompressed directory format) and restores
        with O(jobs) workers; it needs disk for the whole dump and restores only after the dump ended.
      - V(parallel) (the default) creates the tables from the same dump of the definitions, then O(jobs) workers copy the
        tables, largest first, each from a C(COPY TO) on the source straight into a C(COPY FROM) on the target
        in the same snapshot (C(psql) on each side, through a pipe; the target's commits only once the source's
        sent every row; tables larger than their share are copied in several ranges at once; a table
        copied whole is loaded with C(TRUNCATE) and C(COPY FREEZE) in one transaction). As soon as a table's
        rows are in, one of O(jobs) more workers builds its indexes, constraints and triggers and runs its
        C(ANALYZE), while other tables still copy; foreign keys, partition index attachments and
        materialized views follow. The row counts of O(verify=counts) come from the copy itself. It opens
        up to 3 x O(jobs) + 2 connections to the target.
    type: str
    choices: [stream, directory, parallel]
    default: parallel
  maintenance_work_mem:
    description:
      - C(maintenance_work_mem) of the sessions that build indexes and constraints on the target with
        O(data_path=parallel) (those sessions only; the server's configuration is never changed). Up to
        2 x O(jobs) such sessions run at once.
      - A size in C(kB), C(MB) or C(GB), without spaces.
    type: str
    default: 256MB
  max_parallel_maintenance_workers:
    description:
      - C(max_parallel_maintenance_workers) of the same sessions (the server caps it with its own
        C(max_parallel_workers) and C(max_worker_processes)). By default the server's setting applies.
    type: int
  split_tables:
    description:
      - With O(data_path=parallel), copy a table larger than its share of the database (its table bytes / O(jobs))
        and than 256 MB in several ranges at once (ranges of C(ctid) from PostgreSQL 14 sources on, of an integer
        primary key before).
      - V(false) copies every table whole, in one transaction with C(TRUNCATE) and C(COPY FREEZE). The ranges of
        a split table cannot be written frozen, so the first reader (its index builds) writes the table a second
        time to set its rows' hint bits; where the target has no idle cores for the ranges (a small server, or
        one sharing its cores with the source and the migration host) copying whole is faster.
    type: bool
    default: true
    version_added: 1.1.0
  mode:
    description:
      - V(offline) (the default) copies the database once; the application should be stopped.
      - V(online) copies while the application runs, reading the snapshot exported with a logical replication
        slot, then creates a subscription on the target over that slot, so that the target follows every change
        made since (RV(state=following)). The source must have C(wal_level=logical), a free replication slot and
        WAL sender, and a user with the C(REPLICATION) right (or C(rds_replication)); the target user must be
        allowed to create subscriptions, and the target server must reach the source (O(source_from_target));
        every table needs a primary key or replica identity, and the database must hold no large objects and no
        unlogged tables. All of this is checked before anything is written. This mode writes a publication and a
        replication slot to the source, the only writes this module ever makes there; both are removed by
        V(cutover), by V(abort), and when the run fails before the subscription exists. A rerun while following
        reports the lag and changes nothing (RV(action=following)).
      - V(cutover), once the application is stopped, refuses while other sessions are connected to the source and
        when its definitions changed since the copy (logical replication carries no DDL); waits until the target
        applied everything up to the source's WAL position and proves that nothing is left to apply; sets every
        sequence from the source; refreshes materialized views; verifies as O(verify) says; removes the
        subscription, the slot and the publication; and records the copy as complete, so that a later offline run
        over the unchanged source reports V(unchanged). RV(downtime) is the time from its start until the target is
        verified and the replication removed (until then the cutover may still fail and go back to following).
      - V(abort) removes the subscription, the slot and the publication on both servers and leaves the copy
        marked unfinished; the source is as it was before the online migration.
    type: str
    choices: [offline, online, cutover, abort]
    default: offline
  progress_file:
    description:
      - A file that the module keeps rewriting with its phase and how far it is (JSON), for a
        caller that shows progress while the module runs in the background (the role does), with the source's
        size, rows and tables and how much of them the target has received, measured every few seconds with one
        catalog query on the target. The fields are those of C(FIELDS) in the collection's C(module_utils/progress.py).
    type: path
  queue:
    description:
      - Run at most O(queue.slots) migrations at a time among the modules that share
        O(queue.dir) on this host, lower O(queue.position) first. The role starts every database
        in the background with this, largest first.
    type: dict
    suboptions:
      dir:
        description: Directory shared by the queued migrations (created if missing).
        type: path
        required: true
      slots:
        description: How many migrations may copy at the same time.
        type: int
        default: 1
      position:
        description: This migration's place in the queue (0 first).
        type: int
        default: 0
      heartbeat_timeout:
        description:
          - End the migration (cleanly, leaving the copy marked unfinished) when the file C(heartbeat) in
            O(queue.dir) is older than this many seconds, meaning that whoever started this background
            run stopped waiting for it (M(codacy.selfhosted.codacy_db_wait) touches it), or at once when it is
            missing (the run that started it was interrupted; before connecting, the migration ends without
            writing anything). V(0) disables it.
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
requirements:
  - C(pg_dump), C(pg_restore), C(psql) and C(vacuumdb) of at least the source server's major version on the host
    that runs the module.
notes:
  - The application should be stopped while the last copy is made. Sessions connected to the source
    database (also those the user may not see the details of, without SUPERUSER or C(pg_read_all_stats))
    make the module copy again rather than report V(unchanged), since the write counters that the
    fingerprint reads may still be pending in those sessions. The README's "What a run decides" states
    what is proven and what is trusted.
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
results:
  description: With O(batch), the result of each migration, in the order of O(batch) (each as the module returns
    it for one database, with C(failed) and C(msg) when it failed).
  returned: with O(batch)
  type: list
  elements: dict
  version_added: 1.1.0
action:
  description: What the run did (or, in check mode, would do).
  returned: always
  type: str
  sample: migrated
  choices: [migrated, unchanged, refreshed, resumed, refused, following, cut_over, aborted]
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
  sample: ["source: write activity in public.issue"]
phase:
  description:
    - The phase in which the run failed.
    - In every mode C(validate) (the options), C(start) (the run that started it was interrupted before),
      C(queued), C(connect), C(inspect).
    - While copying C(clear) (emptying a target of this collection), C(record), C(pre-data) (the definitions
      of the tables), C(dump) (reading the source), C(restore) (loading the target), C(post-data) (indexes,
      constraints, triggers), C(properties), C(verify), C(analyze).
    - With O(mode) other than V(offline) also C(resume), C(publication), C(slot), C(subscribe), C(catch-up)
      (waiting until the target confirmed the source's WAL position), C(pause) (stopping the subscription),
      C(proof) (proving that the source holds no change the target did not apply), C(sequences), C(cleanup) and
      C(abort).
  returned: failure
  type: str
  sample: restore
phases:
  description: Seconds spent in each phase, and C(total).
  returned: always
  type: dict
  sample: {inspect: 0.2, dump: 12.5, restore: 30.1, properties: 0.1, verify: 4.2, analyze: 3.3, total: 50.6}
dump_bytes:
  description:
    - Bytes written to O(work_dir) for the dump (0 when nothing was copied). With O(data_path=parallel) or
      O(data_path=stream) only the definitions of indexes and constraints are written there; the data goes straight from
      server to server.
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
  description:
    - Per-table verification figures (empty when nothing was copied or O(verify=none)).
    - C(rewritten) is true for a table truncated or rewritten on the source after the copy's snapshot,
      which that snapshot shows empty; C(refreshed) for a stale materialized view that the target holds
      refreshed.
  returned: always
  type: list
  elements: dict
  sample: [{schema: public, table: issue, kind: table, source_rows: 1200, target_rows: 1200, equal: true}]
verified:
  description:
    - Totals of the verification.
    - When RV(action=unchanged), those of the copy that is still current, made at C(copied_at).
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
parallelism:
  description:
    - With O(data_path=parallel), the time-weighted number of table copies (C(copy_streams)) and of index,
      constraint and C(ANALYZE) builds (C(index_builds)) that ran at once while the tables were copied.
  returned: when copied with O(data_path=parallel)
  type: dict
  sample: {copy_streams: 1.9, index_builds: 1.2}
source_fingerprint:
  description: Short identifier of the source fingerprint this copy corresponds to.
  returned: when connected
  type: str
  sample: 3f1c9a0d2b7e4410
mode:
  description: The O(mode) of the run.
  returned: with O(mode) other than V(offline)
  type: str
  sample: online
state:
  description:
    - The target's record after the run (before it, in check mode or when refused), C(in_progress),
      C(following), C(cut_over), C(aborted) or C(complete).
  returned: with O(mode) other than V(offline)
  type: str
  sample: following
replication:
  description:
    - The online migration's replication, named C(name) on both servers (publication, slot, subscription)
      C(lag_bytes), WAL the target has not confirmed yet; C(retained_bytes), WAL the slot keeps on the source;
      whether the subscription is enabled and its apply worker runs.
  returned: with O(mode) other than V(offline)
  type: dict
  sample: {name: codacy_migration_0f3c2a9b71de, lag_bytes: 8192, retained_bytes: 1048576,
           subscription_enabled: true, apply_running: true}
downtime:
  description:
    - Seconds from the start of the cutover until the target is verified, no change is left in the slot and the
      replication is removed, that is the time the application must stay stopped for this database.
  returned: after a cutover
  type: float
  sample: 4.2
removed:
  description: What the run removed of an online migration's replication.
  returned: when something was removed
  type: list
  elements: str
"""

import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.codacy.selfhosted.plugins.module_utils import batch, guard, migration, online, pgtools
from ansible_collections.codacy.selfhosted.plugins.module_utils.connection import (
    HAS_PSYCOPG2, PSYCOPG2_IMPORT_ERROR, ConnectionProblem, endpoint_argument_spec, forget_module_file)
from ansible_collections.codacy.selfhosted.plugins.module_utils.inspection import Failure

ARGUMENT_SPEC = dict(
    database=dict(type="str"),
    batch=dict(type="list", elements="dict", options=dict(
        database=dict(type="str", required=True),
        target_database=dict(type="str"),
        position=dict(type="int", default=0),
        progress_file=dict(type="path"),
        result_file=dict(type="path", required=True),
    )),
    target_database=dict(type="str"),
    source=endpoint_argument_spec(),
    target=endpoint_argument_spec(),
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
    data_path=dict(type="str", default="parallel", choices=["stream", "directory", "parallel"]),
    maintenance_work_mem=dict(type="str", default="256MB"),
    max_parallel_maintenance_workers=dict(type="int"),
    split_tables=dict(type="bool", default=True),
    mode=dict(type="str", default="offline", choices=list(online.MODES)),
    source_from_target=online.source_from_target_spec(),
    progress_file=dict(type="path"),
    queue=dict(type="dict", options=dict(
        dir=dict(type="path", required=True),
        slots=dict(type="int", default=1),
        position=dict(type="int", default=0),
        heartbeat_timeout=dict(type="int", default=0),
    )),
)


# Phases after which a server was written to (a failure there leaves the copy marked unfinished; online
# migration's phases write its replication objects).
WRITING_PHASES = ("record", "clear", "pre-data", "restore", "post-data", "properties", "verify", "analyze",
                  "publication", "slot", "subscribe", "resume", "catch-up", "sequences", "cleanup", "abort")


def failure(run, exc):
    """The failed result for an exception that ended the run: one message naming the database,
    the servers and the phase, and whether the target was touched."""
    result = dict(run.result)
    result.update(phase=run.phase, changed=run.phase in WRITING_PHASES)
    where = "phase %s; source %s, target %s" % (run.phase, run.source.address, run.target.address)
    if isinstance(exc, Failure):
        result.update(msg=str(exc), phase=exc.phase, changed=exc.phase in WRITING_PHASES,
                      action=exc.action or result["action"])
    elif isinstance(exc, (ConnectionProblem, pgtools.ToolProblem)):
        result.update(msg=str(exc), phase="inspect", changed=False)
    elif isinstance(exc, guard.Interrupted):
        result.update(msg="%s: %s (%s); %s" % (run.database, exc.reason, where, run.left_behind()), changed=True)
    else:
        result.update(msg="%s: unexpected error (%s): %s" % (run.database, where, exc),
                      exception=traceback.format_exc())
    return result


def run_one(params, check_mode=False, diff=False):
    """One migration: its result as the module returns it (`failed` and `msg` set when it failed,
    `warnings` a list)."""
    problems = online.validate(params, probe_write=not check_mode)
    if problems:
        return dict(failed=True, msg="; ".join(problems), phase="validate", action="refused", changed=False)
    run = migration.Migration(params, check_mode=check_mode, diff=diff)
    try:
        result = dict(run.run())
    except (Exception, guard.Interrupted) as exc:  # pylint: disable=broad-except
        result = dict(failure(run, exc), failed=True)
    if run.warnings:
        result["warnings"] = list(run.warnings)
    return result


def params_of(params, entry):
    """The module's parameters for one entry of `batch`."""
    one = dict(params, batch=None, database=entry["database"], target_database=entry["target_database"],
               progress_file=entry["progress_file"])
    if params["queue"]:
        one["queue"] = dict(params["queue"], position=entry["position"])
    return one


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True,
                           required_one_of=[("database", "batch")], mutually_exclusive=[("database", "batch")])
    forget_module_file(module)  # it holds the passwords
    if not HAS_PSYCOPG2:
        module.fail_json(msg=missing_required_lib("psycopg2"), exception=PSYCOPG2_IMPORT_ERROR)
    if module.params["batch"]:
        # Found once before the batch forks, not by each migration: finding them runs the
        # pg_dump and pg_restore of every candidate directory.
        try:
            pgtools.find_clients(module.params["bin_dir"])
        except pgtools.ToolProblem:
            pass  # each migration reports it in its own result
        results = batch.run(module.params["batch"], lambda entry: run_one(
            params_of(module.params, entry), module.check_mode, module._diff))
        module.exit_json(changed=any(r.get("changed") for r in results), results=results)
    result = run_one(module.params, module.check_mode, module._diff)
    for warning in result.pop("warnings", []):
        module.warn(warning)
    if result.pop("failed", False):
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
