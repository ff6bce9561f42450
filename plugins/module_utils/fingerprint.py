# -*- coding: utf-8 -*-
# Copyright: Contributors to the codacy.selfhosted collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A cheap, conservative fingerprint of a database's content.

Reads only catalogs and statistics (no table data), so it costs milliseconds whatever the size.
Any committed change makes it differ:
- DDL, TRUNCATE, VACUUM FULL, CLUSTER, REFRESH MATERIALIZED VIEW: the catalog digest (object
  definitions, relfilenodes, owners, ACLs, comments, database settings);
- INSERT/UPDATE/DELETE/COPY: the per-table write counters of the statistics system (large
  objects included, through pg_largeobject's counters);
- nextval/setval: the sequences' last_value and is_called.
Statistics can be lost when a server restarts after a crash or when they are reset, so for a
source the postmaster start time and the statistics reset time are part of the fingerprint:
a restart makes the next run refresh rather than trust counters that started again from zero.
Extra refreshes are the price of being conservative; a missed change would lose data.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import json

# Objects with an OID below this were made by initdb; everything users (and extensions) create
# is above it. Filtering on it is cheaper and safer than lists of system schema names.
FIRST_NORMAL_OID = 16384

CATALOG_SQL = """
WITH ns AS (
  SELECT oid FROM pg_namespace
  WHERE oid >= %(first)s AND nspname <> %(skip)s AND nspname NOT LIKE 'pg\\_%%'
     OR nspname = 'public'
), items(line) AS (
  SELECT 'ns ' || ROW(n.oid, n.nspname, n.nspowner, n.nspacl)::text
    FROM pg_namespace n WHERE n.oid IN (SELECT oid FROM ns)
  UNION ALL
  SELECT 'rel ' || ROW(c.oid, c.relname, c.relnamespace, c.relkind, c.relfilenode, c.relowner,
                       c.relacl, c.relpersistence, c.reloptions, c.reltablespace)::text
    FROM pg_class c WHERE c.relnamespace IN (SELECT oid FROM ns)
  UNION ALL
  SELECT 'att ' || ROW(a.attrelid, a.attnum, a.attname, a.atttypid, a.atttypmod, a.attnotnull,
                       a.attisdropped, a.attcollation, a.attacl, a.attidentity,
                       pg_get_expr(d.adbin, d.adrelid))::text
    FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
   WHERE c.relnamespace IN (SELECT oid FROM ns) AND a.attnum > 0
  UNION ALL
  SELECT 'idx ' || ROW(i.indexrelid, i.indisvalid, pg_get_indexdef(i.indexrelid))::text
    FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
   WHERE c.relnamespace IN (SELECT oid FROM ns)
  UNION ALL
  SELECT 'con ' || ROW(o.oid, o.conname, o.contype, o.convalidated, pg_get_constraintdef(o.oid))::text
    FROM pg_constraint o WHERE o.connamespace IN (SELECT oid FROM ns)
  UNION ALL
  SELECT 'trg ' || ROW(t.oid, t.tgname, t.tgenabled, pg_get_triggerdef(t.oid))::text
    FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
   WHERE c.relnamespace IN (SELECT oid FROM ns) AND NOT t.tgisinternal
  UNION ALL
  SELECT 'fn ' || ROW(p.oid, p.proname, p.proowner, p.proacl, md5(p.prosrc),
                      pg_get_function_identity_arguments(p.oid))::text
    FROM pg_proc p WHERE p.pronamespace IN (SELECT oid FROM ns)
  UNION ALL
  SELECT 'typ ' || ROW(t.oid, t.typname, t.typowner, t.typacl)::text
    FROM pg_type t WHERE t.typnamespace IN (SELECT oid FROM ns)
  UNION ALL
  SELECT 'enum ' || ROW(e.enumtypid, e.enumlabel, e.enumsortorder)::text
    FROM pg_enum e WHERE e.oid >= %(first)s
  UNION ALL
  SELECT 'view ' || ROW(c.oid, pg_get_viewdef(c.oid))::text
    FROM pg_class c WHERE c.relnamespace IN (SELECT oid FROM ns) AND c.relkind IN ('v', 'm')
  UNION ALL
  SELECT 'ext ' || ROW(x.oid, x.extname, x.extversion, x.extnamespace)::text FROM pg_extension x
  UNION ALL
  SELECT 'cmt ' || ROW(d.objoid, d.classoid, d.objsubid, d.description)::text
    FROM pg_description d WHERE d.objoid >= %(first)s
  UNION ALL
  SELECT 'defacl ' || ROW(a.oid, a.defaclrole, a.defaclnamespace, a.defaclobjtype, a.defaclacl)::text
    FROM pg_default_acl a
  UNION ALL
  SELECT 'lo ' || ROW(count(*), max(m.oid), md5(string_agg(ROW(m.oid, m.lomowner, m.lomacl)::text, ',' ORDER BY m.oid)))::text
    FROM pg_largeobject_metadata m
  UNION ALL
  SELECT 'db ' || ROW(d.datconnlimit, d.datacl, shobj_description(d.oid, 'pg_database'))::text
    FROM pg_database d WHERE d.datname = current_database()
  UNION ALL
  SELECT 'set ' || ROW(s.setrole, s.setconfig)::text
    FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase
   WHERE d.datname = current_database()
)
SELECT md5(coalesce(string_agg(line, E'\\n' ORDER BY line), '')) FROM items
"""

COUNTERS_SQL = """
SELECT quote_ident(s.schemaname) || '.' || quote_ident(s.relname),
       s.n_tup_ins, s.n_tup_upd, s.n_tup_del
  FROM pg_stat_all_tables s
 WHERE (s.relid >= %(first)s AND s.schemaname <> %(skip)s AND s.schemaname NOT LIKE 'pg\\_%%')
    OR s.relid = 'pg_catalog.pg_largeobject'::regclass
"""

SEQUENCES_SQL = """
SELECT quote_ident(schemaname) || '.' || quote_ident(sequencename), last_value
  FROM pg_sequences WHERE schemaname <> %(skip)s
"""

# Sizes of each table's and its indexes' main forks: only writes (and VACUUM FULL, CLUSTER or
# TRUNCATE, which also change the catalog) change them. Used for a target whose statistics were
# reset, when its write counters can no longer tell.
SIZES_SQL = """
SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname),
       pg_relation_size(c.oid) + coalesce((SELECT sum(pg_relation_size(i.indexrelid)) FROM pg_index i
                                           WHERE i.indrelid = c.oid), 0)
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'm') AND c.oid >= %(first)s AND n.nspname <> %(skip)s AND n.nspname NOT LIKE 'pg\\_%%'
"""

SERVER_SQL = """
SELECT pg_postmaster_start_time()::text,
       (SELECT stats_reset::text FROM pg_stat_database WHERE datname = current_database())
"""


def read(conn, skip_schema, include_server=True):
    """Return the fingerprint of the database `conn` is connected to, as a JSON-able dict.

    `skip_schema` (the marker's schema) is left out. A source fingerprint includes the server's
    start and statistics-reset times (a restart makes the next run copy again); a target's
    includes table sizes instead (a restart is no change, see target_changes())."""
    args = {"first": FIRST_NORMAL_OID, "skip": skip_schema}
    with conn.cursor() as cur:
        # Counters are kept in a snapshot for the whole transaction in some versions: read fresh.
        cur.execute("SELECT pg_stat_clear_snapshot()")
        cur.execute(CATALOG_SQL, args)
        catalog = cur.fetchone()[0]
        cur.execute(COUNTERS_SQL, args)
        tables = dict((row[0], [int(v or 0) for v in row[1:]]) for row in cur.fetchall())
        cur.execute(SEQUENCES_SQL, args)
        sequences = dict((row[0], None if row[1] is None else str(row[1])) for row in cur.fetchall())
        fingerprint = {"catalog": catalog, "tables": tables, "sequences": sequences, "server": None}
        if include_server:
            cur.execute(SERVER_SQL)
            fingerprint["server"] = list(cur.fetchone())
        else:
            cur.execute(SIZES_SQL, args)
            fingerprint["sizes"] = dict((row[0], int(row[1])) for row in cur.fetchall())
    return fingerprint


def digest(fingerprint):
    """A short stable identifier of a fingerprint, for reports."""
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:16]


def statistics_reset(before, after):
    """True when some write counter went down: the statistics were reset (by a crash, a failover
    or pg_stat_reset()), not rows unwritten."""
    later = after.get("tables", {})
    return any(name in later and any(now < then for now, then in zip(later[name], counters))
               for name, counters in before.get("tables", {}).items())


def target_changes(recorded, now, limit=10):
    """What changed on a target since its copy was recorded (empty when nothing did).

    Normally the write counters tell. When the target's statistics were reset since, they cannot,
    so definitions, sequences and the sizes of tables and indexes are compared instead: writes
    grow them, while nothing else that happens to an untouched copy (ANALYZE, VACUUM) does."""
    if not statistics_reset(recorded, now):
        return differences(dict(recorded, sizes=None), dict(now, sizes=None), limit)
    if recorded.get("sizes") is None:
        return ["the target's statistics were reset since the copy and it recorded no sizes to compare"]
    found = differences(dict(recorded, tables=None, sizes=None), dict(now, tables=None, sizes=None), limit)
    sizes_before, sizes_after = recorded["sizes"], now.get("sizes", {})
    for name in sorted(set(sizes_before) | set(sizes_after)):
        if sizes_before.get(name) != sizes_after.get(name):
            found.append("%s changed size" % name)
    return found[:limit]


def differences(before, after, limit=10):
    """Human-readable list of what differs between two fingerprints (empty when equal)."""
    if before == after:
        return []
    if not before:
        return ["no earlier fingerprint recorded"]
    found = []
    if before.get("server") != after.get("server"):
        found.append("the server restarted or its statistics were reset since the last run")
    if before.get("catalog") != after.get("catalog"):
        found.append("the schema changed (DDL, TRUNCATE, VACUUM FULL, grants, comments or database settings)")
    tables_before, tables_after = before.get("tables") or {}, after.get("tables") or {}
    for name in sorted(set(tables_before) | set(tables_after)):
        if tables_before.get(name) != tables_after.get(name):
            found.append("rows written in %s" % name)
    seq_before, seq_after = before.get("sequences") or {}, after.get("sequences") or {}
    for name in sorted(set(seq_before) | set(seq_after)):
        if seq_before.get(name) != seq_after.get(name):
            found.append("sequence %s moved" % name)
    if len(found) > limit:
        found = found[:limit] + ["and %d more" % (len(found) - limit)]
    return found or ["the fingerprint format changed"]
