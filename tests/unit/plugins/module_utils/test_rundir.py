"""The run directory and its queue (rundir.py), on a real directory with real processes: where the
heartbeat and the progress files are, which migrations still run, and the queue's order (at most
`slots` at a time, a live job ahead first, a dead one never waited for)."""

import json
import os
import subprocess
import sys

import pytest

from ansible_collections.codacy.selfhosted.plugins.module_utils import rundir


class Waited(Exception):
    """Raised by on_wait: acquire() would have waited."""


def refuse_to_wait():
    raise Waited()


@pytest.fixture
def sleeper():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc.pid
    proc.kill()
    proc.wait()


def dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_paths_of_the_run_directory():
    run = rundir.RunDir("/var/tmp/codacy_db_migration/production")
    assert run.heartbeat == "/var/tmp/codacy_db_migration/production/heartbeat"
    assert run.progress_file(3) == "/var/tmp/codacy_db_migration/production/progress-3.json"
    assert rundir.RunDir.of_progress_file(run.progress_file(3)).path == run.path


def test_heartbeat_age_and_progress_files(tmp_path):
    run = rundir.RunDir(str(tmp_path))
    assert run.heartbeat_age() is None and run.progress_files() == []
    open(run.heartbeat, "w").close()
    os.utime(run.heartbeat, (0, os.stat(run.heartbeat).st_mtime - 30))
    assert 29 < run.heartbeat_age() < 60
    for position in (2, 1):
        open(run.progress_file(position), "w").close()
    assert run.progress_files() == [run.progress_file(1), run.progress_file(2)]


def test_live_migrations_are_unfinished_progress_files_of_running_migrations(tmp_path, sleeper):
    # A process whose command line names the module, as AnsiballZ's does.
    migration = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "AnsiballZ_codacy_db_migrate"])
    try:
        run = rundir.RunDir(str(tmp_path))
        states = [("jobs", migration.pid, False),   # live
                  ("metrics", dead_pid(), False),   # its process is gone
                  ("crow", migration.pid, True),    # finished
                  ("accounts", sleeper, False)]     # a live process that is not a migration (a reused pid)
        for position, (database, pid, finished) in enumerate(states):
            with open(run.progress_file(position), "w") as handle:
                json.dump({"database": database, "pid": pid, "finished": finished}, handle)
        assert run.live_migrations() == {"jobs": migration.pid}
    finally:
        migration.kill()
        migration.wait()


def test_one_slot_is_taken_by_one_job_at_a_time(tmp_path):
    first = rundir.Queue(str(tmp_path), slots=1, position=1)
    first.acquire(on_wait=refuse_to_wait)
    second = rundir.Queue(str(tmp_path), slots=1, position=2)
    with pytest.raises(Waited):
        second.acquire(on_wait=refuse_to_wait)
    first.release()
    second.acquire(on_wait=refuse_to_wait)
    second.release()
    assert sorted(os.listdir(str(tmp_path))) == ["slot-0"]  # no waiting file is left behind


def test_two_slots_let_two_jobs_run(tmp_path):
    queues = [rundir.Queue(str(tmp_path), slots=2, position=n) for n in (1, 2, 3)]
    queues[0].acquire(on_wait=refuse_to_wait)
    queues[1].acquire(on_wait=refuse_to_wait)
    with pytest.raises(Waited):
        queues[2].acquire(on_wait=refuse_to_wait)
    queues[1].release()
    queues[2].acquire(on_wait=refuse_to_wait)


def test_a_live_job_ahead_in_the_queue_goes_first_even_with_a_free_slot(tmp_path, sleeper):
    with open(str(tmp_path / "waiting-000001"), "w") as handle:
        handle.write(str(sleeper))
    later = rundir.Queue(str(tmp_path), slots=3, position=2)
    with pytest.raises(Waited):
        later.acquire(on_wait=refuse_to_wait)
    earlier = rundir.Queue(str(tmp_path), slots=3, position=0)
    earlier.acquire(on_wait=refuse_to_wait)  # nothing live ahead of it


def test_a_dead_job_ahead_is_not_waited_for(tmp_path):
    with open(str(tmp_path / "waiting-000001"), "w") as handle:
        handle.write(str(dead_pid()))
    with open(str(tmp_path / "waiting-000002"), "w") as handle:
        handle.write("not a pid")
    rundir.Queue(str(tmp_path), slots=1, position=5).acquire(on_wait=refuse_to_wait)


def test_transactions_of_ours_are_kept_per_server_and_private(tmp_path):
    run_dir = rundir.RunDir(str(tmp_path))
    assert run_dir.our_transactions("7391") == set()
    run_dir.note_transaction("7391", 1200)
    run_dir.note_transaction("7391", 1205)
    run_dir.note_transaction("127.0.0.1:5432", 9)
    assert run_dir.our_transactions("7391") == {1200, 1205}
    assert run_dir.our_transactions("127.0.0.1:5432") == {9}
    assert all(os.stat(path).st_mode & 0o077 == 0 for path in tmp_path.glob("xids-*"))
