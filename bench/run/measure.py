"""Measurement: one timed, sampled and checked run of a contender; the rounds; the medians."""

import os
import shutil
import statistics
import tempfile
import time
import traceback

from bench.run.common import MB, log
from bench.run.processes import descendants, read_procs
from bench.run.sampling import Sampler
from bench.run.servers import check_target, quiesce, reset_target


def measured(ctx, contender, label, round_no, fresh=True, check=True):
    """One timed run of a contender: clean target, quiesce, sample, run, check. Returns the run record."""
    run_dir = tempfile.mkdtemp(prefix="%s-" % contender.name, dir=ctx.workdir)
    try:
        if fresh:
            reset_target(ctx)
        quiesce(ctx)
        sampler = Sampler(contender.disk_paths(ctx, run_dir), ctx.postmasters(), ctx.device)
        with contender.exclusive():
            log("round %d: %s ..." % (round_no, label))
            sampler.begin()
            started = time.monotonic()
            try:
                info = contender.run(ctx, run_dir, ctx.args.timeout)
            except Exception as exc:  # noqa: BLE001 (a harness error is that run's failure)
                info = {"rc": -1, "log": "harness error: %s\n%s" % (exc, traceback.format_exc())}
            wall = time.monotonic() - started
            measures = sampler.end()
        procs = read_procs()
        lingering = sorted(procs[pid][1] for pid in descendants(procs, os.getpid())
                           if procs[pid][1] != "postgres" and procs[pid][5] != "Z")
        if lingering:
            log("warning: still running after %s ended: %s" % (label, ", ".join(lingering)))
        record = {"contender": contender.name, "label": label, "round": round_no, "wall_s": round(wall, 2),
                  "lingering": lingering}
        record.update({k: v for k, v in info.items() if k != "log"})
        record.update(measures)
        expected_rc = contender.name == "vendor" and info.get("rc") is not None
        if info.get("rc") != 0 and not expected_rc:
            status, differences = "FAIL", ["exit code %s" % info.get("rc")]
            if check:
                differences += check_target(ctx)[1]
        elif check:
            status, differences = check_target(ctx)
        else:
            status, differences = "ok", []
        record.update(status=status, differences=differences[:50], n_differences=len(differences))
        if status != "ok":
            record["log_tail"] = info.get("log", "").splitlines()[-40:]
        log("round %d: %s: %.1f s, %s%s, peak dump %.0f MB, peak client RSS %.0f MB, client CPU %.1f s, "
            "source %.1f s, target %.1f s" % (
                round_no, label, wall, status,
                (" (%d differences: %s)" % (len(differences), "; ".join(differences[:3]))) if differences else "",
                measures["peak_dump_bytes"] / MB, measures["peak_rss_bytes"] / MB, measures["client_cpu_s"],
                measures["source_cpu_s"], measures["target_cpu_s"]))
        return record
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
        for path in contender.disk_paths(ctx, run_dir):
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)


def counted(run):
    """Runs whose time counts: correct copies, and the vendor script's runs that ran to their end and lost
    only what its `-n public` leaves behind (status incomplete)."""
    return run["status"] == "ok" or (run["contender"] == "vendor" and run["status"] == "incomplete")


def summarize(runs, total_bytes):
    walls = [r["wall_s"] for r in runs if counted(r)]
    if not walls:
        return None
    med = statistics.median(walls)

    def med_of(key):
        values = [r[key] for r in runs if counted(r) and r.get(key) is not None]
        return round(statistics.median(values), 2) if values else None

    return {"runs": len(runs), "ok": sum(1 for r in runs if r["status"] == "ok"),
            "counted": len(walls), "median_s": round(med, 2), "min_s": min(walls), "max_s": max(walls),
            "mb_per_s": round(total_bytes / MB / med, 1) if med else None,
            "peak_dump_bytes": max(r["peak_dump_bytes"] for r in runs),
            "peak_rss_bytes": max(r["peak_rss_bytes"] for r in runs),
            "client_cpu_s": med_of("client_cpu_s"), "source_cpu_s": med_of("source_cpu_s"),
            "target_cpu_s": med_of("target_cpu_s"), "iowait_s": med_of("iowait_s"),
            "other_cpu_s": med_of("other_cpu_s"),
            "disk_read_mb": round(statistics.median([r["disk_read_bytes"] for r in runs]) / MB),
            "disk_written_mb": round(statistics.median([r["disk_written_bytes"] for r in runs]) / MB),
            "pg_dump_active_s": round(statistics.median([r["active_s"].get("pg_dump", 0) for r in runs]), 1),
            "pg_restore_active_s": round(statistics.median([r["active_s"].get("pg_restore", 0) for r in runs]), 1),
            "overlap_s": round(statistics.median([r["dump_restore_overlap_s"] for r in runs]), 1)}


def median_run(runs):
    ranked = sorted((r for r in runs if counted(r)), key=lambda r: r["wall_s"])
    return ranked[(len(ranked) - 1) // 2] if ranked else None


class Rounds:
    """What the rounds produced: the record of every run, those of the unchanged reruns, the bound's
    times per configuration and its fastest configuration."""

    def __init__(self, bounds):
        self.runs = []
        self.reruns = []
        self.bound_times = {b.config: [] for b in bounds}
        self.best_bound = None

    def by_contender(self):
        by_contender = {}
        for r in self.runs:
            by_contender.setdefault(r["contender"], []).append(r)
        return by_contender

    def best_bound_runs(self):
        return [r for r in self.runs if r["contender"] == "bound" and self.best_bound
                and r["config"] == self.best_bound.config]


def run_rounds(ctx, lineup):
    """`--runs` rounds; in each, every contender once (and the unchanged rerun right after `ours`), in an
    order that rotates from round to round."""
    args = ctx.args
    rounds = Rounds(lineup.bounds)
    slots = lineup.wanted + (["bound"] if lineup.bounds else [])
    for round_no in range(1, args.runs + 1):
        shift = (round_no - 1) % len(slots) if slots else 0
        for slot in slots[shift:] + slots[:shift]:
            if slot == "bound":
                run_bounds(ctx, lineup.bounds, rounds, round_no)
                continue
            contender = lineup.contenders[slot]
            rounds.runs.append(measured(ctx, contender, slot, round_no))
            if slot == "ours" and "rerun" in args.only and rounds.runs[-1]["status"] == "ok":
                record = measured(ctx, contender, "ours rerun", round_no, fresh=False)
                record["contender"] = "rerun"
                rounds.reruns.append(record)
    return rounds


def run_bounds(ctx, bounds, rounds, round_no):
    """The bound's turn in a round: the first round tries every configuration, later rounds the fastest."""
    todo = bounds if rounds.best_bound is None else [rounds.best_bound]
    for bound in todo:
        record = measured(ctx, bound, "bound %s" % bound.config, round_no)
        record["config"] = bound.config
        rounds.runs.append(record)
        if record["status"] == "ok":
            rounds.bound_times[bound.config].append(record["wall_s"])
    if rounds.best_bound is None:
        candidates = [b for b in bounds if rounds.bound_times[b.config]]
        if candidates:
            rounds.best_bound = min(candidates, key=lambda b: min(rounds.bound_times[b.config]))
