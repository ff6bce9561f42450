# -*- coding: utf-8 -*-
# Copyright: Contributors to the codacy.selfhosted collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Wait for background migrations, printing one progress line per interval.

The controller side of codacy_db_wait: it asks the managed host (one module call per interval)
for each job's state and prints e.g.
    analysis: restore 12/40 tables (3m10s) | results: dump 5/30 tables, 1.2 GB (1m02s) | jobs: queued
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import posixpath
import shlex
import signal
import time

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

display = Display()


def duration(seconds):
    seconds = int(seconds)
    if seconds >= 3600:
        return "%dh%02dm" % (seconds // 3600, seconds % 3600 // 60)
    return "%dm%02ds" % (seconds // 60, seconds % 60) if seconds >= 60 else "%ds" % seconds


def size(count):
    for unit in ("B", "kB", "MB", "GB"):
        if count < 1024 or unit == "GB":
            return ("%d %s" if unit == "B" else "%.1f %s") % (count, unit)
        count /= 1024.0
    return str(count)


def describe(name, progress, now):
    """'analysis: restore 12/40 tables, 1.2 GB (3m10s)' from a job's progress file."""
    phase = "finishing" if progress.get("finished") else progress.get("phase") or "starting"
    parts = []
    if progress.get("total"):
        parts.append("%s/%s tables" % (progress.get("done") or 0, progress["total"]))
    if progress.get("bytes"):
        parts.append(size(progress["bytes"]))
    since = progress.get("since")
    elapsed = " (%s)" % duration(now - since) if since else ""
    return "%s: %s%s%s" % (name, phase, " " + ", ".join(parts) if parts else "", elapsed)


def jobs_of(started):
    """[{name, jid, progress_file}] from the registered result of the loop that started the jobs."""
    if not isinstance(started, dict) or not isinstance(started.get("results"), list):
        raise AnsibleActionFail("codacy_db_wait: `started` must be the registered result of a loop of "
                                "background (async, poll: 0) tasks")
    jobs = []
    for entry in started["results"]:
        item = entry.get("item")
        item = item if isinstance(item, dict) else {"name": item}
        if not entry.get("ansible_job_id"):
            raise AnsibleActionFail("codacy_db_wait: %s was not started in the background (async with poll: 0): %s"
                                    % (item.get("name"), entry.get("msg", "no ansible_job_id")))
        # results_file: where the job's async_wrapper writes its result (it expands the async
        # directory with the job's HOME, which may not be the user's home directory).
        jobs.append({"name": str(item.get("name")), "jid": entry["ansible_job_id"],
                     "results_file": entry.get("results_file"), "progress_file": item.get("progress_file")})
    return jobs


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("started", "interval", "timeout"))

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        jobs = jobs_of(self._task.args.get("started"))
        interval = max(1, int(self._task.args.get("interval", 10)))
        timeout = int(self._task.args.get("timeout", 0))
        finished = {}

        # When ansible-playbook is interrupted it signals this worker (SIGINT, then SIGTERM). Stop
        # the heartbeat right away, so that the background migrations end (cleanly) at once
        # instead of running on unwatched, then die as Ansible expects.
        def stop(signum, frame):
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, signal.SIG_IGN)
            display.display("[%s] interrupted: stopping the migrations that still run"
                            % task_vars.get("inventory_hostname"))
            self._stop_heartbeat([job for job in jobs if job["jid"] not in finished])
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

        try:
            previous = dict((sig, signal.signal(sig, stop)) for sig in (signal.SIGTERM, signal.SIGINT))
        except ValueError:  # not the main thread: the heartbeat's timeout still ends the jobs
            display.vvv("codacy_db_wait: cannot handle signals here; the heartbeat's timeout ends the jobs")
            previous = {}
        # Not expanded here: `~` means the jobs' $HOME, which the module expands like async_wrapper does.
        async_dir = self.get_shell_option("async_dir", default="~/.ansible_async")
        self._wait_args = {"started": {"results": []}, "interval": interval, "timeout": timeout, "_async_dir": async_dir}
        try:
            self._wait(jobs, finished, task_vars, interval, timeout)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        result.update(changed=any(r.get("changed") for r in finished.values()),
                      results=[finished[job["jid"]] for job in jobs])
        return result

    def _stop_heartbeat(self, pending):
        """Remove the heartbeat files of the pending jobs with one shell command (no module: this
        runs while Ansible is shutting down)."""
        paths = sorted(set(posixpath.join(posixpath.dirname(job["progress_file"]), "heartbeat")
                           for job in pending if job.get("progress_file")))
        if paths:
            try:
                self._low_level_execute_command("rm -f " + " ".join(shlex.quote(p) for p in paths))
            except Exception:  # pylint: disable=broad-except
                pass  # the heartbeat's timeout ends the jobs anyway

    def _wait(self, jobs, finished, task_vars, interval, timeout):
        """Poll the jobs until all have finished, printing a progress line per interval."""
        host = task_vars.get("inventory_hostname")
        started = time.time()
        while len(finished) < len(jobs):
            pending = [job for job in jobs if job["jid"] not in finished]
            state = self._execute_module(module_name="codacy.selfhosted.codacy_db_wait", task_vars=task_vars,
                                         module_args=dict(self._wait_args, _jobs=pending))
            if state.get("failed"):
                raise AnsibleActionFail("codacy_db_wait: %s" % state.get("msg"))
            now, running = time.time(), []
            for job, seen in zip(pending, state["jobs"]):
                if seen["finished"]:
                    finished[job["jid"]] = seen["result"]
                    outcome = seen["result"].get("action") or "done"
                    if seen["result"].get("failed"):
                        outcome = "FAILED in phase %s" % seen["result"].get("phase", "?")
                    display.display("[%s] %s: %s" % (host, job["name"], outcome))
                else:
                    running.append(describe(job["name"], seen["progress"], now))
            if running:
                display.display("[%s] %s" % (host, " | ".join(running)))
                if timeout and now - started > timeout:
                    raise AnsibleActionFail("codacy_db_wait: migrations still running after %d s: %s"
                                            % (timeout, ", ".join(running)))
