"""Reporting: the report of an invocation, its tables on stdout, its markdown and JSON files, the
RESULT line and the verdict."""

import datetime
import json
import os
import statistics

from bench.run.common import MB
from bench.run.contenders import CONTENDERS
from bench.run.contenders.bound import BOUND_DESCRIPTION, Bound
from bench.run.measure import median_run, summarize
from bench.run.sampling import INTERVAL, machine_description
from bench.run.servers import show_settings

# What every report says about how the runs were made.
NOTES = [
    "Every run starts from freshly created empty target databases (DROP DATABASE ... WITH (FORCE); "
    "CREATE DATABASE ... TEMPLATE template0 with the source's encoding and locale), after a CHECKPOINT on "
    "both servers and sync(2). The page cache is not dropped: the source's data is read from RAM by every "
    "contender alike.",
    "Order within a round rotates each round, so no contender always runs first or after the same one.",
    "Correctness: tests/support/compare.py on all six databases after each run (row counts, content hash of "
    "every table, sequences, indexes, constraints, views, functions, triggers, enums, comments, "
    "extensions, large objects).",
    "The vendor script's pg_restore -n public leaves out the extensions (citext, pg_trgm) and the large "
    "object, so accounts.\"User\" (a citext column), the objects depending on it and the pg_trgm index are "
    "missing on the target: its runs are reported `incomplete`, their times still count (its pg_restore "
    "--clean also prints errors on empty targets and exits 1, by design). A correct run would take a little "
    "longer.",
    "The vendor script receives the password as a positional argument (argv and environment): that is the "
    "guide's design, used here only against throwaway servers. Every other contender gets it from a 0600 "
    "passfile (PGPASSFILE) or, for ansible, a 0600 vars file.",
    "pgcopydb: per database, sequentially; see its description for the jobs.",
    "bound is a harness reference, not a collection feature.",
]


def build_report(ctx, lineup, rounds, notes, started_at, command, settings):
    """Everything an invocation found (the markdown, the JSON and the RESULT line are made of it);
    `notes` gains the report's notes."""
    args, source, target = ctx.args, ctx.source, ctx.target
    by_contender = rounds.by_contender()
    total = ctx.total_bytes()
    summary = {name: summarize(by_contender.get(name, []), total) for name in lineup.wanted}
    bound_report = None
    if lineup.bounds:
        best_runs = rounds.best_bound_runs()
        summary["bound"] = summarize(best_runs, total) if best_runs else None
        bound_report = {"best": rounds.best_bound.config if rounds.best_bound else None,
                        "median_s": summary["bound"]["median_s"] if summary["bound"] else None,
                        "configs": rounds.bound_times, "prepared": ctx.bound_prep}
    rerun_report = rerun_summary(rounds.reruns, notes)
    timelines, cpu_by_program = median_runs(lineup, rounds, by_contender)
    described = describe(ctx, lineup)
    notes += NOTES
    if lineup.skipped.get("pgcopydb"):
        notes.append("pgcopydb na: install it with `apt-get install pgcopydb` to compare")
    return {
        "started": started_at.strftime("%Y-%m-%d %H:%M:%S"),
        "finished": datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S"),
        "command": command,
        "smoke": args.smoke,
        "machine": machine_description(args.data_dir),
        "servers": {"source_version": source.execute("SHOW server_version")[0][0],
                    "target_version": target.execute("SHOW server_version")[0][0],
                    "source_settings": show_settings(source), "target_settings": show_settings(target),
                    "extra_settings": settings},
        "dataset": {"scale_mb": args.scale_mb, "seed": args.seed, "shape": args.shape, "databases": list(ctx.databases),
                    "generation_s": ctx.generation_s,
                    "total_bytes": total, "sizes": ctx.sizes, "order": ctx.order,
                    "rows": {db: sum(t["rows"] for t in ctx.snapshots[db]["tables"].values()) for db in ctx.databases},
                    "biggest": {db: biggest(ctx.snapshots[db]) for db in ctx.databases}},
        "contenders": described, "summary": summary, "bound": bound_report, "rerun": rerun_report,
        "ours_phases": ours_phases(by_contender), "runs": rounds.runs + rounds.reruns,
        "ours_per_database": (median_run(by_contender.get("ours", [])) or {}).get("per_database"),
        "timelines": timelines, "cpu_by_program": cpu_by_program,
        "runs_by_contender": {k: [r["wall_s"] for r in v] for k, v in by_contender.items()},
        "notes": notes,
    }


def rerun_summary(reruns, notes):
    """The unchanged reruns: times, changed-task counts and actions (a note when not a no-op); None without."""
    if not reruns:
        return None
    walls = [r["wall_s"] for r in reruns if r["status"] == "ok"]
    rerun_report = {"runs": len(reruns), "ok": len(walls),
                    "median_s": round(statistics.median(walls), 2) if walls else None,
                    "min_s": min(walls) if walls else None, "max_s": max(walls) if walls else None,
                    "changed": sorted(set(r.get("changed_tasks") for r in reruns), key=str),
                    "actions": sorted(set(a for r in reruns for a in (r.get("actions") or {}).values()
                                          if a), key=str)}
    if rerun_report["changed"] != [0]:
        notes.append("WARNING: the unchanged rerun reported changed tasks %s (expected 0): it is not a "
                     "no-op rerun" % rerun_report["changed"])
    return rerun_report


def ours_phases(by_contender):
    """The module's phases of `ours`, summed over the databases, median over the correct runs."""
    ours_runs = [r for r in by_contender.get("ours", []) if r["status"] == "ok" and r.get("phases_sum_s")]
    if not ours_runs:
        return None
    keys = []
    for r in ours_runs:
        keys += [k for k in r["phases_sum_s"] if k not in keys]
    return {k: round(statistics.median([r["phases_sum_s"].get(k, 0) for r in ours_runs]), 2) for k in keys}


def median_runs(lineup, rounds, by_contender):
    """(timelines, CPU by program) of the run with the median wall time of each contender."""
    timelines, cpu_by_program = {}, {}
    for name in lineup.wanted + (["bound"] if lineup.bounds else []) + (["rerun"] if rounds.reruns else []):
        pool = by_contender.get(name, [])
        if name == "bound":
            pool = rounds.best_bound_runs()
        if name == "rerun":
            pool = [r for r in rounds.reruns if r["status"] == "ok"]
        chosen = median_run(pool)
        if chosen:
            cpu_by_program[chosen["label"]] = {"cpu": chosen["cpu_by_program_s"], "active": chosen["active_s"]}
            timelines["%s (round %d, %.1f s)" % (chosen["label"], chosen["round"], chosen["wall_s"])] = \
                condensed_timeline(chosen["timeline"])
    return timelines, cpu_by_program


def describe(ctx, lineup):
    """Title, description and version of each contender (and of those not run: why)."""
    contenders, bounds = lineup.contenders, lineup.bounds
    versions = {name: contenders[name].version(ctx) for name in lineup.wanted}
    described = {name: {"title": contenders[name].title, "description": contenders[name].description,
                        "version": versions[name]} for name in lineup.wanted}
    if bounds:
        described["bound"] = {"title": Bound.title, "description": BOUND_DESCRIPTION % ", ".join(
            b.config for b in bounds), "version": bounds[0].version(ctx)}
    for name, why in lineup.skipped.items():
        described[name] = {"title": name, "description": "not run: %s" % why, "version": ""}
    return described


def fmt(value, spec="%.1f", na="na"):
    return na if value is None else spec % value


def ratio(numerator, denominator):
    if not numerator or not denominator:
        return None
    return round(numerator / denominator, 2)


def parallelism_rows(report):
    """Achieved parallelism of the median `ours` run, per database and over all of them: the time-
    weighted number of table copies and of index builds running at once while its tables loaded
    (data_path parallel only), weighted over the databases by their load time (phase restore)."""
    rows = [["database", "load s", "copy streams", "index builds"]]
    weighted, seconds = {"copy_streams": 0.0, "index_builds": 0.0}, 0.0
    for item in report.get("ours_per_database") or []:
        achieved, load = item.get("parallelism"), (item.get("phases") or {}).get("restore")
        if not achieved or not load:
            continue
        rows.append([item["database"], fmt(load), fmt(achieved.get("copy_streams"), "%.2f"),
                     fmt(achieved.get("index_builds"), "%.2f")])
        seconds += load
        for name in weighted:
            weighted[name] += (achieved.get(name) or 0) * load
    if seconds:
        rows.append(["all (weighted by load time)", fmt(seconds), fmt(weighted["copy_streams"] / seconds, "%.2f"),
                     fmt(weighted["index_builds"] / seconds, "%.2f")])
    return rows if len(rows) > 1 else None


def build_tables(report):
    """(main rows, where-the-time-goes rows, bound rows, ours-phase rows) as lists of lists of strings."""
    summaries = report["summary"]
    vendor = (summaries.get("vendor") or {}).get("median_s")
    pgcopydb = (summaries.get("pgcopydb") or {}).get("median_s")
    main = [["contender", "runs ok", "median s", "min-max s", "MB/s", "x vendor", "x pgcopydb", "peak dump MB",
             "peak client RSS MB"]]
    where = [["contender", "client CPU s", "source srv CPU s", "target srv CPU s", "iowait s", "disk read MB",
              "disk written MB", "pg_dump active s", "pg_restore active s", "both active s", "other load CPU s"]]
    names = [n for n in CONTENDERS if n in summaries] + (["bound"] if summaries.get("bound") else [])
    for name in names:
        s = summaries[name]
        label = report["contenders"][name]["title"]
        if name == "bound":
            label = "%s (%s)" % (label, report["bound"]["best"])
        if s is None:
            main.append([label, "0/%d" % len(report["runs_by_contender"].get(name, [])), "FAIL", "", "", "", "", "", ""])
            continue
        main.append([label, "%d/%d" % (s["ok"], s["runs"]), fmt(s["median_s"]), "%.1f-%.1f" % (s["min_s"], s["max_s"]),
                     fmt(s["mb_per_s"]), fmt(ratio(vendor, s["median_s"]), "%.2f"),
                     fmt(ratio(pgcopydb, s["median_s"]), "%.2f"), "%.0f" % (s["peak_dump_bytes"] / MB),
                     "%.0f" % (s["peak_rss_bytes"] / MB)])
        where.append([label, fmt(s["client_cpu_s"]), fmt(s["source_cpu_s"]), fmt(s["target_cpu_s"]),
                      fmt(s["iowait_s"]), str(s["disk_read_mb"]), str(s["disk_written_mb"]), fmt(s["pg_dump_active_s"]),
                      fmt(s["pg_restore_active_s"]), fmt(s["overlap_s"]), fmt(s["other_cpu_s"])])
    rerun = report.get("rerun")
    if rerun and rerun.get("median_s") is not None:
        changed = ",".join(str(c) for c in rerun["changed"])
        main.append(["ours, unchanged rerun (changed=%s)" % changed, "%d/%d" % (rerun["ok"], rerun["runs"]),
                     fmt(rerun["median_s"]), "%.1f-%.1f" % (rerun["min_s"], rerun["max_s"]), "", "", "", "0", ""])
    bound_rows = [["restore config", "runs", "median s", "min-max s"]]
    for config, values in (report.get("bound") or {}).get("configs", {}).items():
        bound_rows.append([config, str(len(values)), fmt(statistics.median(values)) if values else "FAIL",
                           "%.1f-%.1f" % (min(values), max(values)) if values else ""])
    phase_rows = [["phase (sum over the six databases)", "median s"]]
    for phase, seconds in (report.get("ours_phases") or {}).items():
        phase_rows.append([phase, fmt(seconds)])
    return main, where, bound_rows, phase_rows


def text_table(rows):
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row)))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def md_table(rows):
    out = ["| " + " | ".join(rows[0]) + " |", "|" + "|".join(" --- " for _ in rows[0]) + "|"]
    out += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows[1:]]
    return "\n".join(out)


def condensed_timeline(timeline, buckets=20):
    """About `buckets` rows of a 1 s timeline: max dump/RSS, mean cores, union of programs."""
    if not timeline:
        return []
    width = max(1.0, timeline[-1]["t"] / buckets)
    rows, group, edge = [], [], width

    def flush():
        if group:
            n = float(len(group))
            programs = sorted(set(p for g in group for p in g["programs"]))
            rows.append(["%.0f" % group[-1]["t"], "%.0f" % max(g["dump_mb"] for g in group),
                         "%.0f" % max(g["rss_mb"] for g in group),
                         "%.2f" % (sum(g["client_cores"] for g in group) / n),
                         "%.2f" % (sum(g["source_cores"] for g in group) / n),
                         "%.2f" % (sum(g["target_cores"] for g in group) / n), " ".join(programs)])

    for point in timeline:
        if point["t"] > edge:
            flush()
            group = []
            while point["t"] > edge:
                edge += width
        group.append(point)
    flush()
    return rows


def result_line(report):
    s = report["summary"]

    def med(name):
        return (s.get(name) or {}).get("median_s")

    vendor, ours, pgc = med("vendor"), med("ours"), med("pgcopydb")
    bound = (report.get("bound") or {}).get("median_s")
    rerun = (report.get("rerun") or {}).get("median_s")
    dominant = ratio(pgc, ours) if report["dataset"].get("shape") == "dominant" else None
    return ("RESULT vendor_s=%s ours_s=%s pgcopydb_s=%s bound_s=%s rerun_s=%s ratio_vendor=%s ratio_pgcopydb=%s "
            "ratio_pgcopydb_dominant=%s client_cpu_share=%s" % (
                fmt(vendor), fmt(ours), fmt(pgc), fmt(bound), fmt(rerun), fmt(ratio(vendor, ours), "%.2f"),
                fmt(ratio(pgc, ours), "%.2f"), fmt(dominant, "%.2f"), fmt(client_cpu_share(report), "%.3f")))


def client_cpu_share(report):
    """CPU of ansible-playbook and the module processes (python) in the median `ours` run, as a fraction
    of all the CPU the run used (clients and both servers). The programs that move the rows (psql on
    the parallel path, pg_dump and pg_restore on the others) are clients, not counted here."""
    run = median_run([r for r in report["runs"] if r["contender"] == "ours"])
    if not run or not run.get("cpu_by_program_s"):
        return None
    ours = sum(seconds for name, seconds in run["cpu_by_program_s"].items()
               if name == "ansible-playbook" or name.startswith("python"))
    total = (run.get("client_cpu_s") or 0) + (run.get("source_cpu_s") or 0) + (run.get("target_cpu_s") or 0)
    return ours / total if total else None


def markdown(report):
    main, where, bound_rows, phase_rows = build_tables(report)
    m, ds = report["machine"], report["dataset"]
    out = ["# Benchmark %s" % report["started"], "",
           "`%s`%s" % (report["command"], " (smoke: harness correctness, not timing)" if report["smoke"] else ""), "",
           "## Results", "", md_table(main), "",
           "Median over the runs that count (correct copies; for the vendor script also its runs that lost only "
           "what its `-n public` leaves behind, see notes). MB/s = source size / median. `x vendor` = vendor "
           "median / this median, `x pgcopydb` likewise. Peak dump = largest size of the contender's dump "
           "location, sampled every %.1f s; peak client RSS = largest sum of the RSS of our descendant processes "
           "(pg_dump, pg_restore, pgcopydb, bash, ansible-playbook and its module processes)." % INTERVAL, "",
           "## Where the time goes (medians)", "", md_table(where), "",
           "Client CPU: exact (getrusage of waited children). Server CPU: postmaster, its reaped and live children "
           "(/proc). iowait and disk bytes are machine-wide; `other load CPU` = machine busy time not accounted to "
           "the clients, the servers or the harness: other jobs on the machine (noise).", ""]
    if len(phase_rows) > 1:
        out += ["## ours: module phases", "", md_table(phase_rows), "",
                "From the module's `phases` return value, summed over the databases (median over runs); wall time "
                "minus `total` is ansible-playbook's own overhead. `verify` is the cost of verification (on by "
                "default), `analyze` of rebuilding planner statistics.", ""]
    achieved = parallelism_rows(report)
    if achieved:
        out += ["## ours: achieved parallelism", "", md_table(achieved), "",
                "Time-weighted number of table copies (`COPY` streams) and of index, constraint and `ANALYZE` "
                "builds that ran at once while each database's tables loaded (the module's `parallelism`), "
                "with `db_migration_jobs` workers of each kind.", ""]
    if len(bound_rows) > 1:
        prep = report["bound"]["prepared"]
        out += ["## Restore-side lower bound", "", md_table(bound_rows), "",
                "Best: **%s**, %s s (median). Dumps prepared once per invocation: %.0f MB, pg_dump -Fd -Z0 -j2 "
                "one database after the other took %.1f s (the dump side alone)."
                % (report["bound"]["best"], fmt(report["bound"]["median_s"]), prep["bytes"] / MB, prep["dump_s"]), ""]
    if report.get("rerun"):
        rerun = report["rerun"]
        out += ["## Unchanged rerun", "",
                "`ours` again right after a verified `ours` run, nothing changed on the source: median %s s, "
                "changed tasks %s, actions %s." % (fmt(rerun["median_s"]), ", ".join(str(c) for c in rerun["changed"]),
                                                   ", ".join(rerun["actions"])), ""]
    programs = report.get("cpu_by_program") or {}
    if programs:
        out += ["Client CPU seconds by program, and seconds each was running (the run with the median wall time; "
                "sampled from /proc):", "", md_table([["run", "CPU s by program", "running s by program"]] + [
                    [label, ", ".join("%s %.1f" % kv for kv in entry["cpu"].items()),
                     ", ".join("%s %.1f" % kv for kv in entry["active"].items())]
                    for label, entry in programs.items()]), ""]
    per_db = report.get("ours_per_database")
    if per_db:
        phases = []
        for entry in per_db:
            phases += [k for k in entry["phases"] if k not in phases and k != "total"]
        out += ["## ours: per database (the run with the median wall time)", "", md_table(
            [["database", "action"] + phases + ["total", "dump MB"]]
            + [[e["database"] or "?", e["action"] or "?"] + [fmt(e["phases"].get(k)) for k in phases]
               + [fmt(e["phases"].get("total")), "%.0f" % ((e["dump_bytes"] or 0) / MB)] for e in per_db]), ""]
    timelines = report.get("timelines") or {}
    if timelines:
        out += ["## Timelines (the run with the median wall time of each contender)", "",
                "Per bucket: seconds from the start, largest dump size, client RSS, CPU cores used by the clients, "
                "the source server and the target server (average over the bucket), client programs seen.", ""]
        for label, rows in timelines.items():
            out += ["### %s" % label, "", md_table([["t s", "dump MB", "RSS MB", "client cores", "source cores",
                                                     "target cores", "programs"]] + rows), ""]
    out += ["## Contenders", ""]
    for name, c in report["contenders"].items():
        out.append("- **%s** (%s): %s. Version: %s." % (name, c["title"], c["description"], c["version"] or "n/a"))
    out += ["", "## Runs", "", md_table([["round", "run", "wall s", "status", "exit", "error lines", "peak dump MB",
                                          "peak RSS MB", "client CPU s", "src CPU s", "tgt CPU s", "other load s"]] + [
        [str(r["round"]), r["label"], "%.1f" % r["wall_s"], r["status"] + (" (%d diffs)" % r["n_differences"]
                                                                          if r["n_differences"] else ""),
         str(r.get("rc")), str(r.get("error_lines", "")), "%.0f" % (r["peak_dump_bytes"] / MB),
         "%.0f" % (r["peak_rss_bytes"] / MB), fmt(r["client_cpu_s"]), fmt(r["source_cpu_s"]), fmt(r["target_cpu_s"]),
         fmt(r["other_cpu_s"])] for r in report["runs"]]), ""]
    failures = [r for r in report["runs"] if r["status"] != "ok"]
    if failures:
        out += ["### Differences found", ""]
        for r in failures:
            out.append("- round %d %s (%s): %s" % (r["round"], r["label"], r["status"], "; ".join(r["differences"][:12])))
        out.append("")
    out += ["## Machine", "",
            "- CPU: %s, %s cores (%s usable); RAM %s GB; %s; kernel %s; Python %s" % (
                m["cpu_model"], m["cpus"], m["cpus_usable"], m["ram_gb"], m["os"], m["kernel"], m["python"]),
            "- Disk: %s" % ", ".join("%s %s" % (k, v) for k, v in m["disk"].items()),
            "- Load average at start %s, at end %s" % (
                ", ".join("%.2f" % x for x in m["loadavg_start"]), ", ".join("%.2f" % x for x in m["loadavg_end"])),
            "", "## Servers", "",
            "- Source: PostgreSQL %s, target: PostgreSQL %s, same machine, both on 127.0.0.1; started with the same "
            "settings for every contender:" % (report["servers"]["source_version"], report["servers"]["target_version"]),
            "", md_table([["setting", "source", "target"]] + [
                [k, report["servers"]["source_settings"].get(k, ""), report["servers"]["target_settings"].get(k, "")]
                for k in sorted(set(report["servers"]["source_settings"]) | set(report["servers"]["target_settings"]))]),
            "", "- Extra settings given with --setting: %s" % (report["servers"]["extra_settings"] or "none"),
            "", "## Dataset", "",
            "- scale %s MB, seed %d, shape %s, generated on the source once and reused (this invocation: %s s); "
            "total pg_database_size %.0f MB:" % (ds["scale_mb"], ds["seed"], ds.get("shape", "codacy"),
                                                 ds["generation_s"], ds["total_bytes"] / MB),
            "", md_table([["database", "MB", "rows", "biggest table"]] + [
                [db, "%.0f" % (ds["sizes"][db] / MB), str(ds["rows"][db]), ds["biggest"][db]] for db in ds["order"]]),
            "", "## Notes", ""]
    out += ["- %s" % note for note in report["notes"]]
    out += ["", "```", report["result_line"], "```", ""]
    return "\n".join(out)


def biggest(snapshot):
    tables = snapshot["tables"]
    if not tables:
        return ""
    name = max(tables, key=lambda t: tables[t]["rows"])
    return "%s (%d rows)" % (name, tables[name]["rows"])


def verdict(report, args):
    """Problems that make the invocation fail: any incorrect copy (except the vendor script's known
    `-n public` losses), any contender without a counted run, a rerun that was not a no-op in smoke."""
    problems = []
    for r in report["runs"]:
        if r["status"] == "ok" or (r["contender"] == "vendor" and r["status"] == "incomplete"):
            continue
        problems.append("round %d %s: %s: %s" % (r["round"], r["label"], r["status"], "; ".join(r["differences"][:5])))
    for name, s in report["summary"].items():
        if s is None:
            problems.append("%s: no successful run" % name)
    if args.smoke:
        if not report["result_line"].startswith("RESULT "):
            problems.append("no RESULT line")
    return problems


def write_reports(report, args):
    main_rows, where, bound_rows, phase_rows = build_tables(report)
    print()
    print(text_table(main_rows))
    print()
    print("Where the time goes (medians):")
    print(text_table(where))
    if len(phase_rows) > 1:
        print()
        print("ours, module phases (sum over databases, median):")
        print(text_table(phase_rows))
    achieved = parallelism_rows(report)
    if achieved:
        print()
        print("ours, achieved parallelism (median run):")
        print(text_table(achieved))
    if len(bound_rows) > 1:
        print()
        print("Restore-side bound configs:")
        print(text_table(bound_rows))
    print()
    print("servers: PostgreSQL %s -> %s, settings: %s" % (
        report["servers"]["source_version"], report["servers"]["target_version"],
        ", ".join("%s=%s" % kv for kv in sorted(report["servers"]["target_settings"].items()))))
    if args.ours_var:
        print("ours with: %s" % ", ".join("%s=%s" % kv for kv in args.ours_var))
    report["ours_variables"] = dict(args.ours_var)
    os.makedirs(args.results_dir, exist_ok=True)
    stamp = report["started"].replace(" ", "-").replace(":", "")
    base = os.path.join(args.results_dir, stamp)
    text = markdown(report)
    for path, content in ((base + ".md", text), (os.path.join(args.results_dir, "latest.md"), text),
                          (base + ".json", json.dumps(report, indent=1, sort_keys=True, default=str) + "\n")):
        tmp = path + ".tmp"
        with open(tmp, "w") as handle:
            handle.write(content)
        os.replace(tmp, path)
    print("written: %s.md, %s.json, %s" % (base, base, os.path.join(args.results_dir, "latest.md")))
