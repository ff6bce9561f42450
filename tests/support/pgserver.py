"""Throwaway PostgreSQL servers for tests, demo and benchmark.

Each server is a fresh initdb cluster listening only on 127.0.0.1 on a free port, with
scram-sha-256 authentication and one superuser whose password is given by the caller.
initdb refuses to run as root, so when we are root the server runs as the `postgres` user.
Missing binaries are an error, never a skip: tests must fail loudly without their servers.
"""

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import psycopg2

DEFAULT_BINDIR_GLOBS = ("/usr/lib/postgresql/*/bin",)


def find_bindir(major=None):
    """Return the bin directory of the PostgreSQL server binaries (the newest, or `major`)."""
    env = os.environ.get("CODACY_TEST_PG_BINDIR")
    candidates = [env] if env else []
    for pattern in DEFAULT_BINDIR_GLOBS:
        candidates += sorted(glob.glob(pattern), key=_major_of_path, reverse=True)
    for bindir in candidates:
        if major is not None and _major_of_path(bindir) != major:
            continue
        if os.path.exists(os.path.join(bindir, "initdb")) and os.path.exists(os.path.join(bindir, "pg_ctl")):
            return bindir
    raise RuntimeError(
        "no PostgreSQL server binaries (initdb, pg_ctl) found%s in %s: install the server package "
        "(apt-get install postgresql) or set CODACY_TEST_PG_BINDIR"
        % (" for major %s" % major if major else "", ", ".join(candidates or DEFAULT_BINDIR_GLOBS))
    )


def _major_of_path(path):
    for part in path.split(os.sep):
        if part.isdigit():
            return int(part)
    return 0


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PgServer:
    """One throwaway cluster. Use start()/stop(), or as a context manager."""

    def __init__(self, password, superuser="postgres", bindir=None, port=None, basedir=None,
                 locale="C.UTF-8", settings=None):
        self.bindir = bindir or find_bindir()
        self.superuser = superuser
        self.password = password
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.locale = locale
        self.settings = dict(settings or {})
        self._own_basedir = basedir is None
        self.basedir = basedir or tempfile.mkdtemp(prefix="codacy-pg-%d-" % self.port)
        self.datadir = os.path.join(self.basedir, "data")
        self.logfile = os.path.join(self.basedir, "server.log")
        self._runas = None
        if os.geteuid() == 0:
            entry = pwd.getpwnam("postgres")
            self._runas = (entry.pw_uid, entry.pw_gid)

    # -- process helpers ---------------------------------------------------------------
    def _run(self, argv, **kwargs):
        kwargs.setdefault("check", True)
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        if self._runas:
            uid, gid = self._runas
            kwargs["user"], kwargs["group"], kwargs["extra_groups"] = uid, gid, []
        try:
            return subprocess.run(argv, **kwargs)  # noqa: PLW1510  # pylint: disable=subprocess-run-check
        except subprocess.CalledProcessError as exc:
            raise RuntimeError("%s failed (%s): %s%s" % (argv[0], exc.returncode, exc.stdout, exc.stderr)) from None

    def _chown(self, path):
        if self._runas:
            os.chown(path, *self._runas)

    # -- lifecycle -----------------------------------------------------------------------
    def init(self):
        os.makedirs(self.basedir, exist_ok=True)
        os.chmod(self.basedir, 0o700)
        self._chown(self.basedir)
        pwfile = os.path.join(self.basedir, "pwfile")
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(self.password + "\n")
        self._chown(pwfile)
        try:
            self._run([
                os.path.join(self.bindir, "initdb"), "-D", self.datadir, "-U", self.superuser,
                "--pwfile", pwfile, "--auth-host=scram-sha-256", "--auth-local=scram-sha-256",
                "--encoding=UTF8", "--locale=%s" % self.locale, "--no-sync",
            ])
        finally:
            os.unlink(pwfile)
        conf = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": "'%s'" % self.basedir,
            "password_encryption": "'scram-sha-256'",
            "fsync": "off",
            "full_page_writes": "off",
            "synchronous_commit": "off",
            "max_connections": "60",
            "shared_buffers": "128MB",
            "max_wal_size": "2GB",
            "log_min_messages": "warning",
        }
        conf.update({key: str(value) for key, value in self.settings.items()})
        with open(os.path.join(self.datadir, "postgresql.auto.conf"), "a") as handle:
            for key, value in conf.items():
                handle.write("%s = %s\n" % (key, value))
        return self

    def start(self):
        if not os.path.exists(os.path.join(self.datadir, "PG_VERSION")):
            self.init()
        self._run([os.path.join(self.bindir, "pg_ctl"), "-D", self.datadir, "-l", self.logfile,
                   "-w", "-t", "60", "start"])
        return self

    def stop(self, mode="fast"):
        if os.path.exists(os.path.join(self.datadir, "postmaster.pid")):
            self._run([os.path.join(self.bindir, "pg_ctl"), "-D", self.datadir, "-m", mode,
                       "-w", "-t", "60", "stop"], check=False)

    def kill(self):
        """Stop the server abruptly (SIGKILL of the postmaster), as a crash would."""
        pid = self.postmaster_pid()
        if pid:
            os.kill(pid, signal.SIGKILL)
            deadline = time.time() + 30
            while time.time() < deadline and _alive(pid):
                time.sleep(0.1)

    def postmaster_pid(self):
        try:
            with open(os.path.join(self.datadir, "postmaster.pid")) as handle:
                return int(handle.readline())
        except (OSError, ValueError):
            return None

    def destroy(self):
        self.stop(mode="immediate")
        if self._own_basedir:
            shutil.rmtree(self.basedir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.destroy()

    # -- clients -------------------------------------------------------------------------
    def params(self, dbname="postgres", user=None, password=None):
        """Connection parameters for psycopg2 and for the module's source/target options."""
        return {"host": self.host, "port": self.port, "user": user or self.superuser,
                "password": self.password if password is None else password, "dbname": dbname}

    def endpoint(self, user=None, password=None):
        """The module's `source`/`target` option for this server."""
        params = self.params(user=user, password=password)
        params.pop("dbname")
        return params

    def connect(self, dbname="postgres", autocommit=True, **overrides):
        params = self.params(dbname=dbname)
        params.update(overrides)
        conn = psycopg2.connect(**params)
        conn.autocommit = autocommit
        return conn

    def execute(self, sql, args=None, dbname="postgres"):
        conn = self.connect(dbname)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, args)
                return cur.fetchall() if cur.description else None
        finally:
            conn.close()

    def major(self):
        return int(self.execute("SHOW server_version_num")[0][0]) // 10000


def _alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False
