# -*- coding: utf-8 -*-
# Copyright: Contributors to the codacy.selfhosted collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Verification of a restored copy, table by table.

The source is read in the very snapshot pg_dump used (exported by the module, imported by every
verifying connection), so a source that keeps changing cannot make a correct copy look wrong.
`counts` compares exact row counts; `checksums` also compares an order-independent content hash
per table. Both sides run in parallel, `jobs` connections each. Beyond the rows, the numbers of
indexes, constraints, triggers, views, functions and sequences must match, every index on the
target must be valid, and sequence values must be equal.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import threading
from concurrent.futures import ThreadPoolExecutor

try:
    from psycopg2 import sql
except ImportError:  # reported by the modules through connection.HAS_PSYCOPG2
    sql = None

# Text forms that depend on session settings are pinned so both servers print alike.
SESSION_SETUP = ("SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres';"
                 " SET bytea_output = 'hex'; SET extra_float_digits = 3")

TABLES_SQL = """
SELECT n.nspname, c.relname,
       array_agg(a.attname::text || ':' || a.atttypid::regtype::text ORDER BY a.attnum)
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
 WHERE c.relkind IN ('r', 'm') AND c.oid >= 16384 AND n.nspname <> %(skip)s
   AND n.nspname NOT LIKE 'pg\\_%%' AND (%(schemas)s::text[] IS NULL OR n.nspname = ANY(%(schemas)s))
 GROUP BY n.nspname, c.relname ORDER BY 1, 2
"""

OBJECTS_SQL = """
SELECT kind, count(*) FROM (
  SELECT CASE c.relkind WHEN 'i' THEN 'indexes' WHEN 'I' THEN 'indexes' WHEN 'S' THEN 'sequences'
              WHEN 'v' THEN 'views' WHEN 'm' THEN 'materialized views' WHEN 'f' THEN 'foreign tables'
              ELSE 'tables' END AS kind
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE c.relkind IN ('r', 'p', 'i', 'I', 'S', 'v', 'm', 'f') AND n.nspname <> %(skip)s
     AND n.nspname NOT LIKE 'pg\\_%%' AND n.nspname <> 'information_schema'
     AND (%(schemas)s::text[] IS NULL OR n.nspname = ANY(%(schemas)s))
  UNION ALL
  SELECT 'constraints' FROM pg_constraint o JOIN pg_namespace n ON n.oid = o.connamespace
   WHERE n.nspname <> %(skip)s AND n.nspname NOT LIKE 'pg\\_%%' AND n.nspname <> 'information_schema'
     AND (%(schemas)s::text[] IS NULL OR n.nspname = ANY(%(schemas)s))
  UNION ALL
  SELECT 'triggers' FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE NOT t.tgisinternal AND n.nspname <> %(skip)s AND n.nspname NOT LIKE 'pg\\_%%'
     AND (%(schemas)s::text[] IS NULL OR n.nspname = ANY(%(schemas)s))
  UNION ALL
  SELECT 'functions' FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
   WHERE p.oid >= 16384 AND n.nspname <> %(skip)s AND n.nspname NOT LIKE 'pg\\_%%'
     AND (%(schemas)s::text[] IS NULL OR n.nspname = ANY(%(schemas)s))
  UNION ALL
  SELECT 'extensions' FROM pg_extension
  UNION ALL
  SELECT 'large objects' FROM pg_largeobject_metadata
  UNION ALL
  SELECT 'invalid indexes' FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE NOT i.indisvalid AND n.nspname <> %(skip)s
) AS objects GROUP BY kind
"""

SEQUENCE_VALUES_SQL = """
SELECT quote_ident(schemaname) || '.' || quote_ident(sequencename), last_value::text
  FROM pg_sequences WHERE schemaname <> %(skip)s
   AND (%(schemas)s::text[] IS NULL OR schemaname = ANY(%(schemas)s))
"""

FLOAT_SEND = {"real": "float4send", "double precision": "float8send"}


def row_text_expression(columns):
    """The per-row text hashed by `checksums`. Floats are hashed in their binary form, since
    their text form changed in PostgreSQL 12 (shortest exact digits)."""
    parts = []
    for column in columns:
        name, type_name = column.rsplit(":", 1)
        if type_name in FLOAT_SEND:
            parts.append(sql.SQL("{}({})").format(sql.SQL(FLOAT_SEND[type_name]), sql.Identifier(name)))
        else:
            parts.append(sql.Identifier(name))
    return sql.SQL("ROW({})::text").format(sql.SQL(", ").join(parts))


def table_query(schema, table, columns, mode):
    relation = sql.Identifier(schema, table)
    if mode == "counts":
        return sql.SQL("SELECT count(*), NULL FROM ONLY {}").format(relation)
    # Sum of a 60-bit prefix of each row's md5: independent of row order; sum() of bigint is
    # numeric in PostgreSQL, so it cannot overflow.
    return sql.SQL("SELECT count(*), coalesce(sum(('x' || substr(md5({}), 1, 15))::bit(60)::bigint), 0)::text"
                   " FROM ONLY {} AS t").format(row_text_expression(columns), relation)


class Side:
    """Connections to one server for verification; source sides share the dump's snapshot."""

    def __init__(self, connect, snapshot=None):
        self._connect = connect
        self._snapshot = snapshot
        self._local = threading.local()
        self._all = []
        self._lock = threading.Lock()

    def conn(self):
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            conn.autocommit = False
            with conn.cursor() as cur:
                cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                if self._snapshot:
                    cur.execute("SET TRANSACTION SNAPSHOT %s", (self._snapshot,))
                cur.execute(SESSION_SETUP)
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def query(self, query, args=None):
        with self.conn().cursor() as cur:
            cur.execute(query, args)
            return cur.fetchall()

    def close(self):
        for conn in self._all:
            try:
                conn.rollback()
                conn.close()
            except Exception:  # pylint: disable=broad-except
                pass


def compare(source, target, mode, jobs, skip_schema, schemas=None):
    """Compare source and target (`Side`s); return (tables, problems).

    tables: [{schema, table, source_rows, target_rows, source_hash, target_hash, equal}]
    problems: sentences, empty when the copy is equal."""
    args = {"skip": skip_schema, "schemas": list(schemas) if schemas else None}
    problems = []
    source_tables = source.query(TABLES_SQL, args)
    target_names = set((row[0], row[1]) for row in target.query(TABLES_SQL, args))
    missing = ["%s.%s" % (row[0], row[1]) for row in source_tables if (row[0], row[1]) not in target_names]
    if missing:
        problems.append("tables missing on the target: %s" % ", ".join(missing[:10]))

    source_objects = dict(source.query(OBJECTS_SQL, args))
    target_objects = dict(target.query(OBJECTS_SQL, args))
    for kind in sorted(set(source_objects) | set(target_objects)):
        if kind == "invalid indexes":
            if target_objects.get(kind):
                problems.append("%d indexes are invalid on the target" % target_objects[kind])
        elif source_objects.get(kind, 0) > target_objects.get(kind, 0):
            problems.append("%s: %d on the source, %d on the target"
                            % (kind, source_objects.get(kind, 0), target_objects.get(kind, 0)))

    tables = []
    if mode != "none":
        present = [row for row in source_tables if (row[0], row[1]) in target_names]

        def measure(row):
            schema, table, columns = row
            query = table_query(schema, table, columns, mode)
            return source.query(query)[0], target.query(query)[0]

        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            for (schema, table, _columns), (src, dst) in zip(present, pool.map(measure, present)):
                entry = {"schema": schema, "table": table, "source_rows": src[0], "target_rows": dst[0]}
                if mode == "checksums":
                    entry.update(source_hash=src[1], target_hash=dst[1])
                entry["equal"] = src == dst
                tables.append(entry)
                if not entry["equal"]:
                    problems.append("%s.%s differs: %s rows on the source, %s on the target%s"
                                    % (schema, table, src[0], dst[0],
                                       " (content hash differs)" if src[0] == dst[0] else ""))
    return tables, problems


def sequence_differences(source_conn, target_conn, skip_schema, schemas=None):
    """Sequences whose current value differs (read outside snapshots: sequences are not
    transactional). The source may have moved after the dump; the caller decides."""
    args = {"skip": skip_schema, "schemas": list(schemas) if schemas else None}
    with source_conn.cursor() as cur:
        cur.execute(SEQUENCE_VALUES_SQL, args)
        src = dict(cur.fetchall())
    with target_conn.cursor() as cur:
        cur.execute(SEQUENCE_VALUES_SQL, args)
        dst = dict(cur.fetchall())
    return ["sequence %s: %s on the source, %s on the target" % (name, src[name], dst.get(name))
            for name in sorted(src) if src[name] != dst.get(name)]
