"""Secrets: a sentinel password through a whole role run with -vvv appears nowhere; source
connections are read-only."""

import os
import subprocess

import psycopg2
import pytest

from tests.integration.conftest import ansible_env, write_private
from tests.integration.features import (
    ArgvSampler, add_bulk, create_feature_database, kill, processes_of_home, restoring, wait_for)
from tests.integration.playbook import PLAYBOOK, Play
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
        assert {"pg_dump", "pg_restore", "psql"} <= sampler.seen, "saw no client process: %s" % sampler.seen
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


def holding(secret, *directories):
    """Files under `directories` that contain `secret`."""
    found = []
    for directory in directories:
        for path in files_under(str(directory)):
            try:
                with open(path, "rb") as handle:
                    if secret.encode() in handle.read():
                        found.append(path)
            except OSError:
                continue
    return found


def test_no_password_in_module_files_while_migrations_run_or_after_they_are_killed(tmp_path):
    """Ansible writes each module with its arguments (the passwords) to a file on the migration host;
    a background migration's file stayed there for hours, and for good when its run was killed.
    The modules remove it once read. A migration killed before its cleanup leaves its passfile in its
    private 0700 directory: the next run removes that."""
    with PgServer(password=SENTINEL) as source, PgServer(password=SENTINEL) as target:
        create_feature_database(source, "analysis")
        add_bulk(source, "analysis", rows=1500000)
        play = Play(tmp_path, source, target)
        home, remote_tmp, local_tmp = tmp_path / "home", tmp_path / "remote-tmp", tmp_path / "local-tmp"
        for directory in (home, remote_tmp, local_tmp):
            directory.mkdir()
        env = {"HOME": str(home), "ANSIBLE_REMOTE_TMP": str(remote_tmp), "ANSIBLE_LOCAL_TEMP": str(local_tmp)}
        proc = play.popen(db_migration_databases=["analysis"], env=env)
        wait_for(lambda: restoring(target, "analysis"), timeout=300, what="the restore to start")
        assert list(files_under(str(remote_tmp))), "no module files to look at: is ANSIBLE_REMOTE_TMP used?"
        assert holding(SENTINEL, remote_tmp, local_tmp, home) == []
        # Everything of this run killed at once, as a power cut or the OOM killer would.
        kill(processes_of_home(str(home), ""))
        proc.wait(timeout=60)
        wait_for(lambda: not processes_of_home(str(home), ""), timeout=30, what="the run's processes to die")
        assert holding(SENTINEL, remote_tmp, local_tmp, home) == []
        left = [p for p in files_under(str(play.work_dir)) if os.path.basename(p) == "pgpass"]
        assert left and all(oct(os.stat(p).st_mode & 0o777) == "0o600" for p in left)
        again = play(db_migration_databases=["analysis"], env=env)
        assert again.returncode == 0, again.output[-3000:]
        assert not [p for p in files_under(str(play.work_dir)) if os.path.basename(p) == "pgpass"]
        assert holding(SENTINEL, remote_tmp, local_tmp, home, play.work_dir) == []
