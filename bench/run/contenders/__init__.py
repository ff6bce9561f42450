"""The contenders, one module each, and the line-up of an invocation.

A new contender is a `Contender` subclass (contenders/base.py) in a module of its own here, an entry in
REGISTRY (whose order is the order of the tables and of `--only`'s help) and a row in bench/README.md.
The restore-side `bound` is not in REGISTRY: it runs several configurations and keeps the fastest
(measure.run_rounds).
"""

from bench.run.contenders.bound import Bound
from bench.run.contenders.ours import Ours, OursDirectory, OursParallel, OursStream
from bench.run.contenders.pgcopydb import PgCopyDb
from bench.run.contenders.vendor import Vendor

REGISTRY = {cls.name: cls for cls in (Vendor, Ours, PgCopyDb, OursDirectory, OursParallel, OursStream)}
CONTENDERS = tuple(REGISTRY)
EXTRAS = ("bound", "rerun")


class Lineup:
    """The contenders of one invocation: all of REGISTRY as the arguments configure them, the names of
    those to run (REGISTRY order), those that cannot run here ({name: why}, reported `na`) and the
    bound's configurations."""

    def __init__(self, args):
        self.contenders = {name: cls.from_args(args) for name, cls in REGISTRY.items()}
        self.wanted = [n for n in CONTENDERS if n in args.only]
        self.skipped = {}
        self.bounds = [Bound(c, j) for c, j in args.bound] if "bound" in args.only else []

    def unavailable(self):
        """(name, why) of each contender to run that cannot run on this machine."""
        missing = []
        for name in self.wanted:
            ok, why = self.contenders[name].available(None)
            if not ok:
                missing.append((name, why))
        return missing

    def skip(self, name, why):
        self.skipped[name] = why
        self.wanted.remove(name)
