"""The two throwaway servers (the kept source cluster, a fresh target), the dataset on the source, and
the Context the contenders share: a clean target before each run, its check against the source after."""

import fcntl
import os
import re
import secrets
import shutil
import sys
import time

import psycopg2
from psycopg2 import sql

from bench.run.common import MB, databases_of, log
from bench.run.sampling import block_device
from tests.support import compare, dataset
from tests.support.pgserver import PgServer, find_bindir

# Settings read back from both servers and printed with the results.
SHOWN_SETTINGS = ("fsync", "full_page_writes", "synchronous_commit", "wal_level", "shared_buffers",
                  "max_wal_size", "checkpoint_timeout", "maintenance_work_mem", "work_mem", "max_connections",
                  "max_worker_processes", "max_parallel_workers", "max_parallel_maintenance_workers", "autovacuum",
                  "max_wal_senders")


def parse_settings(pairs):
    settings = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise SystemExit("error: --setting expects KEY=VALUE, got %r" % pair)
        settings[key.strip()] = value.strip()
    return settings


def conf_value(value):
    """A postgresql.conf value: numbers and bare words as they are, anything else quoted."""
    return value if re.match(r"^[A-Za-z0-9_.\-]+$", value) else "'%s'" % value.replace("'", "''")


def start_source(basedir, settings):
    """Start the reusable source cluster in basedir (created on first use); return (server, password).

    The cluster keeps its data between invocations; its port and the settings are rewritten each time
    (postgresql.auto.conf as initdb left it, plus this invocation's port and settings)."""
    bindir = find_bindir()
    datadir = os.path.join(basedir, "data")
    pwfile = os.path.join(basedir, "bench-password")
    original = os.path.join(basedir, "postgresql.auto.conf.orig")
    major = os.path.basename(os.path.dirname(bindir))
    usable = all(os.path.exists(p) for p in (os.path.join(datadir, "PG_VERSION"), pwfile, original))
    if usable:
        with open(os.path.join(datadir, "PG_VERSION")) as handle:
            usable = handle.read().strip() == major
    if not usable:
        if os.path.exists(os.path.join(datadir, "postmaster.pid")):
            PgServer(password="x", basedir=basedir, bindir=bindir).stop(mode="immediate")
        shutil.rmtree(basedir, ignore_errors=True)
        password = secrets.token_hex(16)
        server = PgServer(password=password, basedir=basedir, bindir=bindir)
        server.init()
        shutil.copyfile(os.path.join(datadir, "postgresql.auto.conf"), original)
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(password)
    with open(pwfile) as handle:
        password = handle.read().strip()
    server = PgServer(password=password, basedir=basedir, bindir=bindir)
    server.stop()  # a cluster left running by an interrupted invocation
    with open(original) as handle:
        conf = handle.read()
    conf += "port = %d\n" % server.port
    conf += "".join("%s = %s\n" % (k, conf_value(v)) for k, v in settings.items())
    with open(os.path.join(datadir, "postgresql.auto.conf"), "w") as handle:  # keeps its owner
        handle.write(conf)
    server.start()
    return server, password


def start_target(password, settings):
    server = PgServer(password=password, settings={k: conf_value(v) for k, v in settings.items()})
    server.start()
    return server


def show_settings(server):
    rows = server.execute("SELECT name, current_setting(name) FROM pg_settings WHERE name = ANY(%s) ORDER BY name",
                          (list(SHOWN_SETTINGS + tuple(server.settings)),))
    return dict(rows)


def source_dir_of(args):
    shape = "" if args.shape == "codacy" else "-" + args.shape
    return os.path.join(args.data_dir, "source-s%s-seed%d%s" % (args.scale_mb, args.seed, shape))


def lock_source(source_dir):
    """One invocation at a time per source cluster (the lock lasts as long as the process)."""
    fd = os.open(source_dir + ".lock", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        os.close(fd)
        print("error: another benchmark is using %s; wait for it to finish" % source_dir, file=sys.stderr)
        return False


class Context:
    """The two servers, the dataset and everything the contenders share."""

    def __init__(self, args, source, target, password, workdir):
        self.args = args
        self.source = source
        self.target = target
        self.password = password
        self.workdir = workdir
        self.bindir = source.bindir
        self.passfile = os.path.join(workdir, "pgpass")
        escaped = password.replace("\\", "\\\\").replace(":", "\\:")
        fd = os.open(self.passfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            for server in (source, target):
                handle.write("%s:%d:*:%s:%s\n" % (server.host, server.port, server.superuser, escaped))
        self.device = block_device(workdir)
        self.sizes = {}
        self.databases = databases_of(args)
        self.order = list(self.databases)
        self.snapshots = {}
        self.db_props = {}

    def env(self, passfile=True):
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["PATH"] = self.bindir + os.pathsep + env.get("PATH", "")
        env["LC_ALL"] = "C.UTF-8"
        if passfile:
            env["PGPASSFILE"] = self.passfile
        return env

    def tool(self, name):
        return os.path.join(self.bindir, name)

    def conn_args(self, server, dbname):
        return ["--host=%s" % server.host, "--port=%d" % server.port, "--username=%s" % server.superuser,
                "--no-password", "--dbname=%s" % dbname]

    def postmasters(self):
        return {"source": self.source.postmaster_pid(), "target": self.target.postmaster_pid()}

    def total_bytes(self):
        return sum(self.sizes.values())


def prepare_dataset(ctx):
    args = ctx.args
    log("dataset: scale %s MB, seed %d on the source (%s); generated once, then reused"
        % (args.scale_mb, args.seed, ctx.source.basedir))
    started = time.monotonic()
    sizes = dataset.generate(ctx.source.params(), scale_mb=args.scale_mb, databases=ctx.databases, seed=args.seed,
                             jobs=2, progress=lambda m: log("  " + m), shape=args.shape)
    ctx.generation_s = round(time.monotonic() - started, 1)
    ctx.sizes = dict(sizes)
    ctx.order = sorted(ctx.databases, key=lambda db: -ctx.sizes[db])
    rows = ctx.source.execute("SELECT datname, pg_encoding_to_char(encoding), datcollate, datctype "
                              "FROM pg_database WHERE datname = ANY(%s)", (list(ctx.databases),))
    ctx.db_props = {name: (enc, collate, ctype) for name, enc, collate, ctype in rows}
    log("dataset ready in %.1f s: %s (total %.0f MB)" % (ctx.generation_s, ", ".join(
        "%s %.0f MB" % (db, ctx.sizes[db] / MB) for db in ctx.order), ctx.total_bytes() / MB))
    started = time.monotonic()
    for db in ctx.databases:
        ctx.snapshots[db] = compare.snapshot(ctx.source.params(), db)
    log("source snapshots (counts and content hashes of every table) in %.1f s" % (time.monotonic() - started))


def reset_target(ctx):
    """Drop and recreate the databases on the target, empty, with the source's encoding and locale."""
    conn = ctx.target.connect("postgres")
    try:
        with conn.cursor() as cur:
            for db in ctx.databases:
                cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db)))
                encoding, collate, ctype = ctx.db_props[db]
                cur.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING {} LC_COLLATE {} LC_CTYPE {}")
                            .format(sql.Identifier(db), sql.Literal(encoding), sql.Literal(collate),
                                    sql.Literal(ctype)))
    finally:
        conn.close()


def quiesce(ctx):
    """Same starting line for every run: no dirty buffers on either server, none in the page cache."""
    for server in (ctx.source, ctx.target):
        server.execute("CHECKPOINT")
    os.sync()


def check_target(ctx):
    """compare.py on all the databases: (status, differences). status: ok | incomplete | FAIL.
    `incomplete`: objects missing on the target, nothing present differs (what `-n public` does)."""
    differences = []
    for db in ctx.databases:
        try:
            snap = compare.snapshot(ctx.target.params(), db)
        except psycopg2.Error as exc:
            differences.append("%s: cannot snapshot the target: %s" % (db, str(exc).strip()))
            continue
        # (the database's own properties are left out: pgcopydb and a pg_restore into an existing
        # database do not carry them, and the integration tests check that ours do)
        differences += ["%s: %s" % (db, line) for line in compare.diff(ctx.snapshots[db], snap, ignore=("properties",))]
    if not differences:
        return "ok", []
    missing_only = all("only in source" in line or "large objects: count" in line for line in differences)
    return ("incomplete" if missing_only else "FAIL"), differences
