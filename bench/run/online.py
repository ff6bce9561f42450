"""The online benchmark, `python -m bench.run --online` (bench/README.md, "Online"): Codacy keeps
writing while its databases are copied, then stops for the cutover.

For the dataset of --scale-mb and one twice its size, each on a copy of the kept source cluster
(the application writes to it) with `wal_level = logical`:

1. the application (tests/support/writer.py: INSERT, UPDATE, DELETE and TRUNCATE in `analysis`,
   as fast as it goes, every transaction in a ledger) writes for BASELINE_S with no migration:
   its throughput alone;
2. `playbooks/migrate.yml` with `db_migration_mode: online` while it writes: the copy's time, the
   application's throughput meanwhile, CPU by process and by server;
3. FOLLOW_S of following: the replication lag sampled every second, then the same playbook again
   (it must change nothing);
4. the application stops; `db_migration_mode: cutover`: the downtime, as the playbook's wall time
   (Codacy stays stopped for all of it) and per database as the module reports it;
5. compare.py on every database and the writer's ledger: nothing lost, nothing doubled.
"""

import copy
import datetime
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time

import psycopg2

from bench.run.common import MB, SIX, log
from bench.run.contenders.ours import Ours
from bench.run.processes import kill_all
from bench.run.sampling import Sampler, machine_description
from bench.run.servers import Context, lock_source, source_dir_of, start_source, start_target
from tests.support import compare, dataset
from tests.support.writer import Writer

# filestore holds a large object in this dataset, and logical replication does not carry large
# objects: online mode refuses such a database (a user migrates it offline in the window).
ONLINE_DATABASES = [db for db in SIX if db != "filestore"]
WRITER_DATABASE = "analysis"
BASELINE_S = 20
FOLLOW_S = 30
SMOKE_S = 4  # --smoke: the baseline and the following, shortened (one scale only)
DOWNTIME_TARGET_S = 30
THROUGHPUT_TARGET = 0.5
TARGET_SETTINGS = {"max_logical_replication_workers": "8", "max_worker_processes": "16"}


class OnlineMode(Ours):
    """Our playbook in one db_migration_mode over ONLINE_DATABASES."""

    def __init__(self, mode):
        self.name = "ours " + mode
        self.fixed_variables = {"db_migration_mode": mode, "db_migration_databases": ONLINE_DATABASES}

    def work_dir(self, ctx):
        return os.path.join(ctx.workdir, "online-work")


def run_mode(ctx, mode, sampled=True):
    """One ansible-playbook run in `mode`: (wall seconds, what Ours.run returns, the samples or None)."""
    contender = OnlineMode(mode)
    run_dir = tempfile.mkdtemp(prefix="online-%s-" % mode, dir=ctx.workdir)
    sampler = Sampler([contender.work_dir(ctx)], ctx.postmasters(), ctx.device) if sampled else None
    if sampler:
        sampler.begin()
    started = time.monotonic()
    info = contender.run(ctx, run_dir, ctx.args.timeout)
    wall = time.monotonic() - started
    measures = sampler.end() if sampler else None
    if info["rc"] != 0:
        tail = "\n".join(info["log"].splitlines()[-30:])
        raise RuntimeError("db_migration_mode=%s failed (exit %s):\n%s" % (mode, info["rc"], tail))
    shutil.rmtree(run_dir, ignore_errors=True)
    return wall, info, measures


def slot_lag(source):
    """Bytes of WAL each slot of ours has not had confirmed by its subscriber, now."""
    rows = source.execute("SELECT slot_name, pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint"
                          " FROM pg_replication_slots WHERE slot_name LIKE 'codacy_migration%'")
    return {name: int(lag or 0) for name, lag in rows}


def cpu_summary(measures):
    keys = ("client_cpu_s", "source_cpu_s", "target_cpu_s", "harness_cpu_s", "machine_busy_s", "cpu_by_program_s")
    return {key: measures[key] for key in keys}


def prepare_source(args, settings, workdir, scale):
    """The kept source cluster of this scale (generated once), copied for the application to write to."""
    scale_args = copy.copy(args)
    scale_args.scale_mb = scale
    kept_dir = source_dir_of(scale_args)
    if not lock_source(kept_dir):
        raise SystemExit(2)
    kept, password = start_source(kept_dir, settings)
    try:
        sizes = dataset.generate(kept.params(), scale_mb=scale, databases=SIX, seed=args.seed, jobs=2,
                                 progress=lambda m: log("  " + m), shape=args.shape)
    finally:
        kept.stop()
    basedir = os.path.join(workdir, "online-source-s%s" % scale)
    subprocess.run(["cp", "-a", kept_dir, basedir], check=True)  # -a: the cluster keeps its owner
    source, _ = start_source(basedir, dict(settings, wal_level="logical"))
    return source, password, sizes


def one_scale(args, settings, workdir, scale):
    baseline_s, follow_s = (SMOKE_S, SMOKE_S) if args.smoke else (BASELINE_S, FOLLOW_S)
    log("online, scale %s MB: preparing the source" % scale)
    source, password, sizes = prepare_source(args, settings, workdir, scale)
    # one apply worker per subscription on the target (the default allows 4), as the README says
    target = start_target(password, dict(TARGET_SETTINGS, **settings))
    writer = None
    try:
        ctx = Context(args, source, target, password, workdir)
        ctx.sizes = dict(sizes)
        for db in ONLINE_DATABASES:
            target.execute('CREATE DATABASE "%s"' % db)
        writer = Writer(source.params(dbname=WRITER_DATABASE), rate=args.online_rate)
        writer.setup()
        result = {"scale_mb": scale, "databases": ONLINE_DATABASES,
                  "database_mb": round(sum(sizes[db] for db in ONLINE_DATABASES) / MB)}

        log("the application writes alone for %d s" % baseline_s)
        writer.start()
        started = time.time()
        time.sleep(baseline_s)
        result["baseline_tps"] = round(writer.throughput(started + baseline_s / 4, time.time()), 1)

        log("online copy while the application writes (%.0f tps alone)" % result["baseline_tps"])
        copy_started = time.time()
        wall, info, measures = run_mode(ctx, "online")
        result.update(copy_s=round(wall, 1), copy_tps=round(writer.throughput(copy_started, time.time()), 1),
                      copy_actions=info["actions"], copy_cpu=cpu_summary(measures), copy_phases=info["phases_sum_s"])
        result["throughput_ratio"] = round(result["copy_tps"] / max(result["baseline_tps"], 1e-9), 2)

        log("following for %d s" % follow_s)
        lags = []
        follow_started = time.time()
        while time.time() < follow_started + follow_s:
            lags.append(max(slot_lag(source).values() or [0]))
            time.sleep(1)
        result.update(follow_tps=round(writer.throughput(follow_started, time.time()), 1),
                      lag_median_mb=round(statistics.median(lags) / MB, 2), lag_max_mb=round(max(lags) / MB, 2))
        wall, info, _ = run_mode(ctx, "online", sampled=False)
        result.update(rerun_s=round(wall, 1), rerun_changed=info["changed_tasks"], rerun_actions=info["actions"])

        log("the application stops; cutover")
        writer.stop()
        wall, info, measures = run_mode(ctx, "cutover")
        downtimes = {item["database"]: item.get("downtime") for item in info["per_database"]}
        result.update(cutover_tasks_s=info["tasks_s"], cutover_phases_by_database_s={
            item["database"]: item["phases"] for item in info["per_database"]})
        result.update(cutover_s=round(wall, 1), downtime_by_database_s=downtimes,
                      downtime_max_s=max(value or 0 for value in downtimes.values()),
                      cutover_actions=info["actions"], cutover_cpu=cpu_summary(measures),
                      cutover_phases=info["phases_sum_s"])

        log("checking every database and the application's ledger")
        differences = []
        for db in ONLINE_DATABASES:
            differences += ["%s: %s" % (db, line) for line in compare.diff(
                compare.snapshot(source.params(), db), compare.snapshot(target.params(), db), ignore=("properties",))]
        with psycopg2.connect(**source.params(dbname=WRITER_DATABASE)) as src, \
                psycopg2.connect(**target.params(dbname=WRITER_DATABASE)) as dst:
            differences += writer.check(src, dst)
        result.update(committed=len(writer.committed), writer_errors=writer.errors[:5], differences=differences[:20],
                      correct=not differences and not writer.errors and set(info["actions"].values()) == {"cut_over"})
        log("scale %s MB: copy %.1f s, throughput %.0f%% of alone, lag max %.1f MB, cutover %.1f s, %s" % (
            scale, result["copy_s"], 100 * result["throughput_ratio"], result["lag_max_mb"], result["cutover_s"],
            "correct" if result["correct"] else "WRONG: %s" % "; ".join(differences[:3])))
        return result
    finally:
        if writer is not None:
            writer.stop()
        kill_all()
        target.destroy()
        source.destroy()


def markdown(report):
    rows = [("scale", "databases MB", "copy s", "tps alone", "tps during copy", "ratio", "lag median/max MB",
             "rerun changed", "cutover s (downtime)", "slowest database's downtime s", "correct")]
    for r in report["scales"]:
        rows.append((r["scale_mb"], r["database_mb"], r["copy_s"], r["baseline_tps"], r["copy_tps"],
                     r["throughput_ratio"], "%s / %s" % (r["lag_median_mb"], r["lag_max_mb"]), r["rerun_changed"],
                     r["cutover_s"], r["downtime_max_s"], "yes" if r["correct"] else "NO"))
    lines = ["# Online migration benchmark, %s" % report["started"], "",
             "`%s`, on %s (%s cores, %s GB)." % (report["command"], report["machine"]["cpu_model"],
                                            report["machine"]["cpus_usable"], report["machine"]["ram_gb"]), "",
             "| " + " | ".join(str(c) for c in rows[0]) + " |", "|" + " --- |" * len(rows[0])]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows[1:]]
    lines += ["", "Targets: downtime (the cutover playbook's wall time) at most %d s, the application's throughput "
              "during the copy at least %d%% of its throughput alone." % (DOWNTIME_TARGET_S, 100 * THROUGHPUT_TARGET),
              "", "CPU seconds (client processes by program; each server with its backends, the application's "
              "included in the source's):", ""]
    for r in report["scales"]:
        for stage in ("copy", "cutover"):
            cpu = r[stage + "_cpu"]
            lines.append("- %s MB, %s: client %.1f, source %.1f, target %.1f, harness and application %.1f; %s" % (
                r["scale_mb"], stage, cpu["client_cpu_s"], cpu["source_cpu_s"], cpu["target_cpu_s"],
                cpu["harness_cpu_s"], ", ".join("%s %.1f" % kv for kv in cpu["cpu_by_program_s"].items())))
    lines += ["", "Per database downtime (the module's `downtime`): "] + [
        "- %s MB: %s" % (r["scale_mb"], ", ".join("%s %s" % kv for kv in r["downtime_by_database_s"].items()))
        for r in report["scales"]]
    lines += ["", "Where the cutover's time goes: the playbook's tasks (wall seconds, the slowest first; `(start)` is "
              "ansible-playbook's own start), then each database's phases (the module's `phases`):", ""]
    for r in report["scales"]:
        tasks = sorted(r.get("cutover_tasks_s", {}).items(), key=lambda kv: -kv[1])
        lines.append("- %s MB, tasks: %s" % (r["scale_mb"], ", ".join("%s %.1f" % kv for kv in tasks[:8])))
        for db, phases in r.get("cutover_phases_by_database_s", {}).items():
            lines.append("  - %s: %s" % (db, ", ".join("%s %.2f" % kv for kv in phases.items() if kv[1] >= 0.05)))
    lines += ["", "Notes:", ""] + ["- " + note for note in report["notes"]]
    return "\n".join(lines) + "\n"


NOTES = [
    "The application is tests/support/writer.py in `analysis`: two threads of INSERT/UPDATE/DELETE/INSERT with a "
    "sequence, and a third that TRUNCATEs a small table twice a second, each transaction recorded in a ledger; "
    "as fast as it goes unless --online-rate limits it, so its throughput shows what the copy costs it.",
    "filestore is left out: this dataset gives it a large object, which logical replication does not carry "
    "(online mode refuses such a database; migrate it offline in the window).",
    "Each scale runs on a copy of the kept source cluster (the application writes to it), with wal_level=logical.",
    "Correct = compare.py finds every database equal after the cutover and the ledger has every committed "
    "transaction exactly once on the target.",
]


def main(args, settings, workdir):
    started_at = datetime.datetime.now()
    scales = [args.scale_mb] if args.smoke else [args.scale_mb, args.scale_mb * 2]
    command = "python -m bench.run --online " + ("--smoke" if args.smoke else "--scale-mb %s" % args.scale_mb) + (
        " --online-rate %s" % args.online_rate if args.online_rate else "")
    report = {"started": started_at.strftime("%Y-%m-%d %H:%M:%S"), "command": command,
              "machine": machine_description(args.data_dir), "notes": NOTES, "scales": []}
    try:
        for scale in scales:
            report["scales"].append(one_scale(args, settings, workdir, scale))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    os.makedirs(args.results_dir, exist_ok=True)
    base = os.path.join(args.results_dir, started_at.strftime("%Y-%m-%d-%H%M%S") + "-online" + (
        "-%gtps" % args.online_rate if args.online_rate else ""))
    with open(base + ".md", "w") as handle:
        handle.write(markdown(report))
    with open(base + ".json", "w") as handle:
        json.dump(report, handle, indent=1, sort_keys=True, default=str)
    print(markdown(report))
    problems = []
    for r in report["scales"]:
        if not r["correct"]:
            problems.append("%s MB: the copy is not correct: %s" % (r["scale_mb"], r["differences"][:3]))
        if r["rerun_changed"]:
            problems.append("%s MB: the online rerun changed %s tasks" % (r["scale_mb"], r["rerun_changed"]))
    for problem in problems:
        print("PROBLEM: %s" % problem)
    print("RESULT online " + " ".join(
        "scale_mb=%s copy_s=%s downtime_s=%s tps_ratio=%s" % (r["scale_mb"], r["copy_s"], r["cutover_s"],
                                                             r["throughput_ratio"]) for r in report["scales"]))
    print("written: %s.md, %s.json" % (base, base))
    return 1 if problems else 0

