# -*- coding: utf-8 -*-
# Copyright: Contributors to the codacy.selfhosted collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The PostgreSQL client programs: finding them, their versions, running them.

Children run in their own process group and die with us: on SIGINT/SIGTERM/SIGHUP, on the
death of our parent (ansible-playbook killed), or when we are killed (PR_SET_PDEATHSIG), so no
pg_dump or pg_restore outlives the module.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ctypes
import glob
import os
import re
import signal
import subprocess
import time

# Where distributions install versioned client binaries, newest first after sorting.
CLIENT_DIR_GLOBS = ("/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin", "/usr/local/pgsql/bin",
                    "/opt/homebrew/opt/postgresql@*/bin", "/usr/local/opt/postgresql@*/bin")
CLIENT_PROGRAMS = ("pg_dump", "pg_restore", "vacuumdb")


class ToolProblem(Exception):
    """A client program is missing, too old, or failed; str() is the message for the user."""


class Interrupted(BaseException):
    """A termination signal arrived; raised so that cleanup runs on the way out."""

    def __init__(self, signum):
        super(Interrupted, self).__init__("interrupted by signal %d" % signum)
        self.signum = signum


def major_of(version_text):
    """'pg_dump (PostgreSQL) 17.2 (Debian 17.2-1)' -> 17; '9.6.24' -> 9.6 is never a source here."""
    match = re.search(r"(\d+)(?:\.(\d+))?", version_text)
    if not match:
        raise ValueError("no version in %r" % version_text)
    return int(match.group(1))


def program_version(path):
    out = subprocess.run([path, "--version"], capture_output=True, text=True, check=True).stdout
    version = out.strip().split(") ", 1)[-1].split()[0]
    return version, major_of(version)


def find_clients(bin_dir=None):
    """Return {'dir', 'version', 'major', program: path} for the newest complete client set.

    With bin_dir, only that directory is used. Otherwise PATH and the usual versioned
    directories are searched and the newest version wins (Debian's /usr/bin wrappers and
    versioned /usr/lib/postgresql/N/bin may hold different majors)."""
    if bin_dir:
        dirs = [bin_dir]
    else:
        dirs = [d for d in os.environ.get("PATH", "").split(os.pathsep) if d]
        for pattern in CLIENT_DIR_GLOBS:
            dirs.extend(glob.glob(pattern))
    best = None
    for directory in dirs:
        paths = dict((p, os.path.join(directory, p)) for p in CLIENT_PROGRAMS)
        if not all(os.access(path, os.X_OK) for path in paths.values()):
            continue
        try:
            version, major = program_version(paths["pg_dump"])
            restore_major = program_version(paths["pg_restore"])[1]
        except (OSError, subprocess.CalledProcessError, ValueError):
            continue
        if restore_major != major:
            continue
        if best is None or major > best["major"]:
            best = dict(paths, dir=directory, version=version, major=major)
    if best is None:
        where = bin_dir or "PATH and " + ", ".join(CLIENT_DIR_GLOBS)
        raise ToolProblem(
            "pg_dump, pg_restore and vacuumdb were not found in %s: install the PostgreSQL client "
            "of at least the source server's major version (e.g. apt-get install postgresql-client-17) "
            "or set bin_dir" % where)
    return best


def check_client_version(clients, source_major, source_version):
    if clients["major"] < source_major:
        raise ToolProblem(
            "pg_dump %s (in %s) is older than the source server (PostgreSQL %s): pg_dump must be at "
            "least the server's major version. Install postgresql-client-%d or newer "
            "(e.g. apt-get install postgresql-client-%d) and set bin_dir if it is not found "
            "automatically" % (clients["version"], clients["dir"], source_version, source_major, source_major))


def _child_setup():
    # Runs in the child before exec: its own process group (so the whole group, workers
    # included, can be stopped at once) and SIGKILL for it if the module process dies.
    os.setpgid(0, 0)
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class SignalGuard:
    """Turn SIGTERM/SIGHUP/SIGINT into `Interrupted` while migrating, so `finally` cleanup runs."""

    SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)

    def __enter__(self):
        self._previous = dict((s, signal.getsignal(s)) for s in self.SIGNALS)
        for sig in self.SIGNALS:
            signal.signal(sig, self._raise)
        self.parent = os.getppid()
        return self

    @staticmethod
    def _raise(signum, frame):
        raise Interrupted(signum)

    def parent_gone(self):
        return os.getppid() != self.parent

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False


def stop_group(proc, grace=5.0):
    """End a child and its process group (pg_dump/pg_restore workers), politely then firmly."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, grace)):
        try:
            os.killpg(proc.pid, sig)
        except OSError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def run(argv, env, log_path, guard=None, timeout=None, on_poll=None):
    """Run a client program, stderr to log_path; return (returncode, seconds).

    Raises Interrupted on a signal or when our parent disappears, ToolProblem on timeout;
    in both cases the child's whole process group is stopped first."""
    started = time.time()
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                preexec_fn=_child_setup, close_fds=True)  # noqa: PLW1509 (no thread forks meanwhile)
    try:
        while True:
            try:
                proc.wait(0.5)
                break
            except subprocess.TimeoutExpired:
                pass
            if guard is not None and guard.parent_gone():
                raise Interrupted(signal.SIGHUP)
            if timeout and time.time() - started > timeout:
                raise ToolProblem("%s did not finish within %d s (timeout)" % (os.path.basename(argv[0]), timeout))
            if on_poll is not None:
                on_poll()
    finally:
        stop_group(proc)
    return proc.returncode, time.time() - started


def first_errors(log_path, limit=5):
    """The first error lines a client program wrote (what the user needs to read)."""
    try:
        with open(log_path, errors="replace") as handle:
            lines = [line.rstrip() for line in handle]
    except OSError:
        return []
    errors = [ln for ln in lines if re.search(r"(error|fatal|could not|failed|ERROR|FATAL)", ln, re.I)]
    return (errors or lines)[:limit]
