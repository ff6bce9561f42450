"""The module's contract against two real PostgreSQL servers, run through ansible-playbook.

Equality is judged by tests.support.compare, an oracle that shares no code with the module.
"""

import os
import re
import subprocess

import pytest

from tests.integration.conftest import PASSWORD, module_args, succeeded
from tests.integration.features import ArgvSampler, create_database, create_feature_database, execute
from tests.support.compare import compare, snapshot

MARKER_SCHEMA = "codacy_migration"


def assert_equal(source, target, database, target_database=None, schemas=None):
    differences = compare(source.params(), database, target.params(), target_database or database, schemas=schemas)
    assert differences == [], "\n".join(differences)


def marker_rows(server, database):
    exists = execute(server, database, "SELECT to_regclass('codacy_migration.runs') IS NOT NULL")[0][0]
    if not exists:
        return []
    return execute(server, database, "SELECT state, action FROM codacy_migration.runs ORDER BY id")


def user_tables(server, database):
    return execute(server, database, "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                                     " WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
                                     " AND n.nspname NOT LIKE 'pg_toast%'")[0][0]


@pytest.fixture
def migrated(source, target, dbname, run_module, work_dir):
    """A feature database already migrated once into an empty target."""
    create_feature_database(source, dbname)
    create_database(target, dbname)
    result = run_module(module_args(source, target, dbname, work_dir))
    succeeded(result, "migrated")
    return dbname


class TestFirstMigration:
    @pytest.mark.parametrize("data_path, phases", [
        ("stream", ("dump", "pre-data", "restore", "post-data", "verify", "analyze", "total")),
        ("directory", ("dump", "restore", "verify", "analyze", "total")),
    ])
    def test_empty_target_is_migrated_and_equal(self, source, target, dbname, run_module, work_dir, data_path, phases):
        create_feature_database(source, dbname)
        create_database(target, dbname)
        result = run_module(module_args(source, target, dbname, work_dir, verify="checksums", data_path=data_path))
        assert not result.get("failed"), result.get("msg")
        succeeded(result, "migrated")
        assert result["changed"] is True
        assert_equal(source, target, dbname)
        tables = dict((t["table"], t) for t in result["tables"])
        assert tables["issue"]["source_rows"] == tables["issue"]["target_rows"] == 3000
        assert tables["issue"]["source_hash"] == tables["issue"]["target_hash"]
        assert set(tables) == {"account", "issue", "UserSettings"}
        assert result["verified"] == {"mode": "checksums", "tables": 3, "rows": 3202, "equal": True}
        for phase in phases:
            assert result["phases"][phase] >= 0
        assert result["dump_bytes"] > 0
        assert marker_rows(target, dbname) == [("complete", "migrated")]
        # Indexes valid, constraints validated, sequences equal: the oracle compares them too,
        # this states the facts directly as well.
        assert execute(target, dbname, "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
                                       " WHERE c.relnamespace = 'public'::regnamespace AND i.indisvalid")[0][0] == 8
        assert execute(target, dbname, "SELECT last_value FROM ticket_seq")[0][0] == 4242
        assert execute(target, dbname, "SELECT n_live_tup > 0 OR last_analyze IS NOT NULL OR last_autoanalyze"
                                       " IS NOT NULL FROM pg_stat_user_tables WHERE relname = 'issue'")[0][0]
        assert os.listdir(work_dir) == [], "the dump directory was left behind"

    def test_statistics_are_rebuilt(self, source, target, migrated):
        analyzed = execute(target, migrated, "SELECT count(*) FROM pg_stats WHERE tablename = 'issue'")[0][0]
        assert analyzed > 0

    @pytest.mark.parametrize("name", ['we"ird db;--', "new\nline's $(db)"])
    def test_weird_names_and_password(self, source, target, run_module, work_dir, name):
        create_feature_database(source, name)
        create_database(target, name)
        result = run_module(module_args(source, target, name, work_dir))
        succeeded(result, "migrated")
        assert_equal(source, target, name)
        succeeded(run_module(module_args(source, target, name, work_dir)), "unchanged")

    def test_renamed_target(self, source, target, dbname, run_module, work_dir):
        create_feature_database(source, dbname)
        create_database(target, dbname + "_copy")
        result = run_module(module_args(source, target, dbname, work_dir, target_database=dbname + "_copy"))
        succeeded(result, "migrated")
        assert_equal(source, target, dbname, dbname + "_copy")


class TestRerun:
    def test_unchanged_source_changes_nothing(self, source, target, migrated, run_module, work_dir):
        before = snapshot(target.params(), migrated)
        result = run_module(module_args(source, target, migrated, work_dir))
        succeeded(result, "unchanged")
        assert result["changed"] is False
        assert result["commands"] == [] and "dump" not in result["phases"]
        assert os.listdir(work_dir) == []
        assert snapshot(target.params(), migrated) == before
        assert marker_rows(target, migrated) == [("complete", "migrated")]

    @pytest.mark.parametrize("change", [
        "INSERT INTO account (email, name) VALUES ('new@example.com', 'new')",
        "UPDATE issue SET message = 'changed' WHERE id = 7",
        "DELETE FROM issue WHERE id = 8",
        "TRUNCATE \"UserSettings\"",
        "ALTER TABLE account ADD COLUMN nickname text",
        "CREATE INDEX account_name_idx ON account (name)",
        "SELECT setval('ticket_seq', 5000)",
        "SELECT nextval('issue_id_seq')",
        "SELECT lo_from_bytea(0, 'large object'::bytea)",
        "ALTER DATABASE {db} SET work_mem = '7MB'",
        "COMMENT ON COLUMN issue.message IS 'the message'",
    ])
    def test_each_source_change_is_refreshed(self, source, target, migrated, run_module, work_dir, change):
        execute(source, migrated, change.replace("{db}", '"%s"' % migrated))
        result = run_module(module_args(source, target, migrated, work_dir))
        succeeded(result, "refreshed")
        assert result["changed"] is True
        assert_equal(source, target, migrated)
        succeeded(run_module(module_args(source, target, migrated, work_dir)), "unchanged")

    def test_changes_are_named(self, source, target, migrated, run_module, work_dir):
        execute(source, migrated, "DELETE FROM issue WHERE id = 9")
        result = run_module(module_args(source, target, migrated, work_dir))
        assert "source: write activity in public.issue" in result["reasons"]

    def test_a_write_rolled_back_is_named_write_activity(self, source, target, migrated, run_module, work_dir):
        """The write counters also count rolled-back writes: refreshing is right (conservative), but
        the reason must not claim rows were written."""
        conn = source.connect(migrated, autocommit=False)
        with conn.cursor() as cur:
            cur.execute("UPDATE account SET name = name || '!' WHERE id = 3")
        conn.rollback()
        conn.close()
        result = succeeded(run_module(module_args(source, target, migrated, work_dir)), "refreshed")
        assert "source: write activity in public.account" in result["reasons"], result["reasons"]
        assert not any("rows written" in reason for reason in result["reasons"])

    def test_open_session_on_source_forces_a_refresh(self, source, target, migrated, run_module, work_dir):
        conn = source.connect(migrated)
        try:
            result = run_module(module_args(source, target, migrated, work_dir))
        finally:
            conn.close()
        succeeded(result, "refreshed")
        assert any("other sessions are connected" in r for r in result["reasons"])


class TestRefusals:
    def test_foreign_target_is_refused_and_untouched(self, source, target, dbname, run_module, work_dir):
        create_feature_database(source, dbname)
        create_database(target, dbname)
        execute(target, dbname, "CREATE TABLE customers (id int, name text); INSERT INTO customers VALUES (1, 'x')")
        before = snapshot(target.params(), dbname)
        result = run_module(module_args(source, target, dbname, work_dir))
        assert result["failed"] and result["action"] == "refused" and result["changed"] is False
        assert "holds data this module did not put there" in result["msg"]
        assert "public.customers" in result["msg"] and "force: true" in result["msg"]
        assert snapshot(target.params(), dbname) == before
        assert marker_rows(target, dbname) == []
        assert os.listdir(work_dir) == []

        forced = run_module(module_args(source, target, dbname, work_dir, force=True))
        succeeded(forced, "migrated")
        assert_equal(source, target, dbname)
        assert execute(target, dbname, "SELECT to_regclass('public.customers')")[0][0] is None

    def test_target_changed_after_cutover_is_refused(self, source, target, migrated, run_module, work_dir):
        execute(target, migrated, "INSERT INTO account (email, name) VALUES ('app@example.com', 'written by the app')")
        execute(source, migrated, "DELETE FROM issue WHERE id = 10")
        before = snapshot(target.params(), migrated)
        result = run_module(module_args(source, target, migrated, work_dir))
        assert result["failed"] and result["action"] == "refused"
        assert "changed since this module copied it" in result["msg"] and "write activity in public.account" in result["msg"]
        assert snapshot(target.params(), migrated) == before

    def test_same_database_is_refused(self, source, dbname, run_module, work_dir):
        create_feature_database(source, dbname)
        before = snapshot(source.params(), dbname)
        other_name = dict(source.endpoint(), host="localhost")
        args = module_args(source, source, dbname, work_dir)
        args["target"] = other_name
        result = run_module(args)
        assert result["failed"] and "same database" in result["msg"], result.get("msg")
        assert snapshot(source.params(), dbname) == before

    def test_collation_mismatch_is_refused(self, source, target, dbname, run_module, work_dir):
        create_feature_database(source, dbname)
        create_database(target, dbname, lc_collate="C", lc_ctype="C")
        result = run_module(module_args(source, target, dbname, work_dir))
        assert result["failed"] and result["phase"] == "inspect"
        assert "LC_COLLATE C" in result["msg"] and "LC_COLLATE C.UTF-8" in result["msg"]
        assert "CREATE DATABASE" in result["msg"]
        assert user_tables(target, dbname) == 0 and marker_rows(target, dbname) == []

    def test_missing_role_on_target_is_refused(self, source, target, dbname, run_module, work_dir):
        create_feature_database(source, dbname)
        role = "owner_" + dbname
        execute(source, dbname, 'CREATE ROLE "%s"; ALTER TABLE account OWNER TO "%s"' % (role, role))
        create_database(target, dbname)
        result = run_module(module_args(source, target, dbname, work_dir))
        assert result["failed"] and role in result["msg"] and "CREATE ROLE" in result["msg"]
        assert user_tables(target, dbname) == 0


class TestBadInput:
    def test_unknown_source_database(self, source, target, run_module, work_dir):
        result = run_module(module_args(source, target, "no_such_db", work_dir))
        assert result["failed"] and result["phase"] == "connect"
        assert "source database 'no_such_db' does not exist on 127.0.0.1:%d" % source.port in result["msg"]
        assert "databases on the source: " in result["msg"]

    def test_missing_target_database(self, source, target, dbname, run_module, work_dir):
        create_feature_database(source, dbname)
        result = run_module(module_args(source, target, dbname, work_dir))
        assert result["failed"]
        assert "target database '%s' does not exist" % dbname in result["msg"]
        assert "CREATE DATABASE" in result["msg"] and "codacy.selfhosted.db_migration" in result["msg"]

    def test_unreachable_host(self, source, target, dbname, run_module, work_dir):
        create_database(source, dbname)
        args = module_args(source, target, dbname, work_dir)
        args["target"]["port"] = 1
        result = run_module(args)
        assert result["failed"] and "target server 127.0.0.1:1 is unreachable" in result["msg"], result["msg"]

    def test_wrong_password(self, source, target, dbname, run_module, work_dir):
        create_feature_database(source, dbname)
        args = module_args(source, target, dbname, work_dir)
        args["source"]["password"] = "wrong " + PASSWORD
        result = run_module(args)
        assert result["failed"]
        assert "source authentication failed for postgres@127.0.0.1:%d" % source.port in result["msg"]
        assert PASSWORD not in result["msg"] and PASSWORD not in result["_stdout"] + result["_stderr"]

    def test_unresolvable_host(self, source, target, dbname, run_module, work_dir):
        create_database(source, dbname)
        args = module_args(source, target, dbname, work_dir)
        args["target"]["host"] = "no-such-host.invalid"
        result = run_module(args)
        assert result["failed"] and "target host 'no-such-host.invalid' cannot be resolved" in result["msg"]

    def test_unknown_option(self, source, target, dbname, run_module, work_dir):
        result = run_module(module_args(source, target, dbname, work_dir, compression="zstd"))
        assert result["failed"] and "Unsupported parameters" in result["msg"] and "compression" in result["msg"]

    def test_unknown_verify_mode(self, source, target, dbname, run_module, work_dir):
        result = run_module(module_args(source, target, dbname, work_dir, verify="everything"))
        assert result["failed"] and "verify must be one of: counts, checksums, none, got: everything" in result["msg"]

    def test_unknown_sslmode(self, source, target, dbname, run_module, work_dir):
        args = module_args(source, target, dbname, work_dir)
        args["source"]["sslmode"] = "sometimes"
        result = run_module(args)
        assert result["failed"] and "sslmode" in result["msg"] and "sometimes" in result["msg"]

    @pytest.mark.parametrize("option, value, expected", [
        ("jobs", 0, "jobs must be between 1 and 64 (got 0)"),
        ("work_dir", "/nonexistent/work", "work_dir /nonexistent/work does not exist"),
    ])
    def test_invalid_option(self, source, target, dbname, run_module, work_dir, option, value, expected):
        args = module_args(source, target, dbname, work_dir)
        args[option] = value
        result = run_module(args)
        assert result["failed"] and expected in result["msg"] and result["phase"] == "validate"

    def test_unwritable_work_dir(self, source, target, dbname, run_module, tmp_path):
        readonly = tmp_path / "readonly"
        readonly.mkdir()
        if os.geteuid() == 0:
            # Permission bits do not stop root: a read-only mount does.
            subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(readonly)], check=True)
        else:
            os.chmod(str(readonly), 0o500)
        try:
            result = run_module(module_args(source, target, dbname, str(readonly)))
        finally:
            if os.geteuid() == 0:
                subprocess.run(["umount", str(readonly)], check=True)
        assert result["failed"] and result["phase"] == "validate"
        assert "work_dir %s is not writable" % readonly in result["msg"]


class TestCheckMode:
    def test_check_mode_reports_and_writes_nothing(self, source, target, dbname, run_module, work_dir):
        create_feature_database(source, dbname)
        create_database(target, dbname)
        before = snapshot(target.params(), dbname)
        result = run_module(module_args(source, target, dbname, work_dir), check=True)
        succeeded(result, "migrated")
        assert result["changed"] is True
        assert result["diff"]["before"] == {"state": "absent"}
        assert snapshot(target.params(), dbname) == before
        assert execute(target, dbname, "SELECT to_regnamespace(%s)", (MARKER_SCHEMA,))[0][0] is None
        assert os.listdir(work_dir) == [] and result["commands"] == []


class TestFailures:
    def test_failed_restore_quotes_errors_and_cleans_up(self, source, target, dbname, run_module, work_dir):
        create_feature_database(source, dbname)
        create_database(target, dbname)
        # A hook that makes the restore fail, hidden in the records' schema (which the module
        # ignores) so that the target still counts as empty.
        execute(target, dbname, "CREATE SCHEMA codacy_migration; "
                                "CREATE FUNCTION codacy_migration.no_ddl() RETURNS event_trigger LANGUAGE plpgsql AS "
                                "$$BEGIN IF EXISTS (SELECT 1 FROM pg_event_trigger_ddl_commands() "
                                "WHERE schema_name = 'public') THEN "
                                "RAISE EXCEPTION 'restores are forbidden here'; END IF; END$$; "
                                "CREATE EVENT TRIGGER no_ddl ON ddl_command_end WHEN TAG IN ('CREATE TABLE') "
                                "EXECUTE PROCEDURE codacy_migration.no_ddl()")
        result = run_module(module_args(source, target, dbname, work_dir))
        assert result["failed"] and result["phase"] == "pre-data"  # creating the tables, before any data
        assert "restores are forbidden here" in result["msg"] and dbname in result["msg"]
        assert "127.0.0.1:%d" % target.port in result["msg"]
        assert os.listdir(work_dir) == [], "the dump directory was left behind after a failed restore"
        assert marker_rows(target, dbname) == [("in_progress", "migrated")]
        execute(target, dbname, "DROP EVENT TRIGGER no_ddl")
        again = run_module(module_args(source, target, dbname, work_dir))
        succeeded(again, "resumed")
        assert_equal(source, target, dbname)

    @pytest.mark.parametrize("mode, tamper", [
        ("counts", "DELETE FROM public.issue WHERE id = 1"),
        ("checksums", "UPDATE public.issue SET message = 'tampered' WHERE id = 1"),
    ])
    def test_verification_fails_when_target_differs(self, source, target, dbname, run_module, work_dir, mode, tamper):
        create_feature_database(source, dbname)
        create_database(target, dbname)
        # Tamper with the restored rows when pg_restore alters issue after loading it (adding its
        # keys); the hook hides in the records' schema, which the module ignores.
        execute(target, dbname, "CREATE SCHEMA codacy_migration; "
                                "CREATE FUNCTION codacy_migration.tamper() RETURNS event_trigger LANGUAGE plpgsql AS "
                                "$$BEGIN IF EXISTS (SELECT 1 FROM pg_event_trigger_ddl_commands() "
                                "WHERE object_identity = 'public.issue') THEN %s; END IF; END$$; "
                                "CREATE EVENT TRIGGER tamper ON ddl_command_end WHEN TAG IN ('ALTER TABLE') "
                                "EXECUTE PROCEDURE codacy_migration.tamper()" % tamper)
        # One worker: the hook's write would deadlock with a parallel worker's index build.
        result = run_module(module_args(source, target, dbname, work_dir, verify=mode, jobs=1))
        assert result["failed"] and result["phase"] == "verify", result.get("msg")
        assert "public.issue differs" in result["msg"]
        assert marker_rows(target, dbname) == [("in_progress", "migrated")]
        execute(target, dbname, "DROP EVENT TRIGGER tamper")
        succeeded(run_module(module_args(source, target, dbname, work_dir, verify=mode)), "resumed")
        assert_equal(source, target, dbname)


class TestSecrets:
    # Every client program the module starts, with each data path: psql with parallel (the
    # default), vacuumdb with stream.
    @pytest.mark.parametrize("data_path, programs", [("parallel", {"pg_dump", "pg_restore", "psql"}),
                                                     ("stream", {"pg_dump", "pg_restore", "vacuumdb"})])
    def test_password_never_in_argv_nor_verbose_output(self, source, target, dbname, run_module, work_dir,
                                                       data_path, programs):
        create_feature_database(source, dbname)
        execute(source, dbname, "INSERT INTO issue (account_id, level, message) "
                                "SELECT 1, 'info', repeat(md5(i::text), 20) FROM generate_series(1, 100000) i")
        create_database(target, dbname)
        with ArgvSampler(PASSWORD) as sampler:
            result = run_module(module_args(source, target, dbname, work_dir, data_path=data_path), verbosity=3)
        succeeded(result, "migrated")
        assert programs | {"ansible-playbook"} <= sampler.seen, "saw no client: %s" % sampler.seen
        assert sampler.leaks == []
        output = result["_stdout"] + result["_stderr"]
        assert "codacy_db_migrate" in output and PASSWORD not in output
        assert not re.search(re.escape(PASSWORD[:8]), output)
