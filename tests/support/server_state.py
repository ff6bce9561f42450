"""Everything a PostgreSQL server holds that a migration could change, as JSON, and its checksum.

    python -m tests.support.server_state save FILE     # the state of the server into FILE (0600)
    python -m tests.support.server_state compare FILE  # exit 0 when the server is as in FILE, else 1, a diff

Run from the collection root (it uses compare.py for the content of each database). The Molecule
scenario `refusals` uses it to prove that a refused run left the target server untouched.
The connection comes from the libpq environment (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGSSLMODE);
the user must be a superuser (it reads every database, large object and role).

The state covers the databases (owner, encoding, locale, ACL, connection limit, comment, settings),
the roles (attributes and memberships), and in every database that accepts connections: compare.py's
snapshot (per-table row counts and content hashes, sequences, extensions, large objects, indexes,
constraints, views, functions, triggers, enums, comments) plus every user object of the catalog with
its storage file (so a TRUNCATE, a table rewrite or anything created in any schema -- including the
migration module's own `codacy_migration`, which compare.py leaves out -- shows), foreign servers,
foreign tables and user mappings. Statistics (which reads change) and temporary schemas (which
any session may leave behind) are not part of it.
"""

import difflib
import hashlib
import json
import os
import sys

import psycopg2

from tests.support import compare

FIRST_USER_OID = 16384

SERVER_SQL = {
    "databases": """
        SELECT d.datname, pg_get_userbyid(d.datdba), pg_encoding_to_char(d.encoding), d.datcollate,
               d.datctype, d.datistemplate, d.datallowconn, d.datconnlimit, d.datacl::text,
               shobj_description(d.oid, 'pg_database'),
               (SELECT array_agg(coalesce(r.rolname, '*') || ':' || array_to_string(s.setconfig, ',')
                                 ORDER BY 1)
                  FROM pg_db_role_setting s LEFT JOIN pg_roles r ON r.oid = s.setrole
                 WHERE s.setdatabase = d.oid)
          FROM pg_database d ORDER BY 1""",
    "roles": """
        SELECT r.rolname, r.rolsuper, r.rolinherit, r.rolcreaterole, r.rolcreatedb, r.rolcanlogin,
               r.rolreplication, r.rolbypassrls, r.rolconnlimit, r.rolvaliduntil::text,
               (SELECT array_agg(g.rolname ORDER BY g.rolname) FROM pg_auth_members m
                  JOIN pg_roles g ON g.oid = m.roleid WHERE m.member = r.oid)
          FROM pg_roles r ORDER BY 1""",
}

DATABASE_SQL = {
    "relations": """
        SELECT n.nspname, c.relname, c.relkind::text, c.relfilenode::text, pg_get_userbyid(c.relowner),
               c.relacl::text, c.relpersistence::text
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.oid >= %(first)s AND n.nspname !~ '^pg_(toast_)?temp_' ORDER BY 1, 2""",
    "schemas": """
        SELECT nspname, pg_get_userbyid(nspowner), nspacl::text FROM pg_namespace
         WHERE nspname !~ '^pg_(toast_)?temp_' ORDER BY 1""",
    "functions": """
        SELECT n.nspname, p.oid::regprocedure::text, md5(p.prosrc), pg_get_userbyid(p.proowner)
          FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE p.oid >= %(first)s ORDER BY 1, 2""",
    "extensions": "SELECT extname, extversion, extnamespace::regnamespace::text FROM pg_extension ORDER BY 1",
    "foreign_data_wrappers": "SELECT fdwname, fdwoptions::text FROM pg_foreign_data_wrapper ORDER BY 1",
    "foreign_servers": "SELECT srvname, srvoptions::text FROM pg_foreign_server ORDER BY 1",
    "foreign_tables": """
        SELECT c.oid::regclass::text, s.srvname, f.ftoptions::text FROM pg_foreign_table f
          JOIN pg_class c ON c.oid = f.ftrelid JOIN pg_foreign_server s ON s.oid = f.ftserver ORDER BY 1""",
    "user_mappings": "SELECT srvname, usename, umoptions::text FROM pg_user_mappings ORDER BY 1, 2",
    "large_objects": "SELECT oid::text, pg_get_userbyid(lomowner) FROM pg_largeobject_metadata ORDER BY 1",
}


def rows(conn, query):
    with conn.cursor() as cur:
        cur.execute(query, {"first": FIRST_USER_OID})
        return [list(row) for row in cur.fetchall()]


def state():
    conn = psycopg2.connect(dbname="postgres")
    try:
        result = {name: rows(conn, query) for name, query in SERVER_SQL.items()}
    finally:
        conn.close()
    result["content"] = {}
    for database in [row[0] for row in result["databases"] if row[6]]:   # datallowconn
        conn = psycopg2.connect(dbname=database)
        try:
            conn.set_session(readonly=True)
            content = {name: rows(conn, query) for name, query in DATABASE_SQL.items()}
        finally:
            conn.close()
        content["snapshot"] = compare.snapshot({}, database)
        result["content"][database] = content
    text = json.dumps(result, indent=1, sort_keys=True, default=str)
    return text, hashlib.sha256(text.encode()).hexdigest()


def main(argv):
    if len(argv) != 3 or argv[1] not in ("save", "compare"):
        print("usage:\n" + "\n".join(__doc__.strip().splitlines()[2:4]), file=sys.stderr)
        return 2
    text, digest = state()
    if argv[1] == "save":
        fd = os.open(argv[2], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(text)
        print("saved: sha256 %s, %d databases" % (digest, len(json.loads(text)["databases"])))
        return 0
    with open(argv[2]) as before_file:
        before = before_file.read()
    before_digest = hashlib.sha256(before.encode()).hexdigest()
    if before_digest == digest:
        print("unchanged: sha256 %s" % digest)
        return 0
    print("CHANGED: sha256 before %s, now %s" % (before_digest, digest))
    sys.stdout.writelines(difflib.unified_diff(before.splitlines(True), text.splitlines(True),
                                               "before", "now", n=2))
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
