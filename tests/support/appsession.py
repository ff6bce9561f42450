"""Application sessions for tests: a connection that behaves like one of Codacy's services.

The safety contract is about what an application does while the migration looks away: it stays
connected, it writes a row and keeps its statistics pending, it connects as its own role. An
AppSession is such a connection (its own application name, role and password), reusable by the
tests of the offline contract and of online migration.

PostgreSQL (15 and newer) flushes a session's table counters to the statistics system at most
once a second, and otherwise only after the session has been idle for about 10 seconds (or when
it disconnects). write_unflushed() uses that to leave a write that the counters do not show yet.
"""

import time

import psycopg2

# PGSTAT_MIN_INTERVAL in PostgreSQL: a session flushes its counters at most this often.
FLUSH_INTERVAL = 1.0
# PGSTAT_IDLE_INTERVAL: pending counters of an idle session are flushed after this long.
IDLE_FLUSH_AFTER = 10.0


class AppSession:
    def __init__(self, server, dbname, user=None, password=None, application_name="codacy-api"):
        params = server.params(dbname=dbname, user=user, password=password)
        self.application_name = application_name
        self.conn = psycopg2.connect(application_name=application_name, **params)
        self.conn.autocommit = True
        self.pid = self.execute("SELECT pg_backend_pid()")[0][0]

    def execute(self, statement, args=None):
        with self.conn.cursor() as cur:
            cur.execute(statement, args)
            return cur.fetchall() if cur.description else None

    def write_unflushed(self, statement, args=None):
        """Run `statement` (a write) so that its counters stay pending in this session for about
        IDLE_FLUSH_AFTER seconds: a read-only transaction makes the session flush (it leaves
        nothing a fingerprint reads), and a write within FLUSH_INTERVAL of that flush is held back."""
        time.sleep(FLUSH_INTERVAL)
        self.execute("SELECT 1")
        started = time.time()
        self.execute(statement, args)
        assert time.time() - started < FLUSH_INTERVAL, "the write took too long to stay unflushed"

    def close(self):
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
