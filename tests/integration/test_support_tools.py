"""Tests of the support tools: the dataset generator and the compare oracle, on real servers."""

import json
import os
import subprocess
import sys

import pytest

from tests.support import compare, dataset
from tests.support.pgserver import PgServer

SCALE = 2
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def server_a():
    with PgServer(password="source-secret") as server:
        yield server


@pytest.fixture(scope="module")
def server_b():
    with PgServer(password="target-secret") as server:
        yield server


@pytest.fixture(scope="module")
def sizes_a(server_a):
    return dataset.generate(server_a.params(), scale_mb=SCALE, progress=lambda message: None)


@pytest.fixture(scope="module")
def sizes_b(server_b):
    # One database at a time here, two at a time on server A: the content must not depend on it.
    return dataset.generate(server_b.params(), scale_mb=SCALE, progress=lambda message: None, jobs=1)


def query(server, dbname, sql, args=None):
    return server.execute(sql, args, dbname=dbname)


def scalar(server, dbname, sql, args=None):
    return query(server, dbname, sql, args)[0][0]


# --------------------------------------------------------------------------------------------
# dataset
# --------------------------------------------------------------------------------------------
def test_generate_creates_the_six_databases(server_a, sizes_a):
    assert list(sizes_a) == list(dataset.SIX)
    for name, size in sizes_a.items():
        assert 7 * dataset.MB < size < 10 * dataset.MB
        comment = scalar(server_a, "postgres",
                         "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s", (name,))
        assert comment == dataset.marker(SCALE, 1)
        assert scalar(server_a, "postgres", "SELECT encoding FROM pg_database WHERE datname = %s", (name,)) == 6
        empty_tables = query(server_a, name, """
            SELECT relname FROM pg_class WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace
              AND reltuples = 0""")
        assert empty_tables == [], "%s has empty tables" % name


def test_every_feature_is_present(server_a, sizes_a):
    def count(dbname, sql, args=None):
        return scalar(server_a, dbname, sql, args)

    column_types = {}
    for name in dataset.SIX:
        for (type_,) in query(server_a, name, """
                SELECT DISTINCT format_type(atttypid, NULL) FROM pg_attribute a JOIN pg_class c ON c.oid = attrelid
                WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r' AND attnum > 0"""):
            column_types.setdefault(type_, set()).add(name)
    for type_ in ("jsonb", "bytea", "text", "numeric", "timestamp with time zone", "double precision", "real",
                  "uuid", "interval", "citext", "oid"):
        assert type_ in column_types, type_
    # Several btree indexes on each big table, and a foreign key to a parent table.
    for dbname, table in (("results", "issue"), ("analysis", "file_metric")):
        assert count(dbname, "SELECT count(*) FROM pg_index WHERE indrelid = %s::regclass", (table,)) >= 4
        assert count(dbname, "SELECT count(*) FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'f'",
                     (table,)) >= 1
    # Sequences: identity, serial, and a standalone one set to a distinctive value.
    assert count("accounts", "SELECT count(*) FROM pg_attribute WHERE attrelid = '\"User\"'::regclass "
                             "AND attidentity = 'd'") == 1
    assert count("jobs", "SELECT pg_get_expr(adbin, adrelid) FROM pg_attrdef WHERE adrelid = 'job'::regclass") \
        == "nextval('job_id_seq'::regclass)"
    assert query(server_a, "accounts", "SELECT last_value, is_called FROM invitation_code_seq") == \
        [(dataset.STANDALONE_SEQUENCE_VALUE, True)]
    assert count("results", "SELECT last_value FROM issue_id_seq") == count("results", "SELECT max(id) FROM issue")
    # Views, a plpgsql function with its trigger (which filled the slugs), enums.
    assert count("accounts", "SELECT count(*) FROM admin_user") > 0
    assert count("jobs", "SELECT count(*) FROM pg_views WHERE viewname = 'pending_job'") == 1
    assert count("accounts", "SELECT count(*) FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang "
                             "WHERE proname = 'organization_set_slug' AND lanname = 'plpgsql'") == 1
    assert count("accounts", "SELECT count(*) FROM pg_trigger WHERE tgname = 'organization_slug' "
                             "AND tgenabled = 'O'") == 1
    assert count("accounts", "SELECT count(*) FROM organization WHERE slug IS NULL OR slug <> lower(slug)") == 0
    assert count("results", "SELECT count(*) FROM pg_enum WHERE enumtypid = 'severity'::regtype") == 3
    assert count("jobs", "SELECT count(*) FROM pg_enum WHERE enumtypid = 'job_status'::regtype") == 4
    # Extensions in use: a pg_trgm GIN index in results and a citext column in accounts.
    assert count("results", "SELECT count(*) FROM pg_extension WHERE extname = 'pg_trgm'") == 1
    assert "gin_trgm_ops" in count("results", "SELECT pg_get_indexdef('pattern_title_trgm_idx'::regclass)")
    assert count("accounts", "SELECT count(*) FROM \"User\" WHERE email = lower(email::text)::citext") == \
        count("accounts", "SELECT count(*) FROM \"User\"")  # citext compares case-insensitively
    # Mixed-case quoted table names.
    assert count("accounts", "SELECT count(*) FROM \"UserSettings\"") > 0
    # Partial and expression indexes.
    assert count("results", "SELECT count(*) FROM pg_index WHERE indpred IS NOT NULL") >= 1
    assert count("jobs", "SELECT count(*) FROM pg_index WHERE indpred IS NOT NULL") >= 1
    assert count("metrics", "SELECT count(*) FROM pg_index WHERE indexprs IS NOT NULL "
                            "AND indrelid = 'metric'::regclass") == 1
    # Column comments.
    assert count("accounts", "SELECT col_description('\"User\"'::regclass, 2)").startswith("Primary e-mail")
    assert count("analysis", "SELECT count(*) FROM pg_description WHERE objoid = 'file_metric'::regclass "
                             "AND objsubid > 0") == 1
    # One large object, referenced by oid from a table.
    assert query(server_a, "filestore", "SELECT oid FROM pg_largeobject_metadata") == [(dataset.LARGE_OBJECT_OID,)]
    assert count("filestore", "SELECT length(lo_get(content_oid)) FROM large_file") == 64 * 1024
    # NOT NULL and CHECK constraints.
    assert count("jobs", "SELECT count(*) FROM pg_constraint WHERE conrelid = 'job'::regclass AND contype = 'c'") >= 2
    assert count("results", "SELECT attnotnull FROM pg_attribute WHERE attrelid = 'issue'::regclass "
                            "AND attname = 'message'") is True


def test_filestore_payloads_are_half_incompressible(server_a, sizes_a):
    rows = query(server_a, "filestore", """
        SELECT mod(id, 2) = 1, min(length(content)), max(length(content)), sum(pg_column_size(content)),
               sum(length(content)), bool_and(sha256 = sha256(content)), count(*)
        FROM stored_file GROUP BY 1 ORDER BY 1""")
    cmin, cmax, cstored, craw, csha, ccount = rows[0][1:]
    imin, imax, istored, iraw, isha, icount = rows[1][1:]
    assert 2048 <= min(cmin, imin) and max(cmax, imax) <= 16 * 1024
    assert csha and isha and ccount == icount
    assert cstored < craw / 5  # text-like payloads compress well
    assert istored >= iraw  # digests do not compress at all


def test_generation_is_deterministic(server_a, server_b, sizes_a, sizes_b):
    for name in dataset.SIX:
        assert compare.compare(server_a.params(), name, server_b.params(), name) == [], name


def test_second_run_skips(server_a, sizes_a):
    messages = []
    sizes = dataset.generate(server_a.params(), scale_mb=SCALE, progress=messages.append)
    assert set(sizes) == set(dataset.SIX)
    skipped = [message for message in messages if "skipped" in message]
    assert len(skipped) == 6, messages
    assert not any("generating" in message for message in messages)


def test_existing_databases_are_protected(server_b):
    server_b.execute("CREATE DATABASE crow")
    server_b.execute("CREATE TABLE precious (id int)", dbname="crow")
    with pytest.raises(RuntimeError, match="not a generated dataset"):
        dataset.generate(server_b.params(), scale_mb=1, databases="crow", progress=lambda message: None)
    assert scalar(server_b, "crow", "SELECT count(*) FROM pg_class WHERE relname = 'precious'") == 1

    dataset.generate(server_b.params(), scale_mb=1, databases="crow", force=True, progress=lambda message: None)
    assert scalar(server_b, "crow", "SELECT count(*) FROM pg_class WHERE relname = 'precious'") == 0
    first = compare.snapshot(server_b.params(), "crow")

    # A dataset of other parameters is regenerated without force; the seed changes the content.
    dataset.generate(server_b.params(), scale_mb=1, databases=["crow"], seed=2, progress=lambda message: None)
    assert compare.diff(first, compare.snapshot(server_b.params(), "crow"))

    # An interrupted generation (its marker says incomplete) is regenerated, not skipped.
    server_b.execute("COMMENT ON DATABASE crow IS 'codacy.selfhosted test dataset v1 incomplete'")
    server_b.execute("DROP TABLE job_run", dbname="crow")
    dataset.generate(server_b.params(), scale_mb=1, databases=["crow"], progress=lambda message: None)
    assert compare.diff(first, compare.snapshot(server_b.params(), "crow")) == []

    # An existing empty database (created by someone else, e.g. with its owner) is filled in place.
    server_b.execute("DROP DATABASE crow")
    server_b.execute("CREATE DATABASE crow")
    dataset.generate(server_b.params(), scale_mb=1, databases=["crow"], progress=lambda message: None)
    assert compare.diff(first, compare.snapshot(server_b.params(), "crow")) == []


def test_generate_rejects_unknown_databases(server_b):
    with pytest.raises(ValueError, match="unknown"):
        dataset.generate(server_b.params(), databases="accounts,nope")


def test_dataset_cli_uses_the_libpq_environment(server_a):
    env = dict(os.environ, PGHOST=server_a.host, PGPORT=str(server_a.port), PGUSER=server_a.superuser,
               PGPASSWORD=server_a.password)
    argv = [sys.executable, "-m", "tests.support.dataset", "--scale-mb", "1", "--databases", "listener,crow"]
    result = subprocess.run(argv, check=False, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "[listener] done" in result.stdout and "[crow] done" in result.stdout
    assert scalar(server_a, "listener", "SELECT count(*) FROM webhook_event") > 0
    assert scalar(server_a, "crow", "SELECT count(*) FROM job_run") > 0


def test_size_split_at_a_realistic_scale():
    with PgServer(password="pw") as server:
        sizes = dataset.generate(server.params(), scale_mb=150, progress=lambda message: None)
    total = sum(sizes.values()) / dataset.MB
    assert 0.85 * 150 <= total <= 1.15 * 150, sizes
    assert sizes["results"] > sizes["analysis"] > sizes["metrics"] > max(sizes["jobs"], sizes["accounts"],
                                                                         sizes["filestore"])


# --------------------------------------------------------------------------------------------
# compare
# --------------------------------------------------------------------------------------------
@pytest.fixture()
def mutated(server_a, server_b, sizes_a, sizes_b):
    """Make a copy of a generated database on server B, let the test change it, compare with server A."""
    copies = []

    def make(dbname, *statements):
        copy = "%s_copy%d" % (dbname, len(copies))
        server_b.execute('CREATE DATABASE "%s" TEMPLATE "%s"' % (copy, dbname))
        copies.append(copy)
        for statement in statements:
            server_b.execute(statement, dbname=copy)
        # (a TEMPLATE copy has none of the database's own properties: comment, settings, grants)
        return compare.compare(server_a.params(), dbname, server_b.params(), copy, ignore=("properties",))

    yield make
    for copy in copies:
        server_b.execute('DROP DATABASE "%s"' % copy)


def test_an_unchanged_copy_is_equal(mutated):
    # Updating rows to the same values moves them physically: order must not matter.
    assert mutated("results", "UPDATE issue SET line = line WHERE id <= 100") == []


def test_a_modified_row_is_reported(mutated):
    differences = mutated("results", "UPDATE issue SET message = message || '!' WHERE id = 7")
    assert differences == ["table public.issue: same row count (%d) but content differs"
                           % dataset.RESULTS.units(SCALE)]


def test_a_tiny_float_change_is_reported(mutated):
    # 1e-12 relative change: lost by a 15-digit text form, caught by the binary one.
    differences = mutated("metrics", "UPDATE repository_metric SET value = value * (1 + 1e-12) "
                                     "WHERE repository_id = 1 AND metric_id = 1 AND day = '2020-01-01'")
    assert differences == ["table public.repository_metric: same row count (%d) but content differs"
                           % dataset.METRICS.units(SCALE)]


def test_a_deleted_row_is_reported(mutated):
    differences = mutated("accounts", 'DELETE FROM "UserSettings" WHERE user_id = 1')
    assert len(differences) == 1 and differences[0].startswith('table public."UserSettings": row count')


def test_a_changed_sequence_is_reported(mutated):
    differences = mutated("accounts", "SELECT setval('invitation_code_seq', 4242043)")
    assert differences == ["sequence public.invitation_code_seq last_value: source=4242042, target=4242043"]
    differences = mutated("jobs", "SELECT setval('job_id_seq', (SELECT max(id) FROM job), false)")
    assert differences == ["sequence public.job_id_seq is_called: source=true, target=false"]


def test_a_changed_large_object_is_reported(mutated):
    differences = mutated("filestore", "SELECT lo_put(%d, 100, '\\x00')" % dataset.LARGE_OBJECT_OID)
    assert len(differences) == 1 and differences[0].startswith("large object %d:" % dataset.LARGE_OBJECT_OID)
    differences = mutated("filestore", "SELECT lo_unlink(%d)" % dataset.LARGE_OBJECT_OID)
    assert differences[0] == "large objects: count source=1, target=0"


@pytest.mark.parametrize("statement, field", [
    ("GRANT SELECT ON LARGE OBJECT {oid} TO lo_reader", "grants"),
    ("ALTER LARGE OBJECT {oid} OWNER TO lo_reader", "owner"),
    ("COMMENT ON LARGE OBJECT {oid} IS 'a report'", "comment"),
])
def test_large_object_owner_grants_and_comment_are_compared(mutated, server_b, statement, field):
    server_b.execute("DO $$ BEGIN CREATE ROLE lo_reader; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
    differences = mutated("filestore", statement.format(oid=dataset.LARGE_OBJECT_OID))
    prefix = "large object %d %s: " % (dataset.LARGE_OBJECT_OID, field)
    assert any(line.startswith(prefix) for line in differences), differences


def test_database_properties_are_compared(server_a, server_b, sizes_a, sizes_b):
    assert compare.compare(server_a.params(), "jobs", server_b.params(), "jobs") == []
    server_b.execute("ALTER DATABASE jobs SET work_mem = '7MB'; ALTER DATABASE jobs CONNECTION LIMIT 9;"
                     " GRANT CREATE ON DATABASE jobs TO PUBLIC")
    try:
        assert compare.compare(server_a.params(), "jobs", server_b.params(), "jobs") == [
            "database property connection_limit: source=-1, target=9",
            'database property grants: source=["PUBLIC:CONNECT", "PUBLIC:TEMPORARY"], '
            'target=["PUBLIC:CONNECT", "PUBLIC:CREATE", "PUBLIC:TEMPORARY"]',
            "database property settings (every role): only in target"]
    finally:
        server_b.execute("ALTER DATABASE jobs RESET ALL; ALTER DATABASE jobs CONNECTION LIMIT -1;"
                         " REVOKE CREATE ON DATABASE jobs FROM PUBLIC")


def test_schema_dumps_are_compared(server_a, server_b, sizes_a, sizes_b):
    dump = compare.schema_dump(server_a.params(), "jobs")
    assert "TABLE public.job" in dump and "ACL public.TABLE job" not in dump
    assert compare.dump_diff(server_a.params(), "jobs", server_b.params(), "jobs") == []
    server_b.execute('CREATE DATABASE "jobs_dumped" TEMPLATE "jobs"')
    try:
        server_b.execute("GRANT SELECT ON job TO PUBLIC; ALTER TABLE job ALTER COLUMN attempts SET STATISTICS 500",
                         dbname="jobs_dumped")
        assert compare.dump_diff(server_a.params(), "jobs", server_b.params(), "jobs_dumped") == [
            "schema dump ACL public.TABLE job: only in target",
            'schema dump TABLE public.job: differs: "+ALTER TABLE ONLY public.job ALTER COLUMN attempts SET STATISTICS 500;"']
    finally:
        server_b.execute('DROP DATABASE "jobs_dumped"')


def test_a_dropped_index_is_reported(server_a, server_b, mutated):
    differences = mutated("results", "DROP INDEX issue_pattern_idx")
    assert differences == ["index public.issue_pattern_idx: only in source"]


def test_schema_object_changes_are_reported(mutated):
    assert mutated("accounts", "ALTER TABLE organization DISABLE TRIGGER organization_slug") == \
        ["trigger public.organization.organization_slug enabled: source=\"O\", target=\"D\""]
    assert mutated("accounts", "COMMENT ON COLUMN \"User\".email IS 'changed'")[0].startswith(
        'comment public."User".email')
    assert mutated("jobs", "ALTER TYPE job_status ADD VALUE 'cancelled'")[0].startswith("enum public.job_status")
    assert mutated("jobs", "ALTER TABLE job DROP CONSTRAINT job_attempts_check")[0].startswith(
        "constraint public.job.job_attempts_check: only in source")
    assert mutated("accounts", "CREATE OR REPLACE VIEW admin_user AS SELECT id, email, name FROM \"User\"")[0] \
        .startswith("view public.admin_user definition")
    assert mutated("results", "DROP EXTENSION pg_trgm CASCADE")[:2] == [
        "extension pg_trgm: only in source", "index public.pattern_title_trgm_idx: only in source"]
    assert mutated("analysis", "ALTER TABLE file_metric ADD COLUMN extra int") == \
        ["table public.file_metric: column extra only in target"]


def test_the_migration_marker_schema_is_ignored(mutated):
    assert mutated("jobs", "CREATE SCHEMA codacy_migration",
                   "CREATE TABLE codacy_migration.state (step text)",
                   "INSERT INTO codacy_migration.state VALUES ('done')") == []


def test_diff_can_ignore_sections_and_restrict_schemas(server_a, server_b, sizes_a, sizes_b):
    server_b.execute('CREATE DATABASE "results_ignore" TEMPLATE "results"')
    try:
        server_b.execute("DROP INDEX issue_pattern_idx", dbname="results_ignore")
        server_b.execute("CREATE SCHEMA extra", dbname="results_ignore")
        server_b.execute("CREATE TABLE extra.t AS SELECT 1 AS x", dbname="results_ignore")
        source = compare.snapshot(server_a.params(), "results", schemas=["public"])
        target = compare.snapshot(server_b.params(), "results_ignore", schemas=["public"])
        # (a TEMPLATE copy has none of the database's own properties: comment, settings, grants)
        assert compare.diff(source, target, ignore=("properties",)) == ["index public.issue_pattern_idx: only in source"]
        assert compare.diff(source, target, ignore=("indexes", "properties")) == []
        assert "extra.t" in compare.snapshot(server_b.params(), "results_ignore")["tables"]
    finally:
        server_b.execute('DROP DATABASE "results_ignore"')


def test_float_text_form_is_not_hashed(server_a):
    """Float columns, also in domains and arrays, are hashed through their binary form."""
    server_a.execute("CREATE DATABASE floats")
    try:
        server_a.execute("""
            CREATE DOMAIN ratio AS double precision;
            CREATE TABLE f (a real, b double precision, c ratio, d float8[], e float4[], n numeric);
            INSERT INTO f VALUES (0.1, 0.1, 1.0/3, '{{0.1,NULL},{2,3}}', '{}', 0.1), (NULL, NULL, NULL, NULL, NULL, NULL)
        """, dbname="floats")
        snap = compare.snapshot(server_a.params(), "floats")
        assert snap["tables"]["public.f"]["rows"] == 2
        conn = compare._connect(server_a.params(), "floats")
        try:
            with conn.cursor() as cur:
                columns = compare._columns(cur, {"schemas": None}, conn.server_version)["public.f"]
                expressions = [compare._value_expression(column) for column in columns]
                cur.execute("SELECT ROW(%s)::text FROM public.f t WHERE a IS NOT NULL" % ", ".join(expressions))
                text = cur.fetchone()[0]
        finally:
            conn.close()
        assert expressions[:3] == ['float4send(t."a")', 'float8send(t."b")', 'float8send(t."c")']
        assert "0.1" not in text.split(",")[0]  # the real is rendered as bytes, not as text
        assert text.endswith(",0.1)")  # numeric keeps its exact text form
    finally:
        server_a.execute("DROP DATABASE floats")


# --------------------------------------------------------------------------------------------
# compare CLI
# --------------------------------------------------------------------------------------------
def run_compare_cli(server_a, server_b, *args, extra_env=None):
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    env.update(SOURCE_PGPASSWORD=server_a.password, TARGET_PGPASSWORD=server_b.password)
    env.update(extra_env or {})
    argv = [sys.executable, "-m", "tests.support.compare",
            "--source", "host=%s port=%d user=%s" % (server_a.host, server_a.port, server_a.superuser),
            "--target", "host=%s port=%d user=%s" % (server_b.host, server_b.port, server_b.superuser)] + list(args)
    return subprocess.run(argv, check=False, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_compare_cli_equal_and_different(server_a, server_b, sizes_a, sizes_b):
    result = run_compare_cli(server_a, server_b, "accounts", "jobs")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "accounts: equal" in result.stdout and "jobs: equal" in result.stdout

    server_b.execute('CREATE DATABASE "jobs_renamed" TEMPLATE "jobs"')
    try:
        # (a TEMPLATE copy has none of the database's own properties: comment, settings, grants)
        result = run_compare_cli(server_a, server_b, "--map", "jobs:jobs_renamed", "--ignore", "properties", "jobs")
        assert result.returncode == 0, result.stdout + result.stderr
        server_b.execute("DELETE FROM job_event WHERE id = 3", dbname="jobs_renamed")
        result = run_compare_cli(server_a, server_b, "--map", "jobs:jobs_renamed", "--ignore", "properties", "jobs",
                                 "accounts")
        assert result.returncode == 1
        assert "jobs -> jobs_renamed: table public.job_event: row count source=%d, target=%d" % (
            2 * dataset.JOBS.units(SCALE), 2 * dataset.JOBS.units(SCALE) - 1) in result.stdout
        assert "accounts: equal" in result.stdout
    finally:
        server_b.execute('DROP DATABASE "jobs_renamed"')


def test_compare_cli_json_and_errors(server_a, server_b, sizes_a, sizes_b):
    result = run_compare_cli(server_a, server_b, "--json", "metrics")
    assert result.returncode == 0, result.stderr
    snapshots = json.loads(result.stdout)
    assert snapshots["metrics"]["differences"] == []
    assert snapshots["metrics"]["source"]["tables"]["public.repository_metric"]["rows"] > 0

    # A password in argv is refused, and a wrong password is an error (exit 2), never "equal".
    argv = [sys.executable, "-m", "tests.support.compare", "--source",
            "host=%s port=%d user=postgres password=x" % (server_a.host, server_a.port), "--json", "metrics"]
    result = subprocess.run(argv, check=False, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "must not contain a password" in result.stderr
    result = run_compare_cli(server_a, server_b, "metrics", extra_env={"TARGET_PGPASSWORD": "wrong"})
    assert result.returncode == 2 and "password authentication failed" in result.stderr


def test_single_relation_view_qualifiers_are_normalized():
    # PostgreSQL 16+ prints "SELECT id FROM public.job", 15 and older "SELECT job.id FROM public.job".
    old = "SELECT job.id, job.uuid FROM public.job WHERE job.status = 'pending'::public.job_status ORDER BY job.priority"
    new = "SELECT id, uuid FROM public.job WHERE status = 'pending'::public.job_status ORDER BY priority"
    assert compare._strip_qualifiers(old) == compare._strip_qualifiers(new)
    assert compare._strip_qualifiers('SELECT "User".id, x.y1 + 1.5 FROM public."User"') == 'SELECT id, y1 + 1.5 FROM "User"'
