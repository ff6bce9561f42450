"""connection: conninfo and passfile without the password in argv, the child's environment,
libpq's failures in the user's words."""

import os
import stat

import pytest

from ansible_collections.codacy.selfhosted.plugins.module_utils import connection

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
