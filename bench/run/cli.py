"""The command line, `python -m bench.run` (bench/README.md): the arguments, then servers, dataset,
rounds, report, in that order."""

import argparse
import datetime
import os
import re
import shutil
import sys
import tempfile
import time

from bench.run import __doc__ as PACKAGE_DOC
from bench.run import online
from bench.run.common import BENCH, MB, databases_of, log
from bench.run.contenders import CONTENDERS, EXTRAS, Lineup
from bench.run.contenders.bound import prepare_bound_dumps
from bench.run.contenders.ours import ensure_collection_link
from bench.run.contenders.vendor import Vendor
from bench.run.measure import run_rounds
from bench.run.processes import become_subreaper, kill_all
from bench.run.report import build_report, result_line, verdict, write_reports
from bench.run.servers import (Context, lock_source, parse_settings, prepare_dataset, source_dir_of, start_source,
                               start_target)
from tests.support import dataset

DEFAULT_BOUND_CONFIGS = "6x1,6x2,2x2,1x2"
SMOKE_SCALE_MB = 5


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=PACKAGE_DOC.split("\n\n")[0])
    parser.add_argument("--scale-mb", type=float, default=2800, help="dataset size, total pg_database_size (2800)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each contender, alternating (3)")
    parser.add_argument("--only", default=",".join(CONTENDERS + EXTRAS),
                        help="comma-separated subset of %s" % ",".join(CONTENDERS + EXTRAS))
    parser.add_argument("--smoke", action="store_true",
                        help="scale %d, 1 run, every contender; fails unless every copy is correct" % SMOKE_SCALE_MB)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--shape", default="codacy", choices=sorted(dataset.SHAPES),
                        help="dataset shape: codacy (six Codacy-shaped databases) or dominant (about 80%% of the "
                             "bytes in one table)")
    parser.add_argument("--databases", default="six", choices=["six", "eight"],
                        help="six (Codacy's classic databases) or eight (with listener and crow, small); the vendor "
                             "script knows the six only")
    parser.add_argument("--online", action="store_true",
                        help="the online benchmark instead of the contenders: the application writes while "
                             "db_migration_mode online copies, then the cutover; at --scale-mb and twice it")
    parser.add_argument("--online-rate", type=float, default=None, metavar="TPS",
                        help="with --online: the application's transactions per second (default: as fast as it goes)")
    parser.add_argument("--generate-only", action="store_true",
                        help="only make sure the dataset of this scale exists on the (kept) source cluster")
    parser.add_argument("--setting", action="append", default=[], metavar="KEY=VALUE",
                        help="extra server setting for both servers (repeatable), e.g. wal_level=minimal")
    parser.add_argument("--pgcopydb-jobs", type=int, default=2, help="pgcopydb --table-jobs/--index-jobs (2)")
    parser.add_argument("--ours-var", action="append", default=[], metavar="KEY=VALUE", type=ours_variable,
                        help="a role variable for `ours` (YAML value), e.g. db_migration_concurrency=3; repeatable")
    parser.add_argument("--bound-configs", default=DEFAULT_BOUND_CONFIGS,
                        help="restore configs for the bound, DATABASESxJOBS (%s)" % DEFAULT_BOUND_CONFIGS)
    parser.add_argument("--timeout", type=int, default=3600, help="limit per run, seconds (3600)")
    parser.add_argument("--data-dir", default=os.path.join(BENCH, "data"),
                        help="where the source cluster and work files live (bench/data)")
    parser.add_argument("--results-dir", help="where results are written (bench/results; smoke: bench/data/smoke-results)")
    args = parser.parse_args(argv)
    args.only = [x.strip() for x in args.only.split(",") if x.strip()]
    unknown = set(args.only) - set(CONTENDERS + EXTRAS)
    if unknown:
        parser.error("unknown in --only: %s" % ", ".join(sorted(unknown)))
    if args.smoke:
        args.scale_mb, args.runs = SMOKE_SCALE_MB, 1
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.scale_mb == int(args.scale_mb):
        args.scale_mb = int(args.scale_mb)
    configs = []
    for item in args.bound_configs.split(","):
        match = re.match(r"^\s*(\d+)x(?:-?j)?(\d+)\s*$", item)
        if not match or int(match.group(1)) < 1 or int(match.group(2)) < 1:
            parser.error("--bound-configs: %r is not DATABASESxJOBS" % item)
        configs.append((int(match.group(1)), int(match.group(2))))
    args.bound = configs
    args.results_dir = args.results_dir or (os.path.join(args.data_dir, "smoke-results") if args.smoke
                                            else os.path.join(BENCH, "results"))
    return args


def ours_variable(text):
    """--ours-var KEY=VALUE, the value read as YAML (numbers, booleans, lists)."""
    key, sep, value = text.partition("=")
    if not sep or not key.startswith("db_migration_"):
        raise argparse.ArgumentTypeError("expected db_migration_<name>=<value>, got %r" % text)
    import yaml  # noqa: PLC0415 (only for this option)
    return key, yaml.safe_load(value)


def main(argv=None):
    args = parse_args(argv)
    started_at = datetime.datetime.now()
    subreaper = become_subreaper()
    load_at_start = os.getloadavg()
    settings = parse_settings(args.setting)
    ensure_collection_link()
    os.makedirs(args.data_dir, exist_ok=True)
    workdir = tempfile.mkdtemp(prefix="work-", dir=args.data_dir)
    os.chmod(workdir, 0o755)

    if args.generate_only:
        return generate_only(args, settings, workdir)
    if args.online:
        return online.main(args, settings, workdir)
    notes = []
    if not subreaper:
        notes.append("prctl(PR_SET_CHILD_SUBREAPER) failed: processes that daemonize (ansible async jobs) escape "
                     "the RSS/CPU sampling of the client processes")
    lineup = line_up(args, notes)
    if lineup is None:
        return 2

    source = target = None
    interrupted = False
    try:
        source_dir = source_dir_of(args)
        if not lock_source(source_dir):
            return 2
        source, password = start_source(source_dir, settings)
        target = start_target(password, settings)
        ctx = Context(args, source, target, password, workdir)
        log("servers: source %s:%d (%s), target %s:%d (fresh); work files in %s" % (
            source.host, source.port, source_dir, target.host, target.port, workdir))
        prepare_dataset(ctx)
        if lineup.bounds:
            prepare_bound_dumps(ctx)
        rounds = run_rounds(ctx, lineup)
        command = "python -m bench.run " + " ".join(argv if argv is not None else sys.argv[1:])
        report = build_report(ctx, lineup, rounds, notes, started_at, command, settings)
        report["machine"]["loadavg_start"] = load_at_start
        report["machine"]["loadavg_end"] = os.getloadavg()
        report["result_line"] = result_line(report)
        write_reports(report, args)
        problems = verdict(report, args)
        for problem in problems:
            print("PROBLEM: %s" % problem)
        print(report["result_line"], flush=True)
        return 1 if problems else 0
    except KeyboardInterrupt:
        interrupted = True
        log("interrupted: stopping the contenders and the servers")
        return 130
    finally:
        kill_all()
        for path in Vendor().dumps():
            if os.path.exists(path):
                os.unlink(path)
        if target is not None:
            target.destroy()
        if source is not None:
            source.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        if interrupted:
            log("stopped")


def line_up(args, notes):
    """The contenders to run; those that cannot run here are reported `na` (None: --smoke needs them all)."""
    lineup = Lineup(args)
    for name, why in lineup.unavailable():
        if args.smoke:
            print("error: %s: %s (the smoke run needs every contender)" % (name, why), file=sys.stderr)
            return None
        log("%s: not run (na): %s" % (name, why))
        lineup.skip(name, why)
        notes.append("%s not run: %s" % (name, why))
    if "rerun" in args.only and "ours" not in lineup.wanted:
        args.only.remove("rerun")
    return lineup


def generate_only(args, settings, workdir):
    source_dir = source_dir_of(args)
    source = None
    try:
        if not lock_source(source_dir):
            return 2
        source, _ = start_source(source_dir, settings)
        started = time.monotonic()
        sizes = dataset.generate(source.params(), scale_mb=args.scale_mb, databases=databases_of(args), seed=args.seed,
                                 jobs=2,
                                 progress=lambda m: log("  " + m), shape=args.shape)
        log("dataset in %s: %.0f MB in %.1f s" % (source_dir, sum(sizes.values()) / MB, time.monotonic() - started))
        return 0
    finally:
        if source is not None:
            source.stop()
        shutil.rmtree(workdir, ignore_errors=True)
