"""Fidelity: everything arrives as it is on the source, and verification sees everything
(materialized views, invalid indexes and NOT VALID constraints, tables without columns, large
objects). To prove that verification notices, copies are tampered with on the target right before
verification (the module then runs in this process)."""

import psycopg2
import pytest

from tests.integration.conftest import module_args, run_in_process, succeeded
from tests.integration.features import create_database, execute
from tests.support.compare import compare

from ansible_collections.codacy.selfhosted.plugins.module_utils.copier import Copier


def create_source(server, dbname, statements):
    create_database(server, dbname)
    for statement in statements.split(";\n"):
        if statement.strip():
            execute(server, dbname, statement)


@pytest.fixture
def tampered(monkeypatch):
    """Run the module (in this process) with `statement` run on the target database right before
    verification: tamper(args, target, statement) -> the module's result."""
    verify = Copier.verify

    def tamper(args, target, statement):
        def tampering_verify(self, snapshot_id):
            execute(target, args.get("target_database") or args["database"], statement)
            return verify(self, snapshot_id)
        monkeypatch.setattr(Copier, "verify", tampering_verify)
        try:
            return run_in_process(args)
        finally:
            monkeypatch.setattr(Copier, "verify", verify)
    return tamper


def populated(server, dbname):
    return dict(execute(server, dbname, "SELECT relname, relispopulated FROM pg_class WHERE relkind = 'm'"))


def assert_equal(source, target, dbname, expected=()):
    differences = compare(source.params(), dbname, target.params(), dbname)
    assert sorted(differences) == sorted(expected), "\n".join(differences)


def verification_failed(result, *fragments):
    assert result.get("failed") and result.get("phase") == "verify", result.get("msg") or "the run succeeded"
    assert "unexpected error" not in result["msg"]
    for fragment in fragments:
        assert fragment in result["msg"], result["msg"]


MATVIEWS = """
CREATE TABLE base (id int PRIMARY KEY, v text);
INSERT INTO base SELECT i, md5(i::text) FROM generate_series(1, 100) i;
CREATE MATERIALIZED VIEW mv AS SELECT id, v FROM base WHERE id % 2 = 0;
CREATE UNIQUE INDEX mv_id ON mv (id);
CREATE MATERIALIZED VIEW mv_of_mv AS SELECT count(*) AS n, max(v) AS top FROM mv;
CREATE MATERIALIZED VIEW mv_empty AS SELECT id FROM base WITH NO DATA
"""


class TestMaterializedViews:
    @pytest.mark.parametrize("data_path, mode", [("stream", "counts"), ("stream", "checksums"),
                                                 ("directory", "checksums")])
    def test_populated_ones_arrive_populated(self, source, target, dbname, run_module, work_dir, data_path, mode):
        create_source(source, dbname, MATVIEWS)
        create_database(target, dbname)
        result = run_module(module_args(source, target, dbname, work_dir, data_path=data_path, verify=mode))
        succeeded(result, "migrated")
        assert populated(target, dbname) == {"mv": True, "mv_of_mv": True, "mv_empty": False}
        assert_equal(source, target, dbname)
        verified = dict((t["table"], t) for t in result["tables"])
        assert verified["mv"]["target_rows"] == 50 and verified["mv_of_mv"]["target_rows"] == 1
        assert verified["mv_empty"]["target_rows"] is None and verified["mv_empty"]["equal"]

    @pytest.mark.parametrize("mode", ["counts", "checksums"])
    def test_an_unpopulated_copy_is_noticed(self, source, target, dbname, tampered, run_module, work_dir, mode):
        create_source(source, dbname, MATVIEWS)
        create_database(target, dbname)
        result = tampered(module_args(source, target, dbname, work_dir, verify=mode), target,
                          "REFRESH MATERIALIZED VIEW public.mv_of_mv WITH NO DATA")
        verification_failed(result, "materialized view public.mv_of_mv is populated on the source but not on the target")
        succeeded(run_module(module_args(source, target, dbname, work_dir, verify=mode)), "resumed")
        assert_equal(source, target, dbname)

    @pytest.mark.parametrize("data_path", ["stream", "directory"])
    def test_a_stale_one_arrives_refreshed(self, source, target, dbname, run_module, work_dir, data_path):
        # The base table changed after the last REFRESH: pg_restore refreshes, so the target holds
        # what REFRESH gives; verification judges the copy by that rule and says so.
        create_source(source, dbname, MATVIEWS + ";\nINSERT INTO base VALUES (1000, 'late')")
        create_database(target, dbname)
        result = run_module(module_args(source, target, dbname, work_dir, data_path=data_path, verify="checksums"))
        succeeded(result, "migrated")
        assert execute(target, dbname, "SELECT count(*) FROM mv")[0][0] == 51
        assert any("public.mv" in warning and "REFRESH" in warning for warning in result.get("warnings", [])), \
            result.get("warnings")
        # pg_dump's design: a stale materialized view is refreshed (documented in README).
        assert_equal(source, target, dbname, expected=["table public.mv: row count source=50, target=51",
                                                       "table public.mv_of_mv: same row count (1) but content differs"])

    def test_a_wrong_refresh_is_noticed(self, source, target, dbname, tampered, work_dir):
        # The target's materialized view holds a row that neither the source's content nor its
        # query gives (the base table changed during the REFRESH, then changed back).
        create_source(source, dbname, MATVIEWS)
        create_database(target, dbname)
        result = tampered(module_args(source, target, dbname, work_dir, verify="counts"), target,
                          "INSERT INTO public.base VALUES (2000, 'ghost'); REFRESH MATERIALIZED VIEW public.mv;"
                          " DELETE FROM public.base WHERE id = 2000")
        verification_failed(result, "public.mv differs", "51 on the target", "its query gives 50 rows on the target")


INVALID = """
CREATE TABLE dup (id int PRIMARY KEY, k int);
INSERT INTO dup VALUES (1, 1), (2, 1), (3, 7);
CREATE TABLE ref (id int PRIMARY KEY);
INSERT INTO ref VALUES (1);
ALTER TABLE dup ADD CONSTRAINT dup_k_small CHECK (k < 5) NOT VALID;
ALTER TABLE dup ADD CONSTRAINT dup_ref FOREIGN KEY (id) REFERENCES ref NOT VALID;
CREATE TABLE part (id int, region text) PARTITION BY LIST (region);
CREATE TABLE part_eu PARTITION OF part FOR VALUES IN ('eu');
CREATE TABLE part_us PARTITION OF part FOR VALUES IN ('us');
INSERT INTO part VALUES (1, 'eu'), (2, 'us');
CREATE INDEX part_id ON ONLY part (id);
CREATE INDEX part_eu_id ON part_eu (id);
ALTER INDEX part_id ATTACH PARTITION part_eu_id
"""


def validity(server, dbname):
    indexes = dict(execute(server, dbname, "SELECT indexrelid::regclass::text, indisvalid FROM pg_index"
                                           " WHERE indrelid::regclass::text IN ('dup', 'part', 'part_eu', 'part_us')"))
    constraints = dict(execute(server, dbname, "SELECT conname, convalidated FROM pg_constraint"
                                               " WHERE conrelid = 'dup'::regclass"))
    return indexes, constraints


class TestValidity:
    @pytest.mark.parametrize("data_path", ["stream", "directory"])
    def test_judged_relative_to_the_source(self, source, target, dbname, run_module, work_dir, data_path):
        create_source(source, dbname, INVALID)
        # A failed CREATE UNIQUE INDEX CONCURRENTLY leaves an invalid index behind.
        with pytest.raises(psycopg2.errors.UniqueViolation):
            execute(source, dbname, "CREATE UNIQUE INDEX CONCURRENTLY dup_k ON dup (k)")
        create_database(target, dbname)
        result = run_module(module_args(source, target, dbname, work_dir, data_path=data_path, verify="checksums"))
        succeeded(result, "migrated")
        indexes, constraints = validity(target, dbname)
        assert indexes == {"dup_pkey": True, "part_id": False, "part_eu_id": True}
        assert constraints == {"dup_pkey": True, "dup_k_small": False, "dup_ref": False}
        warnings = result.get("warnings", [])
        assert any("public.dup_k" in w and "invalid" in w and "pg_dump" in w for w in warnings), warnings
        # pg_dump does not carry invalid indexes (documented in README): the one difference.
        assert_equal(source, target, dbname, expected=["index public.dup_k: only in source"])

    @pytest.mark.parametrize("statement, message", [
        ("UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'public.dup_pkey'::regclass",
         "index public.dup_pkey is valid on the source but not on the target"),
        ("UPDATE pg_constraint SET convalidated = false WHERE conname = 'dup_pkey'",
         "constraint dup_pkey on public.dup is validated on the source but not on the target"),
    ])
    def test_a_difference_is_noticed(self, source, target, dbname, tampered, work_dir, statement, message):
        create_source(source, dbname, INVALID)
        create_database(target, dbname)
        verification_failed(tampered(module_args(source, target, dbname, work_dir), target, statement), message)


class TestEveryTable:
    # (parallel, counts: the counts come from the copy; a write after it must still be seen.)
    @pytest.mark.parametrize("data_path, mode", [("stream", "counts"), ("stream", "checksums"), ("parallel", "counts")])
    def test_a_table_without_columns_is_verified(self, source, target, dbname, run_module, tampered, work_dir,
                                                 data_path, mode):
        create_source(source, dbname, "CREATE TABLE keyed (id int PRIMARY KEY); CREATE TABLE nocols ();\n"
                                      "INSERT INTO nocols SELECT FROM generate_series(1, 3)")
        create_database(target, dbname + "_ok")
        ok = run_module(module_args(source, target, dbname, work_dir, target_database=dbname + "_ok", verify=mode,
                                    data_path=data_path))
        succeeded(ok, "migrated")
        assert {"table": "nocols", "schema": "public", "source_rows": 3, "target_rows": 3} \
            .items() <= [t for t in ok["tables"] if t["table"] == "nocols"][0].items()
        create_database(target, dbname)
        result = tampered(module_args(source, target, dbname, work_dir, verify=mode, data_path=data_path), target,
                          "INSERT INTO public.nocols DEFAULT VALUES")
        verification_failed(result, "public.nocols differs: 3 rows on the source, 4 on the target")


LARGE_OBJECTS = """
SELECT lo_from_bytea(4711, 'content of a large object');
ALTER LARGE OBJECT 4711 OWNER TO "{owner}";
GRANT SELECT ON LARGE OBJECT 4711 TO "{reader}";
COMMENT ON LARGE OBJECT 4711 IS 'a report'
"""


class TestLargeObjects:
    @pytest.mark.parametrize("data_path", ["stream", "directory"])
    @pytest.mark.parametrize("what, statement", [
        ("content", "SELECT lo_put(4711, 0, 'C')"),
        ("owner", "ALTER LARGE OBJECT 4711 OWNER TO CURRENT_USER"),
        ("grants", 'REVOKE SELECT ON LARGE OBJECT 4711 FROM "{reader}"'),
        ("comment", "COMMENT ON LARGE OBJECT 4711 IS 'another report'"),
    ])
    def test_content_owner_and_grants_are_compared(self, source, target, dbname, run_module, tampered, work_dir,
                                                   data_path, what, statement):
        names = {"reader": dbname + "_reader", "owner": dbname + "_owner"}
        for server in (source, target):
            execute(server, "postgres", 'CREATE ROLE "{reader}"; CREATE ROLE "{owner}"'.format(**names))
        create_source(source, dbname, LARGE_OBJECTS.format(**names))
        create_database(target, dbname)
        result = tampered(module_args(source, target, dbname, work_dir, data_path=data_path, verify="checksums"),
                          target, statement.format(**names))
        verification_failed(result, "large object 4711: %s differs" % what)
        succeeded(run_module(module_args(source, target, dbname, work_dir, data_path=data_path,
                                         verify="checksums")), "resumed")
        assert_equal(source, target, dbname)
