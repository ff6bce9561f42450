#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Contributors to the codacy.selfhosted collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: codacy_db_wait
short_description: Wait for background database migrations, showing each one's phase and progress
version_added: 1.0.0
description:
  - Waits for M(codacy.selfhosted.codacy_db_migrate) tasks started in the background (C(async) with
    C(poll=0)) and prints, every O(interval) seconds, which database is in which phase and how far it is,
    so a long restore never looks hung. Returns every job's result, in the order they were started.
  - While it waits, it touches the file C(heartbeat) beside the jobs' progress files (it never creates it; the
    caller does, before starting the jobs); migrations started with
    O(codacy.selfhosted.codacy_db_migrate#module:queue.heartbeat_timeout) end when it goes stale or is removed
    (when ansible-playbook is interrupted, this action removes it at once), so that nothing keeps running unwatched.
  - It does not fail when a migration failed; the failed results are returned for the caller to report.
author:
  - Codacy Self-hosted team (@codacy)
options:
  started:
    description:
      - The registered result of the loop that started the migrations in the background. Each loop
        item is a database name, or a dict with C(name) and, optionally, C(progress_file) (the file
        given to the O(codacy.selfhosted.codacy_db_migrate#module:progress_file) option of that job).
    type: dict
    required: true
  interval:
    description: Seconds between two progress lines (a finished job is reported at once).
    type: int
    default: 10
  timeout:
    description: Give up waiting after this many seconds (V(0) waits as long as the jobs run).
    type: int
    default: 0
  _jobs:
    description: Internal, set by the action plugin (the jobs still running). Do not set it.
    type: list
    elements: dict
    required: true
  _async_dir:
    description:
      - Internal, set by the action plugin (the async directory as configured; a job's result is read from the
        C(results_file) it returned when started, else from here). Do not set it.
    type: str
    required: true
attributes:
  action:
    support: full
    description: Runs as an action plugin on the controller, reading the jobs' state on the managed host.
  async:
    support: none
    description: It waits for background tasks; it does not run in the background itself.
  check_mode:
    support: full
    description: Only reads.
  diff_mode:
    support: none
    description: Nothing to compare.
  idempotent:
    support: full
    description: Only reads (and removes the results files of finished jobs, as async_status cleanup does).
"""

EXAMPLES = r"""
- name: Start the migrations in the background
  codacy.selfhosted.codacy_db_migrate:
    database: "{{ item.name }}"
    source: "{{ codacy_source }}"
    target: "{{ codacy_target }}"
    progress_file: "{{ item.progress_file }}"
  async: 86400
  poll: 0
  loop:
    - {name: analysis, progress_file: /var/tmp/progress-analysis.json}
    - {name: results, progress_file: /var/tmp/progress-results.json}
  register: started

- name: Wait for them, showing progress
  codacy.selfhosted.codacy_db_wait:
    started: "{{ started }}"
  register: migrations
"""

RETURN = r"""
results:
  description: The result of every job (what M(codacy.selfhosted.codacy_db_migrate) returned), in the order of
    the loop that started them.
  returned: always
  type: list
  elements: dict
"""

import json
import os
import time

from ansible.module_utils.basic import AnsibleModule


def read_json(path):
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def alive(pid):
    try:
        os.kill(int(pid), 0)
        return True
    except (OSError, TypeError, ValueError):
        return False


def running_jobs(jids):
    """The job ids among `jids` that still have a process: Ansible's async_wrapper (its
    supervisor and the process that runs the module) carries the job id, without the `.<pid>`
    it appends, in its command line from the job's start until the result is written. None
    where /proc cannot tell."""
    if not os.path.isdir("/proc/self"):
        return None
    wanted = dict((jid.rsplit(".", 1)[0].encode(), jid) for jid in jids)
    found = set()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as handle:
                argv = handle.read().split(b"\0")
        except OSError:
            continue
        found.update(wanted[arg] for arg in argv if arg in wanted)
    return found


def final_result(path):
    data = read_json(path)
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
    os.unlink(results_file)  # like async_status cleanup: the result is handed over once
    data["finished"] = True
    return {"name": job["name"], "finished": True, "result": data}


def heartbeat_files(jobs):
    return set(os.path.join(os.path.dirname(job["progress_file"]), "heartbeat")
               for job in jobs if job.get("progress_file"))


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
    the async directory expanded by this process, which has the same HOME as the jobs."""
    running = running_jobs([job["jid"] for job in jobs])
    found = []
    for job in jobs:
        results_file = job.get("results_file") or os.path.join(os.path.expanduser(async_dir), job["jid"])
        progress = read_json(job.get("progress_file") or "") or {}
        is_running = job["jid"] in running if running is not None else alive(progress.get("pid"))
        found.append(job_state(job, results_file, is_running, progress))
    return found


def main():
    module = AnsibleModule(
        argument_spec=dict(
            started=dict(type="dict", required=True),
            interval=dict(type="int", default=10),
            timeout=dict(type="int", default=0),
            # set by the action plugin: the jobs still running, and where async results are kept
            _jobs=dict(type="list", elements="dict", required=True),
            _async_dir=dict(type="str", required=True),  # not "path": `~` is expanded like async_wrapper does
        ),
        supports_check_mode=True,
    )
    # Look every half second, and answer as soon as a job finished or `interval` passed: the
    # controller prints a progress line per answer and never notices a finished job late.
    deadline = time.time() + module.params["interval"]
    while True:
        beat(module.params["_jobs"])
        jobs = states(module.params["_jobs"], module.params["_async_dir"])
        if any(job["finished"] for job in jobs) or time.time() >= deadline:
            break
        time.sleep(0.5)
    module.exit_json(changed=False, jobs=jobs)


if __name__ == "__main__":
    main()
