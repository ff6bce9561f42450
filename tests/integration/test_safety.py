"""The safety contract, tried the way an application would break it, against real servers.

- Every kind of object pg_dump emits, changed on the source, is seen as a change by the module's
  judgement of the source, and the next copy equals the source (object_kinds.KINDS; the refreshes
  also prove that clearing removes every object the previous copy created).
- Sessions the connecting user cannot see count as sessions.
- Writes the statistics counters cannot see (track_counts off) are not trusted away.
- An application connected to the target is never clobbered.
- A target whose statistics were lost and which was then written in place is refused.

These runs call the module's code in-process (conftest.run_in_process): several cases must act
within the 10 seconds during which a session's statistics stay pending.
"""

import shutil
import tempfile

import pytest
from ansible_collections.codacy.selfhosted.plugins.module_utils import catalog, fingerprint
from ansible_collections.codacy.selfhosted.plugins.module_utils.inspection import Look, source_changes
from tests.integration import object_kinds
from tests.integration.conftest import PASSWORD, module_args, run_in_process, succeeded
from tests.integration.features import create_database, create_feature_database, execute
from tests.support.appsession import AppSession
from tests.support.compare import compare, dump_diff, snapshot
from tests.support.pgserver import PgServer

MARKER_SCHEMA = "codacy_migration"


def ensure_role(server, role, *options):
    server.execute('DO $$BEGIN CREATE ROLE "%s" %s; EXCEPTION WHEN duplicate_object THEN NULL; END$$'
                   % (role, " ".join(options)))


def quoted(name):
    return '"%s"' % name.replace('"', '""')


def assert_same(source, target, database):
    differences = compare(source.params(), database, target.params(), database)
    assert differences == [], "\n".join(differences)
    definitions = dump_diff(source.params(), database, target.params(), database)
    assert definitions == [], "\n".join(definitions)


def written(server, database, table):
    """The statistics system's counts of rows written in `table` (what the fingerprint reads)."""
    return execute(server, database, "SELECT pg_stat_clear_snapshot(); SELECT n_tup_ins, n_tup_upd, n_tup_del"
                                     " FROM pg_stat_all_tables WHERE relid = %s::regclass", (table,))[0]


@pytest.fixture
def own_target():
    with PgServer(password=PASSWORD) as server:
        yield server


@pytest.fixture
def work_dir():
    path = tempfile.mkdtemp(prefix="codacy-safety-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


# The matrix copies after every GROUP changes (each of them is seen on its own first): one copy per
# kind would take minutes.
GROUP = 12


@pytest.fixture(scope="module")
def kinds_database(source, target):
    """A database with one object of every kind, copied once; the tests change it one kind at a time."""
    name = "kinds"
    work_dir = tempfile.mkdtemp(prefix="codacy-kinds-")
    for server in (source, target):
        for role in object_kinds.ROLES:
            ensure_role(server, role)
    create_feature_database(source, name)
    execute(source, name, object_kinds.SETUP)
    for kind in object_kinds.KINDS:
        if kind.setup:
            execute(source, name, kind.setup)
    create_database(target, name)
    args = module_args(source, target, name, work_dir, verify="checksums")
    succeeded(run_in_process(args), "migrated")
    yield name, args
    shutil.rmtree(work_dir, ignore_errors=True)


def source_look(server, database):
    """What the module sees of the source now (its fingerprint, counting problems and sessions)."""
    conn = server.connect(database)
    try:
        return Look(fingerprint.read(conn, MARKER_SCHEMA), fingerprint.counting_problems(conn),
                    catalog.other_sessions(conn))
    finally:
        conn.close()


@pytest.mark.parametrize("kind", object_kinds.KINDS, ids=[kind.name for kind in object_kinds.KINDS])
def test_every_kind_of_change_is_seen_and_copied(source, target, kinds_database, kind):
    name, args = kinds_database
    position = object_kinds.KINDS.index(kind)
    if position % GROUP == 0:
        # The copy of the previous group is recognised: no change seen where there is none.
        succeeded(run_in_process(args), "unchanged")
    before = source_look(source, name).fingerprint
    execute(source, name, kind.change.format(db=quoted(name)))
    # The module's own judgement of the source, against the fingerprint from just before this change.
    seen = source_changes({"source_fingerprint": before}, source_look(source, name))
    assert seen, "the change was not seen"
    if position % GROUP == GROUP - 1 or position == len(object_kinds.KINDS) - 1:
        result = succeeded(run_in_process(args), "refreshed")
        assert any(reason.startswith("source: ") for reason in result["reasons"]), result["reasons"]
        assert_same(source, target, name)


class TestSessions:
    @pytest.fixture
    def setup(self, source, target, dbname, work_dir):
        """An administrator that is not a superuser and may not read other roles' activity (as a
        managed service's admin that was not granted pg_read_all_stats), and an application role."""
        for server in (source, target):
            ensure_role(server, "app", "LOGIN PASSWORD 'apppw'")
            ensure_role(server, "admin", "LOGIN PASSWORD 'adminpw'")
        create_feature_database(source, dbname)
        execute(source, dbname, "GRANT SELECT ON ALL TABLES IN SCHEMA public TO admin;"
                                " GRANT SELECT ON ALL SEQUENCES IN SCHEMA public TO admin;"
                                " GRANT INSERT, SELECT ON issue, account TO app; GRANT USAGE ON issue_id_seq TO app")
        create_database(target, dbname)
        args = module_args(source, target, dbname, work_dir)
        args["source"].update(user="admin", password="adminpw")
        succeeded(run_in_process(args), "migrated")
        return args

    def test_a_session_the_user_cannot_see_counts_as_a_session(self, source, target, dbname, setup):
        with AppSession(source, dbname, user="app", password="apppw") as app:
            before = written(source, dbname, "issue")
            app.write_unflushed("INSERT INTO issue (account_id, level, message) VALUES (1, 'info', 'pending')")
            assert written(source, dbname, "issue") == before, "premise: the write's counters are still pending"
            result = run_in_process(setup)
        succeeded(result, "refreshed")
        assert any("cannot see" in reason and "pg_read_all_stats" in reason for reason in result["reasons"]), \
            result["reasons"]
        assert_same(source, target, dbname)

    def test_an_application_on_the_target_is_not_clobbered(self, source, target, dbname, setup):
        args = setup
        with AppSession(target, dbname, application_name="codacy-api") as app:
            before = written(target, dbname, "account")
            app.write_unflushed("UPDATE account SET name = 'after cutover' WHERE id = 3")
            assert written(target, dbname, "account") == before, "premise: the write's counters are still pending"
            execute(source, dbname, "DELETE FROM issue WHERE id = 11")
            before = snapshot(target.params(), dbname)
            result = run_in_process(args)
            assert result.get("failed") and result["action"] == "refused", result.get("msg")
            assert "codacy-api" in result["msg"] and "127.0.0.1" in result["msg"] and "force" in result["msg"]
            assert snapshot(target.params(), dbname) == before
        # The user's explicit choice replaces the copy.
        forced = run_in_process(dict(args, force=True))
        succeeded(forced, "refreshed")
        assert_same(source, target, dbname)


class TestCountersThatCannotTell:
    @pytest.mark.parametrize("setting", [
        "ALTER DATABASE {db} SET track_counts = off",
        "ALTER ROLE app IN DATABASE {db} SET track_counts = off",
    ])
    def test_track_counts_off_is_not_trusted(self, source, target, dbname, work_dir, setting):
        ensure_role(source, "app", "LOGIN PASSWORD 'apppw'")
        ensure_role(target, "app", "LOGIN PASSWORD 'apppw'")
        create_feature_database(source, dbname)
        execute(source, dbname, "GRANT INSERT, SELECT ON issue TO app; GRANT USAGE ON issue_id_seq TO app;"
                                + setting.format(db=quoted(dbname)))
        create_database(target, dbname)
        args = module_args(source, target, dbname, work_dir)
        succeeded(run_in_process(args), "migrated")
        before = written(source, dbname, "issue")
        with AppSession(source, dbname, user="app", password="apppw") as app:
            app.execute("INSERT INTO issue (account_id, level, message) VALUES (1, 'info', 'not counted')")
        assert written(source, dbname, "issue") == before, "premise: track_counts off hides the write"
        result = succeeded(run_in_process(args), "refreshed")
        assert any("track_counts" in reason for reason in result["reasons"]), result["reasons"]
        assert_same(source, target, dbname)

    def test_track_counts_off_on_the_server_is_not_trusted(self, target, dbname, work_dir):
        with PgServer(password=PASSWORD, settings={"track_counts": "off"}) as source:
            create_feature_database(source, dbname)
            create_database(target, dbname)
            args = module_args(source, target, dbname, work_dir)
            succeeded(run_in_process(args), "migrated")
            execute(source, dbname, "UPDATE issue SET message = 'not counted' WHERE id = 3")
            result = succeeded(run_in_process(args), "refreshed")
            assert any("track_counts" in reason for reason in result["reasons"]), result["reasons"]
            assert_same(source, target, dbname)


class TestTargetStatisticsLost:
    """The target's write counters are gone (reset, crash, failover): only a proof may say `unchanged`."""

    @pytest.fixture
    def copied(self, source, own_target, dbname, work_dir):
        create_feature_database(source, dbname)
        create_database(own_target, dbname)
        args = module_args(source, own_target, dbname, work_dir)
        succeeded(run_in_process(args), "migrated")
        return args

    @staticmethod
    def lose_statistics(target, dbname, how):
        if how == "reset":
            execute(target, dbname, "SELECT pg_stat_reset()")
        else:  # a crash after the copy was durable: the server recovers, its statistics are discarded
            execute(target, dbname, "CHECKPOINT")  # (the test servers run with synchronous_commit off)
            target.kill()
            target.start()

    @pytest.mark.parametrize("how", ["reset", "crash"])
    @pytest.mark.parametrize("write", [
        "UPDATE account SET name = 'same size' WHERE id = 5",
        "DELETE FROM issue WHERE id = 12",
    ])
    def test_a_write_after_the_loss_is_refused(self, source, own_target, dbname, copied, how, write):
        self.lose_statistics(own_target, dbname, how)
        execute(own_target, dbname, write)
        execute(source, dbname, "DELETE FROM issue WHERE id = 13")
        before = snapshot(own_target.params(), dbname)
        result = run_in_process(copied)
        assert result.get("failed") and result["action"] == "refused", result.get("msg") or result["reasons"]
        assert "changed since this module copied it" in result["msg"] and "force: true" in result["msg"]
        assert snapshot(own_target.params(), dbname) == before

    @pytest.mark.parametrize("how", ["reset", "crash"])
    def test_no_write_after_the_loss_is_proven(self, source, own_target, dbname, copied, how):
        self.lose_statistics(own_target, dbname, how)
        execute(source, dbname, "DELETE FROM issue WHERE id = 14")
        succeeded(run_in_process(copied), "refreshed")
        assert_same(source, own_target, dbname)

    def test_a_write_the_target_did_not_count_is_refused(self, source, own_target, dbname, copied):
        # (A role setting for every database, which is no definition of this one.)
        execute(own_target, dbname, "ALTER ROLE postgres SET track_counts = off")
        before = written(own_target, dbname, "account")
        with AppSession(own_target, dbname) as app:
            app.execute("UPDATE account SET name = 'uncounted' WHERE id = 7")
        assert written(own_target, dbname, "account") == before, "premise: the write was not counted"
        execute(source, dbname, "DELETE FROM issue WHERE id = 15")
        result = run_in_process(copied)
        assert result.get("failed") and result["action"] == "refused", result.get("msg") or result["reasons"]
        assert "track_counts" in result["msg"] and "rows written in public.account" in result["msg"]

    def test_a_clean_restart_keeps_the_counters(self, source, own_target, dbname, copied):
        own_target.stop()
        own_target.start()
        succeeded(run_in_process(copied), "unchanged")
        execute(own_target, dbname, "UPDATE account SET name = 'written' WHERE id = 6")
        result = run_in_process(copied)
        assert result.get("failed") and result["action"] == "refused", result.get("msg")


class TestSourceRestarts:
    @pytest.fixture
    def own_source(self):
        with PgServer(password=PASSWORD) as server:
            yield server

    def test_a_crash_of_the_source_is_never_taken_for_unchanged(self, own_source, target, dbname, work_dir):
        # Crash recovery empties unlogged tables without any transaction.
        create_feature_database(own_source, dbname)
        execute(own_source, dbname, "CREATE UNLOGGED TABLE cache AS SELECT i FROM generate_series(1, 100) i")
        create_database(target, dbname)
        args = module_args(own_source, target, dbname, work_dir)
        succeeded(run_in_process(args), "migrated")
        execute(own_source, dbname, "CHECKPOINT")
        own_source.kill()
        own_source.start()
        assert execute(own_source, dbname, "SELECT count(*) FROM cache")[0][0] == 0, "premise: recovery emptied it"
        succeeded(run_in_process(args), "refreshed")
        assert_same(own_source, target, dbname)

    def test_a_clean_restart_of_an_idle_source_is_unchanged(self, own_source, target, dbname, work_dir):
        create_feature_database(own_source, dbname)
        create_database(target, dbname)
        args = module_args(own_source, target, dbname, work_dir)
        succeeded(run_in_process(args), "migrated")
        own_source.stop()
        own_source.start()
        succeeded(run_in_process(args), "unchanged")
