# -*- coding: utf-8 -*-
# Copyright: Contributors to the codacy.selfhosted collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What codacy_db_wait does on the migration host: prepare a run directory, watch the background
migrations (their results, processes and progress files), stop them.

The module runs it there; when that host is the controller itself (a local connection without
become or environment), the action plugin calls answer() in its own process instead: a module call costs about
0.2 s of CPU (Ansible compiles the module's library from source each time), once per progress
line."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shutil
import signal
import time

from ansible_collections.codacy.selfhosted.plugins.module_utils import privatedir
from ansible_collections.codacy.selfhosted.plugins.module_utils.batch import read_result
from ansible_collections.codacy.selfhosted.plugins.module_utils.progress import read as read_progress
from ansible_collections.codacy.selfhosted.plugins.module_utils.rundir import RunDir

# A heartbeat younger than this says another run is waiting for its migrations right now (the
# waiting module touches it every LOOK_EVERY seconds). Migrations whose run was interrupted end within
# seconds once their heartbeat is gone; this long at most is waited for them.
RUNNING_HEARTBEAT = 30
LOOK_EVERY = 5  # seconds between two walks of /proc for the jobs' processes while none finished
ORPHANS_END_WITHIN = 90


def alive(pid):
    try:
        os.kill(int(pid), 0)
        return True
    except (OSError, TypeError, ValueError):
        return False


def wrapper_processes(jids):
    """{job id: [(pid, argv)]} of Ansible's async_wrapper processes (its supervisor and the
    process that runs the module), which carry the job id without the `.<pid>` it appends in
    their command line from the job's start until it is over. None where /proc cannot tell."""
    if not os.path.isdir("/proc/self"):
        return None
    wanted = dict((jid.rsplit(".", 1)[0].encode(), jid) for jid in jids)
    found = dict((jid, []) for jid in jids)
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as handle:
                argv = handle.read().split(b"\0")
        except OSError:
            continue
        for arg in argv:
            if arg in wanted:
                found[wanted[arg]].append((int(pid), argv))
    return found


def running_jobs(jids):
    """The job ids among `jids` that still have a process (None where /proc cannot tell)."""
    processes = wrapper_processes(jids)
    return None if processes is None else set(jid for jid, found in processes.items() if found)


def final_result(path):
    data = read_result(path)
    return data if data is not None and "started" not in data else None


def job_state(job, results_file, running, progress):
    """One look at a background job: finished with its result, or running with its progress."""
    data = final_result(results_file)
    if data is None and not running:
        data = final_result(results_file)  # it writes its result before it ends: look once more
        if data is None:
            return {"name": job["name"], "finished": True, "result": {
                "failed": True, "database": job["name"], "phase": progress.get("phase"),
                "msg": "%s: the background migration ended without a result (its process is gone: killed, or the "
                       "machine restarted?) in phase %s; the next run resumes it"
                       % (job["name"], progress.get("phase") or "starting")}}
    if data is None:
        return {"name": job["name"], "finished": False, "progress": progress}
    data["finished"] = True
    return {"name": job["name"], "finished": True, "result": data, "results_file": results_file}


def hand_over(found):
    """Remove the results files of the finished jobs among `found`, as async_status's cleanup does:
    a result is handed over once. Only when answering, so that a wait killed before it answers
    leaves every result it read for the next look."""
    for state in found:
        if state["finished"] and state.get("results_file"):
            try:
                os.unlink(state.pop("results_file"))
            except OSError:
                pass
    return found


def heartbeat_files(jobs):
    return set(RunDir.of_progress_file(job["progress_file"]).heartbeat for job in jobs if job.get("progress_file"))


def beat(jobs):
    """Tell the background migrations that someone still waits for them (see the `queue.heartbeat_timeout`
    option of codacy_db_migrate): touch `heartbeat` beside their progress files. Never create it:
    once an interrupted controller removed it, a wait still running must not bring it back."""
    for path in heartbeat_files(jobs):
        try:
            os.utime(path, None)
        except OSError:
            pass


def states(jobs, async_dir):
    """The state of every job. Each result is read where its async_wrapper wrote it (the
    `results_file` it returned when started), else where async_wrapper puts results: under
    the async directory, expanded by this module (the same HOME as the jobs')."""
    running = running_jobs([job["jid"] for job in jobs if job.get("jid")])
    found = []
    for job in jobs:
        progress = read_progress(job.get("progress_file") or "") or {}
        if not job.get("jid"):
            found.append(unknown_job_state(job, progress))
            continue
        results_file = job.get("results_file") or os.path.join(async_dir, job["jid"])
        is_running = job["jid"] in running if running is not None else alive(progress.get("pid"))
        if job.get("batch_results_file") and not is_running:  # one of a batch: its own process may outlive the batch's
            is_running = bool(progress.get("pid")) and not progress.get("finished") and alive(progress["pid"])
        found.append(job_state(job, results_file, is_running, progress))
    return found


def unknown_job_state(job, progress):
    """A job interrupted while it was being started (its job id never came back): only its
    progress file tells whether it runs."""
    if progress.get("pid") and (progress.get("finished") or not alive(progress["pid"])):
        return {"name": job["name"], "finished": True, "result": {
            "failed": True, "database": job["name"], "phase": progress.get("phase"), "action": progress.get("action"),
            "msg": "%s: interrupted while it started" % job["name"]}}
    return {"name": job["name"], "finished": False, "progress": progress}


def result_files(jobs, async_dir):
    return [job.get("results_file") or os.path.join(async_dir, job["jid"]) for job in jobs if job.get("jid")]


def file_signature(path):
    try:
        found = os.stat(path)
    except OSError:
        return None
    return found.st_size, found.st_mtime_ns


def watch(jobs, async_dir, interval):
    """The jobs' states once `interval` passed, or as soon as every job finished: one answer (one
    module call) per progress line, however many databases finish in between. Every half second
    only the results files are looked at (a stat each: a job's result replaces its file), so that
    the last job's end is answered at once; the jobs' processes (a walk of /proc) and progress files
    every LOOK_EVERY seconds."""
    deadline = time.time() + interval
    found = [None] * len(jobs)
    while True:
        beat(jobs)
        look(jobs, found, async_dir)
        if all(state["finished"] for state in found):
            end_batches(jobs)
            return hand_over(found)
        if time.time() >= deadline:
            return hand_over(found)
        looked = time.time()
        signatures = [file_signature(path) for path in result_files(jobs, async_dir)]
        while time.time() < min(deadline, looked + LOOK_EVERY):
            time.sleep(0.5)
            if [file_signature(path) for path in result_files(jobs, async_dir)] != signatures:
                break


def look(jobs, found, async_dir):
    """Update `found` (one state per job, None at first) with the states of the jobs not yet finished."""
    pending = [index for index, state in enumerate(found) if state is None or not state["finished"]]
    for index, state in zip(pending, states([jobs[index] for index in pending], async_dir)):
        found[index] = state


def end_batches(jobs, within=10):
    """Once every migration of a batch has handed over its result: remove the batch's own result
    (async_wrapper writes it as the batch ends, a moment after the last migration) and end its
    async_wrapper."""
    batches = dict((job["jid"], job["batch_results_file"]) for job in jobs if job.get("batch_results_file"))
    deadline = time.time() + within
    for jid, path in batches.items():
        while final_result(path) is None and time.time() < deadline:
            running = running_jobs([jid])
            if running is not None and jid not in running:
                break
            time.sleep(0.1)
        if os.path.exists(path):
            os.unlink(path)
    reap(list(batches))


def prepare(run_dir, work_dir):
    """Make the run directory ready for a new run: migrations an interrupted run left behind end
    first (their heartbeat goes; they stop within seconds), a run still going refuses this one,
    private directories of killed migrations (their passfiles) go, and a fresh heartbeat is made.
    Returns the databases waited for, or a problem."""
    run = RunDir(run_dir)
    if not os.path.isdir(run.path):
        os.makedirs(run.path, 0o700)
    live = run.live_migrations()
    waited = sorted(live)
    if live:
        age = run.heartbeat_age()
        if age is not None and age < RUNNING_HEARTBEAT:
            return waited, ("another run is migrating %s from %s right now (its heartbeat is %d s old): nothing was "
                            "started; wait for it to finish" % (", ".join(waited), run.path, age))
        try:
            os.unlink(run.heartbeat)
        except OSError:
            pass
        deadline = time.time() + ORPHANS_END_WITHIN
        while live and time.time() < deadline:
            time.sleep(0.5)
            live = run.live_migrations()
        if live:
            return waited, ("the migrations of %s that an earlier run started in %s still run after %d s (pids %s): "
                            "nothing was started; stop them or wait for them"
                            % (", ".join(sorted(live)), run.path, ORPHANS_END_WITHIN,
                               ", ".join(str(pid) for pid in live.values())))
    for path in run.progress_files() + run.result_files():  # never taken for this run's
        os.unlink(path)
    if work_dir:
        privatedir.remove_abandoned(work_dir)
    with open(run.heartbeat, "w"):
        pass
    return waited, None


def stop(run_dirs, jobs, async_dir, within, unseen_grace):
    """Stop the migrations of these run directories now, and wait (at most `within` seconds) until
    the jobs have ended: their heartbeat goes (so that one still starting ends as soon as it looks)
    and each running one gets SIGTERM (it cleans up on its way out; before it writes anything it
    just ends). A job without id (interrupted while it was being started) that shows no progress
    within `unseen_grace` seconds never ran. Returns the jobs' states, as poll does."""
    for path in run_dirs:
        run = RunDir(path)
        try:
            os.unlink(run.heartbeat)
        except OSError:
            pass
        for pid in run.live_migrations().values():
            try:
                os.kill(pid, signal.SIGTERM)
            except OSError:
                pass
    began = time.time()
    found = [None] * len(jobs)
    while True:
        look(jobs, found, async_dir)
        for job, state in zip(jobs, found):
            if not state["finished"] and not job.get("jid") and not state["progress"] and \
                    time.time() > began + unseen_grace:
                state.update(finished=True, result={"failed": True, "database": job["name"], "phase": "start",
                                                    "msg": "%s: interrupted before it started" % job["name"]})
        if all(state["finished"] for state in found) or time.time() > began + within:
            break
        time.sleep(0.25)
    if all(state["finished"] for state in found):
        end_batches(jobs)
    reap([job["jid"] for job, state in zip(jobs, found) if state["finished"] and job.get("jid")])
    return hand_over(found)


def reap(jids):
    """End the async_wrapper supervisors of finished jobs, which would otherwise sleep up to five
    seconds more before they notice, and remove the job files they would have removed."""
    for found in (wrapper_processes(jids) or {}).values():
        for pid, argv in found:
            try:
                os.kill(pid, signal.SIGTERM)
            except OSError:
                continue
            try:  # [interpreter..., async_wrapper.py, jid, time limit, module, args, (-preserve_tmp)]
                module = argv[[os.path.basename(arg) for arg in argv].index(b"async_wrapper.py") + 3].decode()
            except (ValueError, IndexError):
                continue
            if b"-preserve_tmp" not in argv and os.path.basename(os.path.dirname(module)).startswith("ansible-tmp-"):
                shutil.rmtree(os.path.dirname(module), ignore_errors=True)


def answer(params):
    """The module's answer for its options `params` (`_mode` says what to do), as a dict; with
    `failed` and `msg` when it fails. Paths are taken as given (the module has expanded them)."""
    mode = params.get("_mode") or "poll"
    if mode == "prepare":
        waited, problem = prepare(params["_run_dirs"][0], params.get("_work_dir"))
        return dict(failed=True, msg=problem, waited=waited) if problem else dict(changed=False, waited=waited)
    if mode == "stop":
        return dict(changed=False, jobs=stop(params["_run_dirs"], params["_jobs"], params["_async_dir"],
                                             params["interval"], params.get("_unseen_grace", 3.0)))
    if mode == "reap":
        reap([job["jid"] for job in params["_jobs"] if job.get("jid")])
        return dict(changed=False)
    return dict(changed=False, jobs=watch(params["_jobs"], params["_async_dir"], params["interval"]), now=time.time())
