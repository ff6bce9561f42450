"""`pgcopydb`: pgcopydb clone, one database after the other."""

import os
import re
import shutil
import time

from bench.run.common import read
from bench.run.contenders.base import Contender
from bench.run.processes import finish, run_text, spawn


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

    @classmethod
    def from_args(cls, args):
        return cls(args.pgcopydb_jobs)

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
        for db in ctx.databases:
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
