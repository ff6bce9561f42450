# -*- coding: utf-8 -*-
# Copyright: Contributors to the codacy.selfhosted collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Several migrations from one module run: each database in a process forked from the module's.

Starting a module costs a process with its own interpreter, imports and argument file (and, in
the background, Ansible's async_wrapper with two more processes): about a second of CPU per
database, more than the module's own work on a small database. Forked after the imports, each
migration is a process of its own as before (its signals, its guard, its children, its progress
file, the queue's slots), for nothing.

Each migration writes its result, as the module would return it, to its `result_file` (0600,
replaced at once); the caller (codacy_db_wait) reads it there. A migration whose process ended
without writing one (killed) gets a failed result written by the batch, naming how it ended.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import signal
import sys

from ansible_collections.codacy.selfhosted.plugins.module_utils import progress


def write_result(path, result):
    """Write `result` as JSON to `path`, mode 0600, replacing it at once (a reader never sees half)."""
    temporary = "%s.%d.tmp" % (path, os.getpid())
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(result, handle)
    os.rename(temporary, path)


def read_result(path):
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def _last_json_line(path):
    """The last line of `path` that is a JSON object (what a migration's watchdog printed), or None."""
    try:
        with open(path) as handle:
            lines = handle.read().splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        try:
            found = json.loads(line)
        except ValueError:
            continue
        if isinstance(found, dict):
            return found
    return None


def _child(entry, run_one):
    """In the forked process: run one migration, write its result, never return."""
    code = 1
    try:
        # What the migration prints (its watchdog's last word when it cannot clean up itself) goes to
        # a file beside its result, not into the batch's own output.
        out = os.open(entry["result_file"] + ".out", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(out, 1)
        os.close(out)
        sys.stdout = os.fdopen(1, "w", closefd=False)
        write_result(entry["result_file"], run_one(entry))
        os.unlink(entry["result_file"] + ".out")
        code = 0
    except BaseException:  # pylint: disable=broad-except
        pass  # the batch writes a failed result for a process that ends without one
    finally:
        os._exit(code)


def run(entries, run_one):
    """Fork one process per entry ({database, result_file, ...}), each running run_one(entry);
    wait for all of them; write a failed result for each that ended without one. Returns the
    results in the entries' order."""
    sys.stdout.flush()
    pids = {}
    for entry in entries:
        for path in (entry["result_file"], entry["result_file"] + ".out"):
            if os.path.exists(path):
                os.unlink(path)  # an earlier run's: never taken for this one's
        pid = os.fork()
        if pid == 0:
            _child(entry, run_one)
        pids[pid] = entry
    while pids:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        entry = pids.pop(pid, None)
        # (Status 0: it wrote its result, which the waiting module may already have taken away.)
        if entry is not None and status != 0 and read_result(entry["result_file"]) is None:
            write_result(entry["result_file"], ended_without_result(entry, status))
    return [read_result(entry["result_file"]) for entry in entries]


def ended_without_result(entry, status):
    """The failed result of a migration whose process ended without writing its own."""
    printed = _last_json_line(entry["result_file"] + ".out")
    if os.path.exists(entry["result_file"] + ".out"):
        os.unlink(entry["result_file"] + ".out")
    if printed is not None:
        return dict(printed, failed=True)
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            how = "killed by %s" % signal.Signals(number).name
        except ValueError:
            how = "killed by signal %d" % number
    else:
        how = "exited with status %d" % os.WEXITSTATUS(status)
    phase = (progress.read(entry.get("progress_file") or "") or {}).get("phase")
    return {"failed": True, "database": entry["database"], "phase": phase,
            "msg": "%s: the migration's process ended without a result (%s) in phase %s; the next run resumes it"
                   % (entry["database"], how, phase or "starting")}
