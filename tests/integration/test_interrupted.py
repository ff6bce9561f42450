"""Interrupted restores: the next run finishes the job and the copy is equal."""

import os
import signal
import time

import pytest

from tests.integration.conftest import PASSWORD, module_args, succeeded
from tests.integration.features import create_database, create_feature_database, execute
from tests.support.compare import compare
from tests.support.pgserver import PgServer


def grow(server, dbname, rows=1500000):
    """Make the restore last a few seconds so it can be interrupted in the middle."""
    execute(server, dbname, "CREATE TABLE bulk AS SELECT i AS id, md5(i::text) AS a, repeat(md5((-i)::text), 3) AS b"
                            " FROM generate_series(1, %s) i; ALTER TABLE bulk ADD PRIMARY KEY (id);"
                            " CREATE INDEX bulk_a ON bulk (a); CREATE INDEX bulk_b ON bulk (b)", (rows,))


def processes(name, needle):
    """pids of running `name` processes whose argv contains `needle`."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as handle:
                argv = handle.read().split(b"\0")
        except OSError:
            continue
        if argv and os.path.basename(argv[0].decode(errors="replace")) == name and \
                any(needle.encode() in arg for arg in argv):
            found.append(int(pid))
    return found


def wait_for(predicate, timeout=120, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out waiting for %s" % what)


def restoring(server, dbname):
    """True once pg_restore is loading rows into the target (the marker says in progress)."""
    try:
        rows = execute(server, dbname, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                                       " AND query ILIKE 'COPY public.bulk%%'")
        return rows[0][0] > 0
    except Exception:  # the server may be between states
        return False


@pytest.fixture
def own_target():
    """A target server of this test alone, since the test stops it."""
    with PgServer(password=PASSWORD) as server:
        yield server


def test_pg_restore_killed_then_resumed(source, target, dbname, run_module, work_dir):
    create_feature_database(source, dbname)
    grow(source, dbname)
    create_database(target, dbname)
    proc = run_module.popen(module_args(source, target, dbname, work_dir))
    wait_for(lambda: restoring(target, dbname), what="the restore to start")
    pids = processes("pg_restore", "dbname=" + dbname)
    assert pids, "no pg_restore process found"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    result = run_module.result(proc)
    assert result["failed"] and result["phase"] == "restore"
    assert os.listdir(work_dir) == []
    again = run_module(module_args(source, target, dbname, work_dir))
    succeeded(again, "resumed")
    assert compare(source.params(), dbname, target.params(), dbname) == []
    succeeded(run_module(module_args(source, target, dbname, work_dir)), "unchanged")


def test_target_stopped_mid_restore_then_resumed(source, own_target, dbname, run_module, work_dir):
    create_feature_database(source, dbname)
    grow(source, dbname)
    create_database(own_target, dbname)
    proc = run_module.popen(module_args(source, own_target, dbname, work_dir))
    wait_for(lambda: restoring(own_target, dbname), what="the restore to start")
    own_target.stop(mode="immediate")
    result = run_module.result(proc)
    assert result["failed"] and result["phase"] in ("restore", "properties", "verify")
    assert "127.0.0.1:%d" % own_target.port in result["msg"]
    assert os.listdir(work_dir) == []
    assert processes("pg_restore", "dbname=" + dbname) == []
    own_target.start()
    again = run_module(module_args(source, own_target, dbname, work_dir))
    succeeded(again, "resumed")
    assert compare(source.params(), dbname, own_target.params(), dbname) == []
