"""`bound`: pg_restore of prepared uncompressed directory dumps, the restore side alone."""

import os
import shutil
import subprocess
import time

from bench.run.common import MB, log, read
from bench.run.contenders.base import Contender, merge, run_queue
from bench.run.processes import finish, run_text, spawn
from bench.run.sampling import path_bytes


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
