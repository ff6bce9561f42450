"""`vendor`: the sample script of Codacy's database migration guide, byte for byte."""

import contextlib
import fcntl
import os

from bench.run.common import BENCH, SIX, databases_of, read
from bench.run.contenders.base import Contender, error_lines
from bench.run.processes import finish, run_text, spawn

VENDOR_SCRIPT = os.path.join(BENCH, "vendor_migrate.sh")
VENDOR_LOCK = "/tmp/codacy-bench-vendor-dumps.lock"


class Vendor(Contender):
    name = "vendor"
    title = "vendor guide script"
    description = ("bench/vendor_migrate.sh, byte for byte the sample script of Codacy's database migration guide "
                   "(per database: pg_dump --clean -Fc > /tmp/$db.dump; pg_restore -n public --clean; sequential), "
                   "run with cwd=/tmp into existing empty databases as the guide says. Its password is a "
                   "positional argument (argv and environment): the vendor's design, acceptable only against "
                   "these throwaway servers.")

    def version(self, ctx):
        import hashlib
        with open(VENDOR_SCRIPT, "rb") as handle:
            digest = hashlib.sha256(handle.read()).hexdigest()[:16]
        return "vendor_migrate.sh sha256:%s, %s" % (digest, run_text([ctx.tool("pg_dump"), "--version"]).strip())

    def __init__(self, databases=SIX):
        self.databases = databases

    @classmethod
    def from_args(cls, args):
        return cls(databases_of(args))

    def available(self, ctx):
        if self.databases != SIX:
            return False, "the vendor script migrates the six databases of its guide only (--databases six)"
        return True, ""

    def dumps(self):
        return [os.path.join("/tmp", "%s.dump" % db) for db in SIX]

    @contextlib.contextmanager
    def exclusive(self):
        """The script's dump paths are fixed (/tmp/$db.dump): one vendor run at a time on this machine."""
        fd = os.open(VENDOR_LOCK, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def disk_paths(self, ctx, run_dir):
        return self.dumps()

    def run(self, ctx, run_dir, timeout):
        log_path = os.path.join(run_dir, "vendor.log")
        src, dst = ctx.source, ctx.target
        argv = ["bash", VENDOR_SCRIPT, src.host, str(src.port), dst.host, str(dst.port), src.superuser, ctx.password]
        try:
            with open(log_path, "w") as out:
                rc = finish(spawn(argv, cwd="/tmp", env=ctx.env(passfile=False), stdout=out, stderr=out), timeout)
        finally:
            for path in self.dumps():
                if os.path.exists(path):
                    os.unlink(path)
        text = read(log_path)
        return {"rc": rc, "error_lines": len(error_lines(text)), "log": text,
                "expected_rc": "1 on empty targets by design (pg_restore --clean errors are ignored)"}
