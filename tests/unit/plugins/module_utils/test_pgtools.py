"""pgtools: client versions, pg_restore's errors, name patterns and table-of-contents lines."""

import pytest

from ansible_collections.codacy.selfhosted.plugins.module_utils import pgtools


class TestTools:
    @pytest.mark.parametrize("text, major", [("17.2", 17), ("13.16 (Debian 13.16-0+deb11u1)", 13), ("9.6.24", 9)])
    def test_major(self, text, major):
        assert pgtools.major_of(text) == major

    def test_client_older_than_server_is_refused_with_both_versions(self):
        clients = {"major": 13, "version": "13.16", "dir": "/usr/lib/postgresql/13/bin"}
        with pytest.raises(pgtools.ToolProblem) as err:
            pgtools.check_client_version(clients, 17, "17.2")
        assert "pg_dump 13.16" in str(err.value) and "PostgreSQL 17.2" in str(err.value)
        assert "postgresql-client-17" in str(err.value)

    def test_first_errors(self, tmp_path):
        log = tmp_path / "log"
        log.write_text("pg_restore: connecting\npg_restore: error: could not execute query: ERROR: boom\nmore\n")
        assert pgtools.first_errors(str(log)) == ["pg_restore: error: could not execute query: ERROR: boom"]


def test_pattern_matches_exactly_one_name():
    assert pgtools.pattern('we"ird db;--') == '"we""ird db;--"'
    assert pgtools.pattern("Public") == '"Public"'


def test_restore_list_skips_only_existing_schemas():
    existing = {"public", "codacy_migration"}
    assert pgtools.creates_existing_schema("5; 2615 2200 SCHEMA - public pg_database_owner", existing)
    assert not pgtools.creates_existing_schema("6; 2615 16385 SCHEMA - publicity postgres", existing)
    assert not pgtools.creates_existing_schema("7; 1259 16390 TABLE public account postgres", existing)
    assert not pgtools.creates_existing_schema("3414; 0 0 COMMENT - SCHEMA public pg_database_owner", existing)


def test_restore_passes():
    # Partitioned index attachments one at a time, then foreign keys and comments on constraints.
    assert pgtools.restore_pass("7178; 0 0 INDEX ATTACH public trigger_parted_p1_1_pkey postgres") == 1
    assert pgtools.restore_pass("6901; 2606 23800 FK CONSTRAINT public issue issue_account_id_fkey postgres") == 2
    assert pgtools.restore_pass("6950; 0 0 COMMENT public CONSTRAINT issue_account_id_fkey ON issue postgres") == 2
    assert pgtools.restore_pass("6910; 2606 23751 CONSTRAINT public trigger_parted_p1 trigger_parted_p1_pkey postgres") == 0
    assert pgtools.restore_pass("6800; 1259 23700 INDEX public issue_account_idx postgres") == 0
    assert pgtools.restore_pass("215; 1259 16392 TABLE public FK CONSTRAINT postgres") == 0
    assert pgtools.restore_pass("3352; 0 16392 MATERIALIZED VIEW DATA public mv postgres") == 0
    assert pgtools.restore_pass(";     Dumped from database version: 15.18") == 0
