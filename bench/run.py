"""Benchmark: the vendor guide's script, our playbook, pgcopydb and reference data paths, side by side.

    python -m bench.run [--scale-mb 2800] [--runs 3] [--only vendor,ours,pgcopydb,directory,bound,rerun] [--smoke]

Run from the collection root. Starts two throwaway PostgreSQL servers (source and target, the host's
PostgreSQL, the same settings for both), generates the Codacy-shaped dataset on the source once (kept
under bench/data/ and reused by later invocations), then runs every contender from a clean target,
alternating, `--runs` times, checks every copy against the source with tests/support/compare.py and
writes a table to stdout and bench/results/<timestamp>.{md,json} (+ latest.md). The last line is

    RESULT vendor_s=.. ours_s=.. pgcopydb_s=..|na bound_s=.. rerun_s=.. ratio_vendor=.. ratio_pgcopydb=..|na

See bench/README.md for what each contender is and what each column means.
"""

import argparse
import contextlib
import datetime
import fcntl
import json
import os
import platform
import queue
import re
import resource
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback

import psycopg2
from psycopg2 import sql

from tests.support import compare, dataset
from tests.support.pgserver import PgServer, find_bindir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench")
VENDOR_SCRIPT = os.path.join(BENCH, "vendor_migrate.sh")
VENDOR_LOCK = "/tmp/codacy-bench-vendor-dumps.lock"
FALLBACK_PLAYBOOK = os.path.join(BENCH, "ours_playbook.yml")
ROLE_PLAYBOOK = os.path.join(ROOT, "playbooks", "migrate.yml")
CALLBACK_DIR = os.path.join(BENCH, "callback_plugins")
COLLECTIONS = os.path.join(ROOT, "build", "collections")
COLLECTION_LINK = os.path.join(COLLECTIONS, "ansible_collections", "codacy", "selfhosted")

SIX = dataset.SIX
CONTENDERS = ("vendor", "ours", "pgcopydb", "directory")
EXTRAS = ("bound", "rerun")
DEFAULT_BOUND_CONFIGS = "6x1,6x2,2x2,1x2"
SMOKE_SCALE_MB = 5
MB = 1024 * 1024
INTERVAL = 0.2
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
# Settings read back from both servers and printed with the results.
SHOWN_SETTINGS = ("fsync", "full_page_writes", "synchronous_commit", "wal_level", "shared_buffers",
                  "max_wal_size", "checkpoint_timeout", "maintenance_work_mem", "work_mem", "max_connections",
                  "max_worker_processes", "max_parallel_workers", "max_parallel_maintenance_workers", "autovacuum",
                  "max_wal_senders")

_live = set()            # Popen objects of running contenders, killed on interrupt
_spawned = set()         # pids we started ourselves (their Popen reaps them)
_live_lock = threading.Lock()
PR_SET_CHILD_SUBREAPER = 36


def log(message):
    print("[%s] %s" % (time.strftime("%H:%M:%S"), message), flush=True)


# ----------------------------------------------------------------------------------------------
# Processes
# ----------------------------------------------------------------------------------------------
def spawn(argv, **kwargs):
    """Popen in its own session (so the whole group can be stopped), registered for interrupts."""
    kwargs.setdefault("stdin", subprocess.DEVNULL)
    with _live_lock:
        proc = subprocess.Popen(argv, start_new_session=True, **kwargs)  # noqa: S603
        _live.add(proc)
        _spawned.add(proc.pid)
    return proc


def become_subreaper():
    """Orphaned descendants (ansible's async jobs daemonize: double fork) are re-parented to us rather
    than to init, so they stay in our process tree for the RSS/CPU sampling; reap_orphans() reaps them."""
    try:
        import ctypes
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except OSError:
        return False


def reap_orphans(procs):
    """Reap exited orphans re-parented to us (never a child that a Popen of ours waits for); their CPU
    then counts in getrusage(RUSAGE_CHILDREN)."""
    me = os.getpid()
    with _live_lock:
        for pid, info in procs.items():
            if info[0] == me and info[5] == "Z" and pid not in _spawned:
                try:
                    os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    pass


def finish(proc, timeout):
    """Wait for proc; on timeout stop its process group. Returns the exit code (None on timeout)."""
    try:
        proc.wait(timeout)
        return proc.returncode
    except subprocess.TimeoutExpired:
        kill_group(proc)
        return None
    finally:
        with _live_lock:
            _live.discard(proc)
            if proc.returncode is not None:
                _spawned.discard(proc.pid)


def kill_group(proc):
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except OSError:
            return
        try:
            proc.wait(5)
            return
        except subprocess.TimeoutExpired:
            continue


def kill_all():
    """Stop every contender process: our process groups, then any other descendant (daemonized
    ansible async jobs live in sessions of their own), never the PostgreSQL servers."""
    with _live_lock:
        procs = list(_live)
    for proc in procs:
        kill_group(proc)
    table = read_procs()
    for pid in descendants(table, os.getpid()):
        if table[pid][1] != "postgres" and table[pid][5] != "Z":
            try:
                os.kill(pid, signal.SIGTERM)
            except OSError:
                pass


def run_text(argv, **kwargs):
    try:
        return subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs).stdout  # noqa: S603
    except OSError:
        return ""


# ----------------------------------------------------------------------------------------------
# /proc sampling
# ----------------------------------------------------------------------------------------------
def read_procs():
    """{pid: (ppid, comm, cpu_ticks, children_cpu_ticks, rss_pages, state)} of every process."""
    procs = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name, "rb") as handle:
                data = handle.read()
        except OSError:
            continue
        right = data.rfind(b")")
        comm = data[data.find(b"(") + 1:right].decode("utf-8", "replace")
        fields = data[right + 2:].split()
        try:
            procs[int(name)] = (int(fields[1]), comm, int(fields[11]) + int(fields[12]),
                                int(fields[13]) + int(fields[14]), int(fields[21]), fields[0].decode())
        except (IndexError, ValueError):
            continue
    return procs


def descendants(procs, root):
    children = {}
    for pid, info in procs.items():
        children.setdefault(info[0], []).append(pid)
    out, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def server_ticks(procs, postmaster):
    """CPU ticks of a PostgreSQL server: postmaster, its reaped children, and its live children."""
    if postmaster not in procs:
        return 0
    total = procs[postmaster][2] + procs[postmaster][3]
    total += sum(info[2] for info in procs.values() if info[0] == postmaster)
    return total


def machine_counters(device):
    with open("/proc/stat") as handle:
        cpu = [int(x) for x in handle.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal
    busy = cpu[0] + cpu[1] + cpu[2] + cpu[5] + cpu[6] + (cpu[7] if len(cpu) > 7 else 0)
    read = written = 0
    if device:
        with open("/proc/diskstats") as handle:
            for line in handle:
                parts = line.split()
                if parts[2] == device:
                    read, written = int(parts[5]) * 512, int(parts[9]) * 512
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = resource.getrusage(resource.RUSAGE_SELF)
    return {"busy": busy / CLK_TCK, "iowait": cpu[4] / CLK_TCK, "idle": cpu[3] / CLK_TCK, "read": read,
            "written": written, "children_cpu": usage.ru_utime + usage.ru_stime,
            "harness_cpu": own.ru_utime + own.ru_stime}


def path_bytes(path):
    try:
        if os.path.isdir(path):
            total = 0
            for root, _, files in os.walk(path):
                for name in files:
                    try:
                        total += os.path.getsize(os.path.join(root, name))
                    except OSError:
                        pass
            return total
        return os.path.getsize(path)
    except OSError:
        return 0


class Sampler(threading.Thread):
    """Every INTERVAL seconds: dump disk, RSS and CPU of the client processes (our descendants other
    than PostgreSQL servers), CPU of both servers; keeps peaks, per-program activity and a 1 s timeline."""

    def __init__(self, disk_paths, postmasters, device):
        super().__init__(daemon=True)
        self.disk_paths = disk_paths
        self.postmasters = postmasters
        self.device = device
        self.me = os.getpid()
        self._stop_event = threading.Event()
        self.peak_disk = 0
        self.peak_rss = 0
        self.cpu_by_pid = {}
        self.active = {}
        self.overlap = 0.0
        self.timeline = []
        self._count = 0

    def _sample(self):
        now = time.monotonic()
        procs = read_procs()
        reap_orphans(procs)
        clients = [pid for pid in descendants(procs, self.me) if procs[pid][1] != "postgres"]
        rss = sum(procs[pid][4] for pid in clients) * PAGE
        comms = set()
        for pid in clients:
            comm, ticks = procs[pid][1], procs[pid][2]
            comms.add(comm)
            self.cpu_by_pid[pid] = (comm, max(ticks, self.cpu_by_pid.get(pid, (comm, 0))[1]))
        disk = sum(path_bytes(p) for p in self.disk_paths)
        self.peak_disk = max(self.peak_disk, disk)
        self.peak_rss = max(self.peak_rss, rss)
        servers = {role: server_ticks(procs, pid) / CLK_TCK for role, pid in self.postmasters.items()}
        client_cpu = sum(t for _, t in self.cpu_by_pid.values()) / CLK_TCK
        if self._last is not None:
            elapsed = now - self._last["now"]
            for comm in comms:
                self.active[comm] = self.active.get(comm, 0.0) + elapsed
            if "pg_dump" in comms and "pg_restore" in comms:
                self.overlap += elapsed
        self._count += 1
        if self._last is None or self._count % int(round(1 / INTERVAL)) == 0 or self._stop_event.is_set():
            previous = self._tick or {"now": self.started, "servers": self.start_servers, "client_cpu": 0.0}
            span = max(now - previous["now"], 1e-6)
            self.timeline.append({
                "t": round(now - self.started, 1), "dump_mb": round(disk / MB, 1), "rss_mb": round(rss / MB, 1),
                "client_cores": round((client_cpu - previous["client_cpu"]) / span, 2),
                "source_cores": round((servers.get("source", 0) - previous["servers"].get("source", 0)) / span, 2),
                "target_cores": round((servers.get("target", 0) - previous["servers"].get("target", 0)) / span, 2),
                "programs": sorted(comms)})
            self._tick = {"now": now, "servers": servers, "client_cpu": client_cpu}
        self._last = {"now": now, "servers": servers}

    def begin(self):
        self.started = time.monotonic()
        procs = read_procs()
        self.start_servers = {role: server_ticks(procs, pid) / CLK_TCK for role, pid in self.postmasters.items()}
        self.start_machine = machine_counters(self.device)
        self._last = None
        self._tick = None
        self.start()

    def run(self):
        while not self._stop_event.wait(INTERVAL):
            self._sample()

    def end(self):
        self._stop_event.set()
        self.join()
        self._sample()
        machine = machine_counters(self.device)
        servers = self._last["servers"]
        start = self.start_machine
        by_program = {}
        for comm, ticks in self.cpu_by_pid.values():
            name = ("ansible-playbook" if comm.startswith("ansible-playbo") else
                    "python (ansible modules)" if comm.startswith("python") else comm)
            by_program[name] = by_program.get(name, 0.0) + ticks / CLK_TCK
        client_cpu = machine["children_cpu"] - start["children_cpu"]
        source_cpu = servers.get("source", 0) - self.start_servers.get("source", 0)
        target_cpu = servers.get("target", 0) - self.start_servers.get("target", 0)
        busy = machine["busy"] - start["busy"]
        harness = machine["harness_cpu"] - start["harness_cpu"]
        return {
            "peak_dump_bytes": self.peak_disk, "peak_rss_bytes": self.peak_rss,
            "client_cpu_s": round(client_cpu, 2), "source_cpu_s": round(source_cpu, 2),
            "target_cpu_s": round(target_cpu, 2), "harness_cpu_s": round(harness, 2),
            "machine_busy_s": round(busy, 2), "iowait_s": round(machine["iowait"] - start["iowait"], 2),
            "other_cpu_s": round(max(0.0, busy - client_cpu - source_cpu - target_cpu - harness), 2),
            "disk_read_bytes": machine["read"] - start["read"], "disk_written_bytes": machine["written"] - start["written"],
            "cpu_by_program_s": {k: round(v, 2) for k, v in sorted(by_program.items())},
            "active_s": {k: round(v, 1) for k, v in sorted(self.active.items())},
            "dump_restore_overlap_s": round(self.overlap, 1),
            "timeline": self.timeline,
        }


# ----------------------------------------------------------------------------------------------
# Servers and the dataset
# ----------------------------------------------------------------------------------------------
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
        self.order = list(SIX)
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


def block_device(path):
    """The /proc/diskstats name of the block device holding path (a partition's disk), or None."""
    try:
        dev = os.stat(path).st_dev
        link = os.path.realpath("/sys/dev/block/%d:%d" % (os.major(dev), os.minor(dev)))
        name = os.path.basename(link)
        return name if os.path.exists("/sys/block/%s" % name) or os.path.exists(link) else None
    except OSError:
        return None


def prepare_dataset(ctx):
    args = ctx.args
    log("dataset: scale %s MB, seed %d on the source (%s); generated once, then reused"
        % (args.scale_mb, args.seed, ctx.source.basedir))
    started = time.monotonic()
    sizes = dataset.generate(ctx.source.params(), scale_mb=args.scale_mb, databases=SIX, seed=args.seed,
                             jobs=2, progress=lambda m: log("  " + m))
    ctx.generation_s = round(time.monotonic() - started, 1)
    ctx.sizes = dict(sizes)
    ctx.order = sorted(SIX, key=lambda db: -ctx.sizes[db])
    rows = ctx.source.execute("SELECT datname, pg_encoding_to_char(encoding), datcollate, datctype "
                              "FROM pg_database WHERE datname = ANY(%s)", (list(SIX),))
    ctx.db_props = {name: (enc, collate, ctype) for name, enc, collate, ctype in rows}
    log("dataset ready in %.1f s: %s (total %.0f MB)" % (ctx.generation_s, ", ".join(
        "%s %.0f MB" % (db, ctx.sizes[db] / MB) for db in ctx.order), ctx.total_bytes() / MB))
    started = time.monotonic()
    for db in SIX:
        ctx.snapshots[db] = compare.snapshot(ctx.source.params(), db)
    log("source snapshots (counts and content hashes of every table) in %.1f s" % (time.monotonic() - started))


def reset_target(ctx):
    """Drop and recreate the six databases on the target, empty, with the source's encoding and locale."""
    conn = ctx.target.connect("postgres")
    try:
        with conn.cursor() as cur:
            for db in SIX:
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
    """compare.py on all six databases: (status, differences). status: ok | incomplete | FAIL.
    `incomplete`: objects missing on the target, nothing present differs (what `-n public` does)."""
    differences = []
    for db in SIX:
        try:
            snap = compare.snapshot(ctx.target.params(), db)
        except psycopg2.Error as exc:
            differences.append("%s: cannot snapshot the target: %s" % (db, str(exc).strip()))
            continue
        differences += ["%s: %s" % (db, line) for line in compare.diff(ctx.snapshots[db], snap)]
    if not differences:
        return "ok", []
    missing_only = all("only in source" in line or "large objects: count" in line for line in differences)
    return ("incomplete" if missing_only else "FAIL"), differences


# ----------------------------------------------------------------------------------------------
# Contenders
# ----------------------------------------------------------------------------------------------
class Contender:
    name = ""
    title = ""
    description = ""

    def exclusive(self):
        """Held around a timed run (acquired before the clock starts)."""
        return contextlib.nullcontext()

    def available(self, ctx):
        return True, ""

    def version(self, ctx):
        return ""

    def disk_paths(self, ctx, run_dir):
        return []

    def run(self, ctx, run_dir, timeout):
        """Run once into the (prepared) target; return a dict with at least `rc` and `log`."""
        raise NotImplementedError


def error_lines(text):
    return [line for line in text.splitlines() if re.match(r"^\S+: error: ", line) or line.startswith("ERROR")]


def read(path):
    try:
        with open(path, errors="replace") as handle:
            return handle.read()
    except OSError:
        return ""


class Vendor(Contender):
    name = "vendor"
    title = "vendor guide script"
    description = ("bench/vendor_migrate.sh, byte for byte the sample script of Codacy's database migration guide "
                   "(per database: pg_dump --clean -Fc > /tmp/$db.dump; pg_restore -n public --clean; sequential), "
                   "run with cwd=/tmp into existing empty databases as the guide says. Its password is a "
                   "positional argument (argv and environment): the vendor's design, acceptable only against "
                   "these throwaway servers.")

    def version(self, ctx):
        import hashlib
        with open(VENDOR_SCRIPT, "rb") as handle:
            digest = hashlib.sha256(handle.read()).hexdigest()[:16]
        return "vendor_migrate.sh sha256:%s, %s" % (digest, run_text([ctx.tool("pg_dump"), "--version"]).strip())

    def dumps(self):
        return [os.path.join("/tmp", "%s.dump" % db) for db in SIX]

    @contextlib.contextmanager
    def exclusive(self):
        """The script's dump paths are fixed (/tmp/$db.dump): one vendor run at a time on this machine."""
        fd = os.open(VENDOR_LOCK, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def disk_paths(self, ctx, run_dir):
        return self.dumps()

    def run(self, ctx, run_dir, timeout):
        log_path = os.path.join(run_dir, "vendor.log")
        src, dst = ctx.source, ctx.target
        argv = ["bash", VENDOR_SCRIPT, src.host, str(src.port), dst.host, str(dst.port), src.superuser, ctx.password]
        try:
            with open(log_path, "w") as out:
                rc = finish(spawn(argv, cwd="/tmp", env=ctx.env(passfile=False), stdout=out, stderr=out), timeout)
        finally:
            for path in self.dumps():
                if os.path.exists(path):
                    os.unlink(path)
        text = read(log_path)
        return {"rc": rc, "error_lines": len(error_lines(text)), "log": text,
                "expected_rc": "1 on empty targets by design (pg_restore --clean errors are ignored)"}


class Ours(Contender):
    name = "ours"
    title = "codacy.selfhosted playbook (defaults)"
    fixed_variables = {}  # role variables that define this contender (over --ours-var)

    @property
    def description(self):
        return ("ansible-playbook %s with default settings (%s); passwords in a 0600 vars file passed with -e @file"
                % (os.path.relpath(self.playbook(), ROOT),
                   "the role codacy.selfhosted.db_migration" if self.playbook() == ROLE_PLAYBOOK else
                   "fallback until playbooks/migrate.yml exists: the module over the six databases, sequentially"))

    @staticmethod
    def playbook():
        return ROLE_PLAYBOOK if os.path.exists(ROLE_PLAYBOOK) else FALLBACK_PLAYBOOK

    @staticmethod
    def ansible_playbook():
        local = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
        return local if os.access(local, os.X_OK) else shutil.which("ansible-playbook")

    def available(self, ctx):
        if not self.ansible_playbook():
            return False, "ansible-playbook not found next to %s or on PATH" % sys.executable
        return True, ""

    def version(self, ctx):
        core = run_text([self.ansible_playbook(), "--version"]).splitlines()[:1]
        galaxy = read(os.path.join(ROOT, "galaxy.yml"))
        match = re.search(r"^version:\s*(\S+)", galaxy, re.M)
        commit = run_text(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"]).strip() or "?"
        dirty = "+dirty" if run_text(["git", "-C", ROOT, "status", "--porcelain", "--", "plugins", "roles",
                                      "playbooks"]).strip() else ""
        return "codacy.selfhosted %s (git %s%s), %s, playbook %s" % (
            match.group(1) if match else "?", commit, dirty, core[0] if core else "ansible ?",
            os.path.relpath(self.playbook(), ROOT))

    def work_dir(self, ctx):
        return os.path.join(ctx.workdir, "ours-work")

    def disk_paths(self, ctx, run_dir):
        return [self.work_dir(ctx)]

    def run(self, ctx, run_dir, timeout):
        work_dir = self.work_dir(ctx)
        os.makedirs(work_dir, mode=0o700, exist_ok=True)
        endpoint = {server_role: {"host": s.host, "port": s.port, "user": s.superuser, "password": ctx.password}
                    for server_role, s in (("source", ctx.source), ("target", ctx.target))}
        report_path = os.path.join(run_dir, "report.json")
        variables = {"db_migration_source": endpoint["source"], "db_migration_target": endpoint["target"],
                     "db_migration_databases": list(SIX), "db_migration_work_dir": work_dir,
                     "db_migration_report_path": report_path,
                     "ansible_connection": "local", "ansible_python_interpreter": sys.executable}
        variables.update(ctx.args.ours_var)  # --ours-var: role variables to compare against the defaults
        variables.update(self.fixed_variables)
        vars_path = os.path.join(run_dir, "vars.json")
        fd = os.open(vars_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(variables, handle)
        record = os.path.join(run_dir, "record.jsonl")
        env = ctx.env(passfile=False)
        env.update({
            "ANSIBLE_COLLECTIONS_PATH": COLLECTIONS, "ANSIBLE_CALLBACK_PLUGINS": CALLBACK_DIR,
            "ANSIBLE_CALLBACKS_ENABLED": "bench_record", "BENCH_RECORD_FILE": record,
            "ANSIBLE_LOCALHOST_WARNING": "False", "ANSIBLE_INVENTORY_UNPARSED_WARNING": "False",
            "ANSIBLE_NOCOLOR": "1", "ANSIBLE_RETRY_FILES_ENABLED": "False", "PWD": run_dir,
        })
        log_path = os.path.join(run_dir, "ansible.log")
        argv = [self.ansible_playbook(), "-i", "localhost,", self.playbook(), "-e", "@" + vars_path]
        with open(log_path, "w") as out:
            rc = finish(spawn(argv, cwd=run_dir, env=env, stdout=out, stderr=out), timeout)
        text = read(log_path)
        results, stats = [], {}
        for line in read(record).splitlines():
            item = json.loads(line)
            if item.get("kind") == "result":
                results.append(item)
            elif item.get("kind") == "stats":
                stats = item["hosts"].get("localhost") or next(iter(item["hosts"].values()), {})
        if os.path.exists(report_path):
            # The role's report (one entry per database): the product's own account of the run.
            with open(report_path) as handle:
                report = json.load(handle)
            per_database = [{"database": d.get("name"), "action": d.get("action"), "phases": d.get("phases") or {},
                             "dump_bytes": d.get("dump_bytes"), "verified": d.get("verified"),
                             "failed": d.get("failed"), "msg": d.get("message")} for d in report.get("databases", [])]
        else:
            # The fallback playbook: the module results recorded by the bench_record callback.
            per_database = [{"database": item.get("database"), "action": item.get("action"),
                             "phases": item.get("phases") or {}, "dump_bytes": item.get("dump_bytes"),
                             "verified": item.get("verified"), "failed": item.get("status") == "failed",
                             "msg": item.get("msg")} for item in results]
        phases = {}
        for item in per_database:
            for phase, seconds in item["phases"].items():
                phases[phase] = round(phases.get(phase, 0) + seconds, 3)
        return {"rc": rc, "log": text, "error_lines": len(re.findall(r"^fatal: ", text, re.M)),
                "playbook": os.path.relpath(self.playbook(), ROOT), "changed_tasks": stats.get("changed"),
                "failed_tasks": stats.get("failures"),
                "actions": {item["database"]: item["action"] for item in per_database},
                "phases_sum_s": phases, "dump_bytes": sum(item["dump_bytes"] or 0 for item in per_database),
                "per_database": per_database}


class PgCopyDb(Contender):
    name = "pgcopydb"
    title = "pgcopydb clone"

    @property
    def description(self):
        return ("pgcopydb clone per database, one database after the other, --table-jobs %d --index-jobs %d "
                "(the parallelism of our default jobs: 2; measured here slightly faster than pgcopydb's default "
                "4 on 2 cores); password through a passfile" % (self.jobs, self.jobs))

    def __init__(self, jobs):
        self.jobs = jobs

    def available(self, ctx):
        if shutil.which("pgcopydb"):
            return True, ""
        return False, "pgcopydb is not installed: apt-get install pgcopydb (Debian/Ubuntu)"

    def version(self, ctx):
        out = run_text(["pgcopydb", "--version"], env=ctx.env())
        match = re.search(r"pgcopydb version (\S+)", out)
        return "pgcopydb %s" % (match.group(1) if match else "?")

    def disk_paths(self, ctx, run_dir):
        return [os.path.join(run_dir, "pgcopydb")]

    def run(self, ctx, run_dir, timeout):
        base = os.path.join(run_dir, "pgcopydb")
        os.makedirs(base)
        deadline = time.monotonic() + timeout
        logs, rc = [], 0
        for db in SIX:
            log_path = os.path.join(run_dir, "pgcopydb-%s.log" % db)
            argv = ["pgcopydb", "clone", "--source", uri(ctx.source, db), "--target", uri(ctx.target, db),
                    "--dir", os.path.join(base, db), "--table-jobs", str(self.jobs), "--index-jobs", str(self.jobs)]
            with open(log_path, "w") as out:
                code = finish(spawn(argv, cwd=run_dir, env=ctx.env(), stdout=out, stderr=out),
                              max(1, deadline - time.monotonic()))
            logs.append("== %s (exit %s)\n%s" % (db, code, read(log_path)))
            shutil.rmtree(os.path.join(base, db), ignore_errors=True)
            if code != 0:
                rc = code
                break
        text = "\n".join(logs)
        return {"rc": rc, "log": text, "error_lines": len(re.findall(r" ERROR ", text))}


def uri(server, db):
    return "postgres://%s@%s:%d/%s" % (server.superuser, server.host, server.port, db)


def run_queue(items, concurrency, work, timeout):
    """Run work(item, remaining_seconds) for items, `concurrency` at a time, in order. Returns {item: result}."""
    todo = queue.Queue()
    for item in items:
        todo.put(item)
    results = {}
    deadline = time.monotonic() + timeout

    def worker():
        while True:
            try:
                item = todo.get_nowait()
            except queue.Empty:
                return
            try:
                results[item] = work(item, max(1, deadline - time.monotonic()))
            except Exception as exc:  # noqa: BLE001 (reported as that item's failure)
                results[item] = {"rc": -1, "log": "harness error: %s\n%s" % (exc, traceback.format_exc())}

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def merge(results, order):
    rc = 0
    for db in order:
        code = results.get(db, {}).get("rc", -1)
        if code != 0 and rc == 0:
            rc = code
    text = "\n".join("== %s (exit %s)\n%s" % (db, results.get(db, {}).get("rc"), results.get(db, {}).get("log", ""))
                     for db in order)
    return {"rc": rc, "log": text, "error_lines": len(error_lines(text))}


class OursDirectory(Ours):
    """Our playbook with the non-default data path: dump to the work directory, then restore."""

    name = "directory"
    title = "codacy.selfhosted playbook, data_path: directory"
    fixed_variables = {"db_migration_data_path": "directory"}

    @property
    def description(self):
        return "as ours, with db_migration_data_path: directory (pg_dump -Fd -j to disk, then pg_restore -Fd -j)"

    def work_dir(self, ctx):
        return os.path.join(ctx.workdir, "directory-work")


BOUND_DESCRIPTION = ("pg_restore -Fd --jobs=J --exit-on-error of uncompressed directory dumps (-Fd -Z0) prepared "
                     "once per invocation, K databases at a time, largest first: the restore side alone (no dump, "
                     "no verification, no ANALYZE). Configs KxJ tried in the first round: %s; later rounds repeat "
                     "the fastest; bound = its median")


class Bound(Contender):
    """pg_restore of prepared uncompressed directory dumps: the restore side alone."""

    name = "bound"
    title = "restore-side lower bound"

    def __init__(self, concurrency, jobs):
        self.concurrency = concurrency
        self.jobs = jobs
        self.config = "%dx-j%d" % (concurrency, jobs)
        self.description = ("pg_restore -Fd -j%d of prepared -Fd -Z0 dumps, %d database(s) at a time, largest first "
                            "(restore side only: no dump, no verification, no ANALYZE)" % (jobs, concurrency))

    def version(self, ctx):
        return run_text([ctx.tool("pg_restore"), "--version"]).strip()

    def run(self, ctx, run_dir, timeout):
        def one(db, remaining):
            log_path = os.path.join(run_dir, "bound-%s.log" % db)
            argv = [ctx.tool("pg_restore"), "--format=directory", "--jobs=%d" % self.jobs, "--exit-on-error"]
            argv += ctx.conn_args(ctx.target, db) + [os.path.join(ctx.bound_dumps, db)]
            with open(log_path, "w") as out:
                rc = finish(spawn(argv, env=ctx.env(), stdout=out, stderr=out), remaining)
            return {"rc": rc, "log": read(log_path)}

        return merge(run_queue(ctx.order, self.concurrency, one, timeout), ctx.order)


def prepare_bound_dumps(ctx):
    """Uncompressed directory dumps of the six databases (-Fd -Z0 -j2, one after the other), once."""
    ctx.bound_dumps = os.path.join(ctx.workdir, "bound-dumps")
    shutil.rmtree(ctx.bound_dumps, ignore_errors=True)
    os.makedirs(ctx.bound_dumps)
    timings = {}
    started = time.monotonic()
    for db in ctx.order:
        one = time.monotonic()
        argv = [ctx.tool("pg_dump"), "--format=directory", "--compress=0", "--jobs=2", "--no-sync",
                "--file=%s" % os.path.join(ctx.bound_dumps, db)] + ctx.conn_args(ctx.source, db)
        proc = subprocess.run(argv, env=ctx.env(), capture_output=True, text=True, check=False)  # noqa: S603
        if proc.returncode != 0:
            raise RuntimeError("pg_dump of %s for the bound failed: %s" % (db, proc.stderr.strip()))
        timings[db] = round(time.monotonic() - one, 1)
    ctx.bound_prep = {"dump_s": round(time.monotonic() - started, 1), "per_database_s": timings,
                      "bytes": path_bytes(ctx.bound_dumps)}
    log("bound: prepared -Fd -Z0 dumps (%.0f MB) in %.1f s (pg_dump -j2, one database after the other)"
        % (ctx.bound_prep["bytes"] / MB, ctx.bound_prep["dump_s"]))


# ----------------------------------------------------------------------------------------------
# Running and measuring
# ----------------------------------------------------------------------------------------------
def measured(ctx, contender, label, round_no, fresh=True, check=True):
    """One timed run of a contender: clean target, quiesce, sample, run, check. Returns the run record."""
    run_dir = tempfile.mkdtemp(prefix="%s-" % contender.name, dir=ctx.workdir)
    try:
        if fresh:
            reset_target(ctx)
        quiesce(ctx)
        sampler = Sampler(contender.disk_paths(ctx, run_dir), ctx.postmasters(), ctx.device)
        with contender.exclusive():
            log("round %d: %s ..." % (round_no, label))
            sampler.begin()
            started = time.monotonic()
            try:
                info = contender.run(ctx, run_dir, ctx.args.timeout)
            except Exception as exc:  # noqa: BLE001 (a harness error is that run's failure)
                info = {"rc": -1, "log": "harness error: %s\n%s" % (exc, traceback.format_exc())}
            wall = time.monotonic() - started
            measures = sampler.end()
        procs = read_procs()
        lingering = sorted(procs[pid][1] for pid in descendants(procs, os.getpid())
                           if procs[pid][1] != "postgres" and procs[pid][5] != "Z")
        if lingering:
            log("warning: still running after %s ended: %s" % (label, ", ".join(lingering)))
        record = {"contender": contender.name, "label": label, "round": round_no, "wall_s": round(wall, 2),
                  "lingering": lingering}
        record.update({k: v for k, v in info.items() if k != "log"})
        record.update(measures)
        expected_rc = contender.name == "vendor" and info.get("rc") is not None
        if info.get("rc") != 0 and not expected_rc:
            status, differences = "FAIL", ["exit code %s" % info.get("rc")]
            if check:
                differences += check_target(ctx)[1]
        elif check:
            status, differences = check_target(ctx)
        else:
            status, differences = "ok", []
        record.update(status=status, differences=differences[:50], n_differences=len(differences))
        if status != "ok":
            record["log_tail"] = info.get("log", "").splitlines()[-40:]
        log("round %d: %s: %.1f s, %s%s, peak dump %.0f MB, peak client RSS %.0f MB, client CPU %.1f s, "
            "source %.1f s, target %.1f s" % (
                round_no, label, wall, status,
                (" (%d differences: %s)" % (len(differences), "; ".join(differences[:3]))) if differences else "",
                measures["peak_dump_bytes"] / MB, measures["peak_rss_bytes"] / MB, measures["client_cpu_s"],
                measures["source_cpu_s"], measures["target_cpu_s"]))
        return record
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
        for path in contender.disk_paths(ctx, run_dir):
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)


def counted(run):
    """Runs whose time counts: correct copies, and the vendor script's runs that ran to their end and lost
    only what its `-n public` leaves behind (status incomplete)."""
    return run["status"] == "ok" or (run["contender"] == "vendor" and run["status"] == "incomplete")


def summarize(runs, total_bytes):
    walls = [r["wall_s"] for r in runs if counted(r)]
    if not walls:
        return None
    med = statistics.median(walls)

    def med_of(key):
        values = [r[key] for r in runs if counted(r) and r.get(key) is not None]
        return round(statistics.median(values), 2) if values else None

    return {"runs": len(runs), "ok": sum(1 for r in runs if r["status"] == "ok"),
            "counted": len(walls), "median_s": round(med, 2), "min_s": min(walls), "max_s": max(walls),
            "mb_per_s": round(total_bytes / MB / med, 1) if med else None,
            "peak_dump_bytes": max(r["peak_dump_bytes"] for r in runs),
            "peak_rss_bytes": max(r["peak_rss_bytes"] for r in runs),
            "client_cpu_s": med_of("client_cpu_s"), "source_cpu_s": med_of("source_cpu_s"),
            "target_cpu_s": med_of("target_cpu_s"), "iowait_s": med_of("iowait_s"),
            "other_cpu_s": med_of("other_cpu_s"),
            "disk_read_mb": round(statistics.median([r["disk_read_bytes"] for r in runs]) / MB),
            "disk_written_mb": round(statistics.median([r["disk_written_bytes"] for r in runs]) / MB),
            "pg_dump_active_s": round(statistics.median([r["active_s"].get("pg_dump", 0) for r in runs]), 1),
            "pg_restore_active_s": round(statistics.median([r["active_s"].get("pg_restore", 0) for r in runs]), 1),
            "overlap_s": round(statistics.median([r["dump_restore_overlap_s"] for r in runs]), 1)}


def machine_description(path):
    info = {"kernel": platform.release(), "python": platform.python_version()}
    cpuinfo = read("/proc/cpuinfo")
    match = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    info["cpu_model"] = match.group(1).strip() if match else platform.processor() or "?"
    info["cpus"] = os.cpu_count()
    info["cpus_usable"] = len(os.sched_getaffinity(0))
    match = re.search(r"^MemTotal:\s*(\d+) kB", read("/proc/meminfo"), re.M)
    info["ram_gb"] = round(int(match.group(1)) / 1024 / 1024, 1) if match else None
    match = re.search(r'^PRETTY_NAME="?([^"\n]+)', read("/etc/os-release"), re.M)
    info["os"] = match.group(1) if match else "?"
    device = block_device(path)
    disk = {"device": device}
    if device:
        base = "/sys/block/%s" % device
        size = read(base + "/size").strip()
        disk["size_gb"] = round(int(size) * 512 / 1e9) if size.isdigit() else None
        disk["rotational"] = read(base + "/queue/rotational").strip() == "1"
        disk["model"] = (read(base + "/device/model").strip() or read(base + "/device/vendor").strip() or None)
    best = ""
    for line in read("/proc/mounts").splitlines():
        parts = line.split()
        if len(parts) > 2 and os.path.abspath(path).startswith(parts[1]) and len(parts[1]) >= len(best):
            best, disk["filesystem"], disk["mount"] = parts[1], parts[2], parts[1]
    usage = shutil.disk_usage(path)
    disk["free_gb"] = round(usage.free / 1e9)
    info["disk"] = disk
    return info


# ----------------------------------------------------------------------------------------------
# Reports
# ----------------------------------------------------------------------------------------------
def fmt(value, spec="%.1f", na="na"):
    return na if value is None else spec % value


def ratio(numerator, denominator):
    if not numerator or not denominator:
        return None
    return round(numerator / denominator, 2)


def build_tables(report):
    """(main rows, where-the-time-goes rows, bound rows, ours-phase rows) as lists of lists of strings."""
    summaries = report["summary"]
    vendor = (summaries.get("vendor") or {}).get("median_s")
    pgcopydb = (summaries.get("pgcopydb") or {}).get("median_s")
    main = [["contender", "runs ok", "median s", "min-max s", "MB/s", "x vendor", "x pgcopydb", "peak dump MB",
             "peak client RSS MB"]]
    where = [["contender", "client CPU s", "source srv CPU s", "target srv CPU s", "iowait s", "disk read MB",
              "disk written MB", "pg_dump active s", "pg_restore active s", "both active s", "other load CPU s"]]
    names = [n for n in CONTENDERS if n in summaries] + (["bound"] if summaries.get("bound") else [])
    for name in names:
        s = summaries[name]
        label = report["contenders"][name]["title"]
        if name == "bound":
            label = "%s (%s)" % (label, report["bound"]["best"])
        if s is None:
            main.append([label, "0/%d" % len(report["runs_by_contender"].get(name, [])), "FAIL", "", "", "", "", "", ""])
            continue
        main.append([label, "%d/%d" % (s["ok"], s["runs"]), fmt(s["median_s"]), "%.1f-%.1f" % (s["min_s"], s["max_s"]),
                     fmt(s["mb_per_s"]), fmt(ratio(vendor, s["median_s"]), "%.2f"),
                     fmt(ratio(pgcopydb, s["median_s"]), "%.2f"), "%.0f" % (s["peak_dump_bytes"] / MB),
                     "%.0f" % (s["peak_rss_bytes"] / MB)])
        where.append([label, fmt(s["client_cpu_s"]), fmt(s["source_cpu_s"]), fmt(s["target_cpu_s"]),
                      fmt(s["iowait_s"]), str(s["disk_read_mb"]), str(s["disk_written_mb"]), fmt(s["pg_dump_active_s"]),
                      fmt(s["pg_restore_active_s"]), fmt(s["overlap_s"]), fmt(s["other_cpu_s"])])
    rerun = report.get("rerun")
    if rerun and rerun.get("median_s") is not None:
        changed = ",".join(str(c) for c in rerun["changed"])
        main.append(["ours, unchanged rerun (changed=%s)" % changed, "%d/%d" % (rerun["ok"], rerun["runs"]),
                     fmt(rerun["median_s"]), "%.1f-%.1f" % (rerun["min_s"], rerun["max_s"]), "", "", "", "0", ""])
    bound_rows = [["restore config", "runs", "median s", "min-max s"]]
    for config, values in (report.get("bound") or {}).get("configs", {}).items():
        bound_rows.append([config, str(len(values)), fmt(statistics.median(values)) if values else "FAIL",
                           "%.1f-%.1f" % (min(values), max(values)) if values else ""])
    phase_rows = [["phase (sum over the six databases)", "median s"]]
    for phase, seconds in (report.get("ours_phases") or {}).items():
        phase_rows.append([phase, fmt(seconds)])
    return main, where, bound_rows, phase_rows


def text_table(rows):
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row)))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def md_table(rows):
    out = ["| " + " | ".join(rows[0]) + " |", "|" + "|".join(" --- " for _ in rows[0]) + "|"]
    out += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows[1:]]
    return "\n".join(out)


def condensed_timeline(timeline, buckets=20):
    """About `buckets` rows of a 1 s timeline: max dump/RSS, mean cores, union of programs."""
    if not timeline:
        return []
    width = max(1.0, timeline[-1]["t"] / buckets)
    rows, group, edge = [], [], width

    def flush():
        if group:
            n = float(len(group))
            programs = sorted(set(p for g in group for p in g["programs"]))
            rows.append(["%.0f" % group[-1]["t"], "%.0f" % max(g["dump_mb"] for g in group),
                         "%.0f" % max(g["rss_mb"] for g in group),
                         "%.2f" % (sum(g["client_cores"] for g in group) / n),
                         "%.2f" % (sum(g["source_cores"] for g in group) / n),
                         "%.2f" % (sum(g["target_cores"] for g in group) / n), " ".join(programs)])

    for point in timeline:
        if point["t"] > edge:
            flush()
            group = []
            while point["t"] > edge:
                edge += width
        group.append(point)
    flush()
    return rows


def median_run(runs):
    ranked = sorted((r for r in runs if counted(r)), key=lambda r: r["wall_s"])
    return ranked[(len(ranked) - 1) // 2] if ranked else None


def result_line(report):
    s = report["summary"]

    def med(name):
        return (s.get(name) or {}).get("median_s")

    vendor, ours, pgc = med("vendor"), med("ours"), med("pgcopydb")
    bound = (report.get("bound") or {}).get("median_s")
    rerun = (report.get("rerun") or {}).get("median_s")
    return "RESULT vendor_s=%s ours_s=%s pgcopydb_s=%s bound_s=%s rerun_s=%s ratio_vendor=%s ratio_pgcopydb=%s" % (
        fmt(vendor), fmt(ours), fmt(pgc), fmt(bound), fmt(rerun), fmt(ratio(vendor, ours), "%.2f"),
        fmt(ratio(pgc, ours), "%.2f"))


def markdown(report):
    main, where, bound_rows, phase_rows = build_tables(report)
    m, ds = report["machine"], report["dataset"]
    out = ["# Benchmark %s" % report["started"], "",
           "`%s`%s" % (report["command"], " (smoke: harness correctness, not timing)" if report["smoke"] else ""), "",
           "## Results", "", md_table(main), "",
           "Median over the runs that count (correct copies; for the vendor script also its runs that lost only "
           "what its `-n public` leaves behind, see notes). MB/s = source size / median. `x vendor` = vendor "
           "median / this median, `x pgcopydb` likewise. Peak dump = largest size of the contender's dump "
           "location, sampled every %.1f s; peak client RSS = largest sum of the RSS of our descendant processes "
           "(pg_dump, pg_restore, pgcopydb, bash, ansible-playbook and its module processes)." % INTERVAL, "",
           "## Where the time goes (medians)", "", md_table(where), "",
           "Client CPU: exact (getrusage of waited children). Server CPU: postmaster, its reaped and live children "
           "(/proc). iowait and disk bytes are machine-wide; `other load CPU` = machine busy time not accounted to "
           "the clients, the servers or the harness: other jobs on the machine (noise).", ""]
    if len(phase_rows) > 1:
        out += ["## ours: module phases", "", md_table(phase_rows), "",
                "From the module's `phases` return value, summed over the databases (median over runs); wall time "
                "minus `total` is ansible-playbook's own overhead. `verify` is the cost of verification (on by "
                "default), `analyze` of rebuilding planner statistics.", ""]
    if len(bound_rows) > 1:
        prep = report["bound"]["prepared"]
        out += ["## Restore-side lower bound", "", md_table(bound_rows), "",
                "Best: **%s**, %s s (median). Dumps prepared once per invocation: %.0f MB, pg_dump -Fd -Z0 -j2 "
                "one database after the other took %.1f s (the dump side alone)."
                % (report["bound"]["best"], fmt(report["bound"]["median_s"]), prep["bytes"] / MB, prep["dump_s"]), ""]
    if report.get("rerun"):
        rerun = report["rerun"]
        out += ["## Unchanged rerun", "",
                "`ours` again right after a verified `ours` run, nothing changed on the source: median %s s, "
                "changed tasks %s, actions %s." % (fmt(rerun["median_s"]), ", ".join(str(c) for c in rerun["changed"]),
                                                   ", ".join(rerun["actions"])), ""]
    programs = report.get("cpu_by_program") or {}
    if programs:
        out += ["Client CPU seconds by program, and seconds each was running (the run with the median wall time; "
                "sampled from /proc):", "", md_table([["run", "CPU s by program", "running s by program"]] + [
                    [label, ", ".join("%s %.1f" % kv for kv in entry["cpu"].items()),
                     ", ".join("%s %.1f" % kv for kv in entry["active"].items())]
                    for label, entry in programs.items()]), ""]
    per_db = report.get("ours_per_database")
    if per_db:
        phases = []
        for entry in per_db:
            phases += [k for k in entry["phases"] if k not in phases and k != "total"]
        out += ["## ours: per database (the run with the median wall time)", "", md_table(
            [["database", "action"] + phases + ["total", "dump MB"]]
            + [[e["database"] or "?", e["action"] or "?"] + [fmt(e["phases"].get(k)) for k in phases]
               + [fmt(e["phases"].get("total")), "%.0f" % ((e["dump_bytes"] or 0) / MB)] for e in per_db]), ""]
    timelines = report.get("timelines") or {}
    if timelines:
        out += ["## Timelines (the run with the median wall time of each contender)", "",
                "Per bucket: seconds from the start, largest dump size, client RSS, CPU cores used by the clients, "
                "the source server and the target server (average over the bucket), client programs seen.", ""]
        for label, rows in timelines.items():
            out += ["### %s" % label, "", md_table([["t s", "dump MB", "RSS MB", "client cores", "source cores",
                                                     "target cores", "programs"]] + rows), ""]
    out += ["## Contenders", ""]
    for name, c in report["contenders"].items():
        out.append("- **%s** (%s): %s. Version: %s." % (name, c["title"], c["description"], c["version"] or "n/a"))
    out += ["", "## Runs", "", md_table([["round", "run", "wall s", "status", "exit", "error lines", "peak dump MB",
                                          "peak RSS MB", "client CPU s", "src CPU s", "tgt CPU s", "other load s"]] + [
        [str(r["round"]), r["label"], "%.1f" % r["wall_s"], r["status"] + (" (%d diffs)" % r["n_differences"]
                                                                          if r["n_differences"] else ""),
         str(r.get("rc")), str(r.get("error_lines", "")), "%.0f" % (r["peak_dump_bytes"] / MB),
         "%.0f" % (r["peak_rss_bytes"] / MB), fmt(r["client_cpu_s"]), fmt(r["source_cpu_s"]), fmt(r["target_cpu_s"]),
         fmt(r["other_cpu_s"])] for r in report["runs"]]), ""]
    failures = [r for r in report["runs"] if r["status"] != "ok"]
    if failures:
        out += ["### Differences found", ""]
        for r in failures:
            out.append("- round %d %s (%s): %s" % (r["round"], r["label"], r["status"], "; ".join(r["differences"][:12])))
        out.append("")
    out += ["## Machine", "",
            "- CPU: %s, %s cores (%s usable); RAM %s GB; %s; kernel %s; Python %s" % (
                m["cpu_model"], m["cpus"], m["cpus_usable"], m["ram_gb"], m["os"], m["kernel"], m["python"]),
            "- Disk: %s" % ", ".join("%s %s" % (k, v) for k, v in m["disk"].items()),
            "- Load average at start %s, at end %s" % (
                ", ".join("%.2f" % x for x in m["loadavg_start"]), ", ".join("%.2f" % x for x in m["loadavg_end"])),
            "", "## Servers", "",
            "- Source: PostgreSQL %s, target: PostgreSQL %s, same machine, both on 127.0.0.1; started with the same "
            "settings for every contender:" % (report["servers"]["source_version"], report["servers"]["target_version"]),
            "", md_table([["setting", "source", "target"]] + [
                [k, report["servers"]["source_settings"].get(k, ""), report["servers"]["target_settings"].get(k, "")]
                for k in sorted(set(report["servers"]["source_settings"]) | set(report["servers"]["target_settings"]))]),
            "", "- Extra settings given with --setting: %s" % (report["servers"]["extra_settings"] or "none"),
            "", "## Dataset", "",
            "- scale %s MB, seed %d, generated on the source once and reused (this invocation: %s s); total "
            "pg_database_size %.0f MB:" % (ds["scale_mb"], ds["seed"], ds["generation_s"], ds["total_bytes"] / MB),
            "", md_table([["database", "MB", "rows", "biggest table"]] + [
                [db, "%.0f" % (ds["sizes"][db] / MB), str(ds["rows"][db]), ds["biggest"][db]] for db in ds["order"]]),
            "", "## Notes", ""]
    out += ["- %s" % note for note in report["notes"]]
    out += ["", "```", report["result_line"], "```", ""]
    return "\n".join(out)


# ----------------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------------
def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale-mb", type=float, default=2800, help="dataset size, total pg_database_size (2800)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each contender, alternating (3)")
    parser.add_argument("--only", default=",".join(CONTENDERS + EXTRAS),
                        help="comma-separated subset of %s" % ",".join(CONTENDERS + EXTRAS))
    parser.add_argument("--smoke", action="store_true",
                        help="scale %d, 1 run, every contender; fails unless every copy is correct" % SMOKE_SCALE_MB)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--generate-only", action="store_true",
                        help="only make sure the dataset of this scale exists on the (kept) source cluster")
    parser.add_argument("--setting", action="append", default=[], metavar="KEY=VALUE",
                        help="extra server setting for both servers (repeatable), e.g. wal_level=minimal")
    parser.add_argument("--pgcopydb-jobs", type=int, default=2, help="pgcopydb --table-jobs/--index-jobs (2)")
    parser.add_argument("--ours-var", action="append", default=[], metavar="KEY=VALUE", type=ours_variable,
                        help="a role variable for `ours` (YAML value), e.g. db_migration_concurrency=3; repeatable")
    parser.add_argument("--bound-configs", default=DEFAULT_BOUND_CONFIGS,
                        help="restore configs for the bound, DATABASESxJOBS (%s)" % DEFAULT_BOUND_CONFIGS)
    parser.add_argument("--timeout", type=int, default=3600, help="limit per run, seconds (3600)")
    parser.add_argument("--data-dir", default=os.path.join(BENCH, "data"),
                        help="where the source cluster and work files live (bench/data)")
    parser.add_argument("--results-dir", help="where results are written (bench/results; smoke: bench/data/smoke-results)")
    args = parser.parse_args(argv)
    args.only = [x.strip() for x in args.only.split(",") if x.strip()]
    unknown = set(args.only) - set(CONTENDERS + EXTRAS)
    if unknown:
        parser.error("unknown in --only: %s" % ", ".join(sorted(unknown)))
    if args.smoke:
        args.scale_mb, args.runs = SMOKE_SCALE_MB, 1
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.scale_mb == int(args.scale_mb):
        args.scale_mb = int(args.scale_mb)
    configs = []
    for item in args.bound_configs.split(","):
        match = re.match(r"^\s*(\d+)x(?:-?j)?(\d+)\s*$", item)
        if not match or int(match.group(1)) < 1 or int(match.group(2)) < 1:
            parser.error("--bound-configs: %r is not DATABASESxJOBS" % item)
        configs.append((int(match.group(1)), int(match.group(2))))
    args.bound = configs
    args.results_dir = args.results_dir or (os.path.join(args.data_dir, "smoke-results") if args.smoke
                                            else os.path.join(BENCH, "results"))
    return args


def ensure_collection_link():
    if not os.path.lexists(COLLECTION_LINK):
        os.makedirs(os.path.dirname(COLLECTION_LINK), exist_ok=True)
        os.symlink("../../../..", COLLECTION_LINK)


def ours_variable(text):
    """--ours-var KEY=VALUE, the value read as YAML (numbers, booleans, lists)."""
    key, sep, value = text.partition("=")
    if not sep or not key.startswith("db_migration_"):
        raise argparse.ArgumentTypeError("expected db_migration_<name>=<value>, got %r" % text)
    import yaml  # noqa: PLC0415 (only for this option)
    return key, yaml.safe_load(value)


def main(argv=None):
    args = parse_args(argv)
    started_at = datetime.datetime.now()
    subreaper = become_subreaper()
    load_at_start = os.getloadavg()
    settings = parse_settings(args.setting)
    ensure_collection_link()
    os.makedirs(args.data_dir, exist_ok=True)
    workdir = tempfile.mkdtemp(prefix="work-", dir=args.data_dir)
    os.chmod(workdir, 0o755)

    if args.generate_only:
        return generate_only(args, settings, workdir)
    contenders = {"vendor": Vendor(), "ours": Ours(), "pgcopydb": PgCopyDb(args.pgcopydb_jobs), "directory": OursDirectory()}
    wanted = [n for n in CONTENDERS if n in args.only]
    notes, skipped = [], {}
    if not subreaper:
        notes.append("prctl(PR_SET_CHILD_SUBREAPER) failed: processes that daemonize (ansible async jobs) escape "
                     "the RSS/CPU sampling of the client processes")
    for name in list(wanted):
        ok, why = contenders[name].available(None)
        if not ok:
            if args.smoke:
                print("error: %s: %s (the smoke run needs every contender)" % (name, why), file=sys.stderr)
                return 2
            log("%s: not run (na): %s" % (name, why))
            skipped[name] = why
            notes.append("%s not run: %s" % (name, why))
            wanted.remove(name)
    if "rerun" in args.only and "ours" not in wanted:
        args.only.remove("rerun")
    bounds = [Bound(c, j) for c, j in args.bound] if "bound" in args.only else []

    source = target = None
    interrupted = False
    try:
        source_dir = source_dir_of(args)
        if not lock_source(source_dir):
            return 2
        source, password = start_source(source_dir, settings)
        target = start_target(password, settings)
        ctx = Context(args, source, target, password, workdir)
        log("servers: source %s:%d (%s), target %s:%d (fresh); work files in %s" % (
            source.host, source.port, source_dir, target.host, target.port, workdir))
        prepare_dataset(ctx)
        if bounds:
            prepare_bound_dumps(ctx)

        runs, rerun_runs, bound_times = [], [], {b.config: [] for b in bounds}
        best_bound = None
        slots = wanted + (["bound"] if bounds else [])
        for round_no in range(1, args.runs + 1):
            shift = (round_no - 1) % len(slots) if slots else 0
            for slot in slots[shift:] + slots[:shift]:
                if slot == "bound":
                    todo = bounds if best_bound is None else [best_bound]
                    for bound in todo:
                        record = measured(ctx, bound, "bound %s" % bound.config, round_no)
                        record["config"] = bound.config
                        runs.append(record)
                        if record["status"] == "ok":
                            bound_times[bound.config].append(record["wall_s"])
                    if best_bound is None:
                        candidates = [b for b in bounds if bound_times[b.config]]
                        if candidates:
                            best_bound = min(candidates, key=lambda b: min(bound_times[b.config]))
                    continue
                contender = contenders[slot]
                runs.append(measured(ctx, contender, slot, round_no))
                if slot == "ours" and "rerun" in args.only and runs[-1]["status"] == "ok":
                    record = measured(ctx, contender, "ours rerun", round_no, fresh=False)
                    record["contender"] = "rerun"
                    rerun_runs.append(record)
        # ----------------------------------------------------------------------------------------
        by_contender = {}
        for r in runs:
            by_contender.setdefault(r["contender"], []).append(r)
        total = ctx.total_bytes()
        summary = {name: summarize(by_contender.get(name, []), total) for name in wanted}
        bound_report = None
        if bounds:
            best_runs = [r for r in by_contender.get("bound", []) if best_bound and r["config"] == best_bound.config]
            summary["bound"] = summarize(best_runs, total) if best_runs else None
            bound_report = {"best": best_bound.config if best_bound else None,
                            "median_s": summary["bound"]["median_s"] if summary["bound"] else None,
                            "configs": bound_times, "prepared": ctx.bound_prep}
        rerun_report = None
        if rerun_runs:
            walls = [r["wall_s"] for r in rerun_runs if r["status"] == "ok"]
            rerun_report = {"runs": len(rerun_runs), "ok": len(walls),
                            "median_s": round(statistics.median(walls), 2) if walls else None,
                            "min_s": min(walls) if walls else None, "max_s": max(walls) if walls else None,
                            "changed": sorted(set(r.get("changed_tasks") for r in rerun_runs), key=str),
                            "actions": sorted(set(a for r in rerun_runs for a in (r.get("actions") or {}).values()
                                                  if a), key=str)}
            if rerun_report["changed"] != [0]:
                notes.append("WARNING: the unchanged rerun reported changed tasks %s (expected 0): it is not a "
                             "no-op rerun" % rerun_report["changed"])
        ours_phases = None
        ours_runs = [r for r in by_contender.get("ours", []) if r["status"] == "ok" and r.get("phases_sum_s")]
        if ours_runs:
            keys = []
            for r in ours_runs:
                keys += [k for k in r["phases_sum_s"] if k not in keys]
            ours_phases = {k: round(statistics.median([r["phases_sum_s"].get(k, 0) for r in ours_runs]), 2)
                           for k in keys}

        timelines, cpu_by_program = {}, {}
        for name in wanted + (["bound"] if bounds else []) + (["rerun"] if rerun_runs else []):
            pool = by_contender.get(name, [])
            if name == "bound":
                pool = [r for r in pool if best_bound and r["config"] == best_bound.config]
            if name == "rerun":
                pool = [r for r in rerun_runs if r["status"] == "ok"]
            chosen = median_run(pool)
            if chosen:
                cpu_by_program[chosen["label"]] = {"cpu": chosen["cpu_by_program_s"], "active": chosen["active_s"]}
                timelines["%s (round %d, %.1f s)" % (chosen["label"], chosen["round"], chosen["wall_s"])] = \
                    condensed_timeline(chosen["timeline"])
        versions = {name: contenders[name].version(ctx) for name in wanted}
        described = {name: {"title": contenders[name].title, "description": contenders[name].description,
                             "version": versions[name]} for name in wanted}
        if bounds:
            described["bound"] = {"title": Bound.title, "description": BOUND_DESCRIPTION % ", ".join(
                b.config for b in bounds), "version": bounds[0].version(ctx)}
        for name, why in skipped.items():
            described[name] = {"title": name, "description": "not run: %s" % why, "version": ""}
        notes += [
            "Every run starts from freshly created empty target databases (DROP DATABASE ... WITH (FORCE); "
            "CREATE DATABASE ... TEMPLATE template0 with the source's encoding and locale), after a CHECKPOINT on "
            "both servers and sync(2). The page cache is not dropped: the source's data is read from RAM by every "
            "contender alike.",
            "Order within a round rotates each round, so no contender always runs first or after the same one.",
            "Correctness: tests/support/compare.py on all six databases after each run (row counts, content hash of "
            "every table, sequences, indexes, constraints, views, functions, triggers, enums, comments, "
            "extensions, large objects).",
            "The vendor script's pg_restore -n public leaves out the extensions (citext, pg_trgm) and the large "
            "object, so accounts.\"User\" (a citext column), the objects depending on it and the pg_trgm index are "
            "missing on the target: its runs are reported `incomplete`, their times still count (its pg_restore "
            "--clean also prints errors on empty targets and exits 1, by design). A correct run would take a little "
            "longer.",
            "The vendor script receives the password as a positional argument (argv and environment): that is the "
            "guide's design, used here only against throwaway servers. Every other contender gets it from a 0600 "
            "passfile (PGPASSFILE) or, for ansible, a 0600 vars file.",
            "pgcopydb: per database, sequentially; see its description for the jobs.",
            "bound is a harness reference, not a collection feature.",
        ]
        if skipped.get("pgcopydb"):
            notes.append("pgcopydb na: install it with `apt-get install pgcopydb` to compare")
        report = {
            "started": started_at.strftime("%Y-%m-%d %H:%M:%S"),
            "finished": datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S"),
            "command": "python -m bench.run " + " ".join(argv if argv is not None else sys.argv[1:]),
            "smoke": args.smoke,
            "machine": machine_description(args.data_dir),
            "servers": {"source_version": source.execute("SHOW server_version")[0][0],
                        "target_version": target.execute("SHOW server_version")[0][0],
                        "source_settings": show_settings(source), "target_settings": show_settings(target),
                        "extra_settings": settings},
            "dataset": {"scale_mb": args.scale_mb, "seed": args.seed, "generation_s": ctx.generation_s,
                        "total_bytes": total, "sizes": ctx.sizes, "order": ctx.order,
                        "rows": {db: sum(t["rows"] for t in ctx.snapshots[db]["tables"].values()) for db in SIX},
                        "biggest": {db: biggest(ctx.snapshots[db]) for db in SIX}},
            "contenders": described, "summary": summary, "bound": bound_report, "rerun": rerun_report,
            "ours_phases": ours_phases, "runs": runs + rerun_runs,
            "ours_per_database": (median_run(by_contender.get("ours", [])) or {}).get("per_database"),
            "timelines": timelines, "cpu_by_program": cpu_by_program,
            "runs_by_contender": {k: [r["wall_s"] for r in v] for k, v in by_contender.items()},
            "notes": notes,
        }
        report["machine"]["loadavg_start"] = load_at_start
        report["machine"]["loadavg_end"] = os.getloadavg()
        report["result_line"] = result_line(report)
        write_reports(report, args)
        problems = verdict(report, args)
        for problem in problems:
            print("PROBLEM: %s" % problem)
        print(report["result_line"], flush=True)
        return 1 if problems else 0
    except KeyboardInterrupt:
        interrupted = True
        log("interrupted: stopping the contenders and the servers")
        return 130
    finally:
        kill_all()
        for path in Vendor().dumps():
            if os.path.exists(path):
                os.unlink(path)
        if target is not None:
            target.destroy()
        if source is not None:
            source.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        if interrupted:
            log("stopped")


def source_dir_of(args):
    return os.path.join(args.data_dir, "source-s%s-seed%d" % (args.scale_mb, args.seed))


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


def generate_only(args, settings, workdir):
    source_dir = source_dir_of(args)
    source = None
    try:
        if not lock_source(source_dir):
            return 2
        source, _ = start_source(source_dir, settings)
        started = time.monotonic()
        sizes = dataset.generate(source.params(), scale_mb=args.scale_mb, databases=SIX, seed=args.seed, jobs=2,
                                 progress=lambda m: log("  " + m))
        log("dataset in %s: %.0f MB in %.1f s" % (source_dir, sum(sizes.values()) / MB, time.monotonic() - started))
        return 0
    finally:
        if source is not None:
            source.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def biggest(snapshot):
    tables = snapshot["tables"]
    if not tables:
        return ""
    name = max(tables, key=lambda t: tables[t]["rows"])
    return "%s (%d rows)" % (name, tables[name]["rows"])


def verdict(report, args):
    """Problems that make the invocation fail: any incorrect copy (except the vendor script's known
    `-n public` losses), any contender without a counted run, a rerun that was not a no-op in smoke."""
    problems = []
    for r in report["runs"]:
        if r["status"] == "ok" or (r["contender"] == "vendor" and r["status"] == "incomplete"):
            continue
        problems.append("round %d %s: %s: %s" % (r["round"], r["label"], r["status"], "; ".join(r["differences"][:5])))
    for name, s in report["summary"].items():
        if s is None:
            problems.append("%s: no successful run" % name)
    if args.smoke:
        if not report["result_line"].startswith("RESULT "):
            problems.append("no RESULT line")
    return problems


def write_reports(report, args):
    main_rows, where, bound_rows, phase_rows = build_tables(report)
    print()
    print(text_table(main_rows))
    print()
    print("Where the time goes (medians):")
    print(text_table(where))
    if len(phase_rows) > 1:
        print()
        print("ours, module phases (sum over databases, median):")
        print(text_table(phase_rows))
    if len(bound_rows) > 1:
        print()
        print("Restore-side bound configs:")
        print(text_table(bound_rows))
    print()
    print("servers: PostgreSQL %s -> %s, settings: %s" % (
        report["servers"]["source_version"], report["servers"]["target_version"],
        ", ".join("%s=%s" % kv for kv in sorted(report["servers"]["target_settings"].items()))))
    if args.ours_var:
        print("ours with: %s" % ", ".join("%s=%s" % kv for kv in args.ours_var))
    report["ours_variables"] = dict(args.ours_var)
    os.makedirs(args.results_dir, exist_ok=True)
    stamp = report["started"].replace(" ", "-").replace(":", "")
    base = os.path.join(args.results_dir, stamp)
    text = markdown(report)
    for path, content in ((base + ".md", text), (os.path.join(args.results_dir, "latest.md"), text),
                          (base + ".json", json.dumps(report, indent=1, sort_keys=True, default=str) + "\n")):
        tmp = path + ".tmp"
        with open(tmp, "w") as handle:
            handle.write(content)
        os.replace(tmp, path)
    print("written: %s.md, %s.json, %s" % (base, base, os.path.join(args.results_dir, "latest.md")))


if __name__ == "__main__":
    sys.exit(main())
