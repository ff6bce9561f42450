"""What every layer of the harness shares: paths, units, the databases, logging."""

import os
import time

from tests.support import dataset

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BENCH = os.path.join(ROOT, "bench")
SIX = dataset.SIX
EIGHT = dataset.SIX + dataset.EXTRA  # with listener and crow, Codacy's newer charts


def databases_of(args):
    """The databases of this invocation (--databases)."""
    return EIGHT if args.databases == "eight" else SIX


MB = 1024 * 1024


def log(message):
    print("[%s] %s" % (time.strftime("%H:%M:%S"), message), flush=True)


def read(path):
    try:
        with open(path, errors="replace") as handle:
            return handle.read()
    except OSError:
        return ""
