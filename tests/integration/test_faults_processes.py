"""Fault injection on the processes of a run: a killed pg_restore or psql, an interrupted ansible-playbook,
a second run on the same target, a background job killed without a result. Each ends in a clear
message, an untouched source, a target marked unfinished, nothing left behind, and a next run that
finishes the job. (Server and network faults: test_faults.py.)"""

import os
import signal
import time

import pytest

from tests.integration.conftest import module_args, succeeded
from tests.integration.features import (
    add_bulk, assert_nothing_left, big_database, create_feature_database, holders, kill, record_states, processes,
    processes_of_home, restoring, wait_for)
from tests.support.compare import compare, snapshot


@pytest.mark.parametrize("data_path, program, which, phase", [("stream", "pg_restore", "", "restore"),
                                                              ("parallel", "psql", "TO pstdout", "dump"),
                                                              ("parallel", "psql", "--file=/dev/fd/", "restore")])
def test_client_program_killed_during_the_copy(source, target, dbname, run_module, work_dir, data_path, program, which,
                                               phase):
    """The program that carries the rows killed in the middle (pg_restore of the stream; on the parallel
    path, the psql that reads a table on the source, or the one that writes it into the target): the
    copy fails in the phase of the side that broke, nothing half-copied is committed as done, and the
    next run resumes."""
    before = big_database(source, target, dbname)
    proc = run_module.popen(module_args(source, target, dbname, work_dir, data_path=data_path))

    def carriers():
        return set(processes(program, "dbname=" + dbname)) & set(processes(program, which))
    # A carrier of a small table may end between listing and killing: wait until one is really killed.
    wait_for(lambda: restoring(target, dbname) and kill(carriers()), what="a %s carrying rows to be killed" % program)
    result = run_module.result(proc)
    assert result["failed"] and result["phase"] == phase and dbname in result["msg"], result.get("msg")
    assert_nothing_left(work_dir, dbname)
    assert snapshot(source.params(), dbname) == before
    assert record_states(target, dbname) == ["in_progress"]
    succeeded(run_module(module_args(source, target, dbname, work_dir, data_path=data_path)), "resumed")
    assert compare(source.params(), dbname, target.params(), dbname) == []
    succeeded(run_module(module_args(source, target, dbname, work_dir, data_path=data_path)), "unchanged")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_ansible_playbook_interrupted_during_the_restore(source, target, dbname, run_module, work_dir, signum):
    before = big_database(source, target, dbname)
    proc = run_module.popen(module_args(source, target, dbname, work_dir))
    wait_for(lambda: restoring(target, dbname), what="the restore to start")
    proc.send_signal(signum)  # to ansible-playbook alone, not to its process group
    proc.communicate(timeout=120)
    # Its children notice within seconds that it is gone, and clean up.
    wait_for(lambda: not processes("pg_restore", "dbname=" + dbname) and not processes("psql", "dbname=" + dbname)
             and not holders(work_dir), timeout=60, what="the module, psql and pg_restore to end")
    wait_for(lambda: not os.listdir(work_dir), timeout=30, what="the dump directory to be removed")
    assert_nothing_left(work_dir, dbname)
    assert snapshot(source.params(), dbname) == before
    assert record_states(target, dbname) == ["in_progress"]
    succeeded(run_module(module_args(source, target, dbname, work_dir)), "resumed")
    assert compare(source.params(), dbname, target.params(), dbname) == []


def test_second_run_on_the_same_target_is_refused(source, target, dbname, run_module, work_dir, tmp_path):
    big_database(source, target, dbname)
    first = run_module.popen(module_args(source, target, dbname, work_dir))
    wait_for(lambda: restoring(target, dbname), what="the restore to start")
    second_dir = tmp_path / "second"
    second_dir.mkdir()
    from tests.integration.conftest import ModuleRunner
    second = ModuleRunner(second_dir)(module_args(source, target, dbname, work_dir))
    assert second["failed"] and second["action"] == "refused" and second["changed"] is False
    assert "another run is migrating into %s" % dbname in second["msg"]
    succeeded(run_module.result(first), "migrated")
    assert compare(source.params(), dbname, target.params(), dbname) == []


def test_background_job_killed_without_a_result(source, target, tmp_path):
    """A background migration whose every process is killed (kill -9, the OOM killer) writes no
    result: the role's wait ends with a failure naming it, never waits forever."""
    from tests.integration.playbook import Play
    create_feature_database(source, "metrics")
    add_bulk(source, "metrics")
    play = Play(tmp_path, source, target)
    home = tmp_path / "home"  # a HOME of its own: the processes of this run are told by it
    home.mkdir()
    proc = play.popen(db_migration_databases=["metrics"], env={"HOME": str(home)})
    wait_for(lambda: restoring(target, "metrics"), timeout=300, what="the restore to start")
    started = time.time()
    assert kill(processes_of_home(str(home), "AnsiballZ_codacy_db_migrate")), "the module's process was not found"
    out, _err = proc.communicate(timeout=120)
    assert time.time() - started < 60, "the wait took %d s to notice" % (time.time() - started)
    assert proc.returncode != 0
    assert "metrics: the background migration ended without a result (its process is gone" in out, out[-3000:]
    wait_for(lambda: not processes("pg_restore", "port=%d" % target.port), timeout=30, what="pg_restore to end")
    again = play(db_migration_databases=["metrics"])
    assert again.returncode == 0, again.output
    assert play.report_json()["databases"][0]["action"] == "resumed"
    assert compare(source.params(), "metrics", target.params(), "metrics") == []
