# -*- coding: utf-8 -*-
# Copyright: Contributors to the codacy.selfhosted collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The PostgreSQL client programs: finding them, their versions, reading their errors, their name
patterns and the lines of pg_restore's table of contents.
Running them, and ending them, is children.py's job."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import glob
import os
import re
import subprocess

# Where distributions install versioned client binaries, newest first after sorting.
CLIENT_DIR_GLOBS = ("/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin", "/usr/local/pgsql/bin",
                    "/opt/homebrew/opt/postgresql@*/bin", "/usr/local/opt/postgresql@*/bin")
CLIENT_PROGRAMS = ("pg_dump", "pg_restore", "vacuumdb", "psql")


class ToolProblem(Exception):
    """A client program is missing, too old, or failed; str() is the message for the user."""


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


_FOUND = {}


def find_clients(bin_dir=None):
    """Cached find of the client programs: the preflight asks once per database."""
    if bin_dir not in _FOUND:
        _FOUND[bin_dir] = _find_clients(bin_dir)
    return _FOUND[bin_dir]


def _find_clients(bin_dir=None):
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
            "pg_dump, pg_restore, vacuumdb and psql were not found in %s: install the PostgreSQL client "
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


def first_errors(log_path, limit=5):
    """The first error lines a client program wrote (what the user needs to read)."""
    try:
        with open(log_path, errors="replace") as handle:
            lines = [line.rstrip() for line in handle]
    except OSError:
        return []
    errors = [ln for ln in lines if re.search(r"(error|fatal|could not|failed|ERROR|FATAL)", ln, re.I)]
    return (errors or lines)[:limit]


def creates_existing_schema(toc_line, existing):
    """True for a `pg_restore --list` line such as `5; 2615 2200 SCHEMA - public postgres`
    whose schema is in `existing`."""
    match = re.match(r"^\d+; \d+ \d+ SCHEMA - (.*)$", toc_line)
    return bool(match) and any(match.group(1).startswith(name + " ") for name in existing)


def restore_pass(toc_line):
    """Which of three pg_restore runs restores a `pg_restore --list` line: 1 for the attachments
    of partitioned indexes, one at a time (attached concurrently, two can each miss the other's
    and leave the partitioned index invalid); 2 for foreign keys, which need the index of a
    partitioned table they reference attached, and comments on constraints; 0 for the rest."""
    if re.match(r"^\d+; \d+ \d+ INDEX ATTACH ", toc_line):
        return 1
    if re.match(r"^\d+; \d+ \d+ (FK CONSTRAINT |(COMMENT|SECURITY LABEL) .*\bCONSTRAINT )", toc_line):
        return 2
    return 0


def pattern(name):
    """An exact-name pattern for pg_dump --schema (its patterns fold case and treat * ? as wildcards)."""
    return '"%s"' % name.replace('"', '""')
