"""PostgreSQL's own regression database, the gold standard of what a migration must carry.

`make installcheck` of the PostgreSQL sources leaves a database `regression` behind that holds
nearly every kind of object (some on purpose in states pg_dump cannot reproduce: invalid
indexes, stale materialized views, inheritance children with reordered columns) and C
functions from regress.so. It is built once per machine from the source package of the
installed server's major (`apt-get source postgresql-<major>`, deb-src lines and a C toolchain
from tests/ensure_regress_build.sh), a minimal configure, `make -C src/test/regress` and
pg_regress against a throwaway server; that server's stopped data directory is kept under
build/regress/ (regress.so stays there too: the data refer to it by absolute path).

    python -m tests.support.regressdb            # build (or reuse) and print what was built

clone() copies the cached data directory into a fresh server for a test. A missing tool or a
failed step is an error, never a skip.
"""

import fcntl
import glob
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time

from tests.support.pgserver import PgServer, find_bindir, free_port

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CACHE = os.path.join(ROOT, "build", "regress")
# The cached cluster's superuser password (a throwaway server on 127.0.0.1 that only tests start).
PASSWORD = "regress-build-only"
DATABASE = "regression"
LOG = os.path.join(CACHE, "build.log")


def _postgres_user():
    """(uid, gid) to run pg_regress as when we are root (the server's COPY TO files must be writable by it)."""
    if os.geteuid() != 0:
        return None
    entry = pwd.getpwnam("postgres")
    return entry.pw_uid, entry.pw_gid


def _run(argv, cwd=None, runas=None, env=None, check=True):
    """Run one build step, appending its output to build/regress/build.log."""
    with open(LOG, "a") as log:
        log.write("\n$ %s  (in %s)\n" % (" ".join(argv), cwd or os.getcwd()))
        log.flush()
        # Under `make test` the outer make's MAKELEVEL and MAKEFLAGS are inherited: PostgreSQL's
        # Makefiles then take themselves for sub-makes and skip generating headers (utils/errcodes.h).
        env = dict(env if env is not None else os.environ)
        for name in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS", "MAKEOVERRIDES"):
            env.pop(name, None)
        kwargs = {}
        if runas:
            kwargs.update(user=runas[0], group=runas[1], extra_groups=[])
        proc = subprocess.run(argv, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, env=env, check=False, **kwargs)
    if check and proc.returncode != 0:
        with open(LOG) as log:
            tail = log.read()[-3000:]
        raise RuntimeError("building the regression database failed at `%s` (exit %d); %s ends with:\n%s"
                           % (" ".join(argv), proc.returncode, LOG, tail))
    return proc.returncode


def server_version(bindir):
    """The installed server's version, e.g. "15.18"."""
    out = subprocess.run([os.path.join(bindir, "postgres"), "--version"], capture_output=True, text=True,
                         check=True).stdout
    return out.split()[2]


def _fetch_source(major, into):
    """Unpack the Debian source package of the installed server (its exact version when the
    archive still has it, else the newest of the same major) and return the source tree."""
    package = "postgresql-%d" % major
    installed = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True,
                               text=True, check=False).stdout.strip()
    attempts = (["%s=%s" % (package, installed)] if installed else []) + [package]
    for spec in attempts:
        if _run(["apt-get", "source", "--only-source", "-qq", spec], cwd=into, check=False) == 0:
            break
    else:
        raise RuntimeError("`apt-get source %s` failed (see %s): run tests/ensure_regress_build.sh as root to add "
                           "deb-src lines and the build tools" % (package, LOG))
    trees = [path for path in glob.glob(os.path.join(into, "postgresql-%d-*" % major)) if os.path.isdir(path)]
    if len(trees) != 1:
        raise RuntimeError("expected one unpacked source tree in %s, found %s" % (into, trees))
    return trees[0]


def cached():
    """The description of the cached build, or None."""
    try:
        with open(os.path.join(CACHE, "READY")) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def ensure(progress=print):
    """Build the regression database unless build/regress/ has it for the installed major;
    return the build's description (major, version, seconds, datadir, ...). Test runs that start
    at once build it once: the first builds, the others wait for it."""
    os.makedirs(os.path.dirname(CACHE), exist_ok=True)
    with open(CACHE + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _ensure(progress)


def _ensure(progress):
    bindir = find_bindir()
    version = server_version(bindir)
    major = int(version.split(".")[0])
    ready = cached()
    if ready and ready["major"] == major and os.path.isdir(ready["datadir"]):
        return ready
    started = time.time()
    shutil.rmtree(CACHE, ignore_errors=True)
    os.makedirs(os.path.join(CACHE, "src"))
    progress("building PostgreSQL %d's regression database under %s (once per machine; log: %s)" % (major, CACHE, LOG))
    tree = _fetch_source(major, os.path.join(CACHE, "src"))
    fetched = time.time()
    # Minimal: pg_regress, regress.so and contrib/spi's modules need no optional library.
    _run(["./configure", "--without-readline", "--without-zlib", "--without-icu", "--without-openssl",
          "--prefix=%s" % os.path.join(CACHE, "unused-prefix")], cwd=tree)
    _run(["make", "-j%d" % max(2, os.cpu_count() or 2), "-C", "src/test/regress"], cwd=tree)
    built = time.time()
    regress = os.path.join(tree, "src", "test", "regress")
    server = PgServer(password=PASSWORD, bindir=bindir, basedir=os.path.join(CACHE, "server"),
                      settings={"max_wal_size": "'256MB'", "min_wal_size": "'32MB'"})
    server.init()
    # pg_regress reconnects as the roles the tests create: trust them on the (private) socket
    # while the tests run; the cached cluster gets back password authentication only.
    hba = os.path.join(server.datadir, "pg_hba.conf")
    with open(hba) as handle:
        original_hba = handle.read()
    with open(hba, "w") as handle:
        handle.write("local all all trust\n" + original_hba)
    server.start()
    try:
        outdir = os.path.join(CACHE, "results")
        os.makedirs(outdir)
        runas = _postgres_user()
        if runas:
            os.chown(outdir, *runas)
        env = dict(os.environ, PGHOST=server.basedir, PGPORT=str(server.port), PGUSER=server.superuser)
        env.pop("PGPASSWORD", None)
        # Individual tests may differ from their expected output on this machine (locale, build
        # options): what matters is the database they leave behind, checked below.
        failed = _run(["./pg_regress", "--inputdir=.", "--outputdir=%s" % outdir, "--bindir=%s" % bindir,
                       "--dlpath=%s" % regress, "--max-concurrent-tests=20", "--schedule=./parallel_schedule",
                       "--host=%s" % server.basedir, "--port=%d" % server.port, "--user=%s" % server.superuser],
                      cwd=regress, runas=runas, env=env, check=False)
        relations = server.execute("SELECT count(*) FROM pg_class WHERE relkind IN ('r', 'm', 'p')"
                                   " AND oid >= 16384", dbname=DATABASE)[0][0] if _exists(server) else 0
        if relations < 400:
            raise RuntimeError("pg_regress left no usable regression database (%d tables; exit %d): see %s and %s"
                               % (relations, failed, LOG, os.path.join(outdir, "regression.diffs")))
        server.execute("CHECKPOINT")
    finally:
        server.stop()
    with open(hba, "w") as handle:
        handle.write(original_hba)
    done = time.time()
    ready = {"major": major, "version": version, "source_tree": tree, "datadir": server.datadir,
             "tables": relations, "pg_regress_exit": failed, "seconds": round(done - started, 1),
             "seconds_fetch": round(fetched - started, 1), "seconds_build": round(built - fetched, 1),
             "seconds_installcheck": round(done - built, 1)}
    with open(os.path.join(CACHE, "READY"), "w") as handle:
        json.dump(ready, handle, indent=1)
    progress("regression database built in %.0f s (fetch %.0f s, build %.0f s, installcheck %.0f s)"
             % (ready["seconds"], ready["seconds_fetch"], ready["seconds_build"], ready["seconds_installcheck"]))
    return ready


def _exists(server):
    return bool(server.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)))


def clone(progress=print):
    """A started PgServer on a copy of the cached cluster (built first when missing), with the
    database `regression`; its superuser's password is PASSWORD. destroy() removes the copy."""
    ready = ensure(progress)
    basedir = tempfile.mkdtemp(prefix="codacy-pg-regress-")
    datadir = os.path.join(basedir, "data")
    shutil.copytree(ready["datadir"], datadir, symlinks=True)
    server = _Clone(password=PASSWORD, bindir=find_bindir(ready["major"]), port=free_port(), basedir=basedir)
    server._chown(basedir)
    subprocess.run(["chown", "-R", "--reference=%s" % ready["datadir"], datadir], check=True)
    with open(os.path.join(datadir, "postgresql.auto.conf"), "a") as handle:
        handle.write("port = %d\nunix_socket_directories = '%s'\n" % (server.port, basedir))
    return server.start()


class _Clone(PgServer):
    def destroy(self):
        super().destroy()
        shutil.rmtree(self.basedir, ignore_errors=True)


if __name__ == "__main__":
    print(json.dumps(ensure(lambda message: print(message, file=sys.stderr)), indent=1))
