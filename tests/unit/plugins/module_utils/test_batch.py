"""Several migrations from one module run (codacy_db_migrate's `batch`): one forked process each,
every result in its own file, and a failed result for a process that ended without writing one."""

import json
import os
import signal
import sys

from ansible_collections.codacy.selfhosted.plugins.module_utils import batch


def entries(tmp_path, *names):
    return [{"database": name, "result_file": str(tmp_path / ("result-%d.json" % n)),
             "progress_file": str(tmp_path / ("progress-%d.json" % n))} for n, name in enumerate(names)]


def test_each_migration_runs_in_its_own_process_and_writes_its_result(tmp_path):
    found = batch.run(entries(tmp_path, "accounts", "jobs"),
                      lambda entry: {"database": entry["database"], "pid": os.getpid(), "changed": True})
    assert [r["database"] for r in found] == ["accounts", "jobs"]
    assert len(set([r["pid"] for r in found] + [os.getpid()])) == 3, "one process each, none of them this one"
    for path in (tmp_path / "result-0.json", tmp_path / "result-1.json"):
        assert oct(os.stat(str(path)).st_mode & 0o777) == "0o600"
    assert sorted(os.listdir(str(tmp_path))) == ["result-0.json", "result-1.json"]


def test_an_earlier_result_is_never_taken_for_this_runs(tmp_path):
    (tmp_path / "result-0.json").write_text(json.dumps({"database": "accounts", "action": "migrated"}))

    def killed(entry):
        os.kill(os.getpid(), signal.SIGKILL)
    [result] = batch.run(entries(tmp_path, "accounts"), killed)
    assert result["failed"] and "killed by SIGKILL" in result["msg"]


def test_a_process_that_ends_without_its_result_gets_a_failed_one_with_its_phase(tmp_path):
    (tmp_path / "progress-1.json").write_text(json.dumps({"phase": "restore"}))

    def run_one(entry):
        if entry["database"] == "jobs":
            os.kill(os.getpid(), signal.SIGKILL)
        return {"database": entry["database"], "action": "migrated"}
    ok, killed = batch.run(entries(tmp_path, "accounts", "jobs"), run_one)
    assert ok == {"database": "accounts", "action": "migrated"}
    assert killed["failed"] and killed["database"] == "jobs" and killed["phase"] == "restore"
    assert killed["msg"] == ("jobs: the migration's process ended without a result (killed by SIGKILL) in phase "
                             "restore; the next run resumes it")


def test_what_a_stuck_migrations_watchdog_printed_is_its_result(tmp_path):
    def stuck(entry):  # as Copier.abort does when its main thread cannot clean up, then os._exit(1)
        sys.stdout.write(json.dumps({"database": entry["database"], "msg": "accounts: the controller stopped "
                                     "waiting", "phase": "restore"}) + "\n")
        sys.stdout.flush()
        os._exit(1)
    [result] = batch.run(entries(tmp_path, "accounts"), stuck)
    assert result["failed"] and result["msg"] == "accounts: the controller stopped waiting"
    assert not os.path.exists(str(tmp_path / "result-0.json.out"))
