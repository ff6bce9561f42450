"""Unit tests of the migration's pure logic: the outcome table and option validation."""

import os

import pytest

from ansible_collections.codacy.selfhosted.plugins.module_utils import migration as mod

SOURCE = {"system_identifier": "7", "host": "db", "port": 5432, "database": "analysis"}
FP = {"catalog": "c1", "tables": {"public.t": [1, 0, 0]}, "sequences": {"public.s": "5"}, "server": ["t0", None]}
TARGET_FP = {"catalog": "x1", "tables": {"public.t": [1, 0, 0]}, "sequences": {"public.s": "5"}, "server": None}


def record(state="complete", source=None, source_fp=None, target_fp=None):
    return {"state": state, "source": dict(source or SOURCE), "source_fingerprint": source_fp or FP,
            "target_fingerprint": target_fp or TARGET_FP, "started_at": "t1", "finished_at": "t2"}


def decide(content=(), rec=None, source_fp=None, target_fp=None, sessions=(), force=False, source=None):
    return mod.decide(list(content), rec, source_fp or FP, source or SOURCE, target_fp or TARGET_FP, list(sessions),
                      force)


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

    def test_unchanged_source(self):
        assert decide(content=[("table", "public.t")], rec=record()) == (
            "unchanged", ["the source is unchanged since the copy of t2"])

    @pytest.mark.parametrize("part, value, expected", [
        ("catalog", "c2", "the schema changed"),
        ("tables", {"public.t": [2, 0, 0]}, "rows written in public.t"),
        ("tables", {"public.t": [1, 0, 0], "public.u": [0, 0, 0]}, "rows written in public.u"),
        ("sequences", {"public.s": "6"}, "sequence public.s moved"),
        ("server", ["t9", None], "the server restarted"),
    ])
    def test_any_source_change_refreshes(self, part, value, expected):
        action, reasons = decide(rec=record(), source_fp=changed(FP, **{part: value}))
        assert action == "refreshed"
        assert any(expected in reason for reason in reasons), reasons

    def test_other_sessions_on_the_source_prevent_unchanged(self):
        action, reasons = decide(rec=record(), sessions=["pid 1 codacy@10.0.0.1 (app) idle"])
        assert action == "refreshed"
        assert "pid 1" in reasons[0]

    def test_target_changed_since_copy_is_refused(self):
        action, reasons = decide(rec=record(), target_fp=changed(TARGET_FP, tables={"public.t": [1, 1, 0]}))
        assert action == "refused"
        assert "rows written in public.t" in reasons[0] and "force: true" in reasons[0]

    def test_target_changed_with_force_is_refreshed(self):
        action = decide(rec=record(), target_fp=changed(TARGET_FP, catalog="x2"), force=True)[0]
        assert action == "refreshed"

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
        assert mod.validate(params(source=endpoint)) == ["source.host must not be empty (got '')"]


def test_pattern_matches_exactly_one_name():
    assert mod.pattern('we"ird db;--') == '"we""ird db;--"'
    assert mod.pattern("Public") == '"Public"'


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


def test_restore_list_skips_only_existing_schemas():
    existing = {"public", "codacy_migration"}
    assert mod.creates_existing_schema("5; 2615 2200 SCHEMA - public pg_database_owner", existing)
    assert not mod.creates_existing_schema("6; 2615 16385 SCHEMA - publicity postgres", existing)
    assert not mod.creates_existing_schema("7; 1259 16390 TABLE public account postgres", existing)
    assert not mod.creates_existing_schema("3414; 0 0 COMMENT - SCHEMA public pg_database_owner", existing)
