"""Unit tests of the migration's pure logic: the outcome table and option validation."""

import os

import pytest

from ansible_collections.codacy.selfhosted.plugins.module_utils import inspection as mod

SOURCE = {"system_identifier": "7", "host": "db", "port": 5432, "database": "analysis"}
STATS = {"cluster_reset": "t0", "database_reset": None}
FP = {"format": 2, "catalogs": {"pg_class": "c1", "pg_proc": "p1"}, "tables": {"public.t": [1, 0, 0]},
      "sequences": {"public.s": "5"}, "statistics": STATS, "xids": {"next": 100, "running": []}}
TARGET_FP = dict(FP, catalogs={"pg_class": "x1"}, xids={"next": 900, "running": [850]},
                 rows=[["public", "t", 1]])


def record(state="complete", source=None, source_fp=None, target_fp=None):
    return {"state": state, "source": dict(source or SOURCE), "source_fingerprint": source_fp or FP,
            "target_fingerprint": target_fp or TARGET_FP, "started_at": "t1", "finished_at": "t2"}


def look(fp, counting=(), sessions=()):
    return mod.Look(fp, list(counting), list(sessions))


class Scan:
    """A stand-in for reading the target's rows: records that it was asked."""

    def __init__(self, written=(), unprovable=None):
        self.result, self.calls = (list(written), unprovable), 0

    def __call__(self):
        self.calls += 1
        return self.result


def decide(content=(), rec=None, source=None, target=None, force=False, identity=None, scan=None):
    return mod.decide(list(content), rec, identity or SOURCE, source or look(dict(FP, xids={"next": 101, "running": []})),
                      target or look(TARGET_FP), force, scan or Scan())


def changed(fp, **parts):
    new = dict(fp)
    new.update(parts)
    return new


class TestDecide:
    def test_empty_target_is_migrated(self):
        assert decide()[0] == "migrated"

    def test_foreign_content_is_refused_and_named(self):
        action, reasons = decide(content=[("table", "public.users"), ("foreign table", "public.remote")])
        assert action == "refused"
        assert "public.users" in reasons[0] and "force: true" in reasons[0]

    def test_foreign_content_with_force_is_migrated(self):
        assert decide(content=[("table", "public.users")], force=True)[0] == "migrated"

    def test_unfinished_copy_is_resumed(self):
        assert decide(content=[("table", "public.t")], rec=record(state="in_progress"))[0] == "resumed"

    def test_unchanged_source_proven_by_the_transaction_horizon(self):
        # Nothing took a transaction id: even counters that cannot be trusted do not matter.
        source = look(changed(FP, statistics=dict(STATS, database_reset="t9")), counting=["track_counts is off"])
        assert decide(rec=record(), source=source) == ("unchanged", ["the source is unchanged since the copy of t2"])

    def test_no_proof_across_a_crash(self):
        # Crash recovery empties unlogged tables without a transaction id; it discards the statistics.
        source = look(changed(FP, statistics=dict(STATS, cluster_reset="t9")))
        action, reasons = decide(rec=record(), source=source)
        assert action == "refreshed" and "discarded" in reasons[0]

    def test_unchanged_source_trusted_from_its_counters(self):
        assert decide(rec=record())[0] == "unchanged"

    @pytest.mark.parametrize("part, value, expected", [
        ("catalogs", {"pg_class": "c1", "pg_proc": "p2"}, "definitions changed in pg_proc (functions or procedures)"),
        ("catalogs", {"pg_class": "c1", "pg_proc": "p1", "pg_policy": "new"}, "pg_policy (row-level security"),
        ("tables", {"public.t": [2, 0, 0]}, "write activity in public.t"),
        ("tables", {"public.t": [1, 0, 0], "public.u": [0, 0, 0]}, "write activity in public.u"),
        ("sequences", {"public.s": "6"}, "sequence public.s moved"),
        ("statistics", dict(STATS, cluster_reset="t9"), "statistics were discarded"),
        ("statistics", dict(STATS, database_reset="t9"), "statistics were reset"),
        ("tables", {"public.t": [0, 0, 0]}, "tables' statistics were reset"),
    ])
    def test_any_source_change_refreshes(self, part, value, expected):
        source = look(changed(FP, xids={"next": 105, "running": []}, **{part: value}))
        action, reasons = decide(rec=record(), source=source)
        assert action == "refreshed"
        assert any(expected in reason for reason in reasons), reasons

    def test_definitions_are_compared_even_when_nothing_was_written(self):
        action, reasons = decide(rec=record(), source=look(changed(FP, catalogs={"pg_class": "c2", "pg_proc": "p1"})))
        assert action == "refreshed" and "pg_class" in reasons[0]

    def test_counters_that_do_not_count_are_not_trusted(self):
        source = look(dict(FP, xids={"next": 105, "running": []}), counting=["ALTER DATABASE x SET track_counts = off"])
        action, reasons = decide(rec=record(), source=source)
        assert action == "refreshed" and "track_counts" in reasons[0]

    def test_a_transaction_running_at_the_copy_proves_nothing(self):
        rec = record(source_fp=changed(FP, xids={"next": 100, "running": [99]}))
        source = look(changed(FP, tables={"public.t": [0, 0, 0]}))
        assert decide(rec=rec, source=source)[0] == "refreshed"

    def test_other_sessions_on_the_source_prevent_unchanged(self):
        action, reasons = decide(rec=record(), source=look(FP, sessions=["pid 1 codacy@10.0.0.1 (app) idle"]))
        assert action == "refreshed"
        assert "pid 1" in reasons[0]

    def test_target_changed_since_copy_is_refused(self):
        target = look(changed(TARGET_FP, tables={"public.t": [1, 1, 0]}))
        action, reasons = decide(rec=record(), target=target)
        assert action == "refused"
        assert "write activity in public.t" in reasons[0] and "force: true" in reasons[0]

    def test_target_definitions_changed_is_refused(self):
        action, reasons = decide(rec=record(), target=look(changed(TARGET_FP, catalogs={"pg_class": "x2"})))
        assert action == "refused" and "pg_class" in reasons[0]

    def test_target_changed_with_force_is_refreshed(self):
        action = decide(rec=record(), target=look(changed(TARGET_FP, catalogs={"pg_class": "x2"})), force=True)[0]
        assert action == "refreshed"

    def test_sessions_on_the_target_are_refused_before_any_copy(self):
        target = look(TARGET_FP, sessions=["pid 7 app@10.0.0.9 (codacy-api) idle"])
        source = look(changed(FP, tables={"public.t": [3, 0, 0]}, xids={"next": 105, "running": []}))
        action, reasons = decide(rec=record(), source=source, target=target)
        assert action == "refused" and "codacy-api" in reasons[0] and "force: true" in reasons[0]
        assert decide(target=target)[0] == "refused"
        assert decide(rec=record(), source=source, target=target, force=True)[0] == "refreshed"
        # Nothing is written when the source is unchanged: no reason to refuse.
        assert decide(rec=record(), target=target)[0] == "unchanged"

    @pytest.fixture
    def lost(self):
        """A target whose statistics were discarded since its copy, and a changed source."""
        target = look(changed(TARGET_FP, statistics=dict(STATS, cluster_reset="t5"), tables={"public.t": [0, 0, 0]}))
        source = look(changed(FP, sequences={"public.s": "6"}))
        return source, target

    def test_lost_target_counters_make_its_rows_read_before_a_refresh(self, lost):
        scan = Scan()
        action, reasons = decide(rec=record(), source=lost[0], target=lost[1], scan=scan)
        assert action == "refreshed" and scan.calls == 1
        assert "rows were read to prove it unchanged" in reasons[-1]

    def test_lost_target_counters_and_rows_written_are_refused(self, lost):
        action, reasons = decide(rec=record(), source=lost[0], target=lost[1], scan=Scan(["rows written in public.t"]))
        assert action == "refused" and "rows written in public.t" in reasons[0] and "discarded" in reasons[0]

    def test_lost_target_counters_and_no_proof_are_refused(self, lost):
        action, reasons = decide(rec=record(), source=lost[0], target=lost[1], scan=Scan(unprovable="no counts"))
        assert action == "refused" and "cannot be proven" in reasons[0] and "force: true" in reasons[0]

    def test_lost_target_counters_are_not_read_when_nothing_will_be_written(self, lost):
        scan = Scan(["rows written in public.t"])
        assert decide(rec=record(), target=lost[1], scan=scan)[0] == "unchanged" and scan.calls == 0

    def test_a_copy_recorded_by_1_0_0_is_refreshed_only_with_proof(self):
        old = {"catalog": "c1", "tables": {}, "sequences": {}, "server": ["t0", None]}
        rec = dict(record(source_fp=old, target_fp=old), tool_version="1.0.0")
        action, reasons = decide(rec=rec, scan=Scan(unprovable="no row counts"))
        assert action == "refused" and "recorded by version 1.0.0" in reasons[0]
        assert decide(rec=rec, force=True)[0] == "refreshed"

    def test_copy_of_another_source_is_refused(self):
        other = dict(SOURCE, database="results")
        action, reasons = decide(rec=record(source=other))
        assert action == "refused"
        assert "db:5432/results" in reasons[0]


def params(**overrides):
    endpoint = {"host": "h", "port": 5432, "user": "u", "password": "p", "sslmode": "prefer", "sslrootcert": None}
    base = {"database": "analysis", "target_database": None, "source": dict(endpoint), "target": dict(endpoint),
            "jobs": 2, "connect_timeout": 10, "timeout": 0, "schemas": [], "work_dir": "/tmp"}
    base.update(overrides)
    return base


class TestValidate:
    def test_good_options(self):
        assert mod.validate(params()) == []

    @pytest.mark.parametrize("overrides, expected", [
        ({"jobs": 0}, "jobs must be between 1 and 64 (got 0)"),
        ({"jobs": -3}, "jobs must be between 1 and 64 (got -3)"),
        ({"jobs": 10000}, "jobs must be between 1 and 64 (got 10000)"),
        ({"database": ""}, "database must be a non-empty database name"),
        ({"target_database": "a\x00b"}, "target_database must be a non-empty database name"),
        ({"timeout": -1}, "timeout must be 0 or more seconds (got -1)"),
        ({"connect_timeout": -5}, "connect_timeout must be 0 or more seconds (got -5)"),
        ({"schemas": ["public", ""]}, "schemas must hold non-empty schema names"),
        ({"work_dir": "/nonexistent/dir"}, "work_dir /nonexistent/dir does not exist"),
        ({"work_dir": "/etc/hostname"}, "work_dir /etc/hostname is not a directory"),
    ])
    def test_bad_options_are_named(self, overrides, expected):
        problems = mod.validate(params(**overrides))
        assert len(problems) == 1 and expected in problems[0], problems

    @pytest.mark.parametrize("side", ["source", "target"])
    @pytest.mark.parametrize("port", [0, 70000])
    def test_port_range(self, side, port):
        endpoint = dict(params()[side], port=port)
        problems = mod.validate(params(**{side: endpoint}))
        assert problems == ["%s.port must be between 1 and 65535 (got %d)" % (side, port)]

    def test_missing_sslrootcert(self):
        endpoint = dict(params()["target"], sslrootcert="/nonexistent/ca.pem")
        problems = mod.validate(params(target=endpoint))
        assert problems == ["target.sslrootcert /nonexistent/ca.pem is not a readable file: give the path of the CA bundle"]

    def test_empty_host(self):
        endpoint = dict(params()["source"], host="")
        assert mod.validate(params(source=endpoint)) == ["source.host is empty: set it to the server's host name or address"]

    def test_missing_user(self):
        endpoint = dict(params()["target"])
        del endpoint["user"]
        assert mod.validate(params(target=endpoint)) == ["target.user is missing: set it to the role to connect as"]

    def test_names_are_the_callers(self):
        """The role's preflight names its own variables: db_migration_jobs, not jobs."""
        endpoint = dict(params()["source"], port=0)
        problems = mod.validate(params(jobs=0, source=endpoint, work_dir="/etc/hostname"),
                                name=lambda option: "db_migration_" + option)
        assert problems == ["db_migration_source.port must be between 1 and 65535 (got 0)",
                            "db_migration_jobs must be between 1 and 64 (got 0): use about the number of CPU cores "
                            "of the servers, e.g. 2 or 4",
                            "db_migration_work_dir /etc/hostname is not a directory: create it, or choose a directory "
                            "with room for the dump"]

    def test_options_the_caller_lacks_are_not_checked(self):
        lacking = params()
        for option in ("database", "target_database", "timeout"):
            del lacking[option]
        assert mod.validate(lacking) == []


def test_same_database_by_system_identifier():
    class E:
        def __init__(self, host, port):
            self.host, self.port = host, port
    src, tgt = {"system_identifier": "1"}, {"system_identifier": "1"}
    assert mod.same_database(src, tgt, E("a", 1), E("b", 2), "db", "db")
    assert not mod.same_database(src, tgt, E("a", 1), E("b", 2), "db", "other")
    assert not mod.same_database(src, {"system_identifier": "2"}, E("a", 1), E("a", 1), "db", "db")
    unknown = {"system_identifier": None, "started": "2026-11-26 10:00:00.123456+00"}
    assert mod.same_database(unknown, dict(unknown), E("a", 1), E("b", 2), "db", "db")
    assert mod.same_database(unknown, dict(unknown, started="other"), E("A", 1), E("a", 1), "db", "db")
    assert not mod.same_database(unknown, dict(unknown, started="other"), E("a", 1), E("b", 2), "db", "db")


def test_version_matches_galaxy_yml():
    from ansible_collections.codacy.selfhosted.plugins.module_utils.version import COLLECTION_VERSION
    root = os.path.join(os.path.dirname(__file__), "..", "..", "..", "..")
    with open(os.path.join(root, "galaxy.yml")) as handle:
        galaxy = dict(line.split(":", 1) for line in handle if line.startswith("version:"))
    assert galaxy["version"].strip() == COLLECTION_VERSION
