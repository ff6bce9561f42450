"""Independent oracle of database equality for the migration tests, demo, Molecule and benchmark.

snapshot() describes one database as plain JSON-able data: per user table the exact row count and an
order-independent content hash, plus sequences, extensions, large objects, indexes, constraints,
views, functions, triggers, enum types and comments. diff() lists the differences between two
snapshots; compare() snapshots two databases and diffs them.

This module deliberately shares no code with the migration module under test.

    python -m tests.support.compare --source 'host=a port=5432 user=x' --target 'host=b user=y' \\
        accounts analysis [--map results:results_new] [--ignore views] [--json]

Passwords never travel in argv: they come from PGPASSWORD / PGPASSFILE, or SOURCE_PGPASSWORD and
TARGET_PGPASSWORD for different passwords per side. Exit status: 0 equal, 1 different, 2 error.

Content hash: each row is rendered as text in a session whose settings make text output identical
across servers (UTC, ISO dates, hex bytea...), md5'd, and the first 64 bits of the digests are
summed as numeric (order-independent), next to the exact row count. float4/float8 columns are
hashed through float4send()/float8send() because their text form differs between PostgreSQL <= 11
and >= 12.
"""

import argparse
import difflib
import json
import os
import re
import subprocess
import sys

import psycopg2
import psycopg2.extensions

SKIPPED_SCHEMA = "codacy_migration"  # the migration tool's own schema (its migration records)

# Make the text form of values independent of server configuration. search_path = pg_catalog makes
# every deparsed definition schema-qualify user objects the same way on both sides.
SESSION_SETTINGS = (
    ("TimeZone", "UTC"),
    ("DateStyle", "ISO, YMD"),
    ("IntervalStyle", "postgres"),
    ("bytea_output", "hex"),
    ("extra_float_digits", "3"),
    ("lc_monetary", "C"),
    ("search_path", "pg_catalog"),
    ("statement_timeout", "0"),
)

# The sections of a snapshot that diff() compares, in report order, with the noun used in reports.
# "info" is never compared.
SECTIONS = {"properties": "database property", "schemas": "schema", "extensions": "extension", "tables": "table",
            "sequences": "sequence", "large_objects": "large object", "indexes": "index",
            "constraints": "constraint", "views": "view", "functions": "function", "triggers": "trigger",
            "enums": "enum", "comments": "comment"}

# Relations in these schemas are never user data.
_USER_SCHEMA_FILTER = f"""
    n.nspname NOT IN ('pg_catalog', 'information_schema', '{SKIPPED_SCHEMA}')
    AND n.nspname !~ '^pg_(toast|temp_|toast_temp_)'
    AND (%(schemas)s::text[] IS NULL OR n.nspname = ANY (%(schemas)s::text[]))
"""

# --------------------------------------------------------------------------------------------
# Snapshot
# --------------------------------------------------------------------------------------------


def _connect(conn_params, dbname):
    params = dict(conn_params)
    params["dbname"] = dbname
    conn = psycopg2.connect(**params)
    # One read-only repeatable-read transaction: all counts and hashes see the same data.
    conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
    with conn.cursor() as cur:
        for name, value in SESSION_SETTINGS:
            cur.execute("SELECT set_config(%s, %s, false)", (name, value))
    return conn


def _rows(cur, query, params=None):
    cur.execute(query, params)
    return cur.fetchall()


def _not_extension_member(catalog, oid_column):
    """SQL condition: the object is not created by an extension (those come with CREATE EXTENSION)."""
    return ("NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = '%s'::regclass AND d.objid = %s "
            "AND d.deptype = 'e')" % (catalog, oid_column))


def _normalize(definition):
    """Collapse whitespace and drop a trailing semicolon: formatting is not a difference."""
    return re.sub(r"\s+", " ", definition or "").strip().rstrip(";").strip()


def _schemas(cur, params):
    return [row[0] for row in _rows(cur, """
        SELECT n.nspname FROM pg_namespace n WHERE """ + _USER_SCHEMA_FILTER + """ ORDER BY 1""", params)]


def _extensions(cur):
    return dict(_rows(cur, "SELECT extname, extversion FROM pg_extension"))


def _columns(cur, params, server_version):
    """{table: [[name, type, not null, default, identity, generated], ...]} in column order."""
    generated = "a.attgenerated::text" if server_version >= 120000 else "''"
    rows = _rows(cur, """
        SELECT format('%%I.%%I', n.nspname, c.relname), a.attname, format_type(a.atttypid, a.atttypmod),
               a.attnotnull, pg_get_expr(ad.adbin, ad.adrelid), a.attidentity::text, """ + generated + """,
               bt.typname
        FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_type t ON t.oid = a.atttypid
        -- the base type: domains over float8 are floats too
        JOIN pg_type bt ON bt.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
        LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
        WHERE c.relkind IN ('r', 'p', 'm') AND a.attnum > 0 AND NOT a.attisdropped
          AND """ + _USER_SCHEMA_FILTER + """
        ORDER BY 1, a.attnum""", params)
    columns = {}
    for table, name, type_, notnull, default, identity, gen, base in rows:
        columns.setdefault(table, []).append(
            {"name": name, "type": type_, "not_null": notnull, "default": default,
             "identity": identity or "", "generated": gen or "", "_base": base})
    return columns


def _value_expression(column):
    """SQL for one column inside the row hash: floats go through their exact binary form."""
    ident = '"%s"' % column["name"].replace('"', '""')
    base = column["_base"]
    if base in ("float4", "float8"):
        return "%ssend(t.%s)" % (base, ident)
    if base in ("_float4", "_float8"):
        # Arrays of floats: the dimensions plus each element's binary form, in order.
        element = base[1:]
        return (f"array_dims(t.{ident}) || ':' || (SELECT string_agg(coalesce(encode({element}send(e), 'hex'), "
                f"'NULL'), ',' ORDER BY o) FROM unnest(t.{ident}) WITH ORDINALITY AS u(e, o))")
    return "t.%s" % ident


def _table_content(cur, table, columns):
    """(row count, sum over rows of the first 64 bits of md5(row text) as a decimal string).

    A sum is independent of row order; with the count, an accidental collision is ~2^-64 per change.
    The query is a plain aggregate so that the server may run it as a parallel scan.
    """
    row = "ROW(%s)::text" % ", ".join(_value_expression(column) for column in columns) if columns else "'()'"
    # ONLY: rows of inheritance children and partitions are counted in their own table.
    cur.execute("SELECT count(*), coalesce(sum(('x' || left(md5(%s), 16))::bit(64)::bigint), 0) FROM ONLY %s t"
                % (row, table))
    count, total = cur.fetchone()
    return count, str(total)


def _tables(cur, params, server_version):
    columns = _columns(cur, params, server_version)
    tables = {}
    for table, kind, persistence, populated in _rows(cur, """
            SELECT format('%%I.%%I', n.nspname, c.relname), c.relkind::text, c.relpersistence::text,
                   c.relispopulated
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind IN ('r', 'p', 'm') AND """ + _USER_SCHEMA_FILTER + """
            ORDER BY 1""", params):
        cols = columns.get(table, [])
        entry = {"kind": kind, "persistence": persistence,
                 "columns": [{k: v for k, v in col.items() if not k.startswith("_")} for col in cols]}
        if kind == "m" and not populated:
            entry["rows"], entry["hash"] = None, "not populated"
        else:
            entry["rows"], entry["hash"] = _table_content(cur, table, cols)
        tables[table] = entry
    return tables


def _sequences(cur, params):
    sequences = {}
    for seq, data_type, start, minimum, maximum, increment, cycle, owned_by in _rows(cur, """
            SELECT format('%%I.%%I', n.nspname, c.relname), format_type(s.seqtypid, NULL), s.seqstart,
                   s.seqmin, s.seqmax, s.seqincrement, s.seqcycle,
                   (SELECT format('%%I.%%I.%%I', tn.nspname, tc.relname, a.attname)
                    FROM pg_depend d JOIN pg_class tc ON tc.oid = d.refobjid
                    JOIN pg_namespace tn ON tn.oid = tc.relnamespace
                    JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                    WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                      AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i'))
            FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid
            JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE """ + _USER_SCHEMA_FILTER + """
            ORDER BY 1""", params):
        cur.execute("SELECT last_value, is_called FROM %s" % seq)
        last_value, is_called = cur.fetchone()
        sequences[seq] = {"last_value": last_value, "is_called": is_called, "data_type": data_type,
                          "start": start, "min": minimum, "max": maximum, "increment": increment,
                          "cycle": cycle, "owned_by": owned_by}
    return sequences


def _large_objects(cur):
    # Keyed by oid: pg_dump preserves large object oids, and tables reference them by oid.
    rows = _rows(cur, """
        SELECT oid::text, md5(lo_get(oid)), pg_get_userbyid(lomowner),
               ARRAY(SELECT format('%s:%s%s', CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END,
                                   a.privilege_type, CASE WHEN a.is_grantable THEN '*' ELSE '' END)
                     FROM aclexplode(coalesce(lomacl, acldefault('L', lomowner))) a ORDER BY 1),
               obj_description(oid, 'pg_largeobject')
        FROM pg_largeobject_metadata ORDER BY oid""")
    return {"count": len(rows), "md5": {row[0]: row[1] for row in rows},
            "metadata": {oid: {"owner": owner, "grants": grants, "comment": comment}
                         for oid, _digest, owner, grants, comment in rows}}


def _properties(cur):
    """What travels of the database itself: encoding and locale, connection limit, grants (those of
    others than its owner, whose privileges are implicit), comment, and ALTER DATABASE / ALTER ROLE
    IN DATABASE settings. Its owner may legitimately differ (the target's admin may create it)."""
    encoding, collate, ctype, limit, grants, comment = _rows(cur, """
        SELECT pg_encoding_to_char(d.encoding), d.datcollate, d.datctype, d.datconnlimit,
               ARRAY(SELECT format('%s:%s%s', CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END,
                                   a.privilege_type, CASE WHEN a.is_grantable THEN '*' ELSE '' END)
                     FROM aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a
                     WHERE a.grantee <> d.datdba ORDER BY 1),
               shobj_description(d.oid, 'pg_database')
        FROM pg_database d WHERE d.datname = current_database()""")[0]
    settings = dict(_rows(cur, """
        SELECT coalesce(pg_get_userbyid(nullif(s.setrole, 0)), '(every role)'), s.setconfig
        FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase
        WHERE d.datname = current_database()"""))
    return {"encoding": encoding, "lc_collate": collate, "lc_ctype": ctype, "connection_limit": limit,
            "grants": grants, "comment": comment, "settings": settings}


def _indexes(cur, params):
    return {index: {"table": table, "valid": valid, "definition": _normalize(definition)}
            for index, table, valid, definition in _rows(cur, """
        SELECT format('%%I.%%I', n.nspname, ic.relname), format('%%I.%%I', n.nspname, c.relname),
               i.indisvalid, pg_get_indexdef(i.indexrelid)
        FROM pg_index i
        JOIN pg_class ic ON ic.oid = i.indexrelid
        JOIN pg_class c ON c.oid = i.indrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE """ + _USER_SCHEMA_FILTER, params)}


def _constraints(cur, params):
    # contype 'n' (NOT NULL as constraints, PostgreSQL 18+) is left out: attnotnull covers it.
    return {"%s.%s" % (owner, name): {"type": contype, "validated": validated, "definition": _normalize(definition)}
            for owner, name, contype, validated, definition in _rows(cur, """
        SELECT CASE WHEN c.conrelid <> 0 THEN format('%%I.%%I', n.nspname, r.relname)
                    ELSE format('%%I.%%I', n.nspname, t.typname) END,
               quote_ident(c.conname), c.contype::text, c.convalidated, pg_get_constraintdef(c.oid)
        FROM pg_constraint c
        JOIN pg_namespace n ON n.oid = c.connamespace
        LEFT JOIN pg_class r ON r.oid = c.conrelid
        LEFT JOIN pg_type t ON t.oid = c.contypid
        WHERE c.contype <> 'n' AND """ + _USER_SCHEMA_FILTER, params)}


# A qualifier: an identifier (plain or quoted) followed by a dot and not itself preceded by a dot.
_QUALIFIER = re.compile(r'(?<![\w."$])(?:"(?:[^"]|"")+"|[A-Za-z_][\w$]*)\.(?=["A-Za-z_])')


def _strip_qualifiers(definition):
    """PostgreSQL 16+ no longer qualifies column names in views over a single relation
    ("SELECT id FROM public.job" where 15 printed "SELECT job.id FROM public.job"). For such views
    both sides are compared without any qualifier; the referenced relation is recorded apart."""
    return _QUALIFIER.sub("", definition)


def _views(cur, params):
    views = {}
    query = """
            SELECT format('%%I.%%I', n.nspname, c.relname), c.relkind::text, pg_get_viewdef(c.oid, true),
                   ARRAY(SELECT DISTINCT format('%%I.%%I', rn.nspname, rc.relname)
                         FROM pg_rewrite rw
                         JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = rw.oid
                                         AND d.refclassid = 'pg_class'::regclass
                         JOIN pg_class rc ON rc.oid = d.refobjid
                         JOIN pg_namespace rn ON rn.oid = rc.relnamespace
                         WHERE rw.ev_class = c.oid AND d.refobjid <> c.oid
                         ORDER BY 1)
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind IN ('v', 'm') AND """ + _USER_SCHEMA_FILTER
    query += " AND " + _not_extension_member("pg_class", "c.oid")
    for view, kind, raw_definition, references in _rows(cur, query, params):
        definition = _normalize(raw_definition)
        if len(references) == 1:
            definition = _strip_qualifiers(definition)
        views[view] = {"kind": kind, "references": list(references), "definition": definition}
    return views


def _functions(cur, params):
    return {function: {"language": language, "result": result, "source_md5": digest}
            for function, language, result, digest in _rows(cur, """
        SELECT format('%%I.%%I(%%s)', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid)),
               l.lanname, pg_get_function_result(p.oid), md5(p.prosrc)
        FROM pg_proc p
        JOIN pg_namespace n ON n.oid = p.pronamespace
        JOIN pg_language l ON l.oid = p.prolang
        WHERE """ + _USER_SCHEMA_FILTER + " AND " + _not_extension_member("pg_proc", "p.oid"), params)}


def _triggers(cur, params):
    # PostgreSQL 11 prints EXECUTE PROCEDURE where 12 and later print the equivalent EXECUTE FUNCTION.
    return {"%s.%s" % (table, name): {"enabled": enabled,
                                      "definition": _normalize(definition).replace(" EXECUTE PROCEDURE ",
                                                                                   " EXECUTE FUNCTION ")}
            for table, name, enabled, definition in _rows(cur, """
        SELECT format('%%I.%%I', n.nspname, c.relname), quote_ident(t.tgname), t.tgenabled::text,
               pg_get_triggerdef(t.oid)
        FROM pg_trigger t
        JOIN pg_class c ON c.oid = t.tgrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE NOT t.tgisinternal AND """ + _USER_SCHEMA_FILTER, params)}


def _enums(cur, params):
    return {name: list(labels) for name, labels in _rows(cur, """
        SELECT format('%%I.%%I', n.nspname, t.typname),
               array_agg(e.enumlabel::text ORDER BY e.enumsortorder)
        FROM pg_type t
        JOIN pg_namespace n ON n.oid = t.typnamespace
        JOIN pg_enum e ON e.enumtypid = t.oid
        WHERE """ + _USER_SCHEMA_FILTER + " AND " + _not_extension_member("pg_type", "t.oid") + """
        GROUP BY 1""", params)}


def _comments(cur, params):
    """Comments on tables, views, sequences, indexes and their columns: {"schema.table[.column]": text}."""
    return dict(_rows(cur, """
        SELECT format('%%I.%%I', n.nspname, c.relname)
                   || CASE WHEN d.objsubid > 0 THEN '.' || quote_ident(a.attname) ELSE '' END,
               d.description
        FROM pg_description d
        JOIN pg_class c ON d.classoid = 'pg_class'::regclass AND c.oid = d.objoid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = d.objsubid
        WHERE """ + _USER_SCHEMA_FILTER, params))


def snapshot(conn_params, dbname, schemas=None):
    """Describe database `dbname` as a JSON-able dict (see SECTIONS); schemas restricts to those schemas.

    conn_params: psycopg2 keywords; anything missing comes from the libpq environment.
    """
    params = {"schemas": list(schemas) if schemas else None}
    conn = _connect(conn_params, dbname)
    try:
        with conn.cursor() as cur:
            server_version = conn.server_version
            extensions = _extensions(cur)
            snap = {
                "database": dbname,
                # Informational only, never compared: versions legitimately differ across servers.
                "info": {"server_version": server_version, "extension_versions": extensions},
                "properties": _properties(cur),
                "schemas": _schemas(cur, params),
                "extensions": sorted(extensions),
                "tables": _tables(cur, params, server_version),
                "sequences": _sequences(cur, params),
                "large_objects": _large_objects(cur),
                "indexes": _indexes(cur, params),
                "constraints": _constraints(cur, params),
                "views": _views(cur, params),
                "functions": _functions(cur, params),
                "triggers": _triggers(cur, params),
                "enums": _enums(cur, params),
                "comments": _comments(cur, params),
            }
        conn.rollback()
        return snap
    finally:
        conn.close()


# --------------------------------------------------------------------------------------------
# Diff
# --------------------------------------------------------------------------------------------
def _diff_values(where, a, b, labels):
    """Differences between two JSON values, recursing into dicts; lists and scalars compared whole."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b), key=str):
            if key not in b:
                out.append("%s %s: only in %s" % (where, key, labels[0]))
            elif key not in a:
                out.append("%s %s: only in %s" % (where, key, labels[1]))
            else:
                out += _diff_values("%s %s" % (where, key) if where else str(key), a[key], b[key], labels)
        return out
    if a != b:
        return ["%s: %s=%s, %s=%s" % (where, labels[0], _short(a), labels[1], _short(b))]
    return []


def _short(value, limit=300):
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else text[:limit] + "..."


def _diff_columns(table, a, b, labels):
    names_a = [col["name"] for col in a]
    names_b = [col["name"] for col in b]
    out = ["table %s: column %s only in %s" % (table, name, labels[0]) for name in names_a if name not in names_b]
    out += ["table %s: column %s only in %s" % (table, name, labels[1]) for name in names_b if name not in names_a]
    common_a = [name for name in names_a if name in names_b]
    common_b = [name for name in names_b if name in names_a]
    if common_a != common_b:
        out.append("table %s: column order differs: %s=%s, %s=%s" % (table, labels[0], common_a, labels[1], common_b))
    by_name_b = {col["name"]: col for col in b}
    for col in a:
        if col["name"] in by_name_b:
            out += _diff_values("table %s column %s" % (table, col["name"]), col, by_name_b[col["name"]], labels)
    return out


def _diff_tables(a, b, labels):
    out = []
    for table in sorted(set(a) | set(b)):
        if table not in b or table not in a:
            out.append("table %s: only in %s" % (table, labels[0] if table in a else labels[1]))
            continue
        ta, tb = a[table], b[table]
        column_differences = _diff_columns(table, ta["columns"], tb["columns"], labels)
        out += column_differences
        for field in ("kind", "persistence"):
            if ta[field] != tb[field]:
                out.append("table %s: %s %s=%s, %s=%s" % (table, field, labels[0], ta[field], labels[1], tb[field]))
        if ta["rows"] != tb["rows"]:
            out.append("table %s: row count %s=%s, %s=%s" % (table, labels[0], ta["rows"], labels[1], tb["rows"]))
        elif ta["hash"] != tb["hash"] and not column_differences:
            # (with different columns the row texts differ anyway: the column lines say why)
            out.append("table %s: same row count (%s) but content differs" % (table, ta["rows"]))
    return out


def diff(a, b, ignore=(), labels=("source", "target")):
    """Human-readable differences between snapshots a and b; an empty list means equal.

    ignore: section names (see SECTIONS) to leave out, e.g. ("views",) when deparsed view text is
    known to differ between two major versions.
    """
    unknown = set(ignore) - set(SECTIONS)
    if unknown:
        raise ValueError("unknown section(s) to ignore: %s" % ", ".join(sorted(unknown)))
    out = []
    for section, noun in SECTIONS.items():
        if section in ignore:
            continue
        sa, sb = a.get(section), b.get(section)
        if section == "tables":
            out += _diff_tables(sa or {}, sb or {}, labels)
        elif section in ("schemas", "extensions"):
            out += ["%s %s: only in %s" % (noun, name, labels[0]) for name in sa if name not in sb]
            out += ["%s %s: only in %s" % (noun, name, labels[1]) for name in sb if name not in sa]
        elif section == "large_objects":
            if sa["count"] != sb["count"]:
                out.append("large objects: count %s=%s, %s=%s" % (labels[0], sa["count"], labels[1], sb["count"]))
            out += _diff_values("large object", sa["md5"], sb["md5"], labels)
            common = set(sa["metadata"]) & set(sb["metadata"])  # (the md5 line names those on one side)
            out += _diff_values("large object", {k: sa["metadata"][k] for k in common},
                                {k: sb["metadata"][k] for k in common}, labels)
        else:
            out += _diff_values(noun, sa, sb, labels)
    return out


def compare(src_params, src_db, dst_params, dst_db, schemas=None, ignore=()):
    """Snapshot both databases and return diff(source, target)."""
    return diff(snapshot(src_params, src_db, schemas), snapshot(dst_params, dst_db, schemas), ignore=ignore)


# --------------------------------------------------------------------------------------------
# Schema dump
# --------------------------------------------------------------------------------------------
def _newest_pg_dump():
    """The newest pg_dump on this machine (it must be at least as new as both servers)."""
    import glob
    candidates = glob.glob("/usr/lib/postgresql/*/bin/pg_dump")
    if not candidates:
        raise RuntimeError("no pg_dump in /usr/lib/postgresql/*/bin: install postgresql-client")
    return max(candidates, key=lambda path: int(path.split("/")[-3]))


# pg_dump's plain output starts every object with a header such as
# "-- Name: b_star; Type: TABLE; Schema: public; Owner: postgres" between two "--" lines.
_DUMP_HEADER = re.compile(r"(?m)^--\n-- Name: (.*?); Type: (.*?); Schema: (.*?)(?:; Owner: .*?)?(?:; Tablespace: .*?)?\n--\n")
# Session settings, comments and psql meta-commands (\\restrict's random key) are not definitions.
_NOT_DEFINITIONS = ("--", "SET ", "SELECT pg_catalog.set_config(", "\\")


def schema_dump(conn_params, dbname, schemas=None):
    """`pg_dump --schema-only` of `dbname` (without the migration records' schema), normalised:
    {"TYPE schema.name": [its statements, ...]}, everything pg_dump writes for an object (its DDL,
    owner, grants, comments, security labels) without blank lines, comments and session settings.
    The password travels in the environment, never argv."""
    env = dict(os.environ, PGPASSWORD=str(conn_params.get("password") or ""), PGHOST=str(conn_params["host"]),
               PGPORT=str(conn_params["port"]), PGUSER=str(conn_params["user"]), PGDATABASE=dbname)
    argv = [_newest_pg_dump(), "--schema-only", "--no-password", "--exclude-schema=" + SKIPPED_SCHEMA]
    argv += ["--schema=%s" % schema for schema in schemas or ()]
    parts = _DUMP_HEADER.split(subprocess.run(argv, env=env, capture_output=True, text=True, check=True).stdout)
    entries = {}
    for name, kind, schema, body in zip(parts[1::4], parts[2::4], parts[3::4], parts[4::4]):
        lines = [line.rstrip() for line in body.splitlines() if line.strip() and not line.startswith(_NOT_DEFINITIONS)]
        key = "%s %s" % (kind, name if schema == "-" else "%s.%s" % (schema, name))
        entries.setdefault(key, []).append("\n".join(lines))
    return {key: sorted(bodies) for key, bodies in entries.items()}


def dump_diff(src_params, src_db, dst_params, dst_db, schemas=None, labels=("source", "target")):
    """The differences between the two databases' schema dumps, one line per object with the lines
    that differ (empty when equal)."""
    a, b = schema_dump(src_params, src_db, schemas), schema_dump(dst_params, dst_db, schemas)
    out = []
    for key in sorted(set(a) | set(b)):
        if key not in b or key not in a:
            out.append("schema dump %s: only in %s" % (key, labels[0] if key in a else labels[1]))
        elif a[key] != b[key]:
            changed = [line for line in difflib.unified_diff("\n".join(a[key]).splitlines(),
                                                             "\n".join(b[key]).splitlines(), lineterm="", n=0)
                       if line[:1] in "+-" and not line.startswith(("+++", "---"))]
            out.append("schema dump %s: differs: %s" % (key, _short(" | ".join(changed))))
    return out


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------
def _endpoint(conninfo, password_env, option):
    """psycopg2 keywords from a libpq conninfo string that must not hold a password."""
    try:
        params = psycopg2.extensions.parse_dsn(conninfo) if conninfo else {}
    except psycopg2.ProgrammingError as exc:
        raise SystemExit("error: %s is not a valid conninfo string: %s" % (option, exc)) from None
    if "password" in params:
        raise SystemExit("error: %s must not contain a password; use %s, PGPASSWORD or PGPASSFILE"
                         % (option, password_env))
    if os.environ.get(password_env):
        params["password"] = os.environ[password_env]
    params.pop("dbname", None)
    return params


def _parse_map(pairs):
    mapping = {}
    for pair in pairs:
        src, sep, dst = pair.partition(":")
        if not sep or not src or not dst:
            raise SystemExit("error: --map expects SOURCE_DB:TARGET_DB, got %r" % pair)
        mapping[src] = dst
    return mapping


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m tests.support.compare",
        description="Compare databases on two PostgreSQL servers (content, sequences, schema objects). "
                    "Passwords come from SOURCE_PGPASSWORD / TARGET_PGPASSWORD, PGPASSWORD or PGPASSFILE.")
    parser.add_argument("--source", default="", help="libpq conninfo of the source, without password")
    parser.add_argument("--target", help="libpq conninfo of the target, without password "
                                         "(omit with --json to print source snapshots only)")
    parser.add_argument("--map", action="append", default=[], metavar="SRC:DST",
                        help="compare source database SRC with target database DST (repeatable)")
    parser.add_argument("--schema", action="append", default=[], help="restrict to this schema (repeatable)")
    parser.add_argument("--ignore", action="append", default=[], choices=list(SECTIONS),
                        help="leave a section out of the comparison (repeatable)")
    parser.add_argument("--json", action="store_true", help="print the snapshots as JSON")
    parser.add_argument("databases", nargs="+", help="source database names")
    args = parser.parse_args(argv)
    if args.target is None and not args.json:
        parser.error("--target is required unless --json")
    source = _endpoint(args.source, "SOURCE_PGPASSWORD", "--source")
    target = _endpoint(args.target, "TARGET_PGPASSWORD", "--target") if args.target is not None else None
    mapping = _parse_map(args.map)
    schemas = args.schema or None

    differences, snapshots = [], {}
    try:
        for src_db in args.databases:
            dst_db = mapping.get(src_db, src_db)
            snap_src = snapshot(source, src_db, schemas)
            entry = snapshots.setdefault(src_db, {"source": snap_src})
            if target is None:
                continue
            snap_dst = snapshot(target, dst_db, schemas)
            entry["target"] = snap_dst
            found = diff(snap_src, snap_dst, ignore=args.ignore)
            entry["differences"] = found
            label = src_db if src_db == dst_db else "%s -> %s" % (src_db, dst_db)
            differences += ["%s: %s" % (label, line) for line in found]
            if not args.json:
                print("%s: %s" % (label, "equal" if not found else "%d difference(s)" % len(found)))
    except psycopg2.Error as exc:
        print("error: %s" % str(exc).strip(), file=sys.stderr)
        return 2
    if args.json:
        json.dump(snapshots, sys.stdout, indent=2, sort_keys=True, default=str)
        print()
    else:
        for line in differences:
            print(line)
    return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main())
