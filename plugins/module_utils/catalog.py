# -*- coding: utf-8 -*-
# Copyright: Contributors to the codacy.selfhosted collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Catalog questions asked before anything is written: who is this server, what does this
database hold, what would a schema restriction lose, which roles are missing, who else is
connected. Also the one destructive step, clearing a target we own, kept here beside the
query that decides what "content" is so that both use the same definition."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

try:
    from psycopg2 import sql
except ImportError:  # reported by the modules through connection.HAS_PSYCOPG2
    sql = None

# Objects below this OID are built in (initdb made them); the collection's one definition.
FIRST_NORMAL_OID = 16384

SERVER_SQL = """
SELECT current_setting('server_version'), current_setting('server_version_num')::int,
       current_user, pg_postmaster_start_time()::text
"""

DATABASE_SQL = """
SELECT d.oid, pg_encoding_to_char(d.encoding), d.datcollate, d.datctype,
       pg_get_userbyid(d.datdba), pg_database_size(d.oid)
  FROM pg_database d WHERE d.datname = current_database()
"""

# Objects of a database that live in no schema, which dropping the schemas leaves behind: (kind,
# name, the statement that drops it, whether it must go before the schemas). Those an extension
# created go with the extension.
DATABASE_WIDE_SQL = """
WITH ext AS (SELECT classid, objid FROM pg_depend WHERE deptype = 'e'),
     obj(kind, name, drop_sql, early, catalog, oid) AS (
  SELECT 'event trigger', quote_ident(evtname), 'DROP EVENT TRIGGER IF EXISTS ' || quote_ident(evtname), true,
         'pg_event_trigger'::regclass, oid FROM pg_event_trigger
  UNION ALL
  -- Its replication slot (on another server) is left alone: pg_dump creates subscriptions unconnected.
  SELECT 'subscription', quote_ident(subname), format('ALTER SUBSCRIPTION %%1$I DISABLE; ALTER SUBSCRIPTION %%1$I'
         ' SET (slot_name = NONE); DROP SUBSCRIPTION %%1$I', subname), true, 'pg_subscription'::regclass, oid
    FROM pg_subscription WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())
  UNION ALL
  SELECT 'publication', quote_ident(pubname), 'DROP PUBLICATION IF EXISTS ' || quote_ident(pubname), true,
         'pg_publication'::regclass, oid FROM pg_publication
  UNION ALL
  SELECT 'foreign server', quote_ident(srvname), 'DROP SERVER IF EXISTS ' || quote_ident(srvname) || ' CASCADE', true,
         'pg_foreign_server'::regclass, oid FROM pg_foreign_server
  UNION ALL
  SELECT 'foreign-data wrapper', quote_ident(fdwname),
         'DROP FOREIGN DATA WRAPPER IF EXISTS ' || quote_ident(fdwname) || ' CASCADE', true,
         'pg_foreign_data_wrapper'::regclass, oid FROM pg_foreign_data_wrapper
  UNION ALL
  SELECT 'cast', format('(%%s AS %%s)', format_type(castsource, NULL), format_type(casttarget, NULL)),
         format('DROP CAST IF EXISTS (%%s AS %%s) CASCADE', format_type(castsource, NULL), format_type(casttarget, NULL)),
         false, 'pg_cast'::regclass, oid FROM pg_cast
  UNION ALL
  SELECT 'access method', quote_ident(amname), 'DROP ACCESS METHOD IF EXISTS ' || quote_ident(amname) || ' CASCADE',
         false, 'pg_am'::regclass, oid FROM pg_am
  UNION ALL
  SELECT 'language', quote_ident(lanname), 'DROP LANGUAGE IF EXISTS ' || quote_ident(lanname) || ' CASCADE', false,
         'pg_language'::regclass, oid FROM pg_language
  UNION ALL
  SELECT 'transform', format('FOR %%s LANGUAGE %%I', format_type(t.trftype, NULL), l.lanname),
         format('DROP TRANSFORM IF EXISTS FOR %%s LANGUAGE %%I CASCADE', format_type(t.trftype, NULL), l.lanname),
         false, 'pg_transform'::regclass, t.oid FROM pg_transform t JOIN pg_language l ON l.oid = t.trflang
)
SELECT kind, name, drop_sql, early FROM obj
 WHERE oid >= %(first)s AND (catalog, oid) NOT IN (SELECT classid, objid FROM ext)
   -- What runs a function of our records schema goes with it (DROP SCHEMA ... CASCADE), like the schema.
   AND NOT EXISTS (SELECT 1 FROM pg_depend d JOIN pg_proc p ON p.oid = d.refobjid
                    WHERE d.classid = obj.catalog AND d.objid = obj.oid AND d.refclassid = 'pg_proc'::regclass
                      AND p.pronamespace = (SELECT oid FROM pg_namespace WHERE nspname = %(skip)s))
 ORDER BY early DESC, kind, name
"""

# What counts as content of a database: anything a restore would collide with or that a
# refresh would remove. Extensions alone are not content (pg_dump emits CREATE EXTENSION IF
# NOT EXISTS), nor is the empty `public` schema every new database has. The objects outside
# schemas (DATABASE_WIDE_SQL) are content too.
CONTENT_SQL = """
SELECT kind, name FROM (
  SELECT CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'table' WHEN 'v' THEN 'view'
              WHEN 'm' THEN 'materialized view' WHEN 'S' THEN 'sequence'
              WHEN 'f' THEN 'foreign table' ELSE 'relation' END AS kind,
         quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS name
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND c.oid >= %(first)s
     AND n.nspname <> %(skip)s AND n.nspname NOT LIKE 'pg\\_%%' AND n.nspname <> 'information_schema'
  UNION ALL
  SELECT 'function', quote_ident(n.nspname) || '.' || quote_ident(p.proname)
    FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
   WHERE p.oid >= %(first)s AND n.nspname <> %(skip)s AND n.nspname NOT LIKE 'pg\\_%%'
     AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                     AND d.objid = p.oid AND d.deptype = 'e')
  UNION ALL
  SELECT 'schema', quote_ident(n.nspname) FROM pg_namespace n
   WHERE n.oid >= %(first)s AND n.nspname NOT IN (%(skip)s, 'public') AND n.nspname NOT LIKE 'pg\\_%%'
     AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_namespace'::regclass
                     AND d.objid = n.oid AND d.deptype = 'e')
  UNION ALL
  SELECT 'large object', oid::text FROM pg_largeobject_metadata
) AS content ORDER BY 1, 2
"""

# Other sessions on this database. Our own (application_name codacy_db_migrate: this
# collection's connections, e.g. a preflight's, still ending) do not count. A user that is neither
# superuser nor in pg_read_all_stats sees other roles' sessions without their backend_type: such a
# session cannot be ruled out and counts, unless it has no role at all (a server process such as
# an autovacuum worker: every client session has a role).
SESSIONS_SQL = """
SELECT pid, coalesce(usename, '?'), coalesce(application_name, ''), coalesce(client_addr::text, 'local'),
       coalesce(state, ''), backend_type IS NULL, current_user
  FROM pg_stat_activity
 WHERE datname = current_database() AND pid <> pg_backend_pid()
   AND (backend_type = 'client backend' OR (backend_type IS NULL AND usesysid IS NOT NULL))
   AND application_name IS DISTINCT FROM 'codacy_db_migrate'
 ORDER BY pid
"""

SEES_ALL_SESSIONS_SQL = """
SELECT rolsuper OR pg_has_role(current_user, 'pg_read_all_stats', 'USAGE') FROM pg_roles WHERE rolname = current_user
"""

# Connections this user may still open: to the server (superusers may also use the reserved
# slots), to this database and as this role (the two limits do not apply to superusers).
CONNECTION_ROOM_SQL = """
SELECT current_setting('max_connections')::int
       - (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')
       - CASE WHEN r.rolsuper THEN 0 ELSE current_setting('superuser_reserved_connections')::int END,
       CASE WHEN r.rolsuper OR d.datconnlimit < 0 THEN NULL
            ELSE d.datconnlimit - (SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()) END,
       CASE WHEN r.rolsuper OR r.rolconnlimit < 0 THEN NULL
            ELSE r.rolconnlimit - (SELECT count(*) FROM pg_stat_activity WHERE usename = current_user) END
  FROM pg_roles r, pg_database d WHERE r.rolname = current_user AND d.datname = current_database()
"""

SYSTEM_IDENTIFIER_SQL = "SELECT system_identifier::text FROM pg_control_system()"

# Roles the restored objects refer to: owners and grantees recorded in pg_shdepend, plus
# owners of objects owned by the bootstrap superuser, which pg_shdepend does not record.
REFERENCED_ROLES_SQL = """
SELECT DISTINCT r.rolname FROM pg_shdepend s JOIN pg_roles r ON r.oid = s.refobjid
 WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
   AND s.refclassid = 'pg_authid'::regclass AND s.deptype IN ('o', 'a', 'r')
UNION
SELECT pg_get_userbyid(c.relowner) FROM pg_class c
 WHERE c.oid >= %(first)s AND c.relnamespace IN (SELECT oid FROM pg_namespace WHERE nspname <> %(skip)s)
UNION
SELECT pg_get_userbyid(n.nspowner) FROM pg_namespace n
 WHERE n.oid >= %(first)s AND n.nspname <> %(skip)s AND n.nspname NOT LIKE 'pg\\_%%'
"""


def grants_query(acl_column, catalog_and_condition):
    """(grantee or NULL for PUBLIC, privilege, grantable) of one object's ACL, e.g.
    grants_query("nspacl", "pg_namespace WHERE nspname = 'public'"). Arguments are fixed SQL."""
    return ("SELECT CASE WHEN a.grantee = 0 THEN NULL ELSE pg_get_userbyid(a.grantee) END,"
            " a.privilege_type, a.is_grantable"
            " FROM (SELECT %s AS acl FROM %s) o, aclexplode(o.acl) a ORDER BY 1, 2"
            % (acl_column, catalog_and_condition))


EXTENSIONS_SQL = "SELECT extname FROM pg_extension WHERE extname <> 'plpgsql' ORDER BY 1"

# Objects in the kept schemas that depend on objects in other user schemas (which a schema
# restriction would not carry). Rules, defaults, triggers and policies have no schema of
# their own: they belong to the schema of their table.
OUTSIDE_DEPENDENCIES_SQL = """
WITH deps AS (
  SELECT o.identity AS what, r.type AS ref_type, r.identity AS ref,
         coalesce(o.schema, (SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                              WHERE c.oid = CASE d.classid
                                WHEN 'pg_rewrite'::regclass THEN (SELECT ev_class FROM pg_rewrite WHERE oid = d.objid)
                                WHEN 'pg_attrdef'::regclass THEN (SELECT adrelid FROM pg_attrdef WHERE oid = d.objid)
                                WHEN 'pg_trigger'::regclass THEN (SELECT tgrelid FROM pg_trigger WHERE oid = d.objid)
                                WHEN 'pg_policy'::regclass THEN (SELECT polrelid FROM pg_policy WHERE oid = d.objid)
                              END)) AS schema,
         r.schema AS ref_schema
    FROM pg_depend d
    CROSS JOIN LATERAL pg_identify_object(d.classid, d.objid, d.objsubid) o
    CROSS JOIN LATERAL pg_identify_object(d.refclassid, d.refobjid, d.refobjsubid) r
   WHERE d.objid >= %(first)s AND d.refobjid >= %(first)s AND d.deptype IN ('n', 'a')
     AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.deptype = 'e'
                     AND e.classid = d.refclassid AND e.objid = d.refobjid)
)
SELECT DISTINCT what, ref_type || ' ' || ref FROM deps
 WHERE schema = ANY(%(kept)s) AND ref_schema IS NOT NULL AND NOT (ref_schema = ANY(%(kept)s))
   AND ref_schema NOT LIKE 'pg\\_%%' AND ref_schema <> 'information_schema'
 ORDER BY 1, 2
"""


def fetchall(conn, query, args=None):
    with conn.cursor() as cur:
        cur.execute(query, args)
        return cur.fetchall()


def server_info(conn):
    version, version_num, user, started = fetchall(conn, SERVER_SQL)[0]
    info = {"version": version.split()[0], "version_num": version_num,
            "major": version_num // 10000, "user": user, "system_identifier": None, "started": started}
    try:  # (the connection is in autocommit mode: a failed statement leaves nothing to roll back)
        info["system_identifier"] = fetchall(conn, SYSTEM_IDENTIFIER_SQL)[0][0]
    except Exception:  # pylint: disable=broad-except
        pass  # pg_control_system() is restricted on some managed services: the caller compares start times
    return info


def database_info(conn):
    oid, encoding, collate, ctype, owner, size = fetchall(conn, DATABASE_SQL)[0]
    return {"oid": oid, "encoding": encoding, "lc_collate": collate, "lc_ctype": ctype,
            "owner": owner, "size": size}


def content(conn, skip_schema):
    """[(kind, name)] of what the database holds outside our records schema."""
    args = {"first": FIRST_NORMAL_OID, "skip": skip_schema}
    return sorted(fetchall(conn, CONTENT_SQL, args) + [row[:2] for row in fetchall(conn, DATABASE_WIDE_SQL, args)])


def describe_content(items, limit=5):
    shown = ", ".join("%s %s" % item for item in items[:limit])
    more = len(items) - limit
    return shown + (" and %d more" % more if more > 0 else "")


def other_sessions(conn):
    """Sentences describing the other sessions connected to this database (see SESSIONS_SQL)."""
    sessions = []
    for pid, user, application, address, state, hidden, me in fetchall(conn, SESSIONS_SQL):
        if hidden:
            sessions.append("pid %s %s (%s): a session this user cannot see the details of (GRANT "
                            "pg_read_all_stats TO %s, or connect as a superuser)" % (pid, user, application or "?", me))
        else:
            sessions.append("pid %s %s@%s (%s) %s" % (pid, user, address, application, state))
    return sessions


def sees_all_sessions(conn):
    """True when this user can tell every session's kind and origin (superuser or pg_read_all_stats)."""
    return fetchall(conn, SEES_ALL_SESSIONS_SQL)[0][0]


def connection_shortfall(conn, endpoint, needed, what):
    """A sentence when `endpoint` cannot take `needed` more connections (`what` says why), else None."""
    server, database, role = fetchall(conn, CONNECTION_ROOM_SQL)[0]
    for room, limit in ((server, "max_connections of the server"), (database, "the connection limit of the database"),
                        (role, "the connection limit of role %s" % endpoint.user)):
        if room is not None and room < needed:
            return ("%s %s allows %d more connections (%s) but the migration opens up to %d (%s): lower jobs, "
                    "or raise the limit" % (endpoint.role, endpoint.address, max(room, 0), limit, needed, what))
    return None


def missing_roles(source_conn, target_conn, skip_schema):
    referenced = set(r[0] for r in fetchall(source_conn, REFERENCED_ROLES_SQL,
                                            {"first": FIRST_NORMAL_OID, "skip": skip_schema}))
    present = set(r[0] for r in fetchall(target_conn, "SELECT rolname FROM pg_roles"))
    return sorted(referenced - present)


def schema_restriction_losses(source_conn, target_conn, schemas):
    """What `pg_dump --schema ...` would silently leave behind, as sentences."""
    losses = []
    present = set(r[0] for r in fetchall(source_conn, "SELECT nspname FROM pg_namespace"))
    absent = [s for s in schemas if s not in present]
    if absent:
        losses.append("schemas %s do not exist in the source database" % ", ".join(absent))
    target_ext = set(r[0] for r in fetchall(target_conn, EXTENSIONS_SQL))
    lost_ext = [e[0] for e in fetchall(source_conn, EXTENSIONS_SQL) if e[0] not in target_ext]
    if lost_ext:
        losses.append("extensions %s (a schema restriction dumps no extensions; create them in the "
                      "target database first)" % ", ".join(lost_ext))
    large_objects = fetchall(source_conn, "SELECT count(*) FROM pg_largeobject_metadata")[0][0]
    if large_objects:
        losses.append("%d large objects (a schema restriction dumps none)" % large_objects)
    deps = fetchall(source_conn, OUTSIDE_DEPENDENCIES_SQL, {"first": FIRST_NORMAL_OID, "kept": list(schemas)})
    if deps:
        shown = "; ".join("%s needs %s" % row for row in deps[:5])
        losses.append("objects that the kept schemas depend on: %s%s"
                      % (shown, " and %d more" % (len(deps) - 5) if len(deps) > 5 else ""))
    return losses


# Default privileges that apply in every schema, and the statements that give them back their
# built-in value (then PostgreSQL removes the entry): the owner has every privilege, PUBLIC may
# execute functions and use types.
GLOBAL_DEFAULT_PRIVILEGES_SQL = """
SELECT pg_get_userbyid(a.defaclrole), a.defaclobjtype,
       array_agg(DISTINCT CASE WHEN x.grantee = 0 THEN NULL ELSE pg_get_userbyid(x.grantee) END)
  FROM pg_default_acl a, aclexplode(a.defaclacl) x WHERE a.defaclnamespace = 0
 GROUP BY 1, 2
"""
DEFAULT_PRIVILEGE_OBJECTS = {"r": "TABLES", "S": "SEQUENCES", "f": "FUNCTIONS", "T": "TYPES", "n": "SCHEMAS"}
PUBLIC_DEFAULTS = {"f": "EXECUTE", "T": "USAGE"}


def clear(conn, skip_schema):
    """Remove every object from a target database we own (everything a restore created: schemas,
    extensions, large objects, and the objects outside schemas such as publications, event
    triggers, subscriptions, foreign servers, casts), keeping our records schema and an empty
    `public` with its previous owner, privileges and comment. One transaction."""
    conn.autocommit = False
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_get_userbyid(nspowner), obj_description(oid, 'pg_namespace')"
                        " FROM pg_namespace WHERE nspname = 'public'")
            public = cur.fetchone()
            cur.execute(grants_query("nspacl", "pg_namespace WHERE nspname = 'public'"))
            public_grants = cur.fetchall()
            cur.execute(DATABASE_WIDE_SQL, {"first": FIRST_NORMAL_OID, "skip": skip_schema})
            outside = cur.fetchall()
            # Event triggers first, so that none fires while the rest is dropped.
            for _kind, _name, drop, early in outside:
                if early:
                    cur.execute(drop)
            cur.execute("SELECT extname FROM pg_extension WHERE extname <> 'plpgsql'")
            for (name,) in cur.fetchall():
                cur.execute(sql.SQL("DROP EXTENSION IF EXISTS {} CASCADE").format(sql.Identifier(name)))
            cur.execute("SELECT nspname FROM pg_namespace WHERE (oid >= %s OR nspname = 'public')"
                        " AND nspname <> %s AND nspname NOT LIKE 'pg\\_%%'", (FIRST_NORMAL_OID, skip_schema))
            for (name,) in cur.fetchall():
                cur.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))
            for _kind, _name, drop, early in outside:
                if not early:
                    cur.execute(drop)
            cur.execute("SELECT lo_unlink(oid) FROM pg_largeobject_metadata")
            reset_global_default_privileges(cur)
            if public is not None:
                owner, comment = public
                cur.execute(sql.SQL("CREATE SCHEMA public AUTHORIZATION {}").format(sql.Identifier(owner)))
                cur.execute("REVOKE ALL ON SCHEMA public FROM PUBLIC")
                apply_grants(cur, sql.SQL("SCHEMA public"), public_grants)
                cur.execute("COMMENT ON SCHEMA public IS %s", (comment,))
        conn.commit()
    except Exception:
        conn.rollback()
        raise
    finally:
        conn.autocommit = True


def reset_global_default_privileges(cur):
    cur.execute(GLOBAL_DEFAULT_PRIVILEGES_SQL)
    for role, kind, grantees in cur.fetchall():
        prefix = sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {}").format(sql.Identifier(role))
        objects = sql.SQL(DEFAULT_PRIVILEGE_OBJECTS[kind])
        for grantee in grantees:
            cur.execute(sql.SQL("{} REVOKE ALL ON {} FROM {}").format(
                prefix, objects, sql.SQL("PUBLIC") if grantee is None else sql.Identifier(grantee)))
        cur.execute(sql.SQL("{} GRANT ALL ON {} TO {}").format(prefix, objects, sql.Identifier(role)))
        if kind in PUBLIC_DEFAULTS:
            cur.execute(sql.SQL("{} GRANT {} ON {} TO PUBLIC").format(prefix, sql.SQL(PUBLIC_DEFAULTS[kind]), objects))


def apply_grants(cur, on_object, grants):
    """GRANT each (grantee or None for PUBLIC, privilege, grantable) on `on_object` (sql.SQL)."""
    for grantee, privilege, grantable in grants:
        cur.execute(sql.SQL("GRANT {} ON {} TO {}{}").format(
            sql.SQL(privilege), on_object,
            sql.SQL("PUBLIC") if grantee is None else sql.Identifier(grantee),
            sql.SQL(" WITH GRANT OPTION") if grantable else sql.SQL("")))
