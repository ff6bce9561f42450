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


class TestFingerprintDifferences:
    base = {"catalog": "a", "tables": {"public.t": [1, 2, 3]}, "sequences": {}, "server": None}

    def test_equal(self):
        assert fingerprint.differences(self.base, dict(self.base)) == []

    def test_limit(self):
        before = dict(self.base, tables=dict(("public.t%d" % i, [0, 0, 0]) for i in range(20)))
        after = dict(self.base, tables=dict(("public.t%d" % i, [1, 0, 0]) for i in range(20)))
        found = fingerprint.differences(before, after, limit=3)
        assert found[-1] == "and 17 more" and len(found) == 4

    def test_digest_is_stable(self):
        assert fingerprint.digest(self.base) == fingerprint.digest(dict(self.base))


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


class TestTargetChanges:
    recorded = {"catalog": "a", "tables": {"public.t": [100, 0, 0]}, "sequences": {"public.s": "100"},
                "server": None, "sizes": {"public.t": 8192}}

    def now(self, **parts):
        return dict(self.recorded, **parts)

    def test_untouched(self):
        assert fingerprint.target_changes(self.recorded, self.now()) == []

    def test_rows_written(self):
        assert fingerprint.target_changes(self.recorded, self.now(tables={"public.t": [101, 0, 0]})) == [
            "rows written in public.t"]

    def test_statistics_reset_on_an_untouched_copy_is_no_change(self):
        assert fingerprint.target_changes(self.recorded, self.now(tables={"public.t": [0, 0, 0]})) == []

    def test_statistics_reset_and_writes_show_in_sizes_or_sequences(self):
        reset = {"public.t": [3, 0, 0]}
        assert fingerprint.target_changes(self.recorded, self.now(tables=reset, sizes={"public.t": 16384})) == [
            "public.t changed size"]
        assert fingerprint.target_changes(self.recorded, self.now(tables=reset, sequences={"public.s": "103"})) == [
            "sequence public.s moved"]

    def test_statistics_reset_without_recorded_sizes_cannot_tell(self):
        recorded = dict(self.recorded, sizes=None)
        assert "no sizes" in fingerprint.target_changes(recorded, self.now(tables={"public.t": [0, 0, 0]}))[0]
