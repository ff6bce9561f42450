"""codacy_db_wait's look (module_utils/waiting.py) at background jobs: results read where the jobs wrote them, and a job
whose process is gone without a result ends the wait with a failure instead of a hang."""

import json
import subprocess
import sys
import threading
import time

import pytest

from ansible_collections.codacy.selfhosted.plugins.module_utils import waiting


def write(path, data):
    path.write_text(json.dumps(data))
    return str(path)


@pytest.fixture
def job_process():
    """A process whose command line carries a job id, as async_wrapper's do (without `.<pid>`)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "j424242"])
    # Until the child has exec'd, /proc shows the parent's command line (the test was flaky without this).
    deadline = time.time() + 10
    while b"j424242" not in open("/proc/%d/cmdline" % proc.pid, "rb").read() and time.time() < deadline:
        time.sleep(0.01)
    yield "j424242.%d" % proc.pid
    proc.kill()
    proc.wait()


def test_result_is_read_where_the_job_wrote_it(tmp_path, job_process):
    results = write(tmp_path / "elsewhere", {"changed": True, "action": "migrated", "database": "jobs"})
    jobs = [{"name": "jobs", "jid": job_process, "results_file": results}]
    [state] = waiting.states(jobs, str(tmp_path / "not-here"))
    assert state["finished"] and state["result"]["action"] == "migrated"
    assert (tmp_path / "elsewhere").exists(), "kept until the answer is given"
    waiting.hand_over([state])
    assert not (tmp_path / "elsewhere").exists(), "a result is handed over once"


def test_running_job_without_result_is_waited_for(tmp_path, job_process):
    results = write(tmp_path / "results", {"started": True, "finished": False})
    progress = write(tmp_path / "progress.json", {"phase": "restore"})
    jobs = [{"name": "jobs", "jid": job_process, "results_file": results, "progress_file": progress}]
    [state] = waiting.states(jobs, str(tmp_path))
    assert not state["finished"] and state["progress"]["phase"] == "restore"


@pytest.mark.parametrize("progress", [{"phase": "restore", "finished": False}, {"phase": "finished", "finished": True},
                                      None])
def test_job_gone_without_a_result_fails_clearly(tmp_path, progress):
    results = write(tmp_path / "results", {"started": True, "finished": False})
    job = {"name": "analysis", "jid": "j999999999998.1", "results_file": results}
    if progress is not None:
        job["progress_file"] = write(tmp_path / "progress.json", progress)
    [state] = waiting.states([job], str(tmp_path))
    assert state["finished"] and state["result"]["failed"]
    assert state["result"]["msg"].startswith("analysis: the background migration ended without a result")
    assert "the next run resumes it" in state["result"]["msg"]


def test_without_results_file_the_result_is_read_from_the_async_dir(tmp_path, job_process):
    # (The module's argument spec expands `~` in the async dir with the jobs' HOME, as async_wrapper does.)
    (tmp_path / ".ansible_async").mkdir()
    write(tmp_path / ".ansible_async" / job_process, {"changed": False, "action": "unchanged"})
    [state] = waiting.states([{"name": "jobs", "jid": job_process}], str(tmp_path / ".ansible_async"))
    assert state["finished"] and state["result"]["action"] == "unchanged"


def test_a_finished_job_is_answered_at_once_between_two_walks_of_proc(tmp_path, job_process):
    results = write(tmp_path / "results", {"started": True, "finished": False})
    jobs = [{"name": "jobs", "jid": job_process, "results_file": results}]
    writer = threading.Timer(1.0, write, (tmp_path / "results", {"changed": True, "action": "migrated"}))
    writer.start()
    started = time.time()
    [state] = waiting.watch(jobs, str(tmp_path), interval=30)
    writer.join()
    assert state["finished"] and state["result"]["action"] == "migrated"
    assert time.time() - started < waiting.LOOK_EVERY, "noticed by the results file's stat, not the next walk"


def test_without_a_finished_job_the_answer_comes_after_the_interval(tmp_path, job_process):
    results = write(tmp_path / "results", {"started": True, "finished": False})
    started = time.time()
    [state] = waiting.watch([{"name": "jobs", "jid": job_process, "results_file": results}], str(tmp_path),
                            interval=2)
    assert not state["finished"]
    assert 2 <= time.time() - started < waiting.LOOK_EVERY


def test_one_of_two_jobs_finishing_is_answered_with_the_interval_not_before(tmp_path, job_process):
    first = write(tmp_path / "first", {"started": True, "finished": False})
    second = write(tmp_path / "second", {"started": True, "finished": False})
    jobs = [{"name": "jobs", "jid": job_process, "results_file": first},
            {"name": "metrics", "jid": job_process, "results_file": second}]
    writer = threading.Timer(0.5, write, (tmp_path / "first", {"changed": True, "action": "migrated"}))
    writer.start()
    started = time.time()
    states = waiting.watch(jobs, str(tmp_path), interval=3)
    writer.join()
    assert [state["finished"] for state in states] == [True, False]
    assert states[0]["result"]["action"] == "migrated"
    assert not (tmp_path / "first").exists() and (tmp_path / "second").exists(), "the answered result is handed over"
    assert 3 <= time.time() - started < waiting.LOOK_EVERY, "one answer per interval, not one per finished job"
