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
    stopped; the next run resumes them. It does the same within O(interval) seconds when ansible-playbook is gone
    (killed with SIGKILL, which leaves this task's process running).
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
      host (in the action plugin's own process when the managed host is the controller, with a local connection,
      no become and no environment, saving a module call per progress line).
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

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.codacy.selfhosted.plugins.module_utils import waiting


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
    result = waiting.answer(module.params)
    if result.pop("failed", False):
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
