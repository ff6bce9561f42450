# -*- coding: utf-8 -*-
# Copyright: Contributors to the codacy.selfhosted collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The migration records: what the target records about the migrations made into it.

One name for one thing: a migration record is a row of the table `codacy_migration.runs` (the
table keeps the name 1.0.0 gave it, since targets hold it), `self.record` in the code.
The table sits in a schema of its own, outside the application's schemas: the
application never sees it, pg_dump of the source never includes it (it is excluded by name),
and removing it (DROP SCHEMA codacy_migration CASCADE) leaves the application's data intact.
A run is written `in_progress` before the target is touched and `complete` only after the
restored copy was verified, so an interrupted run is always recognisable. An online migration
(see online.py) records `following` while the target follows the source by logical
replication, `cut_over` once the cutover verified it (a completed copy like `complete`), or
`aborted` when its replication was removed before (an unfinished copy).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

try:
    from psycopg2 import sql
except ImportError:  # reported by the modules through connection.HAS_PSYCOPG2
    sql = None

SCHEMA = "codacy_migration"
TABLE = "runs"
IN_PROGRESS = "in_progress"
COMPLETE = "complete"
FOLLOWING = "following"
CUT_OVER = "cut_over"
ABORTED = "aborted"
# The states of a finished, verified copy.
COMPLETED = (COMPLETE, CUT_OVER)

# An advisory lock key shared by every run into the same target database (the database is
# implicit: advisory locks are per database). Value: crc32 of 'codacy_db_migrate'.
LOCK_KEY = 0x5C0DAC1


def _table():
    return sql.Identifier(SCHEMA, TABLE)


def read_latest(conn):
    """The last run recorded in the target database, or None when there is no records."""
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass(%s) IS NOT NULL", ("%s.%s" % (SCHEMA, TABLE),))
        if not cur.fetchone()[0]:
            return None
        cur.execute(sql.SQL(
            "SELECT id, state, action, source, source_fingerprint, target_fingerprint, tool_version,"
            " started_at::text, finished_at::text, details FROM {} ORDER BY id DESC LIMIT 1").format(_table()))
        row = cur.fetchone()
    if row is None:
        return None
    keys = ("id", "state", "action", "source", "source_fingerprint", "target_fingerprint",
            "tool_version", "started_at", "finished_at", "details")
    return dict(zip(keys, row))


def ensure(conn):
    with conn.cursor() as cur:
        cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(SCHEMA)))
        cur.execute(sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} ("
            " id bigserial PRIMARY KEY,"
            " state text NOT NULL,"
            " action text NOT NULL,"
            " source jsonb NOT NULL,"
            " source_fingerprint jsonb NOT NULL,"
            " target_fingerprint jsonb,"
            " details jsonb,"
            " tool_version text NOT NULL,"
            " started_at timestamptz NOT NULL DEFAULT now(),"
            " finished_at timestamptz)").format(_table()))
        cur.execute(sql.SQL("COMMENT ON SCHEMA {} IS %s").format(sql.Identifier(SCHEMA)), (
            "Written by the codacy.selfhosted.codacy_db_migrate Ansible module: one row per "
            "migration into this database. Not used by the application; safe to drop after cutover.",))


def start(conn, action, source, source_fingerprint, tool_version, details=None):
    """Record a run as in progress (before the target is touched); return its id."""
    ensure(conn)
    with conn.cursor() as cur:
        cur.execute(sql.SQL(
            "INSERT INTO {} (state, action, source, source_fingerprint, tool_version, details)"
            " VALUES (%s, %s, %s, %s, %s, %s) RETURNING id").format(_table()),
            (IN_PROGRESS, action, json.dumps(source), json.dumps(source_fingerprint), tool_version,
             None if details is None else json.dumps(details)))
        return cur.fetchone()[0]


def complete(conn, run_id, target_fingerprint, details, state=COMPLETE, source_fingerprint=None):
    """Record a run's copy as verified; `details` are added to those recorded. A cutover also
    records the source's fingerprint read when replication was removed."""
    with conn.cursor() as cur:
        cur.execute(sql.SQL(
            "UPDATE {} SET state = %s, target_fingerprint = %s, details = coalesce(details, '{{}}') || %s,"
            " source_fingerprint = coalesce(%s, source_fingerprint), finished_at = now()"
            " WHERE id = %s").format(_table()),
            (state, json.dumps(target_fingerprint), json.dumps(details),
             None if source_fingerprint is None else json.dumps(source_fingerprint), run_id))


def update(conn, run_id, state, details=None):
    """Set a run's state (online migration), adding `details` to those recorded."""
    with conn.cursor() as cur:
        cur.execute(sql.SQL(
            "UPDATE {} SET state = %s, details = coalesce(details, '{{}}') || %s WHERE id = %s").format(_table()),
            (state, json.dumps(details or {}), run_id))


def try_lock(conn):
    """Take the per-database migration lock for this session; False if another run holds it."""
    with conn.cursor() as cur:
        cur.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,))
        return cur.fetchone()[0]
