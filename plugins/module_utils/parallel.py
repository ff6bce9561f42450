# -*- coding: utf-8 -*-
# Copyright: Contributors to the codacy.selfhosted collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The table-parallel copy of one database (data_path: parallel).

Interface (all the engine needs from its caller; see Request):
  the two Endpoints and database names, the snapshot id exported on the source (every reading
  session imports it), the number of workers, the schemas filter, the load settings, the client
  programs and the run's private directory with its child environment (passfile), a progress
  callback and the Guard (children and interruption).

    engine = Engine(request)
    engine.prepare()      # reads only: plans the tables, dumps the definitions (pg_dump)
    ...                   # the caller records the run as in progress and clears the target
    engine.load()         # writes: definitions, rows, indexes, constraints, statistics
    engine.rows           # {(schema, table): [rows sent by the source, rows received by the target]}
    ...                   # the caller applies the database's properties, then verifies with
    confirmed_counts(conn, engine.rows, engine.load_started)  # verify.compare(copied=...), read then

How it works. The definitions come from `pg_dump --section=pre-data --section=post-data` (with the
REFRESH of populated materialized views) and go in through pg_restore, as on the stream path. The
rows of the ordinary tables and partitions travel from a COPY TO on the source, run by psql in the
exported snapshot, through a pipe to a COPY FROM on the target run by a second psql, which this
process tells to commit once the first sent every row: no row passes through Python (binary format
when every column has a built-in type, text otherwise). `jobs` copy workers take the tables largest
first, each part in its own transaction; a table above the split threshold is cut into ranges of
ctid (sources 14 and newer, where a ctid range is read by a TID range scan) or of its integer
primary key. A table copied
in one part is loaded with TRUNCATE and COPY ... FREEZE in one transaction, so its pages are written
frozen and all-visible. As soon as a table's rows are in, one of `jobs` index workers builds its
indexes, constraints (but foreign keys), triggers, rules and policies (pg_restore of that table's
entries) and then ANALYZEs it, while other tables still copy. Everything else (sequence values and
large objects, through pg_dump --data-only; the rest of post-data in main's three passes: partition
index attachments one at a time, then foreign keys) follows, and then ANALYZE of what was not
analyzed yet (materialized views). The row counts of the COPY command tags of both sides are the
copy's own counts (see verify.compare's `copied`).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections
import heapq
import os
import queue
import re
import signal
import subprocess
import threading
import time

from ansible_collections.codacy.selfhosted.plugins.module_utils import dumprestore, fingerprint, pgtools, records, verify
from ansible_collections.codacy.selfhosted.plugins.module_utils.catalog import FIRST_NORMAL_OID
from ansible_collections.codacy.selfhosted.plugins.module_utils.connection import APPLICATION_NAME, cut
from ansible_collections.codacy.selfhosted.plugins.module_utils.dumprestore import CopyFailed
from ansible_collections.codacy.selfhosted.plugins.module_utils.progress import dir_size

try:
    import psycopg2
    import psycopg2.extensions
    from psycopg2 import sql
except ImportError:  # reported by the modules through connection.HAS_PSYCOPG2
    psycopg2 = sql = None

# A table is split when it is larger than this and than its share of the database (total / jobs);
# its parts are then about max(this, total / (2 * jobs)), at most MAX_PARTS of them.
SPLIT_MIN_BYTES = 256 * 1024 * 1024
MAX_PARTS = 16
PROGRESS_EVERY = 1.0  # seconds between two progress writes

Request = collections.namedtuple("Request", "source database target target_database snapshot jobs schemas settings "
                                            "clients private_dir env progress children")
# The target's load sessions only (never the server's configuration): maintenance_work_mem (str,
# e.g. '256MB', or None for the server's), max_parallel_maintenance_workers (int or None), and
# whether to ANALYZE each table once it is complete.
Settings = collections.namedtuple("Settings", "maintenance_work_mem max_parallel_maintenance_workers analyze")


def target_connections(jobs):
    """Connections the copy opens to the target at most: `jobs` copy workers (each one's receiving
    psql) and `jobs` index workers, one of which may run pg_restore with a leader and `jobs` workers
    (Engine._widen), the stream of sequences and large objects, and the module's own."""
    return 3 * jobs + 2


# Ordinary tables and partitions whose rows pg_dump would dump: not an extension's, not temporary,
# in the schemas migrated. Columns: oid, schema, name, bytes (with TOAST), heap blocks, the columns
# COPY carries (not generated), whether all of them have built-in types with a binary form, and the
# single integer column of the primary key, if any.
TABLES_SQL = """
SELECT c.oid, n.nspname, c.relname, pg_table_size(c.oid),
       pg_relation_size(c.oid) / current_setting('block_size')::int,
       coalesce(array_agg(a.attname::text ORDER BY a.attnum) FILTER (WHERE a.attnum IS NOT NULL), '{}'),
       coalesce(bool_and(t.oid < """ + str(FIRST_NORMAL_OID) + """ AND t.typsend::oid <> 0 AND t.typreceive::oid <> 0), true),
       (SELECT k.attname::text FROM pg_index i JOIN pg_attribute k ON k.attrelid = i.indrelid AND k.attnum = i.indkey[0]
         WHERE i.indrelid = c.oid AND i.indisprimary AND i.indnatts = 1 AND k.atttypid IN (20, 21, 23))
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND {not_generated}
  LEFT JOIN pg_type t ON t.oid = a.atttypid
 WHERE c.relkind = 'r' AND c.relpersistence <> 't' AND """ + verify.IN_SCHEMAS + """
   AND """ + verify.not_extension_member("pg_class", "c.oid") + """
 GROUP BY c.oid, n.nspname, c.relname
"""

# The table that each post-data entry of pg_dump's table of contents belongs to, by the entry's
# (catalog, oid) as `pg_restore --list` prints them. Foreign keys are left out: they wait for
# the end, with the partition index attachments.
OWNERS_SQL = """
SELECT 'pg_class'::regclass::oid, indexrelid, indrelid FROM pg_index WHERE indexrelid >= {first}
UNION ALL SELECT 'pg_constraint'::regclass::oid, oid, conrelid FROM pg_constraint
 WHERE oid >= {first} AND conrelid <> 0 AND contype <> 'f'
UNION ALL SELECT 'pg_trigger'::regclass::oid, oid, tgrelid FROM pg_trigger WHERE oid >= {first}
UNION ALL SELECT 'pg_rewrite'::regclass::oid, oid, ev_class FROM pg_rewrite WHERE oid >= {first}
UNION ALL SELECT 'pg_policy'::regclass::oid, oid, polrelid FROM pg_policy WHERE oid >= {first}
""".format(first=FIRST_NORMAL_OID)

# Sessions in the target database whose write counters may not be flushed yet (a session flushes
# them at the latest on its way out): the load's own (ours, started with the load: pg_restore's,
# the copy workers'), and any session or background worker that is not ours (autovacuum and
# parallel workers do not insert, update or delete rows of their own).
UNFLUSHED_SESSIONS_SQL = """
SELECT count(*) FILTER (WHERE application_name = %(ours)s), count(*) FILTER (WHERE application_name <> %(ours)s)
  FROM pg_stat_activity
 WHERE datname = current_database() AND pid <> pg_backend_pid()
   AND backend_type NOT IN ('autovacuum worker', 'parallel worker')
   AND (application_name <> %(ours)s OR backend_start >= %(load_started)s)
"""

WRITES_SQL = """
SELECT schemaname, relname, n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_all_tables
 WHERE relid >= """ + str(FIRST_NORMAL_OID) + """
"""

# Post-data entries that can be made as soon as their table's rows are in.
TABLE_ENTRY = re.compile(r"^\d+; (\d+) (\d+) (INDEX|CONSTRAINT|CHECK CONSTRAINT|TRIGGER|RULE|POLICY) ")


class Table:
    """One table to copy, from a row of TABLES_SQL."""

    def __init__(self, row):
        self.oid, self.schema, self.name, self.bytes, self.blocks, self.columns, self.binary, self.int_key = row
        self.ident = sql.Identifier(self.schema, self.name) if sql else None
        self.key = (self.schema, self.name)
        self.parts = 1
        self.parts_left = 1

    @property
    def qualified(self):
        return "%s.%s" % (self.schema, self.name)


def split_parts(size, total, jobs, min_bytes=SPLIT_MIN_BYTES):
    """How many parts a table of `size` bytes is copied in, out of a database whose tables hold `total`."""
    if jobs < 2 or size <= max(min_bytes, total / float(jobs)):
        return 1
    part = max(min_bytes, total / (2.0 * jobs))
    return int(min(MAX_PARTS, -(-size // part)))


def ranges(low, high, parts):
    """`parts` half-open ranges covering every value (the first and last are open-ended), with
    boundaries spread evenly over [low, high]: [(None, b1), (b1, b2), ..., (bn, None)]."""
    if parts < 2 or low is None or high is None or high - low < parts:
        return [(None, None)]
    bounds = [low + (high - low + 1) * k // parts for k in range(1, parts)]
    return list(zip([None] + bounds, bounds + [None]))


def range_condition(column, low, high, literal):
    """SQL condition for a range of ranges(): `literal(value)` renders a bound."""
    parts = []
    if low is not None:
        parts.append(sql.SQL("{} >= {}").format(column, literal(low)))
    if high is not None:
        parts.append(sql.SQL("{} < {}").format(column, literal(high)))
    return sql.SQL(" AND ").join(parts)


def assign_entries(post_data_lines, owners, copied):
    """Split post-data entries (`pg_restore --list` lines) into those each copied table can make as
    soon as its rows are in ({oid: [lines]}, TOC order kept) and the rest. owners: {(catalog, oid):
    table oid} (OWNERS_SQL); copied: the oids of the tables copied."""
    per_table, rest = collections.defaultdict(list), []
    for line in post_data_lines:
        match = TABLE_ENTRY.match(line)
        owner = owners.get((int(match.group(1)), int(match.group(2)))) if match else None
        if owner in copied and pgtools.restore_pass(line) == 0:
            per_table[owner].append(line)
        else:
            rest.append(line)
    return dict(per_table), rest


def concurrency(intervals, started, ended):
    """Time-weighted number of intervals [(start, end)] running at once between started and ended."""
    wall = ended - started
    return round(sum(end - start for start, end in intervals) / wall, 2) if wall > 0 else 0.0


def _tags(path):
    """The command tags psql wrote to `path` (its --output), or "" when it wrote none."""
    try:
        with open(path) as handle:
            return handle.read()
    except OSError:
        return ""


def _copied_rows(tags):
    """The rows of the last COPY among psql's command tags ("COPY 1200"), or None."""
    found = re.findall(r"^COPY (\d+)$", tags, re.M)
    return int(found[-1]) if found else None


def _ended(program, code):
    return "%s was killed (signal %d)" % (program, -code) if code < 0 else "%s ended (exit code %d)" % (program, code)


def _tell(script, statements):
    """Write statements to the receiving psql; when it is gone, its exit code will tell why."""
    try:
        script.write(statements)
        script.flush()
    except OSError:
        pass


def _broke_the_pipe(code, log_path):
    """Whether the sending psql ended because its reader was gone (killed, or failed first)."""
    return code == -signal.SIGPIPE or any(re.search(r"broken pipe|could not write", line, re.I)
                                          for line in pgtools.first_errors(log_path))


def confirmed_counts(conn, rows, load_started, settle=30.0):
    """The copy's counts for verification, read when it verifies (`conn`: the target database):
    {(schema, table): (source rows, target rows or None)}; `rows` and `load_started` are the Engine's.

    The target's count of a table is its COPY's only when the target's write counters prove that
    nothing else wrote it since (a session connected meanwhile, a trigger of the target's own, the
    stream of pg_dump): rows inserted equal to the COPY's, none updated or deleted. The counters are
    exact from PostgreSQL 15 on, once the sessions that wrote have flushed them; a session flushes
    at the latest on its way out, so they are read only once the load's sessions have ended and
    while no session that is not ours is connected. Otherwise, or when they do not count,
    verification counts the tables."""
    counts = dict((key, [sent, None]) for key, (sent, _received) in rows.items())
    if conn.server_version < 150000 or fingerprint.counting_problems(conn):
        return counts
    with conn.cursor() as cur:
        deadline = time.time() + settle
        while True:
            cur.execute(UNFLUSHED_SESSIONS_SQL, {"ours": APPLICATION_NAME, "load_started": load_started})
            loading, others = cur.fetchone()
            if others:
                return counts
            if not loading:
                break
            if time.time() > deadline:
                return counts
            time.sleep(0.1)
        cur.execute("SELECT pg_stat_clear_snapshot()")
        cur.execute(WRITES_SQL)
        written = dict(((schema, name), tuple(row)) for schema, name, *row in cur.fetchall())
    for key, (_sent, received) in rows.items():
        if written.get(key) == (received, 0, 0):
            counts[key][1] = received
    return counts


class Engine:
    """See the module docstring."""

    # Ranges of ctid from this source version on (a TID range scan reads just the range); before it,
    # ranges of an integer primary key (an index range scan), and tables without one are not split.
    ctid_from_version = 140000

    def __init__(self, request, split=True, split_min_bytes=None):
        self.request = request
        self.split = split  # whether large tables may be copied in ranges (the module's split_tables)
        self.split_min_bytes = SPLIT_MIN_BYTES if split_min_bytes is None else split_min_bytes
        self.jobs = max(1, request.jobs)
        self.rows = {}
        self.commands = []
        self.phases = {}
        self.dump_bytes = 0
        self.parallelism = {}
        self.tables = []
        self.statistics = False  # planner statistics travel in the dump (PostgreSQL 18 client and target)
        self.statistics_dir = None
        self.timeline = []  # (copy | index, (schema, table), started, ended) of every part and index build
        self.load_started = None  # the target's clock when the load began (confirmed_counts)
        self._lock = threading.Lock()
        self._failure = None
        self._stopping = threading.Event()
        self._connections = set()
        self._done = 0
        self._last_progress = 0.0
        self._table_command_recorded = False
        self._wide = False  # one table's entries are restored by several pg_restore workers
        self._parts_started = 0

    # -- helpers ---------------------------------------------------------------------------------
    def _progress(self, force=False, **fields):
        now = time.time()
        if force or now - self._last_progress >= PROGRESS_EVERY:
            self._last_progress = now
            self.request.progress(**fields)

    def _timed(self, phase, func, *args):
        self._progress(force=True, phase=phase)
        started = time.time()
        try:
            return func(*args)
        finally:
            self.phases[phase] = round(self.phases.get(phase, 0) + time.time() - started, 3)

    def _open_source(self):
        """A source session in the exported snapshot, with the text forms of verification."""
        conn = self.request.source.connect(self.request.database, read_only=True, autocommit=False)
        with conn.cursor() as cur:
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            cur.execute("SET TRANSACTION SNAPSHOT %s", (self.request.snapshot,))
            cur.execute(verify.SESSION_SETUP)
            cur.execute("SELECT pg_encoding_to_char(encoding) FROM pg_database WHERE datname = current_database()")
            self.encoding = cur.fetchone()[0]
            cur.execute("SET client_encoding = %s", (self.encoding,))
        return conn

    def _settings(self):
        """[(name, value)] of the load sessions (values validated: no spaces or quotes)."""
        settings = self.request.settings
        chosen = [("synchronous_commit", "off")]
        if settings.maintenance_work_mem:
            chosen.append(("maintenance_work_mem", settings.maintenance_work_mem))
        if settings.max_parallel_maintenance_workers is not None:
            chosen.append(("max_parallel_maintenance_workers", str(settings.max_parallel_maintenance_workers)))
        return chosen

    def _open_target(self):
        """A load session: the copy is only marked complete after verification, so a crash is a
        resume and commits need not wait for the disk."""
        conn = self.request.target.connect(self.request.target_database, autocommit=False)
        with conn.cursor() as cur:
            cur.execute(verify.SESSION_SETUP)
            cur.execute("SET client_encoding = %s", (self.encoding,))
            for name, value in self._settings():
                cur.execute("SELECT set_config(%s, %s, false)", (name, value))
        conn.commit()
        return conn

    def _target_conninfo(self):
        """pg_restore's connection to the target, with the load sessions' settings."""
        options = " ".join("-c %s=%s" % setting for setting in self._settings())
        return psycopg2.extensions.make_dsn(self.request.target.conninfo(self.request.target_database),
                                            options=options)

    def _pg_restore(self, *options):
        return dumprestore.pg_restore(self.request.clients, self._target_conninfo(), *options)

    def _pg_dump(self, *options):
        request = self.request
        return dumprestore.pg_dump(request.clients, request.source, request.database, request.snapshot,
                                   request.schemas, *options)

    def _record(self, argv):
        self.commands.append(dumprestore.command_line([(argv, None)]))

    def _run(self, phase, commands, record=True):
        """Run one program or a pipeline [(argv, log name)] under the guard; fail with its first errors."""
        commands = [(argv, os.path.join(self.request.private_dir, name)) for argv, name in commands]
        if record:
            self.commands.append(dumprestore.command_line(commands))
        dumprestore.run(self.request.children, commands, self.request.env, phase, self.request)

    # -- prepare: reads only -----------------------------------------------------------------------
    def prepare(self):
        """Plan the tables (sizes, parts) in the snapshot and dump the definitions."""
        request = self.request
        conn = self._open_source()
        try:
            self.source_version = conn.server_version
            args = {"skip": records.SCHEMA, "schemas": list(request.schemas) or None}
            query = TABLES_SQL.replace("{not_generated}", "a.attgenerated = ''" if self.source_version >= 120000 else "true")
            with conn.cursor() as cur:
                cur.execute(query, args)
                self.tables = [Table(row) for row in cur.fetchall()]
                cur.execute(OWNERS_SQL)
                self.owners = dict(((int(c), int(o)), int(t)) for c, o, t in cur.fetchall())
            self._plan(conn)
        except psycopg2.Error as exc:
            raise CopyFailed("dump", "reading the tables of %s on the source %s failed: %s"
                             % (request.database, request.source.address, verify.first_line(exc))) from None
        finally:
            conn.close()
        conn = request.target.connect(request.target_database)
        try:
            target_version = conn.server_version
        finally:
            conn.close()
        # PostgreSQL 18 carries planner statistics in a dump (pg_restore_relation_stats() and
        # pg_restore_attribute_stats() of the target): no ANALYZE then.
        self.statistics = request.clients["major"] >= 18 and target_version >= 180000
        statistics = ["--statistics"] if self.statistics else []
        self.schema_dir = os.path.join(request.private_dir, "schema")
        # Every section but the data, rather than --schema-only: post-data then holds the REFRESH of
        # each populated materialized view (and, with statistics, those of indexes and materialized
        # views). -B: the large objects travel with the data.
        argv = self._pg_dump("--format=directory", "--section=pre-data", "--section=post-data", "-B",
                             "--file=%s" % self.schema_dir, *statistics)
        self._timed("dump", self._run, "dump", [(argv, "dump-pg_dump.log")])
        if self.statistics:  # those of tables are in the data section
            self.statistics_dir = os.path.join(request.private_dir, "statistics")
            argv = self._pg_dump("--format=directory", "--statistics-only", "--section=data",
                                 "--file=%s" % self.statistics_dir)
            self._timed("dump", self._run, "dump", [(argv, "statistics-pg_dump.log")])
        self.dump_bytes = sum(dir_size(path) for path in (self.schema_dir, self.statistics_dir) if path)

    def _plan(self, conn):
        """The parts of every table, largest first: [(bytes, table, condition or None)]."""
        total = sum(t.bytes for t in self.tables)
        self.parts = []
        for table in self.tables:
            conditions = [None]
            wanted = split_parts(table.bytes, total, self.jobs, self.split_min_bytes) if self.split else 1
            if wanted > 1 and self.source_version >= self.ctid_from_version:
                conditions = [range_condition(sql.SQL("ctid"), low, high, lambda b: sql.Literal("(%d,0)" % b) +
                                              sql.SQL("::tid"))
                              for low, high in ranges(0, table.blocks, wanted)]
            elif wanted > 1 and table.int_key:
                column = sql.Identifier(table.int_key)
                with conn.cursor() as cur:
                    cur.execute(sql.SQL("SELECT min({0}), max({0}) FROM ONLY {1}").format(column, table.ident))
                    low, high = cur.fetchone()
                conditions = [range_condition(column, lo, hi, sql.Literal) for lo, hi in ranges(low, high, wanted)]
            if len(conditions) < 2:
                conditions = [None]
            table.parts = table.parts_left = len(conditions)
            table.load = "%s%s\n" % ("TRUNCATE ONLY %s;\n" % table.ident.as_string(conn) if table.parts == 1 else "",
                                     self._copy_in_command(table).as_string(conn))
            for condition in conditions:
                self.parts.append((table.bytes // table.parts, table, self._rows_of(table, condition).as_string(conn)))
        self.parts.sort(key=lambda part: -part[0])

    @staticmethod
    def _rows_of(table, condition):
        """What the source's COPY TO reads: the table's columns, or those of a range of its rows."""
        columns = sql.SQL(", ").join(sql.Identifier(c) for c in table.columns)
        if condition is None:
            return table.ident + (sql.SQL(" ({})").format(columns) if table.columns else sql.SQL(""))
        return sql.SQL("(SELECT {} FROM ONLY {} WHERE {})").format(columns, table.ident, condition)

    @staticmethod
    def _copy_in_command(table):
        """psql's \\copy of a table's rows from its standard input into the target; a table copied in one
        part is written frozen (its TRUNCATE runs in the same transaction)."""
        columns = sql.SQL(", ").join(sql.Identifier(c) for c in table.columns)
        options = [o for o, wanted in (("FORMAT binary", table.binary), ("FREEZE", table.parts == 1)) if wanted]
        return sql.SQL("\\copy {}{} FROM pstdin{}").format(
            table.ident, sql.SQL(" ({})").format(columns) if table.columns else sql.SQL(""),
            sql.SQL(" WITH (%s)" % ", ".join(options)) if options else sql.SQL(""))

    # -- load: writes the target -------------------------------------------------------------------
    def load(self):
        """Restore the definitions, copy the rows and build each table's indexes as it completes,
        then the rest; return self.rows."""
        request = self.request
        lines = self._toc()
        pre_data = self._write_list("pre-data.list", lines["all"])
        argv = self._pg_restore("--format=directory", "--section=pre-data", "--use-list=%s" % pre_data,
                                self.schema_dir)
        self._timed("pre-data", self._run, "pre-data", [(argv, "pre-data-pg_restore.log")])
        self._timed("restore", self._copy_everything, lines)
        final = [("post-data-1.list", lines["rest"], self.jobs), ("post-data-2.list", lines[1], 1),
                 ("post-data-3.list", lines[2], self.jobs)]
        for name, chosen, jobs in final:
            if chosen:
                argv = self._pg_restore("--format=directory", "--section=post-data", "--jobs=%d" % jobs,
                                        "--use-list=%s" % self._write_list(name, chosen), self.schema_dir)
                self._timed("post-data", self._run, "post-data", [(argv, name.replace(".list", ".log"))])
        if self.statistics:  # after every index (CREATE INDEX rewrites a table's size estimates)
            argv = self._pg_restore("--format=directory", "--statistics-only", self.statistics_dir)
            self._timed("analyze", self._run, "analyze", [(argv, "statistics-pg_restore.log")])
        elif request.settings.analyze:
            self._timed("analyze", self._analyze_the_rest)

    def _toc(self):
        """The entries of the definitions' table of contents, grouped: `all` (for pre-data), `per_table`
        ({table oid: [lines]}), `rest` (post-data after the copy), 1 and 2 (main's later passes)."""
        def listing(*options):
            argv = [self.request.clients["pg_restore"], "--list"] + list(options) + [self.schema_dir]
            return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.splitlines()
        conn = self.request.target.connect(self.request.target_database)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT nspname FROM pg_namespace")
                existing = set(row[0] for row in cur.fetchall())
                cur.execute("SELECT clock_timestamp()")
                self.load_started = cur.fetchone()[0]
        finally:
            conn.close()
        kept = [line for line in listing() if line and not line.startswith(";")
                and not pgtools.creates_existing_schema(line, existing)]
        post_data = [line for line in listing("--section=post-data") if line and not line.startswith(";")]
        per_table, rest = assign_entries(post_data, self.owners, set(t.oid for t in self.tables))
        return {"all": kept, "per_table": per_table,
                "rest": [line for line in rest if pgtools.restore_pass(line) == 0],
                1: [line for line in rest if pgtools.restore_pass(line) == 1],
                2: [line for line in rest if pgtools.restore_pass(line) == 2]}

    def _write_list(self, name, lines):
        path = os.path.join(self.request.private_dir, name)
        with open(path, "w") as handle:
            handle.write("\n".join(lines) + "\n")
        return path

    def _copy_everything(self, lines):
        """Copy workers, index workers and the stream of the rest, until all are done or one fails."""
        self.per_table = lines["per_table"]
        self._heap = [(-size, number, table, condition)
                      for number, (size, table, condition) in enumerate(self.parts)]
        heapq.heapify(self._heap)
        self._complete = queue.Queue()
        self._progress(force=True, phase="restore", tables_total=len(self.tables), tables_done=0)
        started = time.time()
        copiers = [self._thread(self._copy_worker, "copy-%d" % n) for n in range(self.jobs)]
        indexers = [self._thread(self._index_worker, "index-%d" % n) for n in range(self.jobs)]
        others = [self._thread(self._copy_the_rest, "rest")]
        try:
            self._wait(copiers + others)
            for _indexer in indexers:
                self._complete.put(None)
            self._wait(indexers)
        except BaseException:  # Interrupted (a signal), or the first failure of a worker
            self._abort(copiers + indexers + others)
            raise
        ended = time.time()
        self.parallelism = {name: concurrency([(a, b) for kind, _t, a, b in self.timeline if kind == what], started, ended)
                            for name, what in (("copy_streams", "copy"), ("index_builds", "index"))}

    def _thread(self, target, name):
        thread = threading.Thread(target=self._guarded, args=(target,), name=name)
        thread.daemon = True  # never keeps the module alive: the guard ends the run
        thread.start()
        return thread

    def _guarded(self, target):
        try:
            target()
        except BaseException as exc:  # pylint: disable=broad-except
            if not isinstance(exc, CopyFailed):  # a connection or a statement failed: name where
                exc = CopyFailed("restore", "copying %s into %s on the target %s failed: %s" % (
                    self.request.database, self.request.target_database, self.request.target.address,
                    verify.first_line(exc)))
            with self._lock:
                if self._failure is None:
                    self._failure = exc
            self._stopping.set()

    def _wait(self, threads):
        """Join the threads (the main thread stays responsive to signals, and writes the tables done
        meanwhile); raise the first failure."""
        for thread in threads:
            while thread.is_alive():
                thread.join(0.5)
                if self._failure is not None:
                    raise self._failure
                self._tick()
        if self._failure is not None:
            raise self._failure

    def _abort(self, threads):
        """Stop every worker: cut their connections and stop their programs, then wait for them a little."""
        self._stopping.set()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            cut(conn)
        for _indexer in range(self.jobs):
            self._complete.put(None)
        self.request.children.stop_all(grace=2.0)
        deadline = time.time() + 30
        for thread in threads:
            thread.join(max(0.1, deadline - time.time()))

    def _connect(self, opener):
        conn = opener()
        with self._lock:
            self._connections.add(conn)
        return conn

    def _close(self, conn):
        if conn is None:
            return
        with self._lock:
            self._connections.discard(conn)
        try:
            conn.close()
        except Exception:  # pylint: disable=broad-except
            pass

    # -- the copy workers ---------------------------------------------------------------------------
    def _next_part(self):
        with self._lock:
            if self._stopping.is_set() or not self._heap:
                return None
            return heapq.heappop(self._heap)[2:]

    def _copy_worker(self):
        while True:
            part = self._next_part()
            if part is None:
                return
            self._copy_part(*part)

    def _copy_out(self, table, rows, tags):
        """psql reading `rows` of a table (_rows_of) on the source, in the exported snapshot, to its
        standard output. Its command tags, which give the rows sent, go to the file `tags`."""
        request = self.request
        return [request.clients["psql"], "--no-psqlrc", "--no-password", "--set=ON_ERROR_STOP=1",
                "--output=%s" % tags,
                "--command=BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY",
                "--command=SET TRANSACTION SNAPSHOT '%s'" % request.snapshot,
                "--command=" + verify.SESSION_SETUP,
                "--command=SET client_encoding = '%s'" % self.encoding,
                # a meta-command: the rows go to psql's standard output, the tag to --output
                "--command=\\copy %s TO pstdout%s" % (rows, " WITH (FORMAT binary)" if table.binary else ""),
                "--command=COMMIT",
                "--dbname=%s" % request.source.conninfo(request.database, read_only=True)]

    def _copy_in(self, tags, statements_fd):
        """psql writing rows from its standard input into the target. Its statements come from this
        process through the pipe `statements_fd`, so that it commits only when told to; its command
        tags, which give the rows received, go to the file `tags`."""
        return [self.request.clients["psql"], "--no-psqlrc", "--no-password", "--set=ON_ERROR_STOP=1",
                "--output=%s" % tags, "--file=/dev/fd/%d" % statements_fd, "--dbname=%s" % self._target_conninfo()]

    def _copy_part(self, table, rows):
        """One part of a table: psql's COPY TO on the source, through a pipe, into psql's COPY FROM on
        the target (no row passes through this process, whose one interpreter lock would otherwise
        be taken for every chunk). The target's transaction is committed only when the sending psql
        ended well and gave its count; otherwise the receiving psql's statements just end, and the
        server rolls the part back."""
        with self._lock:
            self._parts_started += 1
            name = os.path.join(self.request.private_dir, "copy-%d" % self._parts_started)
        started = time.time()
        children, env = self.request.children, self.request.env
        sender = children.start(self._copy_out(table, rows, name + ".tags"), env, name + ".log")
        statements_fd, statements = os.pipe()
        try:
            receiver = children.start(self._copy_in(name + ".received", statements_fd), env, name + ".in.log",
                                      stdin=sender.stdout, stdout=subprocess.DEVNULL, pass_fds=(statements_fd,))
        except BaseException:
            os.close(statements)
            children.finish(sender, stop=True)
            raise
        finally:
            os.close(statements_fd)
            sender.stdout.close()  # only the receiving psql reads the rows
        try:
            sent_code, sent = self._send(table, sender, receiver, statements, name)
            received_code = receiver.wait()
        except BaseException:
            children.finish(receiver, stop=True)
            children.finish(sender, stop=True)
            raise
        children.finish(sender)
        children.finish(receiver)
        tags = _tags(name + ".received")
        if sent is None and not _broke_the_pipe(sent_code, name + ".log"):
            raise self._source_failed(table, name, sent_code)
        if received_code != 0 or _copied_rows(tags) is None or not re.search(r"^COMMIT$", tags, re.M):
            raise CopyFailed("restore", "copying the rows of %s into %s on the target %s failed: %s" % (
                table.qualified, self.request.target_database, self.request.target.address,
                " | ".join(pgtools.first_errors(name + ".in.log")) or _ended("psql", received_code)))
        for suffix in (".tags", ".log", ".received", ".in.log"):
            os.unlink(name + suffix)
        with self._lock:
            self.timeline.append(("copy", table.key, started, time.time()))
            counts = self.rows.setdefault(table.key, [0, 0])
            counts[0] += sent
            counts[1] += _copied_rows(tags)
            table.parts_left -= 1
            complete = table.parts_left == 0
        if complete:
            self._complete.put(table)

    def _send(self, table, sender, receiver, statements, name):
        """Give the receiving psql its statements, wait for the sending psql, and tell the receiver to
        commit when the sender ended well and gave its count. Returns (sender's exit code, rows sent
        or None). Closing `statements` ends the receiver (rolling back what it was not told to commit)."""
        session = "SET client_encoding = '%s';\n%s;\nBEGIN;\n" % (self.encoding, verify.SESSION_SETUP)
        script = os.fdopen(statements, "w")
        try:
            _tell(script, session + table.load)
            code = sender.wait()  # (a wait with a timeout would poll every 50 ms)
            sent = _copied_rows(_tags(name + ".tags")) if code == 0 else None
            if sent is not None and receiver.poll() is None:
                _tell(script, "COMMIT;\n")
        finally:
            try:
                script.close()
            except OSError:  # what could not be written to a receiver that is gone
                pass
        return code, sent

    def _source_failed(self, table, name, code):
        return CopyFailed("dump", "reading the rows of %s from %s on the source %s failed: %s"
                          % (table.qualified, self.request.database, self.request.source.address,
                             " | ".join(pgtools.first_errors(name + ".log")) or
                             _ended("psql", code) + " before it sent every row"))

    def _tick(self):
        with self._lock:
            done = self._done
        self._progress(tables_done=done)

    # -- the index workers --------------------------------------------------------------------------
    def _index_worker(self):
        conn = None
        try:
            while not self._stopping.is_set():
                table = self._complete.get()
                if table is None:
                    return
                started = time.time()
                entries = self.per_table.get(table.oid)
                if entries:
                    wide = self._widen(entries)
                    argv = self._pg_restore("--format=directory", "--jobs=%d" % wide, "--use-list=%s" % self._write_list(
                        "table-%d.list" % table.oid, entries), self.schema_dir)
                    with self._lock:
                        first, self._table_command_recorded = not self._table_command_recorded, True
                    try:
                        self._run("restore", [(argv, "table-%d.log" % table.oid)], record=first)
                    finally:
                        if wide > 1:
                            self._wide = False
                if self.request.settings.analyze and not self.statistics:
                    if conn is None:
                        conn = self._connect(self._open_target)
                        conn.autocommit = True
                    with conn.cursor() as cur:
                        cur.execute(sql.SQL("ANALYZE {}").format(table.ident))
                with self._lock:
                    self.timeline.append(("index", table.key, started, time.time()))
                    self._done += 1
                    done = self._done
                self._progress(force=True, tables_done=done)
        finally:
            self._close(conn)

    def _widen(self, entries):
        """pg_restore workers for one table's entries: 1, or, at the tail of the copy (nothing left to copy
        or waiting for its indexes), up to `jobs` for one table at a time, so that the indexes of the last
        (usually the largest) table build side by side (pg_restore runs its constraints one at a time)."""
        indexes = sum(1 for line in entries if " INDEX " in line)
        with self._lock:
            if indexes < 2 or self._wide or self._heap or not self._complete.empty():
                return 1
            self._wide = True
        return min(indexes, self.jobs)

    # -- what pg_dump carries: sequence values, large objects, other tables' data --------------------
    def _copy_the_rest(self):
        excluded = ["--exclude-table-data=%s.%s" % (pgtools.pattern(t.schema), pgtools.pattern(t.name))
                    for t in self.tables]
        dump = self._pg_dump("--format=custom", "--compress=0", "--data-only", *excluded)
        restore = self._pg_restore("--format=custom", "--data-only")
        self._run("restore", [(dump, "rest-pg_dump.log"), (restore, "rest-pg_restore.log")])

    def _analyze_the_rest(self):
        """ANALYZE what the copy did not: materialized views and tables that pg_dump carried."""
        done = set(t.key for t in self.tables)
        args = {"skip": records.SCHEMA, "schemas": list(self.request.schemas) or None}
        conn = self._open_target()
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                            " WHERE c.relkind IN ('r', 'm') AND c.relispopulated AND c.relpersistence <> 't' AND "
                            + verify.IN_SCHEMAS, args)
                for schema, name in cur.fetchall():
                    if (schema, name) not in done:
                        cur.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(schema, name)))
        except psycopg2.Error as exc:
            raise CopyFailed("analyze", "ANALYZE of %s on the target %s failed: %s" % (
                self.request.target_database, self.request.target.address, verify.first_line(exc))) from None
        finally:
            conn.close()
