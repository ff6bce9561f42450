"""A background application for online migration tests and benchmarks: it writes to the source
with INSERT, UPDATE, DELETE and TRUNCATE while the copy runs and while the target follows.

Every transaction also inserts its number into `writer_ledger` (primary key): after the cutover the
target's ledger must hold exactly the transactions the writer saw committed, none missing, none
twice (a change applied twice would even stop the subscription on the duplicate key). The tables:

- writer_item (bigserial: an owned sequence) gets INSERT, UPDATE and DELETE;
- writer_event (identity column) gets INSERT, and the standalone sequence writer_ticket moves;
- writer_scratch is emptied with TRUNCATE now and then, by a thread of its own (TRUNCATE waits for
  the locks pg_dump holds while it reads, and would stall the other writes).

    writer = Writer(server.params(dbname="analysis"), rate=300)
    writer.setup()          # the tables (before the migration: that is DDL)
    writer.start()
    ...
    writer.stop()           # ends its sessions, as a stopped application does
    writer.check(conn)      # the ledger of `conn`'s database against what was committed

`rate` is transactions per second over all threads (None: as fast as it goes). The writer's
sessions use application_name `codacy-writer`; they count as application sessions.

From a shell (the Molecule scenario `online`), with the endpoint as a conninfo string without a
password (that comes from SOURCE_PGPASSWORD / TARGET_PGPASSWORD, as for tests.support.compare):

    python -m tests.support.writer setup --source "host=... port=... user=..." --dbname analysis
    python -m tests.support.writer run --source ... --dbname analysis --state-dir DIR
        # writes until DIR/stop exists, then saves what it committed to DIR/writer.json
    python -m tests.support.writer check --source ... --target ... --dbname analysis --state-dir DIR
        # exit 0: the target's ledger is the source's and holds every committed transaction
"""

import argparse
import json
import os
import random
import threading
import time

import psycopg2

SETUP_SQL = """
CREATE TABLE writer_ledger (n bigint PRIMARY KEY, kind text NOT NULL, at timestamptz NOT NULL DEFAULT now());
CREATE TABLE writer_item (id bigserial PRIMARY KEY, value integer NOT NULL, note text);
CREATE TABLE writer_event (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, item bigint, ticket bigint,
                           payload jsonb);
CREATE TABLE writer_scratch (id bigint PRIMARY KEY, payload text);
CREATE SEQUENCE writer_ticket;
INSERT INTO writer_item (value, note) SELECT g, md5(g::text) FROM generate_series(1, 1000) g;
"""


class Writer:
    def __init__(self, conn_params, rate=300, threads=2, seed=7):
        self.conn_params = dict(conn_params)
        self.rate = rate
        self.threads = threads
        self.seed = seed
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._next = 0
        self.committed = set()       # numbers whose COMMIT succeeded
        self.in_doubt = set()        # numbers whose COMMIT failed (the server may have committed them)
        self.commits = []            # (time, number), for throughput
        self.errors = []
        self._workers = []

    def _connect(self):
        conn = psycopg2.connect(application_name="codacy-writer", **self.conn_params)
        conn.autocommit = False
        return conn

    def setup(self):
        conn = self._connect()
        try:
            with conn.cursor() as cur:
                cur.execute(SETUP_SQL)
            conn.commit()
        finally:
            conn.close()

    def _number(self):
        with self._lock:
            self._next += 1
            return self._next

    def _transaction(self, conn, number, kind, body, rng):
        with conn.cursor() as cur:
            body(cur, kind, rng)
            cur.execute("INSERT INTO writer_ledger (n, kind) VALUES (%s, %s)", (number, kind))
        try:
            conn.commit()
        except psycopg2.Error:
            with self._lock:
                self.in_doubt.add(number)
            raise
        with self._lock:
            self.committed.add(number)
            self.commits.append((time.time(), number))

    def _loop(self, body, kinds, interval):
        """Run transactions until stopped: `interval` seconds apart (None: back to back)."""
        rng = random.Random(self.seed + len(self._workers))
        conn = None
        started, done = time.time(), 0
        while not self._stop.is_set():
            try:
                if conn is None:
                    conn = self._connect()
                self._transaction(conn, self._number(), kinds[rng.randrange(len(kinds))], body, rng)
            except psycopg2.Error as exc:
                # A server restarted or stopped: reconnect.
                self.errors.append(str(exc).strip())
                try:
                    conn.close()
                except Exception:  # pylint: disable=broad-except
                    pass
                conn = None
                self._stop.wait(0.2)
            done += 1
            if interval:
                self._stop.wait(max(0.0, started + done * interval - time.time()))
        if conn is not None:
            conn.close()

    @staticmethod
    def _dml(cur, kind, rng):
        if kind == "insert":
            cur.execute("INSERT INTO writer_item (value, note) VALUES (%s, %s)", (rng.randrange(10 ** 6), "new"))
        elif kind == "update":
            cur.execute("UPDATE writer_item SET value = value + 1, note = 'updated'"
                        " WHERE id = (SELECT id FROM writer_item ORDER BY id DESC OFFSET %s LIMIT 1)", (rng.randrange(50),))
        elif kind == "delete":
            cur.execute("DELETE FROM writer_item WHERE id = (SELECT min(id) FROM writer_item)")
        else:
            cur.execute("INSERT INTO writer_event (item, ticket, payload)"
                        " VALUES (%s, nextval('writer_ticket'), jsonb_build_object('k', %s))",
                        (rng.randrange(1000), rng.random()))

    @staticmethod
    def _truncate(cur, _kind, rng):
        cur.execute("TRUNCATE writer_scratch")
        cur.execute("INSERT INTO writer_scratch SELECT g, md5(g::text || %s) FROM generate_series(1, 20) g",
                    (str(rng.random()),))

    def start(self):
        interval = self.threads / float(self.rate) if self.rate else None
        kinds = ("insert", "update", "delete", "event")
        self._workers = [threading.Thread(target=self._loop, args=(self._dml, kinds, interval), daemon=True)
                         for _thread in range(self.threads)]
        # TRUNCATE twice a second, in a thread of its own: it waits for pg_dump's locks.
        self._workers.append(threading.Thread(target=self._loop, args=(self._truncate, ("truncate",), 0.5),
                                              daemon=True))
        for worker in self._workers:
            worker.start()
        return self

    def stop(self):
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=120)
        return self

    def throughput(self, since, until):
        """Committed transactions per second between two times."""
        with self._lock:
            count = sum(1 for at, _n in self.commits if since <= at < until)
        return count / max(until - since, 1e-9)

    def check(self, source_conn, target_conn):
        """Missing or doubled writes, as sentences: the source's ledger holds every transaction
        whose commit succeeded (and maybe some whose commit failed), the target's is the source's."""
        ledgers = []
        for conn in (source_conn, target_conn):
            with conn.cursor() as cur:
                cur.execute("SELECT n FROM writer_ledger")
                ledgers.append([row[0] for row in cur.fetchall()])
        source, target = ledgers
        problems = []
        lost = self.committed - set(source)
        if lost:
            problems.append("the source lacks %d committed transactions (e.g. %s)" % (len(lost), sorted(lost)[:5]))
        unknown = set(source) - self.committed - self.in_doubt
        if unknown:
            problems.append("the source holds %d transactions never committed (e.g. %s)"
                            % (len(unknown), sorted(unknown)[:5]))
        if len(target) != len(set(target)):
            problems.append("%d transactions are on the target twice" % (len(target) - len(set(target))))
        missing, extra = set(source) - set(target), set(target) - set(source)
        if missing:
            problems.append("%d transactions of the source are missing on the target (e.g. %s)"
                            % (len(missing), sorted(missing)[:5]))
        if extra:
            problems.append("%d transactions on the target are not on the source (e.g. %s)"
                            % (len(extra), sorted(extra)[:5]))
        return problems


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------
def main(argv=None):
    from tests.support.compare import _endpoint  # one rule for passwords: never in argv

    parser = argparse.ArgumentParser(prog="python -m tests.support.writer", description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("command", choices=["setup", "run", "check"])
    parser.add_argument("--source", required=True, help="conninfo of the source server (no password)")
    parser.add_argument("--target", help="conninfo of the target server (check)")
    parser.add_argument("--dbname", required=True)
    parser.add_argument("--state-dir", help="where run watches for `stop` and writes writer.json")
    parser.add_argument("--rate", type=float, default=200, help="transactions per second (run)")
    args = parser.parse_args(argv)
    source = dict(_endpoint(args.source, "SOURCE_PGPASSWORD", "--source"), dbname=args.dbname)
    writer = Writer(source, rate=args.rate)
    if args.command == "setup":
        with psycopg2.connect(**source) as conn, conn.cursor() as cur:
            cur.execute("SELECT to_regclass('writer_ledger') IS NOT NULL")
            if cur.fetchone()[0]:
                print("the writer's tables exist")
                return 0
        writer.setup()
        print("created the writer's tables")
        return 0
    state = os.path.join(args.state_dir, "writer.json")
    if args.command == "run":
        started = time.time()
        writer.start()
        while not os.path.exists(os.path.join(args.state_dir, "stop")):
            time.sleep(0.2)
        writer.stop()
        stopped = time.time()
        with open(state, "w") as out:
            json.dump(dict(committed=sorted(writer.committed), in_doubt=sorted(writer.in_doubt),
                           errors=writer.errors[:20], seconds=round(stopped - started, 1),
                           throughput=round(writer.throughput(started, stopped), 1)), out)
        print("committed %d transactions in %.0f s" % (len(writer.committed), stopped - started))
        return 0
    with open(state) as saved:
        ran = json.load(saved)
    writer.committed, writer.in_doubt = set(ran["committed"]), set(ran["in_doubt"])
    target = dict(_endpoint(args.target, "TARGET_PGPASSWORD", "--target"), dbname=args.dbname)
    with psycopg2.connect(**source) as source_conn, psycopg2.connect(**target) as target_conn:
        problems = writer.check(source_conn, target_conn)
    if not ran["committed"]:
        problems.append("the writer committed nothing")
    for problem in problems + ["the writer's error: " + error for error in ran["errors"]]:
        print(problem)
    if not problems and not ran["errors"]:
        print("%d committed transactions (%.0f/s over %.0f s), each on the target once"
              % (len(ran["committed"]), ran["throughput"], ran["seconds"]))
        return 0
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
