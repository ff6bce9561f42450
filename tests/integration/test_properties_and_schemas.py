"""Database-level properties travel; schema restrictions never lose objects silently."""

from tests.integration.conftest import ModuleRunner, module_args, succeeded
from tests.integration.features import create_database, create_feature_database, execute
from tests.support.compare import compare

PROPERTIES_SQL = """
SELECT d.datconnlimit, shobj_description(d.oid, 'pg_database'),
       (SELECT array_agg(coalesce(pg_get_userbyid(s.setrole), '-') || ' ' || array_to_string(s.setconfig, ';')
                         ORDER BY s.setrole)
          FROM pg_db_role_setting s WHERE s.setdatabase = d.oid),
       has_database_privilege(%(role)s, d.oid, 'CONNECT'),
       has_database_privilege(%(role)s, d.oid, 'CREATE'),
       has_database_privilege('public', d.oid, 'TEMPORARY')
  FROM pg_database d WHERE d.datname = current_database()
"""


def properties(server, dbname, role):
    return execute(server, dbname, PROPERTIES_SQL, {"role": role})[0]


def test_database_properties_travel(source, target, dbname, run_module, work_dir):
    role = "app_" + dbname
    create_feature_database(source, dbname)
    for server in (source, target):
        execute(server, "postgres", 'CREATE ROLE "%s" LOGIN' % role)
    db = '"%s"' % dbname
    execute(source, dbname, "ALTER DATABASE {db} SET work_mem = '12MB';"
                            " ALTER DATABASE {db} SET search_path = \"$user\", public, \"Odd, Schema\";"
                            " ALTER ROLE \"{role}\" IN DATABASE {db} SET statement_timeout = '5min';"
                            " COMMENT ON DATABASE {db} IS 'Codacy ''analysis'' data';"
                            " ALTER DATABASE {db} CONNECTION LIMIT 42;"
                            " REVOKE ALL ON DATABASE {db} FROM PUBLIC;"
                            " GRANT CONNECT, CREATE ON DATABASE {db} TO \"{role}\"".format(db=db, role=role))
    create_database(target, dbname)
    result = run_module(module_args(source, target, dbname, work_dir))
    succeeded(result, "migrated")
    expected = properties(source, dbname, role)
    assert expected[0] == 42 and expected[3] is True and expected[5] is False  # the setup took effect
    assert properties(target, dbname, role) == expected
    assert execute(target, dbname, "SHOW search_path")[0][0] == '"$user", public, "Odd, Schema"'

    # A changed property is a change of the source: the next run refreshes and carries it.
    execute(source, dbname, "ALTER DATABASE %s CONNECTION LIMIT 7" % db)
    again = run_module(module_args(source, target, dbname, work_dir))
    succeeded(again, "refreshed")
    assert properties(target, dbname, role)[0] == 7


def test_public_only_like_the_vendor_guide(source, target, dbname, run_module, work_dir):
    create_database(source, dbname)
    execute(source, dbname, "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT i, i::text"
                            " FROM generate_series(1, 100) i; CREATE SCHEMA scratch; CREATE TABLE scratch.junk (x int)")
    create_database(target, dbname)
    result = run_module(module_args(source, target, dbname, work_dir, schemas=["public"]))
    succeeded(result, "migrated")
    assert compare(source.params(), dbname, target.params(), dbname, schemas=["public"]) == []
    assert execute(target, dbname, "SELECT to_regclass('scratch.junk')")[0][0] is None


def test_schema_restriction_that_would_lose_objects_is_refused(source, target, dbname, run_module, work_dir):
    create_feature_database(source, dbname)  # has pg_trgm and citext
    execute(source, dbname, "SELECT lo_from_bytea(0, 'blob'); CREATE SCHEMA lookup;"
                            " CREATE TABLE lookup.level (id int PRIMARY KEY);"
                            " CREATE TABLE public.uses_lookup (level_id int REFERENCES lookup.level (id))")
    create_database(target, dbname)
    result = run_module(module_args(source, target, dbname, work_dir, schemas=["public"]))
    assert result["failed"] and result["phase"] == "inspect"
    for expected in ("extensions citext, pg_trgm", "1 large objects", "lookup.level", "schemas: []"):
        assert expected in result["msg"], result["msg"]
    assert execute(target, dbname, "SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace")[0][0] == 0


def test_create_module_creates_several_databases_in_one_run(target, dbname, tmp_path):
    """codacy_db_create's `databases`: the missing ones created like asked, an existing one left alone,
    an owner the user cannot act as replaced by a warning; check mode creates nothing."""
    create = ModuleRunner(tmp_path, module="codacy.selfhosted.codacy_db_create")
    create_database(target, dbname + "_there")
    execute(target, "postgres", "DROP ROLE IF EXISTS %s_owner; CREATE ROLE %s_owner" % (dbname, dbname))
    specs = [{"name": dbname + "_latin", "encoding": "LATIN1", "lc_collate": "C", "lc_ctype": "C",
              "owner": dbname + "_owner"},
             {"name": dbname + "_there", "encoding": "UTF8", "lc_collate": "C", "lc_ctype": "C"},
             {"name": dbname + "_nobody", "encoding": "UTF8", "lc_collate": "C.UTF-8", "lc_ctype": "C.UTF-8",
              "owner": "no_such_role"}]
    args = {"target": target.endpoint(), "databases": specs}
    checked = create(args, check=True)
    assert not checked.get("failed"), checked.get("msg")
    assert [entry["changed"] for entry in checked["databases"]] == [True, False, True]
    assert databases_like(target, dbname) == [dbname + "_there"], "check mode created nothing"
    created = create(args)
    assert not created.get("failed"), created.get("msg")
    assert [(entry["name"], entry["changed"]) for entry in created["databases"]] == \
        [(dbname + "_latin", True), (dbname + "_there", False), (dbname + "_nobody", True)]
    assert created["databases"][2]["owner"] == target.superuser
    assert any("cannot act as role no_such_role" in warning for warning in created.get("warnings", []))
    assert execute(target, "postgres", "SELECT pg_encoding_to_char(encoding), datcollate, pg_get_userbyid(datdba)"
                                       " FROM pg_database WHERE datname = %s", (dbname + "_latin",)) == \
        [("LATIN1", "C", dbname + "_owner")]
    again = create(args)
    assert not again.get("failed") and not again["changed"], "existing databases are left alone"


def databases_like(server, dbname):
    return [row[0] for row in execute(server, "postgres", "SELECT datname FROM pg_database WHERE datname LIKE %s"
                                      " ORDER BY 1", (dbname + "\\_%",))]
