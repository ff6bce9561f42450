# -*- coding: utf-8 -*-
# Copyright: Contributors to the codacy.selfhosted collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark helper (not part of the collection): record migration results of a playbook run.

Enabled by the harness only (bench/run/contenders/ours.py: ANSIBLE_CALLBACK_PLUGINS=bench/callback_plugins,
ANSIBLE_CALLBACKS_ENABLED=bench_record). Appends one JSON line per task result that carries
`phases` (a codacy_db_migrate result, looped or not) and one line with the play recap to the
file named by BENCH_RECORD_FILE, with one line per task: its name and wall seconds (the first,
"(start)", is the time from the callback's loading to the first task). Only the keys listed below
are kept: no module arguments, so no secrets, reach the file.
"""

import json
import os
import time

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = r"""
name: bench_record
type: aggregate
short_description: Record codacy_db_migrate results for the benchmark harness
description:
  - Writes selected keys of migration results and the play recap as JSON lines to E(BENCH_RECORD_FILE).
requirements:
  - BENCH_RECORD_FILE set in the environment
"""

KEPT = ("database", "target_database", "action", "changed", "failed", "msg", "phase", "phases", "dump_bytes",
        "source_size", "verified", "versions", "reasons")


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "bench_record"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super(CallbackModule, self).__init__()
        self._path = os.environ.get("BENCH_RECORD_FILE")
        self._task = ("(start)", time.time())

    def _write(self, record):
        if not self._path:
            return
        with open(self._path, "a") as handle:
            handle.write(json.dumps(record, default=str) + "\n")

    @staticmethod
    def _data(result):
        data = getattr(result, "result", None)
        return data if data is not None else result._result

    def _record(self, result, status):
        data = self._data(result)
        if "results" in data or "phases" not in data:
            return
        record = dict((key, data[key]) for key in KEPT if key in data)
        record.update(kind="result", status=status, task=result._task.get_name())
        self._write(record)

    def _task_ended(self):
        name, started = self._task
        self._write({"kind": "task", "task": name, "seconds": round(time.time() - started, 3)})

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._task_ended()
        self._task = (task.get_name(), time.time())

    def v2_playbook_on_handler_task_start(self, task):
        self.v2_playbook_on_task_start(task, False)

    def v2_runner_on_ok(self, result):
        self._record(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._record(result, "failed")

    def v2_runner_item_on_ok(self, result):
        self._record(result, "ok")

    def v2_runner_item_on_failed(self, result):
        self._record(result, "failed")

    def v2_playbook_on_stats(self, stats):
        self._task_ended()
        self._write({"kind": "stats", "hosts": dict((host, stats.summarize(host)) for host in sorted(stats.processed))})
