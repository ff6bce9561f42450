# -*- coding: utf-8 -*-
# Copyright: Contributors to the codacy.selfhosted collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""How far a migration is: its progress file, and the Meter that measures it.

Progress file: each background migration keeps rewriting one small JSON file, and the role's
waiting task (codacy_db_wait) reads it to print progress. FIELDS is the whole contract between
the two: whatever copies the data reports through Progress.update() and a Meter, and readers
use read() and eta(). Sizes are measured cheaply: one catalog query on the target every few
seconds (the target database's size, the rows its tables received) and only the new lines of a
client's log, never a re-read of anything big.

Where the progress files live: rundir.py.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import json
import os
import re
import threading
import time

from ansible_collections.codacy.selfhosted.plugins.module_utils.catalog import FIRST_NORMAL_OID
from ansible_collections.codacy.selfhosted.plugins.module_utils.connection import cut

# The fields of a progress file. Times are the migration host's clock (seconds since the epoch);
# None means not known (yet).
FIELDS = {
    "database": "the source database",
    "pid": "the process of the migration that writes the file",
    "phase": "starting, queued, connect, inspect, dump, record, clear, pre-data, restore, post-data, properties, "
             "verify, analyze, finished or failed; online migration also publication, slot, subscribe, catch-up, "
             "sequences and cleanup",
    "phase_started": "when the phase began",
    "started": "when the copy began (left the queue)",
    "bytes_total": "size of the source database (pg_database_size)",
    "bytes_done": "size of the target database (pg_database_size), measured once the copy writes to it",
    "bytes_base": "size of the target database when the copy began writing to it (an empty database is not 0 B)",
    "measured_since": "when bytes_base was measured",
    "rows_total": "rows in the source's tables (the planner's estimate)",
    "rows_done": "rows the target's tables received (their statistics, plus the COPY commands running)",
    "tables_total": "tables whose data is copied",
    "tables_done": "tables whose data is copied completely",
    "dump_bytes": "bytes the dump wrote to the work directory (data_path directory)",
    "lag_bytes": "bytes of WAL the target has still to apply (online migration's cutover, while it catches up)",
    "updated": "when the file was last written",
    "finished": "whether the migration has ended (successfully or not)",
    "action": "what the migration did (migrated, refreshed, ...), once known",
}

# Phases in which the target database grows with the copy (it is measured only then: before, it
# may still hold the copy being replaced).
WRITING_PHASES = ("pre-data", "restore", "post-data", "analyze")


def read(path):
    """The progress file at `path` with every field (None where missing), or None when unreadable."""
    try:
        with open(path) as handle:
            data = json.load(handle)
    except (OSError, ValueError, TypeError):
        return None
    return dict((name, data.get(name)) for name in FIELDS)


def eta(state, now):
    """Seconds left for one migration, from its pace so far (None when not known yet)."""
    done, total, base = state.get("bytes_done"), state.get("bytes_total"), state.get("bytes_base")
    since = state.get("measured_since")
    if None in (done, total, base, since) or done <= base or now <= since:
        return None
    return max(0.0, (total - done) * (now - since) / float(done - base))


def fraction(done, total):
    if not total or done is None:
        return None
    return max(0.0, min(1.0, float(done) / total))


class Progress:
    """Writes the progress file (atomically: the reader never sees half a file). Several threads
    report (the copy's workers, the meter): one update at a time."""

    def __init__(self, path, database):
        self.path = path
        self._lock = threading.Lock()
        now = time.time()
        self.state = dict((name, None) for name in FIELDS)
        self.state.update(database=database, pid=os.getpid(), phase="starting", phase_started=now, finished=False)
        self.update()  # replaces what an earlier run left in the file

    def update(self, **fields):
        unknown = set(fields) - set(FIELDS)
        if unknown:
            raise ValueError("progress: unknown fields %s" % ", ".join(sorted(unknown)))
        with self._lock:
            now = time.time()
            if "phase" in fields and fields["phase"] != self.state["phase"]:
                self.state["phase_started"] = now
            self.state.update(fields, updated=now)
            if not self.path:
                return
            tmp = "%s.%d.tmp" % (self.path, os.getpid())
            try:
                with open(tmp, "w") as handle:
                    json.dump(self.state, handle)
                os.rename(tmp, self.path)
            except OSError:
                pass  # progress is informative only; never fail a migration over it


# The rows of the tables whose data is copied (partitioned parents hold none), as the planner
# estimates them (-1, "never analyzed", counts as 0), and how many tables that is.
SOURCE_TOTALS_SQL = """
SELECT count(*), coalesce(sum(greatest(c.reltuples, 0)), 0)::bigint
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind = 'r' AND c.oid >= """ + str(FIRST_NORMAL_OID) + """ AND n.nspname <> %(skip)s AND n.nspname NOT LIKE 'pg\\_%%'
   AND n.nspname <> 'information_schema' AND (%(schemas)s::text[] IS NULL OR n.nspname = ANY(%(schemas)s))
"""

# The target database now: its size, the rows its tables received (committed), and the COPY
# commands running into it (with their rows so far where the server reports them, 14+).
TARGET_SAMPLE_SQL = """
SELECT pg_database_size(current_database()),
       (SELECT coalesce(sum(n_tup_ins), 0)::bigint FROM pg_stat_user_tables WHERE schemaname <> %(skip)s),
       (SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()
           AND state = 'active' AND query ILIKE 'COPY %%')
"""
COPYING_ROWS_SQL = """
SELECT coalesce(sum(tuples_processed), 0)::bigint FROM pg_stat_progress_copy WHERE datname = current_database()
"""


class Phases:
    """A run's phases: the current one (named in failures, the progress file and the watchdog's
    message) and the seconds spent in each, for the result and the record."""

    def __init__(self, progress):
        self.progress = progress
        self.current = "validate"
        self.seconds = {}
        self.started = time.time()

    def enter(self, phase):
        self.current = phase
        self.progress.update(phase=phase)

    def timed(self, phase, func, *args):
        self.enter(phase)
        started = time.time()
        try:
            return func(*args)
        finally:
            self.add(phase, time.time() - started)

    def add(self, phase, seconds):
        self.seconds[phase] = round(self.seconds.get(phase, 0) + seconds, 3)


def source_totals(conn, skip_schema, schemas):
    with conn.cursor() as cur:
        cur.execute(SOURCE_TOTALS_SQL, {"skip": skip_schema, "schemas": list(schemas) or None})
        tables, rows = cur.fetchone()
    return {"tables_total": int(tables), "rows_total": int(rows)}


class LogTail:
    """Counts the lines of a growing log that match a pattern, reading only what was added since
    the last look."""

    def __init__(self, path, pattern):
        self.path, self.pattern = path, re.compile(pattern)
        self.offset, self.count, self.partial = 0, 0, ""

    def lines(self):
        try:
            with open(self.path, errors="replace") as handle:
                handle.seek(self.offset)
                text = handle.read()
                self.offset = handle.tell()
        except OSError:
            return self.count
        text = self.partial + text
        complete, _sep, self.partial = text.rpartition("\n")
        self.count += sum(1 for line in complete.split("\n") if line and self.pattern.search(line))
        return self.count


class Meter:
    """Measures how far one database's copy is, at most every `every` seconds, into its Progress.

    `conn` is an open connection to the target database (its own statements are few and quick).
    Measuring never fails the copy: a failed measurement is skipped."""

    def __init__(self, progress, conn, server_major, skip_schema, bytes_total, every=2.0):
        self.progress, self.conn, self.skip, self.every = progress, conn, skip_schema, every
        self.copying_rows = server_major >= 14  # pg_stat_progress_copy
        self.last = 0.0
        self.tail = None
        progress.update(bytes_total=bytes_total, started=time.time())

    def totals(self, **fields):
        self.progress.update(**fields)

    def follow(self, log_path, pattern):
        """Count tables done from the lines of `log_path` that match `pattern` (one per table started)."""
        self.tail = LogTail(log_path, pattern) if pattern else None

    @contextlib.contextmanager
    def measuring(self, dump_dir=None):
        """Measure every `every` s while the block runs, in a thread of its own: the target's query
        hangs when the network to it stalls, and the main thread must stay free for the signals of
        the time limit and of the user (guard.py), as must the copy's workers for their own work.

        After the block the last measurement is waited for. When the block failed and that
        measurement is still stuck a second later, the connection is cut: otherwise every later use
        of it (closing it included) would wait for the stalled statement, past the time limit."""
        stop = threading.Event()

        def measure():  # at once (the target's size before the block writes is its base), then every `every` s
            self.poll(force=True, dump_dir=dump_dir)
            while not stop.wait(self.every):  # (a real sleep, not a poll)
                self.poll(force=True, dump_dir=dump_dir)
        thread = threading.Thread(target=measure, name="meter")
        thread.daemon = True  # never keeps the module alive
        thread.start()
        try:
            yield
            stop.set()
            while thread.is_alive():
                thread.join(0.5)  # (a signal still gets through)
        finally:
            stop.set()
            thread.join(1.0)
            if thread.is_alive():
                cut(self.conn)

    def poll(self, force=False, dump_dir=None):
        now = time.time()
        if not force and now - self.last < self.every:
            return
        self.last = now
        fields = {}
        if dump_dir:
            fields["dump_bytes"] = dir_size(dump_dir)
        copying = 0
        if self.progress.state["phase"] in WRITING_PHASES:
            try:
                fields.update(self.sample())
                copying = fields.pop("copying")
            except Exception:  # pylint: disable=broad-except
                pass  # informative only
        if self.tail is not None:
            fields["tables_done"] = max(0, self.tail.lines() - copying)
        if fields:
            self.progress.update(**fields)

    def sample(self):
        with self.conn.cursor() as cur:
            cur.execute(TARGET_SAMPLE_SQL, {"skip": self.skip})
            size, rows, copying = cur.fetchone()
            if self.copying_rows and copying:
                cur.execute(COPYING_ROWS_SQL)
                rows += cur.fetchone()[0]
        fields = {"bytes_done": int(size), "rows_done": int(rows), "copying": int(copying)}
        if self.progress.state["bytes_base"] is None:
            fields.update(bytes_base=int(size), measured_since=time.time())
        return fields


def dir_size(path):
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except OSError:
                pass
    return total
