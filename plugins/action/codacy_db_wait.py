# -*- coding: utf-8 -*-
# Copyright: Contributors to the codacy.selfhosted collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Start background migrations, wait for them printing their progress, and stop them all when
ansible-playbook is interrupted.

The controller side of codacy_db_wait. With `start` it starts the migrations itself (with
Ansible's async, as a `poll: 0` loop would), so that one signal handler covers the whole time
they start and run: an interrupt at any point stops every migration started (it removes the
heartbeat they watch and waits until they ended), then says which databases were stopped.
With `started` (the registered result of such a loop, 1.0.0's way) it only waits.

Every `interval` seconds it asks the managed host (one module call; none when that host is the
controller itself: see module_utils/waiting.py) for each job's state and prints the run and each
database copying, e.g.
    [migrator] 1 of 3 databases done, 1.4 GB of 3.1 GB (45%), 2.1M of ~4.6M rows, 2m10s, about 2m40s left
    [migrator]   results: restore 820 MB of 1.1 GB (74%), 1.2M of ~1.6M rows, 12/40 tables, 1m50s, about 40s left
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shlex
import signal
import time

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

from ansible_collections.codacy.selfhosted.plugins.module_utils import progress, waiting
from ansible_collections.codacy.selfhosted.plugins.module_utils.rundir import RunDir
from ansible_collections.codacy.selfhosted.plugins.module_utils.units import human_bytes

display = Display()

WAIT_MODULE = "codacy.selfhosted.codacy_db_wait"
MIGRATE_MODULE = "codacy.selfhosted.codacy_db_migrate"
STOP_WITHIN = 30  # seconds an interrupted run waits for its migrations to end


class Interrupted(BaseException):
    """ansible-playbook was interrupted (signum), or is gone (None): stop the migrations, then end as
    Ansible expects."""

    def __init__(self, signum):
        super(Interrupted, self).__init__(signum)
        self.signum = signum


def duration(seconds):
    seconds = int(seconds)
    if seconds >= 3600:
        return "%dh%02dm" % (seconds // 3600, seconds % 3600 // 60)
    return "%dm%02ds" % (seconds // 60, seconds % 60) if seconds >= 60 else "%ds" % seconds


def rows(count):
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if count >= scale:
            return "%.1f%s" % (count / scale, unit)
    return "%d" % count


def of(done, total, unit):
    """'820 MB of 1.1 GB (74%)'; '~' marks an estimated total."""
    share = progress.fraction(done, total)
    text = "%s of %s" % (unit(done or 0), unit(total))
    return text + (" (%d%%)" % (share * 100) if share is not None else "")


def database_line(name, state, now):
    """'results: restore 820 MB of 1.1 GB (74%), 1.2M of ~1.6M rows, 12/40 tables, 1m50s, about 40s left'."""
    phase = "finishing" if state.get("finished") else state.get("phase") or "starting"
    parts = []
    if state.get("bytes_done") is not None and state.get("bytes_total"):
        parts.append(of(state["bytes_done"], state["bytes_total"], human_bytes))
    elif state.get("dump_bytes"):
        parts.append("%s dumped" % human_bytes(state["dump_bytes"]))
    elif state.get("bytes_total"):
        parts.append("size %s" % human_bytes(state["bytes_total"]))
    if state.get("rows_total") is not None and state.get("rows_done") is not None:
        parts.append("%s of ~%s rows" % (rows(state["rows_done"]), rows(state["rows_total"])))
    if state.get("tables_total"):
        parts.append("%s/%s tables" % (state.get("tables_done") or 0, state["tables_total"]))
    since = state.get("started") or state.get("phase_started")
    if since:
        parts.append(duration(now - since))
    left = progress.eta(state, now) if phase in progress.WRITING_PHASES else None
    if left is not None and left >= 1:
        parts.append("about %s left" % duration(left))
    return "%s: %s%s" % (name, phase, " " + ", ".join(parts) if parts else "")


def run_line(jobs, states, done, started, now):
    """'1 of 3 databases done, 1.4 GB of 3.1 GB (45%), 2.1M of ~4.6M rows, 2m10s, about 2m40s left'.

    Bytes: the targets' sizes against the sources' (a finished database counts whole); rows: the
    exact counts verified for finished databases, the estimates of the others."""
    total = copied = base = remaining = rows_done = rows_total = 0
    for job in jobs:
        state = states.get(job["name"]) or {}
        job_total = state.get("bytes_total") or job.get("size") or 0
        total += job_total
        base += state.get("bytes_base") or 0
        if job["name"] in done:
            copied += job_total
            verified = done[job["name"]].get("verified") or {}
            rows_done += verified.get("rows") or 0
            rows_total += verified.get("rows") or 0
        else:
            current = state.get("bytes_done") or state.get("bytes_base") or 0
            copied += current
            remaining += max(0, job_total - current)
            rows_done += state.get("rows_done") or 0
            rows_total += state.get("rows_total") or 0
    parts = ["%d of %d databases done" % (len(done), len(jobs))]
    if total:
        parts.append(of(copied, total, human_bytes))
    if rows_total:
        parts.append("%s of ~%s rows" % (rows(rows_done), rows(rows_total)))
    parts.append(duration(now - started))
    left = remaining * (now - started) / float(copied - base) if copied > base else None
    if left is not None and left >= 1:
        parts.append("about %s left" % duration(left))
    return ", ".join(parts)


def jobs_of(started):
    """[{name, jid, results_file, progress_file}] from the registered result of a loop of async tasks."""
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
        jobs.append({"name": str(item.get("name")), "jid": entry["ansible_job_id"], "size": item.get("size"),
                     "results_file": entry.get("results_file"), "progress_file": item.get("progress_file")})
    return jobs


def controller_output():
    """A descriptor of ansible-playbook's standard output, opened now: when it is interrupted it no
    longer shows what its workers display, and this worker outlives it by the few seconds it takes
    to stop the migrations. None where it cannot be opened (the message then goes to display)."""
    try:
        return os.open("/proc/%d/fd/1" % os.getppid(), os.O_WRONLY | os.O_APPEND | os.O_NOCTTY)
    except OSError:
        return None


def interrupt_lost(pid=None):
    """True when ansible-playbook (process `pid`, by default this worker's parent) no longer
    catches SIGINT. Its handler resets SIGINT on the first Ctrl-C and raises KeyboardInterrupt; when
    that Ctrl-C comes while it forks a worker, the exception is raised inside fork's callbacks,
    where Python ignores it, and the play goes on as if nothing happened. False where it cannot
    tell (no /proc, or the parent is not ansible-playbook, as with a strategy that runs tasks
    elsewhere)."""
    pid = pid or os.getppid()
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as cmdline:
            if b"ansible" not in cmdline.read():
                return False
        with open("/proc/%d/status" % pid) as status:
            for line in status:
                if line.startswith("SigCgt:"):
                    return not int(line.split()[1], 16) & (1 << (signal.SIGINT - 1))
    except (OSError, ValueError):
        pass
    return False


def runs_here(connection, environment=None):
    """True when the migration host is the controller, as this user and with this process's
    environment (a local connection without become, a task without `environment`, which could set
    the HOME that `~` means): what the module would do there can be done in this process."""
    return connection.transport == "local" and not connection.become and not any(environment or [])


def expand_paths(module_args):
    """The module's `path` options expanded as the module would (its argument spec's type)."""
    def expand(path):
        return os.path.expanduser(os.path.expandvars(path)) if path else path
    expanded = dict(module_args, _async_dir=expand(module_args["_async_dir"]),
                    _run_dirs=[expand(path) for path in module_args.get("_run_dirs") or []])
    if "_work_dir" in module_args:
        expanded["_work_dir"] = expand(module_args["_work_dir"])
    return expanded


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("start", "migrate", "run_dir", "slots", "async_limit", "started", "interval", "timeout"))

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        args = self._task.args
        if ("start" in args) == ("started" in args):
            raise AnsibleActionFail("codacy_db_wait: give either `start` (the migrations to start) or `started`")
        self.task_vars = task_vars
        self.host = task_vars.get("inventory_hostname")
        self.interval = max(1, int(args.get("interval", 10)))
        self.jobs, self.done, self.states = [], {}, {}
        self.began = self.last_report = time.time()
        # Not expanded here: `~` means the jobs' $HOME, which the module expands like async_wrapper does.
        self.async_dir = self.get_shell_option("async_dir", default="~/.ansible_async")
        self.here = runs_here(self._connection, self._task.environment)
        self.out = controller_output()
        self.ansible_playbook = os.getppid()
        previous = self._catch_signals()
        try:
            try:
                if "start" in args:
                    self._refuse_after_a_lost_interrupt()
                    self._start(args)
                else:
                    self.jobs = jobs_of(args["started"])
                self._wait(int(args.get("timeout", 0)))
            except Interrupted as exc:
                if exc.signum is None:
                    self._stop("ansible-playbook is gone (killed)")
                    raise AnsibleActionFail("ansible-playbook is gone (killed): stopped the migrations") from None
                self._stop()
                signal.signal(exc.signum, signal.SIG_DFL)
                os.kill(os.getpid(), exc.signum)  # end as Ansible expects of an interrupted worker
            except Exception:
                self._stop()  # nobody would watch them any more
                raise
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if self.out is not None:
                os.close(self.out)
        result.update(changed=any(r.get("changed") for r in self.done.values()),
                      results=[self.done[job["name"]] for job in self.jobs])
        return result

    def _catch_signals(self):
        """When ansible-playbook is interrupted it signals this worker (SIGINT, then SIGTERM)."""
        def interrupted(signum, frame):
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, signal.SIG_IGN)  # one stop, not broken off by the second signal
            raise Interrupted(signum)
        try:
            return dict((sig, signal.signal(sig, interrupted)) for sig in (signal.SIGTERM, signal.SIGINT))
        except ValueError:  # not the main thread: the heartbeat's timeout still ends the jobs
            display.vvv("codacy_db_wait: cannot handle signals here; the heartbeat's timeout ends the jobs")
            return {}

    def _stop_when_ansible_playbook_is_gone(self):
        """Killed with SIGKILL, ansible-playbook cannot stop this worker, which would go on starting
        the migrations and keeping their heartbeat fresh until they end: it has a new parent then."""
        if os.getppid() != self.ansible_playbook:
            raise Interrupted(None)

    def _refuse_after_a_lost_interrupt(self):
        if interrupt_lost():
            started = [job["name"] for job in self.jobs if job.get("jid")]
            raise AnsibleActionFail(
                "ansible-playbook was interrupted (Ctrl-C) while it started a task, and Ansible went on as if it "
                "had not been: %s. Run the playbook again when you want the migrations"
                % ("stopped the migrations of %s, which had started" % ", ".join(started) if started
                   else "no migration was started"))

    def say(self, text):
        display.display("[%s] %s" % (self.host, text))

    # -- starting ----------------------------------------------------------------------------------
    def _start(self, args):
        """Start a background migration for every entry of `start`, in order (largest first)."""
        run_dir = RunDir(args["run_dir"])
        migrate = dict((k, v) for k, v in (args.get("migrate") or {}).items() if v is not None)
        slots = int(args.get("slots", 1))
        heartbeat_timeout = max(60, self.interval * 6)
        prepared = self._call(_mode="prepare", _run_dirs=[run_dir.path], _work_dir=migrate.get("work_dir"))
        if prepared.get("waited"):
            self.say("the migrations of an interrupted run ended first: %s" % ", ".join(prepared["waited"]))
        self.jobs = [{"name": entry["name"], "target_name": entry.get("target_name") or entry["name"],
                      "size": entry.get("size"), "position": int(entry["position"]),
                      "progress_file": run_dir.progress_file(int(entry["position"])), "launched": False}
                     for entry in args["start"]]
        # One background module run migrates them all, each in a process of its own (its `batch`).
        self._refuse_after_a_lost_interrupt()
        batch = [{"database": job["name"], "target_database": job["target_name"], "position": job["position"],
                  "progress_file": job["progress_file"], "result_file": run_dir.result_file(job["position"])}
                 for job in self.jobs]
        module_args = dict(migrate, batch=batch, queue={"dir": run_dir.path, "slots": slots,
                                                        "heartbeat_timeout": heartbeat_timeout})
        self._stop_when_ansible_playbook_is_gone()
        for job in self.jobs:
            job["launched"] = True  # from now on an interrupt must stop it too
        started = self._start_one(module_args, int(args.get("async_limit", 604800)))
        if started.get("failed") or not started.get("ansible_job_id"):
            for job in self.jobs:
                self.done[job["name"]] = dict(started, failed=True, database=job["name"], phase="start",
                                              msg="%s: the background migration did not start: %s"
                                                  % (job["name"], started.get("msg")))
            self.say("FAILED to start the migrations: %s" % started.get("msg"))
            return
        for job, entry in zip(self.jobs, batch):
            # Each result is read from its own file; the batch's own (async_wrapper's) is removed at the end.
            job.update(jid=started["ansible_job_id"], results_file=entry["result_file"],
                       batch_results_file=started.get("results_file"))

    def _start_one(self, module_args, async_limit):
        """Run codacy_db_migrate in the background, as a task with `async` and `poll: 0` does."""
        self._task.async_val = async_limit
        try:
            return self._execute_module(module_name=MIGRATE_MODULE, module_args=module_args, task_vars=self.task_vars,
                                        wrap_async=True)
        finally:
            self._task.async_val = 0  # async_wrapper removes that job's files; ours are removed as usual

    def _call(self, **module_args):
        module_args = dict({"interval": self.interval, "_async_dir": self.async_dir}, **module_args)
        if self.here:
            state = waiting.answer(expand_paths(module_args))
        else:
            state = self._execute_module(module_name=WAIT_MODULE, task_vars=self.task_vars, module_args=module_args)
        if state.get("failed"):
            raise AnsibleActionFail("codacy_db_wait: %s" % state.get("msg"))
        return state

    # -- waiting -----------------------------------------------------------------------------------
    def _look(self, interval):
        """One look at the pending jobs (the module answers after `interval` s, or at once when the
        last one finished); returns the host's clock."""
        pending = [job for job in self.jobs if job["name"] not in self.done and job.get("launched", True)]
        state = self._call(_jobs=[self._job_args(job) for job in pending], interval=interval)
        for job, seen in zip(pending, state["jobs"]):
            if seen.get("progress"):
                self.states[job["name"]] = seen["progress"]
            if seen["finished"]:
                self.done[job["name"]] = seen["result"]
                self.say(self._outcome(job, seen["result"]))
        return state["now"]

    @staticmethod
    def _job_args(job):
        return dict((key, job.get(key)) for key in ("name", "jid", "results_file", "progress_file",
                                                    "batch_results_file"))

    def _outcome(self, job, result):
        if result.get("failed"):
            return "%s: FAILED in phase %s" % (job["name"], result.get("phase") or "?")
        verified = result.get("verified") or {}
        figures = ", %s rows verified" % verified["rows"] if verified.get("equal") else ""
        return "%s: %s in %s%s" % (job["name"], result.get("action") or "done",
                                   duration((result.get("phases") or {}).get("total") or 0), figures)

    def _wait(self, timeout):
        """Until every job has finished, a progress line for the run and one per copying database."""
        while len(self.done) < len(self.jobs):
            self._report(self._look(self.interval))
            self._stop_when_ansible_playbook_is_gone()
            if timeout and time.time() - self.began > timeout and len(self.done) < len(self.jobs):
                raise AnsibleActionFail("codacy_db_wait: migrations still running after %d s: %s"
                                        % (timeout, ", ".join(j["name"] for j in self.jobs if j["name"] not in self.done)))

    def _report(self, now):
        """The run's line, then one per database copying and one for those waiting for a slot."""
        self.last_report = time.time()
        pending = [job for job in self.jobs if job["name"] not in self.done]
        if not pending:
            return
        # The run began when its first migration did (the host's clock, like `now`).
        began = min([state.get("started") or state.get("phase_started") or now for state in self.states.values()]
                    or [now])
        self.say(run_line(self.jobs, self.states, self.done, began, now))
        idle = {"starting": [], "waiting for a slot": []}
        for job in pending:
            state = self.states.get(job["name"]) or {}
            if state.get("phase") == "queued":
                idle["waiting for a slot"].append(job["name"])
            elif state.get("phase") in (None, "starting"):
                idle["starting"].append(job["name"])
            else:
                self.say("  " + database_line(job["name"], state, now))
        for what, names in sorted(idle.items()):
            if names:
                self.say("  %s: %s" % (what, ", ".join(names)))

    # -- stopping ----------------------------------------------------------------------------------
    def _stop(self, why="interrupted"):
        """Stop every started migration now, wait until each has ended (cleaning up after itself),
        and say which databases were stopped (and `why`)."""
        unstarted = [job["name"] for job in self.jobs if not job.get("launched", True)]
        stopping = [job for job in self.jobs if job["name"] not in self.done and job.get("launched", True)]
        for name in unstarted:
            self.done[name] = {"failed": True, "database": name, "phase": "start", "msg": "%s: interrupted before "
                               "it started; the next run migrates it" % name}
        if stopping:
            phases = dict((job["name"], (self.states.get(job["name"]) or {}).get("phase") or "starting")
                          for job in stopping)
            run_dirs = sorted(set(RunDir.of_progress_file(job["progress_file"]).path for job in stopping
                                  if job.get("progress_file")))
            interrupted = time.time()
            self._signal(run_dirs, [(self.states.get(job["name"]) or {}).get("pid") for job in stopping])
            try:  # then, in one module call: signal any other, wait until they ended, end their async_wrappers
                # A job being started when the interrupt came shows up within seconds, or never ran.
                state = self._call(_mode="stop", _run_dirs=run_dirs, _jobs=[self._job_args(job) for job in stopping],
                                   interval=STOP_WITHIN, _unseen_grace=max(0.0, 3.0 - (time.time() - interrupted)))
                for job, seen in zip(stopping, state["jobs"]):
                    if seen["finished"]:
                        self.done[job["name"]] = seen["result"]
            except Exception:  # pylint: disable=broad-except
                pass  # the connection may be going away too: without their heartbeat they end anyway
            stopped = ["%s (in phase %s)" % (job["name"], phases[job["name"]]) for job in stopping
                       if job["name"] in self.done]
            running = [job["name"] for job in stopping if job["name"] not in self.done]
            if stopped:
                self._tell("%s: stopped the migrations of %s; the next run resumes them" % (why, ", ".join(stopped)))
            if running:
                self._tell("%s: %s did not stop within %d s; without their heartbeat they end by "
                           "themselves within a minute" % (why, ", ".join(running), STOP_WITHIN))
        if unstarted:
            self._tell("%s: %s not started; the next run migrates them" % (why, ", ".join(unstarted)))

    def _signal(self, run_dirs, pids):
        """At once, with one shell command (no module to transfer): remove the heartbeat and send
        SIGTERM to the migrations whose process ids the last look saw (if they still run one)."""
        command = "rm -f %s" % " ".join(shlex.quote(RunDir(path).heartbeat) for path in run_dirs)
        for pid in sorted(set(int(pid) for pid in pids if pid)):
            command += "; grep -qs codacy_db_migrate /proc/%d/cmdline && kill -TERM %d" % (pid, pid)
        try:
            self._low_level_execute_command(command + "; true")
        except Exception:  # pylint: disable=broad-except
            pass  # the module call that follows, or the heartbeat's timeout, ends them

    def _tell(self, text):
        """Print even while ansible-playbook shuts down (see controller_output)."""
        line = "[%s] %s" % (self.host, text)
        if self.out is not None:
            try:
                os.write(self.out, (line + "\n").encode("utf-8", "replace"))
                return
            except OSError:
                pass
        display.display(line)
