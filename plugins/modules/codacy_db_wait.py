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
    description: Internal, set by the action plugin (where background jobs keep their results). Do not set it.
    type: path
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


def job_state(job, async_dir):
    """One look at a background job: finished with its result, or running with its progress."""
    results_file = os.path.join(async_dir, job["jid"])
    data = read_json(results_file)
    progress = read_json(job.get("progress_file") or "") or {}
    if data is not None and "started" not in data:
        os.unlink(results_file)  # like async_status cleanup: the result is handed over once
        data["finished"] = True
        return {"name": job["name"], "finished": True, "result": data}
    if progress.get("pid") and not alive(progress["pid"]) and not progress.get("finished"):
        return {"name": job["name"], "finished": True, "result": {
            "failed": True, "msg": "%s: the migration process ended without a result (killed?) in phase %s; "
                                   "the next run resumes it" % (job["name"], progress.get("phase"))}}
    return {"name": job["name"], "finished": False, "progress": progress}


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


def main():
    module = AnsibleModule(
        argument_spec=dict(
            started=dict(type="dict", required=True),
            interval=dict(type="int", default=10),
            timeout=dict(type="int", default=0),
            # set by the action plugin: the jobs still running, and where async results are kept
            _jobs=dict(type="list", elements="dict", required=True),
            _async_dir=dict(type="path", required=True),
        ),
        supports_check_mode=True,
    )
    # Look every half second, and answer as soon as a job finished or `interval` passed: the
    # controller prints a progress line per answer and never notices a finished job late.
    deadline = time.time() + module.params["interval"]
    while True:
        beat(module.params["_jobs"])
        jobs = [job_state(job, module.params["_async_dir"]) for job in module.params["_jobs"]]
        if any(job["finished"] for job in jobs) or time.time() >= deadline:
            break
        time.sleep(0.5)
    module.exit_json(changed=False, jobs=jobs)


if __name__ == "__main__":
    main()
