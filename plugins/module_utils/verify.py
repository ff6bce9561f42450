# -*- coding: utf-8 -*-
# Copyright: Contributors to the codacy.selfhosted collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Verification of a restored copy, table by table.

The source is read in the very snapshot pg_dump used (exported by the module, imported by every
verifying connection), so a source that keeps changing cannot make a correct copy look wrong.
`counts` compares exact row counts; `checksums` also compares an order-independent content hash
per table and the content of every large object. Both sides run in parallel, `jobs` connections
each. Always compared, by name: tables, materialized views (and whether they are populated),
views, sequences, foreign tables, indexes (and their validity), constraints (and whether they
are validated), triggers, rules, policies, functions, types, schemas and extensions; the
columns of every table; large objects (owner, grants, comment); sequence values.

What pg_dump does not carry by design is judged by its rule and named in a warning rather than
reported as a difference: an invalid index (a failed CREATE INDEX CONCURRENTLY) is not dumped; a
materialized view is restored by REFRESH, so when the source's content is stale the target must
hold what its query gives; an inheritance child gets its parent's column order (rows are compared
by column name); the constraints PostgreSQL clones for partitions are made, and named, anew.
Reading errors are ReadError: which side, and what was being read.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import threading
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.codacy.selfhosted.plugins.module_utils.catalog import FIRST_NORMAL_OID
from ansible_collections.codacy.selfhosted.plugins.module_utils.connection import ConnectionProblem

try:
    import psycopg2
    from psycopg2 import sql
except ImportError:  # reported by the modules through connection.HAS_PSYCOPG2
    psycopg2 = sql = None

# Text forms that depend on session settings are pinned so both servers print alike; names are
# printed schema-qualified. Rows are never filtered by row-level security (an error instead), and
# no timeout the database or role may set ends a long read.
SESSION_SETUP = ("SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres';"
                 " SET bytea_output = 'hex'; SET extra_float_digits = 3; SET search_path = pg_catalog;"
                 " SET row_security = off; SET statement_timeout = 0; SET lock_timeout = 0;"
                 " SET idle_in_transaction_session_timeout = 0")

# The schemas verified: all but the system's, the migration records' (skip) and those a restriction leaves out.
IN_SCHEMAS = ("n.nspname <> %(skip)s AND n.nspname NOT LIKE 'pg\\_%%' AND n.nspname <> 'information_schema'"
              " AND (%(schemas)s::text[] IS NULL OR n.nspname = ANY(%(schemas)s))")

# Every table and materialized view, with or without columns: (schema, name, qualified name,
# relkind, populated, column names, column types, base types for hashing (a domain's base type),
# columns NOT NULL).
TABLES_SQL = """
SELECT n.nspname, c.relname, format('%%I.%%I', n.nspname, c.relname), c.relkind::text, c.relispopulated,
       coalesce(array_agg(a.attname::text ORDER BY a.attnum) FILTER (WHERE a.attnum IS NOT NULL), '{}'),
       coalesce(array_agg(format_type(a.atttypid, a.atttypmod) ORDER BY a.attnum)
                FILTER (WHERE a.attnum IS NOT NULL), '{}'),
       coalesce(array_agg(format_type(CASE t.typtype WHEN 'd' THEN t.typbasetype ELSE t.oid END, NULL)
                          ORDER BY a.attnum) FILTER (WHERE a.attnum IS NOT NULL), '{}'),
       coalesce(array_agg(a.attnotnull ORDER BY a.attnum) FILTER (WHERE a.attnum IS NOT NULL), '{}')
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  LEFT JOIN pg_type t ON t.oid = a.atttypid
 WHERE c.relkind IN ('r', 'm') AND c.oid >= """ + str(FIRST_NORMAL_OID) + """ AND """ + IN_SCHEMAS + """
 GROUP BY n.nspname, c.relname, c.relkind, c.relispopulated ORDER BY 1, 2
"""


# Tables emptied or rewritten since the snapshot of this transaction (TRUNCATE, or an ALTER TABLE
# that rewrites): pg_class read in the snapshot holds the file it had then, pg_relation_filenode()
# the current one. TRUNCATE is not MVCC-safe: in an older snapshot the table looks empty.
REWRITTEN_SQL = """
SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind = 'r' AND c.relfilenode <> pg_relation_filenode(c.oid) AND """ + IN_SCHEMAS + """
"""


def not_extension_member(catalog, oid, deptypes="'e'"):
    """SQL: the object is not created by an extension (CREATE EXTENSION brings those, in the
    target server's version of the extension), nor, with deptypes "'e', 'i'", along with
    another object (a range type's constructors and, from PostgreSQL 14, its multirange)."""
    return ("NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = '%s'::regclass AND e.objid = %s"
            " AND e.deptype IN (%s))" % (catalog, oid, deptypes))


# Every object by kind and name, with its state where pg_dump may not reproduce it: (kind, name,
# state, named). The constraints PostgreSQL clones from a constraint for each partition (of the
# table, or of the partitioned table a foreign key references) are identified by table and
# definition, with their name apart: pg_dump does not dump them, so they are named anew.
# Triggers cloned onto partitions come with their partitioned table's (tgparentid, PostgreSQL
# 13+; internal before). PostgreSQL 18's NOT NULL constraints are the columns' NOT NULL.
OBJECTS_SQL = """
SELECT CASE c.relkind WHEN 'i' THEN 'index' WHEN 'I' THEN 'index' WHEN 'S' THEN 'sequence' WHEN 'v' THEN 'view'
                      WHEN 'm' THEN 'materialized view' WHEN 'f' THEN 'foreign table' ELSE 'table' END,
       format('%%I.%%I', n.nspname, c.relname),
       CASE WHEN c.relkind IN ('i', 'I') THEN
         CASE WHEN i.indisvalid THEN 'valid' WHEN c.relkind = 'I' THEN 'invalid (partitioned)' ELSE 'invalid' END
       END, NULL
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace LEFT JOIN pg_index i ON i.indexrelid = c.oid
 WHERE c.relkind IN ('r', 'p', 'i', 'I', 'S', 'v', 'm', 'f') AND """ + IN_SCHEMAS + """
   AND """ + not_extension_member("pg_class", "coalesce(i.indrelid, c.oid)") + """
UNION ALL
SELECT 'constraint', CASE WHEN o.conparentid = 0 THEN format('%%I on %%s', o.conname, r.owner)
                          ELSE format('on %%s cloned for a partition, %%s', r.owner, pg_get_constraintdef(o.oid)) END,
       CASE WHEN o.convalidated THEN 'validated' ELSE 'not validated' END,
       CASE WHEN o.conparentid <> 0 THEN quote_ident(o.conname) END
  FROM pg_constraint o JOIN pg_namespace n ON n.oid = o.connamespace,
       LATERAL (SELECT CASE WHEN o.conrelid <> 0 THEN o.conrelid::regclass::text
                            ELSE o.contypid::regtype::text END AS owner) r
 WHERE o.contype <> 'n' AND """ + IN_SCHEMAS + """
   AND """ + not_extension_member("pg_class", "o.conrelid") + """
   AND """ + not_extension_member("pg_type", "o.contypid") + """
UNION ALL
SELECT 'trigger', format('%%I on %%s', t.tgname, t.tgrelid::regclass), NULL, NULL
  FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE NOT t.tgisinternal AND {trigger_clone} AND """ + IN_SCHEMAS + """
   AND """ + not_extension_member("pg_class", "c.oid") + """
UNION ALL
SELECT 'rule', format('%%I on %%s', r.rulename, r.ev_class::regclass), NULL, NULL
  FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE r.rulename <> '_RETURN' AND """ + IN_SCHEMAS + """
UNION ALL
SELECT 'policy', format('%%I on %%s', p.polname, p.polrelid::regclass), NULL, NULL
  FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE """ + IN_SCHEMAS + """
UNION ALL
SELECT 'function', format('%%I.%%I(%%s)', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid)),
       NULL, NULL
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE """ + IN_SCHEMAS + """ AND """ + not_extension_member("pg_proc", "p.oid", "'e', 'i'") + """
UNION ALL
SELECT 'type', format('%%I.%%I', n.nspname, t.typname), NULL, NULL
  FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
 WHERE t.typtype IN ('b', 'c', 'd', 'e', 'r') AND t.typcategory <> 'A'
   AND (t.typrelid = 0 OR (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c')
   AND """ + IN_SCHEMAS + """ AND """ + not_extension_member("pg_type", "t.oid", "'e', 'i'") + """
UNION ALL
SELECT 'schema', quote_ident(n.nspname), NULL, NULL FROM pg_namespace n
 WHERE """ + IN_SCHEMAS + """ AND """ + not_extension_member("pg_namespace", "n.oid") + """
UNION ALL
SELECT 'extension', quote_ident(extname), NULL, NULL FROM pg_extension
"""

# A state that the target should share with the source, and its opposite.
POSITIVE = {"invalid": "valid", "invalid (partitioned)": "valid", "not validated": "validated"}

LARGE_OBJECTS_SQL = """
SELECT m.oid::text, pg_get_userbyid(m.lomowner), coalesce(m.lomacl::text, 'default'),
       coalesce(obj_description(m.oid, 'pg_largeobject'), '')
  FROM pg_largeobject_metadata m
"""

# The content of every large object, read 1 MB at a time (lo_get() of a whole object fails
# beyond 1 GB): md5 of the md5s of its chunks in order.
LARGE_OBJECT_CONTENT_SQL = """
WITH RECURSIVE chunk(lo, pos, data) AS (
  SELECT oid, 0::bigint, lo_get(oid, 0, 1048576) FROM pg_largeobject_metadata
  UNION ALL
  SELECT lo, pos + 1048576, lo_get(lo, pos + 1048576, 1048576) FROM chunk WHERE length(data) = 1048576
)
SELECT lo::text, md5(string_agg(md5(data), '' ORDER BY pos)) FROM chunk GROUP BY lo
"""

SEQUENCE_VALUES_SQL = """
SELECT quote_ident(schemaname) || '.' || quote_ident(sequencename), last_value::text
  FROM pg_sequences WHERE schemaname <> %(skip)s
   AND (%(schemas)s::text[] IS NULL OR schemaname = ANY(%(schemas)s))
"""

FLOAT_SEND = {"real": "float4send", "double precision": "float8send"}


class ReadError(Exception):
    """Reading one side failed: says which side and what was being read."""

    def __init__(self, side, what, error):
        super(ReadError, self).__init__("reading %s on the %s failed: %s" % (what, side, first_line(error)))
        self.side = side
        self.error = error


def first_line(error):
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def row_text_expression(names, base_types):
    """The per-row text hashed by `checksums`. Floats are hashed in their binary form, since
    their text form changed in PostgreSQL 12 (shortest exact digits)."""
    parts = []
    for name, type_name in zip(names, base_types):
        if type_name in FLOAT_SEND:
            parts.append(sql.SQL("{}({})").format(sql.SQL(FLOAT_SEND[type_name]), sql.Identifier(name)))
        else:
            parts.append(sql.Identifier(name))
    return sql.SQL("ROW({})::text").format(sql.SQL(", ").join(parts))


def content_query(from_item, names, base_types, mode):
    """(row count, content hash or NULL) of `from_item`: a table (ONLY: rows of partitions and
    inheritance children are counted in their own table) or a subquery."""
    if mode == "counts":
        return sql.SQL("SELECT count(*), NULL FROM {}").format(from_item)
    # Sum of a 60-bit prefix of each row's md5: independent of row order; sum() of bigint is
    # numeric in PostgreSQL, so it cannot overflow.
    return sql.SQL("SELECT count(*), coalesce(sum(('x' || substr(md5({}), 1, 15))::bit(60)::bigint), 0)::text"
                   " FROM {}").format(row_text_expression(names, base_types), from_item)


class Side:
    """Connections to one server for verification; source sides share the dump's snapshot."""

    def __init__(self, connect, snapshot=None, name="source"):
        self._connect = connect
        self.snapshot = snapshot
        self.name = name
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
                if self.snapshot:
                    cur.execute("SET TRANSACTION SNAPSHOT %s", (self.snapshot,))
                cur.execute(SESSION_SETUP)
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def query(self, query, args=None, what="the catalog"):
        try:
            with self.conn().cursor() as cur:
                cur.execute(query, args)
                return cur.fetchall()
        except (psycopg2.Error, ConnectionProblem) as exc:
            raise ReadError(self.name, what, exc) from exc

    def server_version(self):
        return self.conn().server_version

    def close(self):
        for conn in self._all:
            try:
                conn.rollback()
                conn.close()
            except Exception:  # pylint: disable=broad-except
                pass


def objects(side, args):
    clone = "t.tgparentid = 0" if side.server_version() >= 130000 else "true"
    rows = side.query(OBJECTS_SQL.format(trigger_clone=clone), args)
    return dict(((kind, name), (state, named)) for kind, name, state, named in rows)


def compare_objects(source, target, args):
    """Objects missing, extra or in another state on the target, as (problems, warnings)."""
    src, dst = objects(source, args), objects(target, args)
    problems, warnings, missing = [], [], []
    for kind, name in sorted(set(src) - set(dst)):
        if kind == "index" and src[(kind, name)][0] == "invalid":
            warnings.append("index %s is invalid on the source (left behind by a failed CREATE INDEX CONCURRENTLY or "
                            "REINDEX) and pg_dump does not carry invalid indexes, so the target has none: drop it on "
                            "the source, or create it on the target once the cause is fixed" % name)
        else:
            missing.append("%s %s" % (kind, name))
    if missing:
        problems.append("missing on the target: %s" % abbreviate(missing))
    extra = ["%s %s" % key for key in sorted(set(dst) - set(src))]
    if extra:
        problems.append("on the target but not on the source: %s" % abbreviate(extra))
    for kind, name in sorted(set(src) & set(dst)):
        (was, was_named), (now, now_named) = src[(kind, name)], dst[(kind, name)]
        if was != now:
            problems.append("%s %s is %s on the source but %s on the target"
                            % (kind, name, was, "not" if POSITIVE.get(now) == was else now))
        if was_named != now_named:
            warnings.append("the %s %s is named %s on the source but %s on the target: pg_dump does not carry the "
                            "names of the constraints PostgreSQL clones for partitions (they are made, and named, "
                            "anew when the constraint they come from is restored)" % (kind, name, was_named, now_named))
    return problems, warnings


def abbreviate(items, limit=10):
    return ", ".join(items[:limit]) + (" and %d more" % (len(items) - limit) if len(items) > limit else "")


def compare_large_objects(source, target, mode):
    """Large objects missing or different on the target (owner, grants, comment; with checksums
    their content too), as problems."""
    fields = ("owner", "grants", "comment")
    src = dict((row[0], row[1:]) for row in source.query(LARGE_OBJECTS_SQL, what="large objects"))
    dst = dict((row[0], row[1:]) for row in target.query(LARGE_OBJECTS_SQL, what="large objects"))
    if mode == "checksums":
        fields += ("content",)
        for side, found in ((source, src), (target, dst)):
            for oid, digest in side.query(LARGE_OBJECT_CONTENT_SQL, what="the content of the large objects"):
                found[oid] += (digest,)
    problems = []
    for oid in sorted(set(src) | set(dst), key=int):
        if oid not in dst or oid not in src:
            problems.append("large object %s is only on the %s" % (oid, "source" if oid in src else "target"))
            continue
        for field, was, now in zip(fields, src[oid], dst[oid]):
            if was != now:
                problems.append("large object %s: %s differs (%s on the source, %s on the target)"
                                % (oid, field, was if field != "content" else "md5 " + was,
                                   now if field != "content" else "md5 " + now))
    return problems


class Relation:
    """One table or materialized view as listed by TABLES_SQL on one side."""

    def __init__(self, row):
        self.schema, self.name, self.qualified, kind, self.populated, self.columns, types, self.base_types, \
            not_null = row
        self.kind = "materialized view" if kind == "m" else "table"
        # Compared by name: inheritance children may get their parent's column order (pg_dump).
        self.shape = dict(zip(self.columns, zip(types, not_null)))


def compare(source, target, mode, jobs, skip_schema, schemas=None, copied=None, replicated=False):
    """Compare source and target (`Side`s); return (tables, problems, warnings).

    replicated: replication brings the target the source's changes after the snapshot (online
    migration): a table that differs because it was truncated since is a warning, not a problem.
    Else a table truncated or rewritten since the snapshot is a problem even when it looks equal:
    the copy may have read it after the TRUNCATE, as empty as the snapshot now shows it.

    copied: {(schema, table): (source rows, target rows or None)} that the copy counted itself (the
    command tags of its COPY TO and COPY FROM): with `counts`, those are not counted again (a target
    count of None: the copy could not prove that nothing else wrote the table since; it is counted).

    tables: [{schema, table, kind, source_rows, target_rows, source_hash, target_hash, equal}]
    problems: sentences, empty when the copy is equal; warnings: what pg_dump's design changed."""
    args = {"skip": skip_schema, "schemas": list(schemas) if schemas else None}
    problems, warnings = compare_objects(source, target, args)
    source_tables = [Relation(row) for row in source.query(TABLES_SQL, args)]
    target_tables = dict(((r.schema, r.name), r) for r in (Relation(row) for row in target.query(TABLES_SQL, args)))
    pairs = []
    for src in source_tables:
        dst = target_tables.get((src.schema, src.name))
        if dst is None:
            continue  # named by compare_objects
        if src.shape != dst.shape:
            problems.append("%s %s has other columns on the target: %s on the source, %s on the target"
                            % (src.kind, src.qualified, describe_columns(src), describe_columns(dst)))
        elif src.populated and not dst.populated:
            problems.append("materialized view %s is populated on the source but not on the target" % src.qualified)
        elif dst.populated and not src.populated:
            problems.append("materialized view %s is not populated on the source but is on the target" % src.qualified)
        else:
            pairs.append((src, dst))
        if src.columns != dst.columns and src.shape == dst.shape:
            warnings.append("table %s has its columns in another order on the target (%s; on the source: %s): "
                            "pg_dump's CREATE TABLE ... INHERITS puts the parent's columns first. Statements that "
                            "rely on the order (SELECT *, INSERT without a column list) see the difference"
                            % (src.qualified, ", ".join(dst.columns), ", ".join(src.columns)))
    problems += compare_large_objects(source, target, mode)

    tables = []
    if mode == "none":
        return tables, problems, warnings

    def measure(pair):
        """((rows, hash) on the source, on the target, and what REFRESH would give on the target
        when a materialized view differs); (None, None) for an unpopulated one, which has no rows."""
        src, dst = pair
        if not src.populated:
            return (None, None), (None, None), None
        query = content_query(sql.SQL("ONLY {} AS t").format(sql.Identifier(src.schema, src.name)),
                              src.columns, src.base_types, mode)
        what = "%s %s" % (src.kind, src.qualified)
        counted = (copied or {}).get((src.schema, src.name)) if mode == "counts" and src.kind == "table" else None
        if counted is not None:
            # The target's count only when the copy could not prove that nothing else wrote there.
            rows, target_rows = counted
            return (rows, None), (target_rows, None) if target_rows is not None else \
                tuple(target.query(query, what=what)[0]), None
        was, now = source.query(query, what=what)[0], target.query(query, what=what)[0]
        fresh = None
        if was != now and src.kind == "materialized view":
            fresh = target.query(refresh_query(target, dst, mode), what="the query of " + what)[0]
        return was, now, fresh

    rewritten = set(source.query(REWRITTEN_SQL, args)) if source.snapshot else set()
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for (src, _dst), (was, now, fresh) in zip(pairs, pool.map(measure, pairs)):
            entry = {"schema": src.schema, "table": src.name, "kind": src.kind,
                     "source_rows": was[0], "target_rows": now[0]}
            if mode == "checksums":
                entry.update(source_hash=was[1], target_hash=now[1])
            entry["equal"] = was == now
            tables.append(entry)
            if (src.schema, src.name) in rewritten:
                entry["rewritten"] = True  # (since the snapshot)
            if entry.get("rewritten") and not replicated:
                entry["equal"] = False
                problems.append("table %s was truncated or rewritten on the source after the copy's snapshot (TRUNCATE, "
                                "or an ALTER TABLE that rewrites it), so the copy may lack rows of that snapshot (%s "
                                "rows on the source, %s on the target): something still writes to the source. Stop it"
                                % (src.qualified, was[0], now[0]))
                continue
            if was == now:
                continue
            if fresh == now:
                warnings.append("materialized view %s was stale on the source (the tables or views it reads changed "
                                "since its last REFRESH): the target holds what REFRESH MATERIALIZED VIEW gives, as "
                                "pg_restore always refreshes (%s rows on the source, %s on the target)"
                                % (src.qualified, was[0], now[0]))
                entry["refreshed"] = True
                continue
            differs = "%s differs: %s rows on the source, %s on the target%s%s" % (
                src.qualified, was[0], now[0], " (content hash differs)" if was[0] == now[0] else "",
                "; its query gives %s rows on the target" % fresh[0] if fresh else "")
            if not entry.get("rewritten"):
                problems.append(differs)
                continue
            warnings.append("table %s was truncated or rewritten on the source after the copy's snapshot (TRUNCATE, "
                            "or an ALTER TABLE that rewrites it), which hides its rows from that snapshot: the copy "
                            "of it could not be compared (%s). Replication carries the change; the cutover compares "
                            "it" % (src.qualified, differs.split(": ", 1)[1]))
    return tables, problems, warnings


def refresh_query(target, relation, mode):
    """What REFRESH would put into a materialized view on the target: its query, counted or hashed."""
    definition = target.query("SELECT pg_get_viewdef(%s::regclass)", (relation.qualified,),
                              what="the definition of " + relation.qualified)[0][0]
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in relation.columns)
    subquery = sql.SQL("({}) AS t({})").format(sql.SQL(definition.strip().rstrip(";")), columns)
    return content_query(subquery, relation.columns, relation.base_types, mode)


def describe_columns(relation):
    return ", ".join("%s %s%s" % (name, relation.shape[name][0], " NOT NULL" if relation.shape[name][1] else "")
                     for name in relation.columns) or "none"


def sequence_differences(source_conn, target_conn, skip_schema, schemas=None):
    """Sequences whose current value differs (read outside snapshots: sequences are not
    transactional). The source may have moved after the dump; the caller decides."""
    args = {"skip": skip_schema, "schemas": list(schemas) if schemas else None}
    values = []
    for side, conn in (("source", source_conn), ("target", target_conn)):
        try:
            with conn.cursor() as cur:
                cur.execute(SEQUENCE_VALUES_SQL, args)
                values.append(dict(cur.fetchall()))
        except psycopg2.Error as exc:
            raise ReadError(side, "the sequences", exc) from exc
    src, dst = values
    return ["sequence %s: %s on the source, %s on the target" % (name, src[name], dst.get(name))
            for name in sorted(src) if src[name] != dst.get(name)]
