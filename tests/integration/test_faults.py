"""Fault injection on the servers and the network (processes killed or interrupted:
test_faults_processes.py): every failure ends in a clear message (database, server, phase), an untouched
source, a target that is untouched or marked unfinished, no dump directory, passfile or child
process left behind, and a next run that finishes the job."""

import os
import re
import subprocess
import time

import pytest

from tests.integration.conftest import PASSWORD, module_args, succeeded
from tests.integration.features import (
    assert_nothing_left, big_database, create_database, create_feature_database, execute, record_states, processes,
    restoring, wait_for)
from tests.support.compare import compare, diff, snapshot
from tests.support.pgserver import PgServer
from tests.support.proxy import StallingProxy


@pytest.fixture
def own_source():
    with PgServer(password=PASSWORD) as server:
        yield server


@pytest.fixture
def own_target():
    with PgServer(password=PASSWORD) as server:
        yield server


@pytest.mark.parametrize("data_path", ["stream", "directory"])
def test_source_stops_during_the_dump(own_source, target, dbname, run_module, work_dir, data_path):
    before = big_database(own_source, target, dbname)
    proc = run_module.popen(module_args(own_source, target, dbname, work_dir, data_path=data_path))
    wait_for(lambda: processes("pg_dump", "dbname=" + dbname), what="pg_dump to start")
    if data_path == "directory":
        wait_for(lambda: any(entry[2] for entry in os.walk(work_dir)), what="the dump to write")
    else:
        wait_for(lambda: restoring(target, dbname), what="the stream to reach the target")
    own_source.stop(mode="immediate")
    result = run_module.result(proc)
    assert result["failed"] and result["phase"] == "dump", result.get("msg")
    assert dbname in result["msg"] and "127.0.0.1:%d" % own_source.port in result["msg"]
    if data_path == "directory":
        # The dump is complete before the target is touched.
        assert record_states(target, dbname) == [], "the target was touched although the dump failed"
        assert execute(target, dbname, "SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace"
                       )[0][0] == 0
    else:
        # Streaming writes while it reads: the target is visibly unfinished.
        assert record_states(target, dbname) == ["in_progress"]
    assert_nothing_left(work_dir, dbname)
    own_source.start()
    # Crash recovery itself moves sequences ahead (PostgreSQL WAL-logs them 32 values at a time).
    assert diff(before, snapshot(own_source.params(), dbname), ignore=("sequences",)) == []
    again = run_module(module_args(own_source, target, dbname, work_dir, data_path=data_path))
    succeeded(again, "migrated" if data_path == "directory" else "resumed")
    assert compare(own_source.params(), dbname, target.params(), dbname) == []


def test_target_stops_during_the_restore(source, own_target, dbname, run_module, work_dir):
    before = big_database(source, own_target, dbname)
    proc = run_module.popen(module_args(source, own_target, dbname, work_dir))
    wait_for(lambda: restoring(own_target, dbname), what="the restore to start")
    own_target.stop(mode="immediate")
    result = run_module.result(proc)
    assert result["failed"] and result["phase"] == "restore", result.get("msg")
    assert dbname in result["msg"] and "127.0.0.1:%d" % own_target.port in result["msg"]
    assert_nothing_left(work_dir, dbname)
    assert snapshot(source.params(), dbname) == before
    own_target.start()
    assert record_states(own_target, dbname) == ["in_progress"]
    succeeded(run_module(module_args(source, own_target, dbname, work_dir)), "resumed")
    assert compare(source.params(), dbname, own_target.params(), dbname) == []


def verifying(server, dbname):
    """True once verification hashes public.bulk in `dbname` (asked from another database, as
    restoring() does: a session in the target database would make the migration refuse)."""
    try:
        return execute(server, "postgres", "SELECT count(*) FROM pg_stat_activity WHERE datname = %s"
                                           " AND query LIKE '%%md5%%FROM ONLY \"public\".\"bulk\"%%'"
                                           " AND pid <> pg_backend_pid()", (dbname,))[0][0] > 0
    except Exception:  # the server may be between states
        return False


def test_target_stops_during_verification(source, own_target, dbname, run_module, work_dir):
    before = big_database(source, own_target, dbname)
    proc = run_module.popen(module_args(source, own_target, dbname, work_dir, verify="checksums"))
    wait_for(lambda: verifying(own_target, dbname), timeout=300, what="the verification to read public.bulk")
    own_target.stop(mode="immediate")
    result = run_module.result(proc)
    assert result["failed"] and result["phase"] == "verify", result.get("msg")
    # Not an "unexpected error": the database, what was being read where, and what to do.
    assert "unexpected error" not in result["msg"]
    assert re.search(r"verification of %s \(target database %s on 127\.0\.0\.1:%d\) could not finish: reading "
                     r"table public\.(bulk|issue) on the target failed: " % (dbname, dbname, own_target.port),
                     result["msg"]), result["msg"]
    assert "Check that the target server 127.0.0.1:%d is up and reachable, then run again" % own_target.port \
        in result["msg"]
    assert_nothing_left(work_dir, dbname)
    assert snapshot(source.params(), dbname) == before
    own_target.start()
    assert record_states(own_target, dbname) == ["in_progress"]
    succeeded(run_module(module_args(source, own_target, dbname, work_dir, verify="checksums")), "resumed")
    assert compare(source.params(), dbname, own_target.params(), dbname) == []


def test_work_dir_fills_up_during_the_dump(source, target, dbname, run_module, tmp_path):
    before = big_database(source, target, dbname)
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(small)], check=True)
    try:
        # Only the directory data path writes the data to work_dir (streaming writes index definitions).
        result = run_module(module_args(source, target, dbname, str(small), data_path="directory"))
        assert_nothing_left(str(small), dbname)
    finally:
        subprocess.run(["umount", str(small)], check=True)
    assert result["failed"] and result["phase"] == "dump", result.get("msg")
    assert "No space left on device" in result["msg"] and "work_dir %s is full" % small in result["msg"]
    assert record_states(target, dbname) == []
    assert snapshot(source.params(), dbname) == before
    bigger = tmp_path / "bigger"
    bigger.mkdir()
    succeeded(run_module(module_args(source, target, dbname, str(bigger))), "migrated")
    assert compare(source.params(), dbname, target.params(), dbname) == []


@pytest.mark.parametrize("data_path", ["stream", "parallel"])
def test_stalled_network_ends_at_the_time_limit(source, target, dbname, run_module, work_dir, data_path):
    before = big_database(source, target, dbname)
    proxy = StallingProxy(target.port)
    try:
        through_proxy = dict(target.endpoint(), port=proxy.port)
        # A connection opened during the stall would time out after connect_timeout (10 s by default)
        # and end the run before its time limit: the limit is what this test is about.
        args = module_args(source, target, dbname, work_dir, timeout=25, connect_timeout=60, data_path=data_path)
        args["target"] = through_proxy
        started = time.time()
        proc = run_module.popen(args)
        wait_for(lambda: restoring(target, dbname), what="the restore to start")
        proxy.stall()
        result = run_module.result(proc)
        elapsed = time.time() - started
    finally:
        proxy.close()
    assert result["failed"], result
    assert "did not finish within its time limit of 25 s" in result["msg"] and dbname in result["msg"]
    # Its own result (the phases it went through), not the watchdog's last resort, which prints a
    # bare failure when the main thread is still stuck on the stalled connection 20 s later.
    assert "phases" in result, result
    assert "phase restore" in result["msg"] or "phase verify" in result["msg"], result["msg"]
    assert elapsed < 25 + 60, "the run took %d s to give up" % elapsed
    assert_nothing_left(work_dir, dbname)
    assert snapshot(source.params(), dbname) == before
    succeeded(run_module(module_args(source, target, dbname, work_dir, data_path=data_path)), "resumed")
    assert compare(source.params(), dbname, target.params(), dbname) == []


@pytest.mark.parametrize("data_path, needed", [
    ("stream", "6 (jobs 4 plus the module's own)"),
    ("parallel", "14 (3 x jobs 4 for the copy and the index builds"),
])
def test_too_few_connections_on_the_target(source, dbname, run_module, work_dir, data_path, needed):
    with PgServer(password=PASSWORD, settings={"max_connections": 8}) as small_target:
        create_feature_database(source, dbname)
        create_database(small_target, dbname)
        execute(small_target, "postgres", "CREATE ROLE admin LOGIN PASSWORD 'adminpw' CREATEDB")
        execute(small_target, "postgres", 'ALTER DATABASE "%s" OWNER TO admin' % dbname)
        args = module_args(source, small_target, dbname, work_dir, jobs=4, data_path=data_path)
        args["target"] = dict(small_target.endpoint(), user="admin", password="adminpw")
        result = run_module(args)
        assert result["failed"] and result["phase"] == "inspect"
        assert "target 127.0.0.1:%d allows" % small_target.port in result["msg"], result["msg"]
        assert "the migration opens up to " + needed in result["msg"], result["msg"]
        assert execute(small_target, dbname, "SELECT to_regnamespace('codacy_migration')")[0][0] is None


def test_target_crash_after_the_copy_is_no_change(source, own_target, dbname, run_module, work_dir):
    """A crash (or failover) throws the target's statistics away; an untouched copy is still
    recognised as unchanged, and a copy written to after the crash is still refused."""
    create_feature_database(source, dbname)
    create_database(own_target, dbname)
    succeeded(run_module(module_args(source, own_target, dbname, work_dir)), "migrated")
    own_target.stop(mode="immediate")
    own_target.start()
    rerun = succeeded(run_module(module_args(source, own_target, dbname, work_dir)), "unchanged")
    assert rerun["changed"] is False
    own_target.stop(mode="immediate")
    own_target.start()
    execute(own_target, dbname, "INSERT INTO account (email, name) SELECT 'app' || i || '@example.com', 'app'"
                                " FROM generate_series(1, 50) i")
    execute(source, dbname, "DELETE FROM issue WHERE id = 11")
    refused = run_module(module_args(source, own_target, dbname, work_dir))
    assert refused["failed"] and refused["action"] == "refused", refused.get("msg")
    assert "changed since this module copied it" in refused["msg"]
