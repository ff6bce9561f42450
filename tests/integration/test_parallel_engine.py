"""The table-parallel engine's contract (data_path: parallel), against real servers: split tables
arrive equal (ctid ranges, integer key ranges), indexes build while other tables still copy, tables
copied whole are written frozen, the copy's own counts equal count(*), and a run killed in the middle
of a split table is redone by the next run; PostgreSQL 18 carries planner statistics."""

import json
import os
import signal
import subprocess
import sys

import pytest

from ansible_collections.codacy.selfhosted.plugins.module_utils import guard, parallel, pgtools
from ansible_collections.codacy.selfhosted.plugins.module_utils.copier import Copier
from ansible_collections.codacy.selfhosted.plugins.module_utils.progress import FIELDS
from ansible_collections.codacy.selfhosted.plugins.module_utils.connection import (
    Endpoint, child_environment, write_passfile)
from tests.integration.conftest import PASSWORD, ROOT, module_args, run_in_process, succeeded
from tests.integration.features import create_database, execute, wait_for
from tests.support import embedded
from tests.support.compare import compare
from tests.support.pgserver import PgServer

TABLES_SQL = """
CREATE TYPE mood AS ENUM ('calm', 'busy');
CREATE TABLE wide (id bigint PRIMARY KEY, a text NOT NULL, b int NOT NULL, c jsonb, m mood);
INSERT INTO wide SELECT i, md5(i::text) || repeat('x', 100), i %% 1000, jsonb_build_object('i', i),
                        (ARRAY['calm', 'busy']::mood[])[1 + i %% 2]
  FROM generate_series(1, %(wide)s) i;
CREATE INDEX wide_b ON wide (b);
CREATE INDEX wide_a ON wide (a);
CREATE TABLE heap (a int, b text);
INSERT INTO heap SELECT i, repeat(md5(i::text), 4) FROM generate_series(1, %(heap)s) i;
CREATE TABLE small (id int PRIMARY KEY, v text UNIQUE);
INSERT INTO small SELECT i, 'v' || i FROM generate_series(1, 2000) i;
CREATE INDEX small_lower ON small (lower(v));
CREATE TABLE child (id int PRIMARY KEY, wide_id bigint NOT NULL REFERENCES wide (id),
                    g int GENERATED ALWAYS AS (id * 2) STORED);
INSERT INTO child (id, wide_id) SELECT i, i FROM generate_series(1, 5000) i;
CREATE TABLE parted (id int NOT NULL, k int NOT NULL, PRIMARY KEY (k, id)) PARTITION BY RANGE (k);
CREATE TABLE parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (50);
CREATE TABLE parted_2 PARTITION OF parted FOR VALUES FROM (50) TO (100);
CREATE INDEX parted_id ON parted (id);
INSERT INTO parted SELECT i, i %% 100 FROM generate_series(1, 20000) i;
CREATE TABLE empty_one (x int);
CREATE TABLE no_columns ();
INSERT INTO no_columns DEFAULT VALUES; INSERT INTO no_columns DEFAULT VALUES;
CREATE SEQUENCE ticket START 7;
SELECT setval('ticket', 4242);
SELECT lo_from_bytea(0, 'a large object');
CREATE MATERIALIZED VIEW busy AS SELECT id FROM wide WHERE m = 'busy';
CREATE INDEX busy_id ON busy (id);
"""


def make_source(server, dbname, wide=300000, heap=150000):
    create_database(server, dbname)
    execute(server, dbname, TABLES_SQL, {"wide": wide, "heap": heap})
    execute(server, dbname, "VACUUM ANALYZE")


def run_engine(source, target, dbname, tmp_path, jobs=2, split_min_bytes=None, ctid=True):
    """The engine alone, as Copier.copy_in_parallel runs it, into an empty target database."""
    create_database(target, dbname)
    src, dst = Endpoint("source", source.endpoint()), Endpoint("target", target.endpoint())
    holder = src.connect(dbname, read_only=True, autocommit=False)
    private = tmp_path / ("run-%s" % dbname)
    private.mkdir(mode=0o700)
    progress = []
    try:
        with holder.cursor() as cur:
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            cur.execute("SELECT pg_export_snapshot()")
            snapshot = cur.fetchone()[0]
        env = child_environment(write_passfile(str(private), [src, dst]))
        with guard.Guard() as the_guard:
            engine = parallel.Engine(parallel.Request(
                src, dbname, dst, dbname, snapshot, jobs, [], parallel.Settings("64MB", 0, True),
                pgtools.find_clients(), str(private), env, lambda **fields: progress.append(fields), the_guard.children),
                split_min_bytes=split_min_bytes)
            if not ctid:
                engine.ctid_from_version = 10 ** 9
            engine.prepare()
            engine.load()
            conn = dst.connect(dbname)
            try:
                engine.counts = parallel.confirmed_counts(conn, engine.rows, engine.load_started)
            finally:
                conn.close()
    finally:
        holder.close()
    return engine, progress


def parts_of(engine):
    counted = {}
    for _size, table, _condition in engine.parts:
        counted[table.name] = counted.get(table.name, 0) + 1
    return counted


def assert_counts_are_count_star(engine, source, target, dbname):
    """The copy's own counts (COPY command tags, both sides) are exactly count(*) of both sides."""
    assert engine.rows, "the copy counted nothing"
    for (schema, name), counted in engine.rows.items():
        query = 'SELECT count(*) FROM ONLY "%s"."%s"' % (schema, name)
        assert counted == [execute(source, dbname, query)[0][0], execute(target, dbname, query)[0][0]], name
    # Nothing else wrote the target: its write counters confirm every count, none is read again.
    assert engine.counts == dict((key, rows) for key, rows in engine.rows.items())


@pytest.mark.parametrize("ctid", [True, False], ids=["ctid-ranges", "key-ranges"])
def test_split_tables_arrive_equal(source, target, dbname, tmp_path, ctid):
    make_source(source, dbname)
    # Small parts so that these tables split: 4 workers, parts of at least 2 MB.
    engine, _progress = run_engine(source, target, dbname, tmp_path, jobs=4, split_min_bytes=2 << 20, ctid=ctid)
    parts = parts_of(engine)
    assert parts["wide"] > 2, parts
    # Without ctid ranges (sources before 14) only tables with an integer primary key split.
    assert (parts["heap"] > 1) if ctid else (parts["heap"] == 1), parts
    assert parts["small"] == 1
    assert compare(source.params(), dbname, target.params(), dbname) == []
    assert_counts_are_count_star(engine, source, target, dbname)
    assert engine.rows[("public", "no_columns")] == [2, 2]
    assert engine.rows[("public", "empty_one")] == [0, 0]


def test_indexes_build_while_other_tables_copy_and_whole_tables_are_frozen(source, target, dbname, tmp_path):
    make_source(source, dbname)
    engine, progress = run_engine(source, target, dbname, tmp_path, jobs=2)
    assert max(parts_of(engine).values()) == 1  # nothing this small splits by default
    copies = [(key, start, end) for kind, key, start, end in engine.timeline if kind == "copy"]
    builds = [(key, start, end) for kind, key, start, end in engine.timeline if kind == "index"]
    overlapping = [(built, copied) for built, b_start, _b_end in builds for copied, _c_start, c_end in copies
                   if built != copied and b_start < c_end]
    assert overlapping, "no index build started while another table was still copying: %s" % engine.timeline
    assert engine.parallelism["copy_streams"] > 0 and engine.parallelism["index_builds"] > 0
    assert compare(source.params(), dbname, target.params(), dbname) == []
    assert_counts_are_count_star(engine, source, target, dbname)
    # TRUNCATE + COPY FREEZE in one transaction: every page of a table copied whole is all-frozen.
    execute(target, dbname, "CREATE EXTENSION pg_visibility")
    for table in ("wide", "heap", "small", "child", "parted_1"):
        pages, frozen = execute(target, dbname, "SELECT count(*), count(*) FILTER (WHERE all_frozen)"
                                                " FROM pg_visibility_map(%s)", ("public." + table,))[0]
        assert pages > 0 and frozen == pages, "%s: %d of %d pages all-frozen" % (table, frozen, pages)
    # Each table was analyzed as soon as it was complete; the materialized view after its REFRESH.
    analyzed = dict(execute(target, dbname, "SELECT relname, last_analyze IS NOT NULL FROM pg_stat_user_tables"))
    assert all(analyzed[t] for t in ("wide", "heap", "small", "child", "parted_1", "busy")), analyzed
    # Progress counted the tables, in the fields of the progress contract (the bytes and rows are
    # measured on the target by the migration's Meter, as on the other data paths).
    assert all(set(p) <= set(FIELDS) for p in progress), [sorted(set(p) - set(FIELDS)) for p in progress]
    total = [p["tables_total"] for p in progress if p.get("phase") == "restore" and "tables_total" in p]
    assert total == [len(engine.tables)]
    assert max(p["tables_done"] for p in progress if "tables_done" in p) == total[0]


def test_with_split_tables_off_a_table_that_would_split_is_copied_whole_and_frozen(
        source, target, dbname, work_dir, monkeypatch):
    make_source(source, dbname, wide=300000, heap=1000)
    create_database(target, dbname)
    monkeypatch.setattr(parallel, "SPLIT_MIN_BYTES", 1 << 20)  # `wide` splits at this size (4 workers)
    args = module_args(source, target, dbname, work_dir, data_path="parallel", jobs=4, split_tables=False)
    succeeded(run_in_process(args), "migrated")
    assert compare(source.params(), dbname, target.params(), dbname) == []
    execute(target, dbname, "CREATE EXTENSION pg_visibility")
    pages, frozen = execute(target, dbname, "SELECT count(*), count(*) FILTER (WHERE all_frozen)"
                                            " FROM pg_visibility_map('public.wide')")[0]
    assert pages > 0 and frozen == pages, "wide: %d of %d pages all-frozen" % (frozen, pages)


KILLED_RUN = """
import json, sys
sys.path.insert(0, %(root)r)
import tests.conftest
from ansible_collections.codacy.selfhosted.plugins.module_utils import parallel
parallel.SPLIT_MIN_BYTES = 1 << 20
from tests.integration.conftest import run_in_process
print(json.dumps(run_in_process(json.loads(sys.argv[1])), default=str))
"""


def test_a_write_of_a_session_still_connected_is_counted(source, target, dbname, work_dir, monkeypatch):
    """A session that writes into the target between the copy and its verification, and stays
    connected, holds its write counts for seconds (a session flushes them when it has idled long
    enough or ends): the target's counters cannot confirm the copy's counts then, so verification
    counts the tables, and finds the row it added."""
    make_source(source, dbname, wide=20000, heap=1000)
    create_database(target, dbname)
    verify = Copier.verify
    intruders = []

    def intruding_verify(self, snapshot_id):
        intruders.append(target.connect(dbname))  # (connected earlier, the run would refuse to start)
        with intruders[0].cursor() as cur:
            # The first statement flushes its counts when the session idles; the next one's wait.
            cur.execute("SELECT count(*) FROM public.small")
            cur.execute("INSERT INTO public.small VALUES (999999, 'intruder')")
        return verify(self, snapshot_id)
    monkeypatch.setattr(Copier, "verify", intruding_verify)
    try:
        result = run_in_process(module_args(source, target, dbname, work_dir, data_path="parallel"))
    finally:
        monkeypatch.undo()
        for intruder in intruders:
            intruder.close()
    assert result.get("failed") and result["phase"] == "verify", result
    assert "public.small differs: 2000 rows on the source, 2001 on the target" in result["msg"], result["msg"]


def test_a_run_killed_in_the_middle_of_a_split_table_is_redone(source, target, dbname, work_dir):
    make_source(source, dbname, wide=1200000, heap=1000)
    create_database(target, dbname)
    args = module_args(source, target, dbname, work_dir, data_path="parallel", jobs=2)
    proc = subprocess.Popen([sys.executable, "-c", KILLED_RUN % {"root": ROOT}, json.dumps(args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    try:
        def in_the_middle():
            # A part of `wide` is committed while another one is still being copied.
            copying = execute(target, "postgres", "SELECT count(*) FROM pg_stat_activity WHERE datname = %s"
                                                  " AND query LIKE 'COPY %%\"public\".\"wide\"%%FROM STDIN%%'",
                              (dbname,))[0][0]
            return copying and execute(target, dbname, "SELECT to_regclass('public.wide') IS NOT NULL"
                                                       " AND EXISTS (SELECT FROM public.wide)")[0][0]
        wait_for(in_the_middle, timeout=300, what="a part of the split table to be committed while another copies")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(60)
    rows, wanted = execute(target, dbname, "SELECT (SELECT count(*) FROM public.wide), 1200000")[0]
    assert 0 < rows < wanted, "the kill did not land in the middle of the split table (%d of %d rows)" % (rows, wanted)
    assert execute(target, dbname, "SELECT state FROM codacy_migration.runs") == [("in_progress",)]
    parallel.SPLIT_MIN_BYTES, before = 1 << 20, parallel.SPLIT_MIN_BYTES
    try:
        result = succeeded(run_in_process(args), "resumed")
    finally:
        parallel.SPLIT_MIN_BYTES = before
    assert result["verified"]["equal"] is True
    assert compare(source.params(), dbname, target.params(), dbname) == []
    succeeded(run_in_process(args), "unchanged")


STATS_SQL = """
SELECT tablename, attname, inherited, row(s.*)::text FROM pg_stats s WHERE schemaname = 'public' ORDER BY 1, 2, 3
"""
SIZES_SQL = """
SELECT relname, reltuples, relpages FROM pg_class WHERE relnamespace = 'public'::regnamespace
   AND relkind IN ('r', 'm', 'p', 'i') ORDER BY 1
"""


def test_postgresql_18_carries_the_planner_statistics_instead_of_analyze(run_module, work_dir):
    """pg_dump 18 --statistics into a PostgreSQL 18 target: the target's pg_stats and size estimates
    are the source's, and no ANALYZE ran (autovacuum is off on both, so nothing else made them)."""
    bindir = embedded.bindir(18)
    quiet = {"autovacuum": "off"}
    with PgServer(password=PASSWORD, bindir=bindir, settings=quiet) as source, \
            PgServer(password=PASSWORD, bindir=bindir, settings=quiet) as target:
        make_source(source, "analysis", wide=20000, heap=5000)
        create_database(target, "analysis")
        result = run_module(module_args(source, target, "analysis", work_dir, data_path="parallel", bin_dir=bindir))
        succeeded(result, "migrated")
        assert result["versions"]["client"].startswith("18.") and result["versions"]["target_server"].startswith("18.")
        assert any("--statistics" in command for command in result["commands"]), result["commands"]
        expected = execute(source, "analysis", STATS_SQL)
        assert len(expected) >= 15  # every column of every table, the expression index, the view
        assert execute(target, "analysis", STATS_SQL) == expected
        assert execute(target, "analysis", SIZES_SQL) == execute(source, "analysis", SIZES_SQL)
        assert execute(target, "analysis", "SELECT relname FROM pg_stat_user_tables WHERE last_analyze IS NOT NULL"
                                           " OR last_autoanalyze IS NOT NULL") == []
        assert compare(source.params(), "analysis", target.params(), "analysis") == []
