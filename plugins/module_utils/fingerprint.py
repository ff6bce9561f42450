# -*- coding: utf-8 -*-
# Copyright: Contributors to the codacy.selfhosted collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a database looks like at one moment, cheaply, and what can be proven from two such looks.

A fingerprint reads catalogs and statistics only (no table data), in milliseconds whatever the size:
- definitions: a digest of every catalog that holds the database's objects, derived from the
  server's own list of catalogs (so no kind of object can be missed, now or in a later PostgreSQL),
  with every column except those that change without a user change (VOLATILE_COLUMNS says which
  and why), plus the database-level rows of the shared catalogs that pg_dump and this collection
  carry (settings, comment, subscriptions, the names of the roles involved);
- sequences: their values;
- write counters: rows inserted, updated and deleted per table, from the statistics system;
- the statistics' continuity: when they were last reset (a crash, a failover or pg_stat_reset()
  start them again);
- the transaction horizon: the next transaction id and the ones running. Every write takes a
  transaction id, so when none was taken since a fingerprint that saw none running, nothing was
  written: a proof that needs no statistics.

Definitions and sequences are exact. Writes are proven by the transaction horizon when no
transaction took an id on the whole server; otherwise the write counters are trusted only while
they are continuous, counting (track_counts) and complete (no session still holds its pending
counts, which the callers check). Where they cannot be trusted, a target is proven unwritten by
reading its rows (rows_written_since) and a source is copied again.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import json

from ansible_collections.codacy.selfhosted.plugins.module_utils.catalog import FIRST_NORMAL_OID

try:
    from psycopg2 import sql
except ImportError:  # reported by the modules through connection.HAS_PSYCOPG2
    sql = None

FORMAT = 2

# Catalogs that hold data or statistics rather than definitions.
SKIPPED_CATALOGS = {
    "pg_statistic": "planner statistics, rewritten by ANALYZE",
    "pg_statistic_ext_data": "extended planner statistics, rewritten by ANALYZE",
    "pg_largeobject": "the content of large objects: data, watched like table rows",
}

# Columns that change without a user change.
VOLATILE_COLUMNS = {
    "pg_class": {
        "relpages": "size estimate, rewritten by VACUUM and ANALYZE",
        "reltuples": "row estimate, rewritten by VACUUM and ANALYZE",
        "relallvisible": "visibility estimate, rewritten by VACUUM and ANALYZE",
        "relallfrozen": "visibility estimate, rewritten by VACUUM (PostgreSQL 18)",
        "relfrozenxid": "freezing horizon, advanced by VACUUM",
        "relminmxid": "freezing horizon, advanced by VACUUM",
        "relhasindex": "cleared by VACUUM once the indexes are gone (pg_index holds them)",
        "relhasrules": "cleared by VACUUM once the rules are gone (pg_rewrite holds them)",
        "relhastriggers": "cleared by VACUUM once the triggers are gone (pg_trigger holds them)",
        "relhassubclass": "cleared by ANALYZE once the children are gone (pg_inherits holds them)",
    },
    "pg_database": {
        "datfrozenxid": "freezing horizon, advanced by VACUUM",
        "datminmxid": "freezing horizon, advanced by VACUUM",
        "dathasloginevt": "cleared lazily once login event triggers are gone (PostgreSQL 17)",
    },
    "pg_subscription": {"subskiplsn": "set and cleared by the subscription's apply worker"},
}

# Catalogs that users other than superusers may not read, read through what they may read.
READABLE_SUBSTITUTES = {
    "pg_user_mapping": "SELECT ROW(umid, srvid, umuser, umoptions)::text FROM pg_catalog.pg_user_mappings",
}

# What users call the content of the catalogs that change most often (for messages).
NOUNS = {
    "pg_class": "tables, views, indexes or sequences", "pg_attribute": "columns", "pg_attrdef": "column defaults",
    "pg_proc": "functions or procedures", "pg_constraint": "constraints", "pg_index": "indexes",
    "pg_trigger": "triggers", "pg_rewrite": "rules or views", "pg_policy": "row-level security policies",
    "pg_type": "types", "pg_namespace": "schemas", "pg_description": "comments", "pg_inherits": "partitions",
    "pg_extension": "extensions", "pg_publication": "publications", "pg_event_trigger": "event triggers",
    "pg_default_acl": "default privileges", "pg_largeobject_metadata": "large objects",
    "pg_database": "database properties", "pg_db_role_setting": "database settings",
    "pg_authid": "names of the roles involved", "pg_subscription": "subscriptions",
}

# Database-level rows of shared catalogs (the rest of those catalogs belongs to other databases).
SHARED_SQL = {
    "pg_db_role_setting": "SELECT ROW(s.setrole, s.setconfig)::text FROM pg_catalog.pg_db_role_setting s"
                          " WHERE s.setdatabase = {db}",
    "pg_shdescription": "SELECT ROW(d.description)::text FROM pg_catalog.pg_shdescription d"
                        " WHERE d.objoid = {db} AND d.classoid = 'pg_catalog.pg_database'::regclass",
    "pg_shseclabel": "SELECT ROW(l.provider, l.label)::text FROM pg_catalog.pg_shseclabel l"
                     " WHERE l.objoid = {db} AND l.classoid = 'pg_catalog.pg_database'::regclass",
    # Owners and grantees are stored by oid: a renamed role changes what pg_dump writes.
    "pg_authid": "SELECT ROW(r.oid, r.rolname)::text FROM pg_catalog.pg_roles r WHERE r.oid = 10 OR r.oid IN"
                 " (SELECT refobjid FROM pg_catalog.pg_shdepend WHERE dbid = {db}"
                 " AND refclassid = 'pg_catalog.pg_authid'::regclass)",
}
SHARED_WITH_ROW_FILTER = {"pg_database": "oid = {db}", "pg_subscription": "subdbid = {db}"}

# Every column that the connecting user may read of every catalog (columns such as
# pg_subscription.subconninfo, which may hold a password, are readable by superusers only).
COLUMNS_SQL = """
SELECT c.relname, c.relisshared, array_agg(a.attname::text ORDER BY a.attnum)
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
 WHERE c.relnamespace = 'pg_catalog'::regnamespace AND c.relkind = 'r'
   AND pg_catalog.has_column_privilege(c.oid, a.attnum, 'SELECT')
 GROUP BY c.relname, c.relisshared ORDER BY 1
"""

COUNTERS_SQL = """
SELECT quote_ident(s.schemaname) || '.' || quote_ident(s.relname), s.n_tup_ins, s.n_tup_upd, s.n_tup_del
  FROM pg_stat_all_tables s
 WHERE (s.relid >= """ + str(FIRST_NORMAL_OID) + """ AND s.schemaname <> %(skip)s AND s.schemaname NOT LIKE 'pg\\_%%')
    OR s.relid = 'pg_catalog.pg_largeobject'::regclass
"""

SEQUENCES_SQL = """
SELECT quote_ident(schemaname) || '.' || quote_ident(sequencename), last_value
  FROM pg_sequences WHERE schemaname <> %(skip)s
"""

# The statistics' birth certificates: a crash or a failover discards them and resets the cluster's
# (pg_stat_archiver's) timestamp; pg_stat_reset() and the resetting of one table's counters set
# the database's. A clean restart keeps both, and the counters.
STATISTICS_SQL = """
SELECT (SELECT stats_reset::text FROM pg_stat_archiver),
       (SELECT stats_reset::text FROM pg_stat_database WHERE datname = current_database())
"""

# Settings that stop the counters from counting, in the server, this database or for a role.
TRACK_COUNTS_SQL = """
SELECT CASE WHEN s.setrole = 0 THEN 'ALTER DATABASE ' || quote_ident(d.datname)
            WHEN s.setdatabase = 0 THEN 'ALTER ROLE ' || quote_ident(pg_get_userbyid(s.setrole))
            ELSE 'ALTER ROLE ' || quote_ident(pg_get_userbyid(s.setrole)) || ' IN DATABASE ' || quote_ident(d.datname)
       END || ' SET ' || replace(c, '=', ' = ')
  FROM pg_db_role_setting s LEFT JOIN pg_database d ON d.oid = s.setdatabase, unnest(s.setconfig) c
 WHERE s.setdatabase IN (0, (SELECT oid FROM pg_database WHERE datname = current_database()))
   AND lower(c) LIKE 'track\\_counts=%%'
 ORDER BY 1
"""


def _catalogs_sql(conn, ignore=None):
    """One query returning (catalog, digest) for every catalog, built from the server's own list;
    `ignore` maps catalogs to columns left out as well (None: the whole catalog)."""
    ignore = ignore or {}
    with conn.cursor() as cur:
        cur.execute(COLUMNS_SQL)
        catalogs = cur.fetchall()
        cur.execute("SELECT oid FROM pg_database WHERE datname = current_database()")
        db = cur.fetchone()[0]
    readable = set(name for name, _shared, _columns in catalogs)
    parts = []
    for name, shared, columns in catalogs:
        if name in SKIPPED_CATALOGS or (shared and name not in SHARED_WITH_ROW_FILTER) or \
                (name in ignore and ignore[name] is None):
            continue
        kept = ['"%s"' % column for column in columns
                if column not in VOLATILE_COLUMNS.get(name, ()) and column not in (ignore.get(name) or ())]
        rows = "SELECT ROW(%s)::text FROM pg_catalog.%s" % (", ".join(kept), name)
        if shared:
            rows += " WHERE " + SHARED_WITH_ROW_FILTER[name].format(db=int(db))
        parts.append((name, rows))
    parts += [(name, query) for name, query in READABLE_SUBSTITUTES.items() if name not in readable and name not in ignore]
    parts += [(name, query.format(db=int(db))) for name, query in SHARED_SQL.items() if name not in ignore]
    return " UNION ALL ".join(
        "SELECT '%s', md5(coalesce(string_agg(r, E'\\n' ORDER BY r), '')) FROM (%s) AS x(r)" % (name, rows)
        for name, rows in parts)


def _xid_snapshot(cur):
    # txid_current_snapshot() is 'xmin:xmax:xip,...' with epoch-extended ids, on every version;
    # it reads the horizon without taking a transaction id.
    cur.execute("SELECT txid_current_snapshot()::text")
    _xmin, xmax, running = cur.fetchone()[0].split(":")
    return {"next": int(xmax), "running": [int(x) for x in running.split(",") if x]}


def horizon(conn):
    """The part of a fingerprint that proven_unwritten compares, cheap to read: the transaction ids
    and the statistics' resets."""
    with conn.cursor() as cur:
        xids = _xid_snapshot(cur)
        cur.execute(STATISTICS_SQL)
        cluster_reset, database_reset = cur.fetchone()
    return {"xids": xids, "statistics": {"cluster_reset": cluster_reset, "database_reset": database_reset}}


def read(conn, skip_schema, ignore=None):
    """The fingerprint of the database `conn` is connected to, as a JSON-able dict; `skip_schema`
    (the migration records') is left out of the counters and sequences. `ignore` leaves catalog columns out
    of the definitions (see _catalogs_sql): such a fingerprint only compares with one read alike."""
    args = {"skip": skip_schema}
    catalogs_sql = _catalogs_sql(conn, ignore)
    with conn.cursor() as cur:
        # Counters are kept in a snapshot for the whole transaction in some versions: read fresh.
        cur.execute("SELECT pg_stat_clear_snapshot()")
        xids = _xid_snapshot(cur)
        cur.execute(catalogs_sql)
        catalogs = dict(cur.fetchall())
        cur.execute(COUNTERS_SQL, args)
        tables = dict((row[0], [int(v or 0) for v in row[1:]]) for row in cur.fetchall())
        cur.execute(SEQUENCES_SQL, args)
        sequences = dict((row[0], None if row[1] is None else str(row[1])) for row in cur.fetchall())
        cur.execute(STATISTICS_SQL)
        cluster_reset, database_reset = cur.fetchone()
    return {"format": FORMAT, "catalogs": catalogs, "sequences": sequences, "tables": tables,
            "statistics": {"cluster_reset": cluster_reset, "database_reset": database_reset}, "xids": xids}


def counting_problems(conn):
    """Why the write counters of this database may not count writes now (track_counts off), as sentences."""
    with conn.cursor() as cur:
        cur.execute("SELECT current_setting('track_counts')")
        problems = [] if cur.fetchone()[0] == "on" else ["track_counts is off on the server"]
        cur.execute(TRACK_COUNTS_SQL)
        problems += ["%s (writes of those sessions are not counted)" % row[0] for row in cur.fetchall()]
    return problems


def digest(fingerprint):
    """A short stable identifier of a fingerprint, for reports."""
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:16]


def comparable(recorded):
    return bool(recorded) and recorded.get("format") == FORMAT


def definition_changes(before, after):
    """Changed definitions and sequences, as sentences (exact: no statistics involved)."""
    catalogs_before, catalogs_after = before.get("catalogs") or {}, after.get("catalogs") or {}
    changed = sorted(name for name in set(catalogs_before) | set(catalogs_after)
                     if catalogs_before.get(name) != catalogs_after.get(name))
    found = []
    if changed:
        found.append("definitions changed in %s" % ", ".join(
            "%s (%s)" % (name, NOUNS[name]) if name in NOUNS else name for name in changed))
    seq_before, seq_after = before.get("sequences") or {}, after.get("sequences") or {}
    found += ["sequence %s moved" % name for name in sorted(set(seq_before) | set(seq_after))
              if seq_before.get(name) != seq_after.get(name)]
    return found


def proven_unwritten(before, after, ours=frozenset()):
    """True when no transaction but `ours` (ids of transactions known to write nothing that
    matters) took an id on the server since `before`, nor ran then: then nothing else was written
    (every write takes a transaction id). Not across a crash: crash recovery empties unlogged
    tables and, with synchronous_commit off, loses the last commits (and may hand out their ids
    again), without a transaction; it discards the statistics too, which is how it shows."""
    xids_before, xids_after = before.get("xids"), after.get("xids")
    if not (xids_before and xids_after) or (before.get("statistics") or {}).get("cluster_reset") != \
            (after.get("statistics") or {}).get("cluster_reset"):
        return False
    taken = xids_after["next"] - xids_before["next"]
    if taken < 0 or taken > len(ours):
        return False
    return set(xids_before["running"]).union(range(xids_before["next"], xids_after["next"])) <= set(ours)


def counters_lost(before, after):
    """A sentence when the write counters did not run continuously from `before` to `after`, else None."""
    stats_before, stats_after = before.get("statistics") or {}, after.get("statistics") or {}
    if stats_before.get("cluster_reset") != stats_after.get("cluster_reset"):
        return "the server's statistics were discarded since (a crash, a failover or a reset)"
    if stats_before.get("database_reset") != stats_after.get("database_reset"):
        return "the database's statistics were reset since (pg_stat_reset)"
    later = after.get("tables") or {}
    if any(name in later and any(now < then for now, then in zip(later[name], counters))
           for name, counters in (before.get("tables") or {}).items()):
        return "some tables' statistics were reset since"
    return None


def write_changes(before, after):
    """Tables whose write counters moved, as sentences (trust them only when they count, are
    continuous and no session holds pending counts)."""
    tables_before, tables_after = before.get("tables") or {}, after.get("tables") or {}
    return ["write activity in %s" % name for name in sorted(set(tables_before) | set(tables_after))
            if tables_before.get(name) != tables_after.get(name)]


def limited(found, limit=10):
    """At most `limit` sentences, and how many more there were."""
    return found[:limit] + (["and %d more" % (len(found) - limit)] if len(found) > limit else [])


# Rows of a table that a transaction wrote after the horizon of the copy: newer transaction ids,
# or those that were still running then. age() counts back from the current transaction id, so
# an id at or after the horizon is younger than the horizon. (The copy's own rows were committed
# before the horizon was read.)
NEWER_ROWS_SQL = ("SELECT count(*), count(*) FILTER (WHERE age(xmin) <= age(%(horizon)s::text::xid)"
                  " OR xmin::text::bigint = ANY(%(running)s)) FROM ONLY {}")


def rows_written_since(conn, recorded):
    """Prove from the rows themselves what a target's counters cannot tell: whether anything was
    written since `recorded`, the fingerprint taken when its copy was complete. Reads every table
    and large object of the copy once. Returns (written, unprovable): the tables written since, and
    a sentence when no proof is possible."""
    rows = recorded.get("rows")
    if rows is None:
        return [], "the copy recorded no row counts to compare with (it was made with verify: none)"
    xids = recorded["xids"]
    args = {"horizon": str(xids["next"] % 2 ** 32), "running": [x % 2 ** 32 for x in xids["running"]]}
    written = []
    with conn.cursor() as cur:
        for schema, table, count in rows:
            cur.execute(sql.SQL(NEWER_ROWS_SQL).format(sql.Identifier(schema, table)), args)
            now, newer = cur.fetchone()
            if now != count or newer:
                written.append("rows written in %s.%s" % (schema, table))
        cur.execute("SELECT count(*) FROM pg_largeobject_metadata")
        if cur.fetchone()[0]:
            cur.execute("SELECT has_table_privilege('pg_catalog.pg_largeobject', 'SELECT')")
            if not cur.fetchone()[0]:
                return written, "large objects can only be read by a superuser"
            cur.execute(sql.SQL(NEWER_ROWS_SQL).format(sql.SQL("pg_catalog.pg_largeobject")), args)
            if cur.fetchone()[1]:
                written.append("large objects written")
    return written, None
