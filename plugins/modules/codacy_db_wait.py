#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Contributors to the codacy.selfhosted collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: codacy_db_wait
short_description: Start background database migrations and wait for them, showing their progress
version_added: 1.0.0
description:
  - With O(start), starts one background run of M(codacy.selfhosted.codacy_db_migrate) (as a task with C(async) and
    C(poll=0) would) that migrates every database, each in a process of its own (its
    O(codacy.selfhosted.codacy_db_migrate#module:batch)), O(slots) of them copying at a time in the given order;
    with O(started), waits for migrations that a loop of such tasks started.
  - Every O(interval) seconds it prints the run's progress (databases done, bytes and rows copied of the total,
    elapsed time and an estimate of the time left) and, for each database copying, its phase, bytes and rows
    copied of the source's, tables done, elapsed time and time left, so a long copy never looks hung. A finished
    database is reported with the next progress line, and the task ends as soon as the last one finishes. Returns
    every migration's result, in order.
  - While it waits, it touches the file C(heartbeat) beside the progress files; the migrations end when it goes
    stale or is removed (see O(codacy.selfhosted.codacy_db_migrate#module:queue.heartbeat_timeout)). When
    ansible-playbook is interrupted, at any point while the migrations start or run, it removes the heartbeat,
    waits until every migration it started has ended (cleaning up after itself), and prints which databases were
    stopped; the next run resumes them.
  - A migration whose process is gone without a result (killed) counts as failed, with a message saying so.
  - It does not fail when a migration failed; the failed results are returned for the caller to report.
author:
  - Codacy Self-hosted team (@codacy)
options:
  start:
    description:
      - The databases to migrate, in the order they start (the role gives the largest first). Each item is a
        dict with C(name), C(position) (its place in the queue, from 0) and, optionally, C(target_name) and
        C(size) (the source database's size in bytes, for the run's total from the first line on), as in the
        plan returned by M(codacy.selfhosted.codacy_db_preflight).
      - Requires O(migrate) and O(run_dir). Mutually exclusive with O(started).
    type: list
    elements: dict
    version_added: 1.1.0
  migrate:
    description:
      - The arguments of M(codacy.selfhosted.codacy_db_migrate) common to every migration of O(start) (O(start)
        adds C(database), C(target_database), C(progress_file) and C(queue)). Holds the passwords.
    type: dict
    version_added: 1.1.0
  run_dir:
    description:
      - The directory of this run's queue, heartbeat and progress files on the managed host (created if missing).
        Migrations of an earlier, interrupted run that still end there are waited for first; a run that is
        still going there (its heartbeat is fresh) makes this task fail without starting anything.
    type: path
    version_added: 1.1.0
  slots:
    description: How many migrations of O(start) copy at the same time.
    type: int
    default: 1
    version_added: 1.1.0
  async_limit:
    description: Seconds each migration of O(start) may run at most (like a task's C(async)).
    type: int
    default: 604800
    version_added: 1.1.0
  started:
    description:
      - The registered result of the loop that started the migrations in the background. Each loop
        item is a database name, or a dict with C(name) and, optionally, C(progress_file) (the file
        given to the O(codacy.selfhosted.codacy_db_migrate#module:progress_file) option of that job) and C(size).
      - Mutually exclusive with O(start). With O(start), an interrupt at any point stops every migration; with
        O(started), only once this task runs.
    type: dict
  interval:
    description: Seconds between two progress lines (finished jobs are reported with them; the task ends as soon as
      the last job finishes).
    type: int
    default: 10
  timeout:
    description: Give up waiting after this many seconds, stopping the migrations (V(0) waits as long as they run).
    type: int
    default: 0
  _mode:
    description: Internal, set by the action plugin (what to do on the managed host). Do not set it.
    type: str
    choices: [prepare, poll, stop, reap]
    default: poll
  _jobs:
    description: Internal, set by the action plugin (the jobs still running). Do not set it.
    type: list
    elements: dict
    default: []
  _run_dirs:
    description: Internal, set by the action plugin (the run directories to prepare or stop). Do not set it.
    type: list
    elements: path
    default: []
  _unseen_grace:
    description: Internal, set by the action plugin (how long a job being started may take to show up). Do not set it.
    type: float
    default: 3.0
  _work_dir:
    description: Internal, set by the action plugin (the migrations' work directory, cleaned when preparing). Do not set it.
    type: path
  _async_dir:
    description:
      - Internal, set by the action plugin (the async directory as configured; a job's result is read from the
        C(results_file) it returned when started, else from here). Do not set it.
    type: path
    required: true
attributes:
  action:
    support: full
    description: Runs as an action plugin on the controller, starting the jobs and reading their state on the managed
      host.
  async:
    support: none
    description: It runs background tasks; it does not run in the background itself.
  check_mode:
    support: none
    description: It starts migrations; the role does not run it in check mode.
  diff_mode:
    support: none
    description: Nothing to compare.
  idempotent:
    support: full
    description: As idempotent as the migrations it starts (a migration of an unchanged source changes nothing).
"""

EXAMPLES = r"""
- name: Migrate two databases in the background, one at a time, showing progress
  codacy.selfhosted.codacy_db_wait:
    start:
      - {name: analysis, position: 0, size: 2147483648}
      - {name: results, target_name: codacy_results, position: 1, size: 1073741824}
    migrate:
      source: "{{ codacy_source }}"
      target: "{{ codacy_target }}"
      work_dir: /var/tmp
    run_dir: /var/tmp/codacy_db_migration/production
    slots: 1
  register: migrations

- name: Or wait for migrations started by a loop of async tasks
  codacy.selfhosted.codacy_db_wait:
    started: "{{ started }}"
  register: migrations
"""

RETURN = r"""
results:
  description: The result of every job (what M(codacy.selfhosted.codacy_db_migrate) returned), in the order of
    O(start) or of the loop that started them.
  returned: always
  type: list
  elements: dict
"""

import os
import shutil
import signal
import time

from ansible.module_utils.basic import AnsibleModule

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


def main():
    module = AnsibleModule(
        argument_spec=dict(
            start=dict(type="list", elements="dict"),
            migrate=dict(type="dict", no_log=True),
            run_dir=dict(type="path"),
            slots=dict(type="int", default=1),
            async_limit=dict(type="int", default=604800),
            started=dict(type="dict"),
            interval=dict(type="int", default=10),
            timeout=dict(type="int", default=0),
            # set by the action plugin: what to do here, the jobs still running, and where async results are kept
            _mode=dict(type="str", default="poll", choices=["prepare", "poll", "stop", "reap"]),
            _jobs=dict(type="list", elements="dict", default=[]),
            _run_dirs=dict(type="list", elements="path", default=[]),
            _unseen_grace=dict(type="float", default=3.0),
            _work_dir=dict(type="path"),
            # "path" expands `~` here, with the jobs' HOME, as async_wrapper does
            _async_dir=dict(type="path", required=True),
        ),
        supports_check_mode=False,
    )
    if module.params["_mode"] == "prepare":
        waited, problem = prepare(module.params["_run_dirs"][0], module.params["_work_dir"])
        if problem:
            module.fail_json(msg=problem, waited=waited)
        module.exit_json(changed=False, waited=waited)
    if module.params["_mode"] == "stop":
        module.exit_json(changed=False, jobs=stop(module.params["_run_dirs"], module.params["_jobs"],
                                                  module.params["_async_dir"], module.params["interval"],
                                                  module.params["_unseen_grace"]))
    if module.params["_mode"] == "reap":
        reap([job["jid"] for job in module.params["_jobs"] if job.get("jid")])
        module.exit_json(changed=False)
    module.exit_json(changed=False, jobs=watch(module.params["_jobs"], module.params["_async_dir"],
                                               module.params["interval"]), now=time.time())


if __name__ == "__main__":
    main()
