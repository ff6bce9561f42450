# -*- coding: utf-8 -*-
# Copyright: Contributors to the codacy.selfhosted collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""pg_dump and pg_restore: their command lines, running them (alone or piped together) with the
first errors of the one to blame as the failure, and the two copies made of them alone:

- data_path directory: dump to a directory with `jobs` workers, then restore it with `jobs` workers;
- data_path stream: the definitions through a small directory, the data streamed from pg_dump
  straight into pg_restore (no disk), then indexes and constraints with `jobs` workers.

The table-parallel engine (parallel.py) runs them for the definitions, through the same helpers.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
import shlex
import subprocess

from ansible_collections.codacy.selfhosted.plugins.module_utils import catalog, pgtools, records
from ansible_collections.codacy.selfhosted.plugins.module_utils.progress import dir_size


class CopyFailed(Exception):
    """The copy failed: `phase` (dump: reading the source; restore: writing the target) and a message
    that names the database, the server and what to do."""

    def __init__(self, phase, message):
        super(CopyFailed, self).__init__(message)
        self.phase = phase


def pg_dump(clients, source, database, snapshot, schemas, *options):
    """pg_dump of `database` in the exported `snapshot`, without the records schema."""
    argv = [clients["pg_dump"], "--no-password", "--verbose", "--snapshot=%s" % snapshot,
            "--exclude-schema=%s" % pgtools.pattern(records.SCHEMA)] + list(options)
    argv += ["--schema=%s" % pgtools.pattern(s) for s in schemas]
    return argv + ["--dbname=%s" % source.conninfo(database, read_only=True)]


def pg_restore(clients, conninfo, *options):
    return [clients["pg_restore"], "--exit-on-error", "--no-tablespaces", "--no-password", "--verbose",
            "--dbname=%s" % conninfo] + list(options)


def command_line(commands):
    """What the result's `commands` shows of one program or pipeline [(argv, log)] (no password in it)."""
    return " | ".join(" ".join(shlex.quote(a) for a in argv) for argv, _log in commands)


def run(children, commands, env, phase, copy, work_dir=None):
    """Run one program or a pipeline [(argv, log path)] under the guard's `children`. When one
    fails, raise CopyFailed naming the program to blame, the database and server of `copy`
    (anything with source, database, target, target_database) and its first errors."""
    codes, _seconds = children.run_pipeline(commands, env)
    failed = [(argv, log, code) for (argv, log), code in zip(commands, codes) if code != 0]
    if not failed:
        return
    # In a pipeline one failure brings down the other program too: blame pg_restore unless it
    # only ran out of input (then pg_dump, reading the source, is the cause).
    argv, log, code = failed[0]
    if len(failed) > 1 and not any(re.search(r"end of file|could not read input", line, re.I)
                                   for line in pgtools.first_errors(failed[-1][1])):
        argv, log, code = failed[-1]
    program = os.path.basename(argv[0])
    on_source = program == "pg_dump"
    errors = pgtools.first_errors(log)
    hint = ""
    if work_dir and any("No space left on device" in line for line in errors):
        hint = ". work_dir %s is full: free space there or choose another work_dir" % work_dir
    raise CopyFailed("dump" if on_source else phase, "%s of %s failed on %s (exit %d): %s%s" % (
        program, copy.database if on_source else copy.target_database,
        (copy.source if on_source else copy.target).address, code, " | ".join(errors) or "no error output", hint))


class DumpRestore:
    """One database's copy by pg_dump and pg_restore alone (data_path directory or stream), in the
    snapshot the copier exported; also runs the copier's vacuumdb. `seen` is the Inspection."""

    def __init__(self, seen, snapshot, private_dir, env, phases, meter, children, commands):
        self.seen = seen
        self.snapshot = snapshot
        self.private_dir = private_dir
        self.env = env
        self.phases = phases
        self.meter = meter
        self.children = children
        self.commands = commands
        self.dump_bytes = 0

    def pg_dump(self, *options):
        seen = self.seen
        return pg_dump(seen.clients, seen.source, seen.database, self.snapshot, seen.schemas, *options)

    def pg_restore(self, *options):
        return pg_restore(self.seen.clients, self.seen.target.conninfo(self.seen.target_database), *options)

    def run(self, phase, first, second=None, done_pattern=None, total=None):
        """Run one client program, or two piped together (pg_dump | pg_restore), for `phase`;
        progress from the last one's verbose log and the target's counters."""
        commands = [(argv, os.path.join(self.private_dir, "%s-%s.log" % (phase, os.path.basename(argv[0]))))
                    for argv in (first, second) if argv]
        self.commands.append(command_line(commands))
        self.phases.progress.update(phase=phase, **({"tables_total": total} if total else {}))
        self.meter.follow(commands[-1][1], done_pattern)
        dump_dir = self.private_dir if phase == "dump" and self.seen.params["data_path"] == "directory" else None
        with self.meter.measuring(dump_dir=dump_dir):
            self.phases.timed(phase, run, self.children, commands, self.env, phase, self.seen,
                              self.seen.params["work_dir"])
        self.meter.poll(force=True, dump_dir=dump_dir)

    def copy(self, tables, start_writing):
        """Copy with `jobs` workers; start_writing() (which records the run and empties the target)
        is called once the source was read as far as it can be before the target is written.
        Returns what start_writing() returned."""
        if self.seen.params["data_path"] == "directory":
            return self.through_directory(tables, start_writing)
        return self.streaming(tables, start_writing)

    def through_directory(self, tables, start_writing):
        """Dump to a directory with `jobs` workers, then restore it with `jobs` workers."""
        jobs = self.seen.params["jobs"]
        dump_dir = os.path.join(self.private_dir, "dump")
        self.run("dump", self.pg_dump("--format=directory", "--jobs=%d" % jobs, "--compress=0", "--no-sync",
                                      "--file=%s" % dump_dir), done_pattern=r"dumping contents of table", total=tables)
        self.dump_bytes = dir_size(dump_dir)
        started = start_writing()
        passes, table_data = self.restore_lists(dump_dir)
        self.restore_passes("restore", dump_dir, passes, (), r"processing data for table", table_data)
        return started

    def streaming(self, tables, start_writing):
        """Dump the definitions (small) to a directory, create the tables from it, stream the data
        from pg_dump straight into pg_restore (no disk, the target busy from the first second),
        then build indexes, constraints and triggers with `jobs` workers. One snapshot throughout."""
        schema_dir = os.path.join(self.private_dir, "schema")
        # Every section but the data, rather than --schema-only: post-data then holds the REFRESH
        # of each populated materialized view (--schema-only leaves them unpopulated). -B: the
        # large objects travel with the data.
        self.run("dump", self.pg_dump("--format=directory", "--section=pre-data", "--section=post-data", "-B",
                                      "--file=%s" % schema_dir))
        self.dump_bytes = dir_size(schema_dir)
        started = start_writing()
        passes, _table_data = self.restore_lists(schema_dir)
        self.run("pre-data", self.pg_restore("--format=directory", "--section=pre-data",
                                             "--use-list=%s" % passes[0][0], schema_dir))
        self.run("restore", self.pg_dump("--format=custom", "--compress=0", "--data-only"),
                 self.pg_restore("--format=custom", "--data-only"), r"processing data for table", tables)
        self.restore_passes("post-data", schema_dir, passes, ("--section=post-data",))
        return started

    def analyze(self):
        seen = self.seen
        self.run("analyze", [seen.clients["vacuumdb"], "--analyze-only", "--jobs=%d" % seen.params["jobs"],
                             "--no-password", "--dbname=%s" % seen.target.conninfo(seen.target_database)])

    def restore_passes(self, phase, dump_dir, passes, options, done_pattern=None, total=None):
        """Restore from `dump_dir` the lists of restore_lists(), one after the other; progress
        counts in the first, which restores the data."""
        for number, (toc_list, jobs) in enumerate(passes):
            argv = self.pg_restore("--format=directory", "--jobs=%d" % jobs, "--use-list=%s" % toc_list, *options)
            argv.append(dump_dir)
            if number == 0:
                self.run(phase, argv, done_pattern=done_pattern, total=total)
            else:
                self.run(phase, argv)

    def restore_lists(self, dump_dir):
        """The dump's table of contents, without CREATE SCHEMA for schemas the target already has,
        as the lists of the pg_restore runs that restore it one after the other (pgtools.restore_pass()),
        each with its number of workers: [(path, jobs)]; and how many tables' data it restores.

        With --schema, pg_dump emits CREATE SCHEMA even for `public`, which every database
        already has; restoring it would fail. Their owner, grants and comment still apply."""
        toc = subprocess.run([self.seen.clients["pg_restore"], "--list", dump_dir], capture_output=True, text=True,
                             check=True).stdout
        existing = set(r[0] for r in catalog.fetchall(self.seen.tgt, "SELECT nspname FROM pg_namespace"))
        kept = [line for line in toc.splitlines() if not pgtools.creates_existing_schema(line, existing)]
        lines = [[], [], []]
        for line in kept:
            lines[pgtools.restore_pass(line)].append(line)
        passes = []
        for number, chosen in enumerate(lines):
            if number == 0 or chosen:
                path = os.path.join(self.private_dir, "restore-%d.list" % (number + 1))
                with open(path, "w") as handle:
                    handle.write("\n".join(chosen) + "\n")
                passes.append((path, 1 if number == 1 else self.seen.params["jobs"]))
        return passes, sum(1 for line in kept if " TABLE DATA " in line)
