"""A small source database holding every kind of object the module must carry."""

import os
import signal
import threading
import time

from psycopg2 import sql

from tests.support.compare import snapshot

FEATURES_SQL = r"""
CREATE EXTENSION pg_trgm;
CREATE EXTENSION citext;
CREATE TYPE issue_level AS ENUM ('info', 'warning', 'error');
CREATE TABLE account (
    id bigserial PRIMARY KEY,
    email citext NOT NULL UNIQUE,
    name text NOT NULL,
    settings jsonb NOT NULL DEFAULT '{}',
    balance numeric(12, 2) NOT NULL DEFAULT 0 CHECK (balance >= -1000),
    score double precision,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE issue (
    id bigserial PRIMARY KEY,
    account_id bigint NOT NULL REFERENCES account (id),
    level issue_level NOT NULL,
    message text NOT NULL,
    payload bytea,
    details jsonb,
    updated_at timestamptz
);
CREATE INDEX issue_account_idx ON issue (account_id);
CREATE INDEX issue_level_idx ON issue (level) WHERE level = 'error';
CREATE INDEX issue_message_trgm ON issue USING gin (message gin_trgm_ops);
CREATE INDEX issue_details_idx ON issue USING gin (details);
CREATE TABLE "UserSettings" ("Key" text PRIMARY KEY, "Value" text);
CREATE SEQUENCE ticket_seq START 1000;
CREATE VIEW error_issues AS SELECT i.id, a.email, i.message FROM issue i JOIN account a ON a.id = i.account_id
  WHERE i.level = 'error';
CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.updated_at := now(); RETURN NEW; END $$;
CREATE TRIGGER issue_touch BEFORE UPDATE ON issue FOR EACH ROW EXECUTE PROCEDURE touch();
COMMENT ON TABLE issue IS 'static analysis results';

INSERT INTO account (email, name, settings, balance, score)
SELECT 'User' || i || '@Example.com', 'user ' || i, jsonb_build_object('theme', 'dark', 'n', i),
       i * 1.25, i / 3.0
  FROM generate_series(1, 200) i;
INSERT INTO issue (account_id, level, message, payload, details)
SELECT 1 + i % 200, (ARRAY['info', 'warning', 'error'])[1 + i % 3]::issue_level,
       'issue ' || md5(i::text), decode(md5(i::text), 'hex'), jsonb_build_object('line', i, 'tags', jsonb_build_array('a', i))
  FROM generate_series(1, 3000) i;
INSERT INTO "UserSettings" VALUES ('Theme', 'dark'), ('Lang', 'pt');
SELECT setval('ticket_seq', 4242);
"""


def create_database(server, dbname, **options):
    """CREATE DATABASE with template0; options: ENCODING, LC_COLLATE, LC_CTYPE ..."""
    parts = [sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(dbname))]
    for key, value in options.items():
        parts.append(sql.SQL("{} {}").format(sql.SQL(key.upper()), sql.Literal(value)))
    conn = server.connect()
    try:
        with conn.cursor() as cur:
            cur.execute(sql.SQL(" ").join(parts))
    finally:
        conn.close()


def create_feature_database(server, dbname):
    create_database(server, dbname)
    conn = server.connect(dbname)
    try:
        with conn.cursor() as cur:
            cur.execute(FEATURES_SQL)
    finally:
        conn.close()


def execute(server, dbname, statement, args=None):
    return server.execute(statement, args, dbname=dbname)


def record_states(server, dbname):
    """The states of the migration runs recorded in the target database, oldest first ([] when none)."""
    if not execute(server, dbname, "SELECT to_regclass('codacy_migration.runs') IS NOT NULL")[0][0]:
        return []
    return [row[0] for row in execute(server, dbname, "SELECT state FROM codacy_migration.runs ORDER BY id")]


def add_bulk(server, dbname, rows=1500000):
    """Make the restore last a few seconds so it can be interrupted in the middle."""
    execute(server, dbname, "CREATE TABLE bulk AS SELECT i AS id, md5(i::text) AS a, repeat(md5((-i)::text), 3) AS b"
                            " FROM generate_series(1, %s) i; ALTER TABLE bulk ADD PRIMARY KEY (id);"
                            " CREATE INDEX bulk_a ON bulk (a); CREATE INDEX bulk_b ON bulk (b)", (rows,))


def processes(name, needle):
    """pids of running `name` processes whose argv contains `needle`."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as handle:
                argv = handle.read().split(b"\0")
        except OSError:
            continue
        if argv and os.path.basename(argv[0].decode(errors="replace")) == name and \
                any(needle.encode() in arg for arg in argv):
            found.append(int(pid))
    return found


def processes_with(needle):
    """pids of running processes whose command line contains `needle` (not this one)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as handle:
                if needle.encode() in handle.read():
                    found.append(int(pid))
        except OSError:
            continue
    return found


def processes_of_home(home, needle):
    """pids of running processes started with HOME=`home` whose command line contains `needle` (the
    modules, async wrappers and clients that one ansible-playbook run with a HOME of its own started)."""
    found = []
    for pid in processes_with(needle):
        try:
            with open("/proc/%d/environ" % pid, "rb") as handle:
                if ("HOME=%s" % home).encode() in handle.read().split(b"\0"):
                    found.append(pid)
        except OSError:
            continue
    return found


def holders(path):
    """pids of processes with a file or their working directory under `path` (a module still
    running there, or a child it left behind)."""
    path = os.path.realpath(path) + os.sep
    found = set()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            links = [os.readlink("/proc/%s/cwd" % pid)]
            links += [os.readlink("/proc/%s/fd/%s" % (pid, fd)) for fd in os.listdir("/proc/%s/fd" % pid)]
        except OSError:
            continue
        if any((link + os.sep).startswith(path) for link in links):
            found.add(int(pid))
    return sorted(found)


def kill(pids, signum=signal.SIGKILL):
    """Send signum to each of pids; one that ended since it was listed (a short-lived client, or a child of
    one killed before it) is skipped. Returns the pids that got the signal."""
    killed = []
    for pid in pids:
        try:
            os.kill(pid, signum)
            killed.append(pid)
        except ProcessLookupError:
            pass
    return killed


def wait_for(predicate, timeout=120, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out waiting for %s" % what)


def restoring(server, dbname):
    """True once pg_restore is loading rows into the target (the migration record says in progress). Asked from
    another database: a session in the target database would make the migration refuse to write."""
    try:
        # pg_restore's COPY, or the parallel data path's (psql's \copy: quoted names, spaced out).
        rows = execute(server, "postgres", "SELECT count(*) FROM pg_stat_activity WHERE datname = %s"
                                           " AND (query ILIKE 'COPY public.bulk%%'"
                                           " OR query LIKE 'COPY %%\"public\".\"bulk\"%%FROM STDIN%%')", (dbname,))
        return rows[0][0] > 0
    except Exception:  # the server may be between states
        return False


class ArgvSampler:
    """Reads every process's argv every 10 ms while in use; keeps those that hold `secret` and
    notes which of `programs` were seen (so a test can tell that it looked at the right time)."""

    def __init__(self, secret, programs=("pg_dump", "pg_restore", "psql", "vacuumdb", "ansible-playbook")):
        self.secret, self.programs = secret, programs
        self.leaks, self.seen = [], set()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample)

    def _sample(self):
        while not self._done.is_set():
            for pid in os.listdir("/proc"):
                if not pid.isdigit():
                    continue
                try:
                    with open("/proc/%s/cmdline" % pid, "rb") as handle:
                        argv = handle.read().decode(errors="replace")
                except OSError:
                    continue
                if self.secret in argv:
                    self.leaks.append(argv)
                self.seen.update(program for program in self.programs if program in argv)
            time.sleep(0.01)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._done.set()
        self._thread.join()


def big_database(source, target, dbname):
    create_feature_database(source, dbname)
    add_bulk(source, dbname)
    create_database(target, dbname)
    return snapshot(source.params(), dbname)


def assert_nothing_left(work_dir, dbname):
    leftovers = [os.path.join(root, name) for root, dirs, files in os.walk(work_dir) for name in dirs + files]
    assert leftovers == [], "left behind: %s" % leftovers
    for program in ("pg_dump", "pg_restore", "psql", "vacuumdb"):
        assert processes(program, "dbname=" + dbname) == [], "%s still runs" % program
    assert holders(work_dir) == [], "processes still use the work directory"
