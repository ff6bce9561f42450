"""pgtools: client versions and pg_restore's errors."""

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
