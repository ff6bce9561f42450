"""Secrets: a sentinel password through a whole role run with -vvv appears nowhere; source
connections are read-only."""

import os
import subprocess

import psycopg2
import pytest

from tests.integration.conftest import ansible_env, write_private
from tests.integration.features import ArgvSampler
from tests.integration.test_role import PLAYBOOK, Play
from tests.support import dataset
from tests.support.pgserver import PgServer

SENTINEL = "Sentinel'Pw \"9:x\\z-4f1c"


def files_under(path):
    for root, _dirs, files in os.walk(path):
        for name in files:
            yield os.path.join(root, name)


def test_sentinel_password_appears_nowhere(tmp_path):
    with PgServer(password=SENTINEL) as source, PgServer(password=SENTINEL) as target:
        dataset.generate(source.params(), scale_mb=3, progress=lambda *args: None)
        play = Play(tmp_path, source, target)
        with ArgvSampler(SENTINEL) as sampler:
            result = play(PLAYBOOK, "-vvv")
        assert result.returncode == 0, result.output[-3000:]
        assert {"pg_dump", "pg_restore", "vacuumdb"} <= sampler.seen, "saw no client process: %s" % sampler.seen
        assert sampler.leaks == []
        assert SENTINEL not in result.output
        assert "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER" in result.output  # -vvv did print the (masked) arguments
        with open(play.report) as handle:
            assert SENTINEL not in handle.read()
        assert oct(os.stat(play.report).st_mode & 0o777) == "0o600"
        for path in files_under(str(play.work_dir)):
            with open(path, errors="replace") as handle:
                assert SENTINEL not in handle.read(), path
        assert not [p for p in files_under(str(play.work_dir)) if "pgpass" in p], "a passfile was left behind"
        for name in dataset.SIX:
            rows = target.execute("SELECT row_to_json(r)::text FROM codacy_migration.runs r", dbname=name)
            assert rows and all(SENTINEL not in row[0] for row in rows)


def test_source_connections_are_read_only(source, dbname):
    from ansible_collections.codacy.selfhosted.plugins.module_utils.connection import Endpoint
    from tests.integration.features import create_database
    create_database(source, dbname)
    conn = Endpoint("source", source.endpoint()).connect(dbname, read_only=True)
    try:
        with pytest.raises(psycopg2.errors.ReadOnlySqlTransaction):
            with conn.cursor() as cur:
                cur.execute("CREATE TABLE written_by_a_bug (id int)")
    finally:
        conn.close()
    # pg_dump gets the same setting through its connection string.
    info = Endpoint("source", source.endpoint()).conninfo(dbname, read_only=True)
    passfile = os.path.join(os.path.dirname(source.datadir), "test-pgpass")
    write_private(passfile, "*:*:*:*:%s\n" % source.password.replace("\\", "\\\\").replace(":", "\\:"))
    out = subprocess.run(["psql", "-X", "-At", "-d", info, "-c", "CREATE TABLE written_by_a_bug (id int)"],
                         env=dict(ansible_env(), PGPASSFILE=passfile), capture_output=True, text=True, check=False)
    assert out.returncode != 0 and "read-only transaction" in out.stderr
    assert source.execute("SELECT to_regclass('written_by_a_bug')", dbname=dbname)[0][0] is None
