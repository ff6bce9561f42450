# -*- coding: utf-8 -*-
# Copyright: Contributors to the codacy.selfhosted collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Database-level properties that pg_dump only emits with --create, so a restore into an
existing database would drop them: ALTER DATABASE ... SET (also per role), the comment, the
grants and the connection limit. Read from the source, applied to the target."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

try:
    from psycopg2 import sql
except ImportError:  # reported by the modules through connection.HAS_PSYCOPG2
    sql = None

from ansible_collections.codacy.selfhosted.plugins.module_utils.catalog import (
    apply_grants, fetchall, grants_query)

# Settings whose value is a list of quoted names: pg_dump splits and quotes them element by
# element (variable_is_guc_list_quote() in PostgreSQL); quoting the whole string would make
# e.g. search_path one schema named '"$user", public'.
LIST_QUOTED_SETTINGS = frozenset(("local_preload_libraries", "search_path", "session_preload_libraries",
                                  "shared_preload_libraries", "temp_tablespaces", "unix_socket_directories"))

PROPERTIES_SQL = """
SELECT d.datconnlimit, shobj_description(d.oid, 'pg_database'), d.datacl IS NOT NULL
  FROM pg_database d WHERE d.datname = current_database()
"""

SETTINGS_SQL = """
SELECT CASE WHEN s.setrole = 0 THEN NULL ELSE pg_get_userbyid(s.setrole) END, s.setconfig
  FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase
 WHERE d.datname = current_database() ORDER BY 1 NULLS FIRST
"""

DB_GRANTS = grants_query("datacl", "pg_database WHERE datname = current_database()")


def split_guc_list(value):
    """Split a stored list setting ('"$user", public') into its names, like SplitGUCList()."""
    names, current, quoted, i = [], "", False, 0
    while i < len(value):
        char = value[i]
        if quoted:
            if char == '"' and value[i + 1:i + 2] == '"':
                current += '"'
                i += 1
            elif char == '"':
                quoted = False
            else:
                current += char
        elif char == '"':
            quoted = True
        elif char == ",":
            names.append(current.strip())
            current = ""
        else:
            current += char
        i += 1
    if current.strip() or names:
        names.append(current.strip())
    return names


def setting_value(name, value):
    """The SQL for the value of `SET name TO ...` as pg_dump writes it."""
    if name.lower() in LIST_QUOTED_SETTINGS:
        return sql.SQL(", ").join(sql.Literal(part) for part in split_guc_list(value))
    return sql.Literal(value)


def read(conn):
    connlimit, comment, has_acl = fetchall(conn, PROPERTIES_SQL)[0]
    settings = []
    for role, config in fetchall(conn, SETTINGS_SQL):
        for item in config or []:
            name, value = item.split("=", 1)
            settings.append((role, name, value))
    return {"connection_limit": connlimit, "comment": comment,
            "grants": fetchall(conn, DB_GRANTS) if has_acl else None, "settings": settings}


def roles_used(props):
    roles = set(setting[0] for setting in props["settings"] if setting[0])
    roles.update(grant[0] for grant in props["grants"] or [] if grant[0])
    return roles


def apply(conn, database, props):
    """Make the target database's properties those of the source (settings replaced, not merged)."""
    db = sql.Identifier(database)
    with conn.cursor() as cur:
        cur.execute(sql.SQL("ALTER DATABASE {} RESET ALL").format(db))
        for role, _config in fetchall(conn, SETTINGS_SQL):
            if role:
                cur.execute(sql.SQL("ALTER ROLE {} IN DATABASE {} RESET ALL").format(sql.Identifier(role), db))
        for role, name, value in props["settings"]:
            prefix = sql.SQL("ALTER DATABASE {}").format(db) if role is None else \
                sql.SQL("ALTER ROLE {} IN DATABASE {}").format(sql.Identifier(role), db)
            cur.execute(sql.SQL("{} SET {} TO {}").format(prefix, sql.Identifier(name), setting_value(name, value)))
        cur.execute(sql.SQL("ALTER DATABASE {} CONNECTION LIMIT {}").format(db, sql.Literal(props["connection_limit"])))
        cur.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(db, sql.Literal(props["comment"])))
        if props["grants"] is not None:
            on_db = sql.SQL("DATABASE {}").format(db)
            for grantee, _privilege, _grantable in fetchall(conn, DB_GRANTS):
                cur.execute(sql.SQL("REVOKE ALL ON {} FROM {}").format(
                    on_db, sql.SQL("PUBLIC") if grantee is None else sql.Identifier(grantee)))
            cur.execute(sql.SQL("REVOKE ALL ON {} FROM PUBLIC").format(on_db))
            apply_grants(cur, on_db, props["grants"])
