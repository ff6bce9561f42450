"""Unit tests of module_utils' pure logic: secrets handling, command lines, parsing."""

import os
import stat

import pytest

from ansible_collections.codacy.selfhosted.plugins.module_utils import connection, dbprops, fingerprint, pgtools

PASSWORD = "pa'ss \"wo:rd\\x"


def endpoint(**overrides):
    options = {"host": "db.example", "port": 5433, "user": "admin", "password": PASSWORD,
               "sslmode": "verify-full", "sslrootcert": "/etc/ca.pem"}
    options.update(overrides)
    return connection.Endpoint("target", options)


class TestSecrets:
    def test_conninfo_has_everything_but_the_password(self):
        info = endpoint().conninfo('we"ird db;--')
        assert "password" not in info and PASSWORD not in info
        assert "dbname='we\"ird db;--'" in info
        assert "sslmode=verify-full" in info and "sslrootcert=/etc/ca.pem" in info

    def test_source_conninfo_is_read_only(self):
        assert "default_transaction_read_only=on" in endpoint().conninfo("x", read_only=True)
        assert "default_transaction_read_only" not in endpoint().conninfo("x")

    def test_passfile_escapes_colon_and_backslash(self):
        line = connection.passfile_line(endpoint())
        assert line == "db.example:5433:*:admin:pa'ss \"wo\\:rd\\\\x"

    def test_passfile_is_private(self, tmp_path):
        path = connection.write_passfile(str(tmp_path), [endpoint(), endpoint(host="src", password=None)])
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        with open(path) as handle:
            assert handle.read().count("\n") == 1

    def test_no_password_no_passfile(self, tmp_path):
        assert connection.write_passfile(str(tmp_path), [endpoint(password=None)]) is None

    def test_child_environment_drops_libpq_overrides(self, monkeypatch):
        monkeypatch.setenv("PGPASSWORD", "leaked")
        monkeypatch.setenv("PGHOST", "elsewhere")
        env = connection.child_environment("/private/pgpass")
        assert env["PGPASSFILE"] == "/private/pgpass"
        assert "PGPASSWORD" not in env and "PGHOST" not in env

    def test_child_environment_keeps_callers_password_sources_without_passfile(self, monkeypatch):
        monkeypatch.setenv("PGPASSWORD", "from-env")
        assert connection.child_environment(None)["PGPASSWORD"] == "from-env"


class TestFailureMessages:
    @pytest.mark.parametrize("libpq, expected", [
        ('connection to server at "db.example" (10.0.0.1), port 5433 failed: FATAL:  password authentication failed '
         'for user "admin"', "target authentication failed for admin@db.example:5433: check target.user and target.password"),
        ('could not translate host name "db.example" to address: Name or service not known',
         "target host 'db.example' cannot be resolved"),
        ('connection to server at "db.example", port 5433 failed: Connection refused',
         "target server db.example:5433 is unreachable"),
        ('connection to server at "db.example", port 5433 failed: FATAL:  database "x" does not exist',
         "target database 'x' does not exist on db.example:5433"),
        ("timeout expired", "target server db.example:5433 did not answer within 10s"),
    ])
    def test_classified(self, libpq, expected):
        message = endpoint().describe_failure("x", Exception(libpq))
        assert message.startswith(expected), message
        assert PASSWORD not in message


class TestSettings:
    @pytest.mark.parametrize("stored, names", [
        ('"$user", public', ["$user", "public"]),
        ('a, "b,c", "d""e"', ["a", "b,c", 'd"e']),
        ("single", ["single"]),
        ("", []),
    ])
    def test_split_guc_list(self, stored, names):
        assert dbprops.split_guc_list(stored) == names


class TestFingerprint:
    base = {"format": 2, "catalogs": {"pg_class": "a"}, "tables": {"public.t": [1, 2, 3]}, "sequences": {},
            "statistics": {"cluster_reset": "t0", "database_reset": None}, "xids": {"next": 10, "running": []}}

    def test_equal(self):
        assert fingerprint.definition_changes(self.base, dict(self.base)) == []
        assert fingerprint.write_changes(self.base, dict(self.base)) == []
        assert fingerprint.counters_lost(self.base, dict(self.base)) is None

    def test_limit(self):
        found = ["write activity in public.t%d" % i for i in range(20)]
        assert fingerprint.limited(found, 3) == found[:3] + ["and 17 more"]

    def test_digest_is_stable(self):
        assert fingerprint.digest(self.base) == fingerprint.digest(dict(self.base))

    def test_proof_needs_no_transaction_running_and_none_since(self):
        assert fingerprint.proven_unwritten(self.base, dict(self.base))
        assert not fingerprint.proven_unwritten(self.base, dict(self.base, xids={"next": 11, "running": []}))
        running = dict(self.base, xids={"next": 10, "running": [9]})
        assert not fingerprint.proven_unwritten(running, dict(running))
        crashed = dict(self.base, statistics={"cluster_reset": "t1", "database_reset": None})
        assert not fingerprint.proven_unwritten(self.base, crashed)

    def test_skipped_catalogs_and_volatile_columns_say_why(self):
        for reasons in [fingerprint.SKIPPED_CATALOGS] + list(fingerprint.VOLATILE_COLUMNS.values()):
            assert all(len(why) > 20 for why in reasons.values())


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
