# -*- coding: utf-8 -*-
# Copyright: Contributors to the codacy.selfhosted collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Connections to the two servers: libpq parameters, the private passfile, psycopg2 connect.

Passwords go to psycopg2 as a keyword (in-process) and to pg_dump/pg_restore through a 0600
passfile named by PGPASSFILE: never through argv. Connection failures become one sentence that
names the server (`source`/`target`), host:port, user and what to do.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import socket

try:
    import psycopg2
    import psycopg2.extensions
    HAS_PSYCOPG2 = True
    PSYCOPG2_IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - reported by the module
    HAS_PSYCOPG2 = False
    PSYCOPG2_IMPORT_ERROR = exc

APPLICATION_NAME = "codacy_db_migrate"

# Bounded waits so a dead server or a stalled network ends in an error rather than a hang:
# keepalives detect a silent peer after about idle + interval * count seconds.
TIMEOUT_PARAMS = {
    "keepalives": "1",
    "keepalives_idle": "30",
    "keepalives_interval": "10",
    "keepalives_count": "3",
}

SSLMODES = ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]


def endpoint_argument_spec():
    """Argument spec of a `source`/`target` option (documented in the `endpoints` doc fragment)."""
    return dict(type="dict", required=True, options=dict(
        host=dict(type="str", required=True),
        port=dict(type="int", default=5432),
        user=dict(type="str", required=True),
        password=dict(type="str", no_log=True),
        sslmode=dict(type="str", default="prefer", choices=SSLMODES),
        sslrootcert=dict(type="path"),
    ))


def forget_module_file(module):
    """Remove the file Ansible ran this module from (`AnsiballZ_<module>.py` in the task's remote
    temporary directory), which holds the module's arguments, passwords included: once Python has
    read it, nothing needs it, and a run interrupted before Ansible's own cleanup (or a background
    migration, whose file stays for hours) would leave the passwords on disk. Kept when Ansible is
    told to keep remote files (ANSIBLE_KEEP_REMOTE_FILES); absent with pipelining."""
    tmpdir = getattr(module, "_tmpdir", None)
    if not tmpdir or getattr(module, "_keep_remote_files", False):
        return
    try:
        os.unlink(os.path.join(tmpdir, "AnsiballZ_%s.py" % module._name.rsplit(".", 1)[-1]))
    except (OSError, AttributeError):
        pass


def endpoint_problems(options, name):
    """Why the server dict `options`, given as `name` (`source`, or a role's `db_migration_source`),
    cannot be used: one sentence per problem, empty when it can. Only what can be told from the
    values themselves (files are checked where they are read)."""
    if not isinstance(options, dict):
        return ["%s must be a dict with host, port, user, password, sslmode and sslrootcert (got %r)" % (name, options)]
    problems = []
    for key, what in (("host", "the server's host name or address"), ("user", "the role to connect as")):
        value = options.get(key)
        if value is None or not str(value).strip():
            problems.append("%s.%s is %s: set it to %s" % (name, key, "missing" if value is None else "empty", what))
        elif "\x00" in str(value):
            problems.append("%s.%s must not contain NUL characters" % (name, key))
    port = options.get("port")
    try:
        if port is not None and not 1 <= int(port) <= 65535:
            raise ValueError(port)
    except (TypeError, ValueError):
        problems.append("%s.port must be between 1 and 65535 (got %s)" % (name, port))
    if options.get("password") is not None and "\x00" in str(options["password"]):
        problems.append("%s.password must not contain NUL characters" % name)
    return problems


class ConnectionProblem(Exception):
    """A connection failed; str() is the message for the user (never contains a password)."""


class Endpoint:
    """One side of the migration: `source` or `target` option of the module. `label` is the name
    messages give the option (the role's `db_migration_source`); `role` by default."""

    def __init__(self, role, options, connect_timeout=10, label=None):
        self.role = role
        self.label = label or role
        self.host = options["host"]
        self.port = int(options["port"])
        self.user = options["user"]
        self.password = options.get("password")
        self.sslmode = options.get("sslmode") or "prefer"
        self.sslrootcert = options.get("sslrootcert")
        self.connect_timeout = connect_timeout

    @property
    def address(self):
        return "%s:%s" % (self.host, self.port)

    @property
    def who(self):
        return "%s@%s" % (self.user, self.address)

    def libpq_params(self, dbname, read_only=False):
        """Connection keywords without the password (safe for argv and logs)."""
        params = {
            "host": self.host,
            "port": str(self.port),
            "user": self.user,
            "dbname": dbname,
            "sslmode": self.sslmode,
            "connect_timeout": str(self.connect_timeout),
            "application_name": APPLICATION_NAME,
        }
        if self.sslrootcert:
            params["sslrootcert"] = self.sslrootcert
        if read_only:
            # The source is only ever read: a bug cannot write to it.
            params["options"] = "-c default_transaction_read_only=on"
        params.update(TIMEOUT_PARAMS)
        return params

    def conninfo(self, dbname, read_only=False):
        """A libpq connection string for pg_dump/pg_restore --dbname (quoted by libpq's rules)."""
        return psycopg2.extensions.make_dsn(**self.libpq_params(dbname, read_only))

    def connect(self, dbname, read_only=False, autocommit=True):
        params = self.libpq_params(dbname, read_only)
        if self.password is not None:
            params["password"] = self.password
        try:
            conn = psycopg2.connect(**params)
        except psycopg2.OperationalError as exc:
            raise ConnectionProblem(self.describe_failure(dbname, exc)) from None
        conn.autocommit = autocommit
        return conn

    def describe_failure(self, dbname, exc):
        detail = " ".join(str(exc).split())
        lowered = detail.lower()
        if "does not exist" in lowered and "database" in lowered:
            return "%s database %r does not exist on %s" % (self.role, dbname, self.address)
        if "could not translate host name" in lowered or "name or service not known" in lowered:
            return ("%s host %r cannot be resolved: check %s.host (%s)"
                    % (self.role, self.host, self.label, detail))
        if "password authentication failed" in lowered or "no password supplied" in lowered:
            return ("%s authentication failed for %s: check %s.user and %s.password"
                    % (self.role, self.who, self.label, self.label))
        if "pg_hba.conf" in lowered:
            return ("%s server %s refuses %s for database %r (pg_hba.conf): allow this client "
                    "host there, or check %s.sslmode (%s)"
                    % (self.role, self.address, self.user, dbname, self.label, detail))
        if "ssl" in lowered or "certificate" in lowered:
            return ("%s server %s: TLS failed with sslmode=%s: check %s.sslmode and %s.sslrootcert (%s)"
                    % (self.role, self.address, self.sslmode, self.label, self.label, detail))
        if "timeout" in lowered or "timed out" in lowered:
            return ("%s server %s did not answer within %ss: check %s.host, %s.port and the network (%s)"
                    % (self.role, self.address, self.connect_timeout, self.label, self.label, detail))
        return ("%s server %s is unreachable: is it running and are %s.host and %s.port right? (%s)"
                % (self.role, self.address, self.label, self.label, detail))


def _passfile_field(value):
    # .pgpass syntax: fields separated by ':', with ':' and '\' escaped by a backslash.
    return str(value).replace("\\", "\\\\").replace(":", "\\:")


def passfile_line(endpoint):
    fields = (endpoint.host, endpoint.port, "*", endpoint.user, endpoint.password)
    return ":".join(_passfile_field(field) for field in fields)


def write_passfile(directory, endpoints):
    """Write a 0600 passfile for the endpoints that have a password; return its path or None."""
    lines = [passfile_line(e) for e in endpoints if e.password is not None]
    if not lines:
        return None
    path = os.path.join(directory, "pgpass")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    return path


def child_environment(passfile):
    """The environment for pg_dump/pg_restore: the caller's, minus libpq variables that would
    override our parameters (PGPASSWORD wins over a passfile), plus our passfile."""
    env = dict((k, v) for k, v in os.environ.items() if not k.startswith("PG"))
    if passfile is None:
        # No password given: keep the caller's own libpq password sources (e.g. ~/.pgpass).
        env.update((k, v) for k, v in os.environ.items() if k in ("PGPASSWORD", "PGPASSFILE"))
    else:
        env["PGPASSFILE"] = passfile
    env["LC_MESSAGES"] = "C"
    return env


def cut(conn):
    """End a connection from this side at once, without a word to the server: a statement waiting
    on it (in another thread) fails, and the server ends the session when it notices. Not
    conn.cancel(): that opens a connection to the server and waits for it, holding the interpreter's
    lock, so on a stalled network it would freeze every thread, the watchdog that enforces the time
    limit included; nor conn.close(), which waits for the statement."""
    try:
        with socket.socket(fileno=os.dup(conn.fileno())) as sock:
            sock.shutdown(socket.SHUT_RDWR)
    except (OSError, psycopg2.Error):  # already closed
        pass
