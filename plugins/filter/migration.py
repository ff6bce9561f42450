# -*- coding: utf-8 -*-
# Copyright: Contributors to the codacy.selfhosted collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the db_migration role: the plan, the jobs, the report and its table.

Kept in Python (not Jinja) so that the report's rules live in one readable place, with unit tests in
tests/unit/plugins/filter/ (the report, the fleet's shared needs and summary).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

from ansible_collections.codacy.selfhosted.plugins.module_utils.connection import endpoint_problems
from ansible_collections.codacy.selfhosted.plugins.module_utils.rundir import RunDir
from ansible_collections.codacy.selfhosted.plugins.module_utils.units import human_bytes

COPYING_ACTIONS = ("migrated", "refreshed", "resumed")


def migration_jobs(plan, run_dir):
    """The plan's entries with the progress file each background migration writes."""
    return [dict(entry, progress_file=RunDir(run_dir).progress_file(int(entry["position"]))) for entry in plan]


def migration_creations(plan):
    """The target databases to create, as codacy_db_create's `databases`: those of the plan whose
    target does not exist, like their source (encoding, collation, owner)."""
    return [{"name": entry["target_name"], "encoding": entry["encoding"], "lc_collate": entry["lc_collate"],
             "lc_ctype": entry["lc_ctype"], "owner": entry.get("target_owner")}
            for entry in plan if not entry.get("target_exists")]


def migration_variable_problems(variables):
    """What is wrong with the role's variables that its modules cannot tell in the user's words:
    the servers' keys (a module's argument spec would name its own option, and the role's argument
    spec would print itself whole), and the role-only numbers. One sentence per problem."""
    problems = []
    for name in ("db_migration_source", "db_migration_target"):
        problems.extend(endpoint_problems(variables[name], name))
    for name, unit in (("db_migration_progress_interval", "second"), ("db_migration_async_limit", "second")):
        if int(variables[name]) < 1:
            problems.append("%s must be at least 1 %s (got %s)" % (name, unit, variables[name]))
    return problems


def _verified(result):
    """The verification figures of a migration that ran, or of the copy that an unchanged database keeps."""
    verified = result.get("verified") or {}
    figures = {"mode": verified.get("mode"), "tables": verified.get("tables", 0), "rows": verified.get("rows", 0),
               "equal": verified.get("equal")}
    if verified.get("copied_at"):
        figures["copied_at"] = verified["copied_at"]
    return figures


def migration_report(plan, results=None):
    """The report: one entry per database, totals, and the problems that make the run incomplete.

    results: what the migrations that ran returned (databases the plan found unchanged did not
    run). Without results (check mode, or `--tags verify` alone) the entries are the plan, and a
    database holds a verified copy of its current source only when its planned action is `unchanged`."""
    by_name = {}
    for result in results or []:
        by_name[result.get("database")] = result
    databases, problems = [], []
    for entry in plan:
        ran = entry["name"] in by_name
        result = by_name.get(entry["name"], {})
        failed = bool(result.get("failed")) if ran else False
        item = {
            "name": entry["name"],
            "target_name": entry["target_name"],
            "source_bytes": entry.get("size"),
            "action": result.get("action") if ran else entry.get("action"),
            "changed": bool(result.get("changed")) if ran else entry.get("action") not in ("unchanged", None),
            "failed": failed,
            "reasons": (result.get("reasons") if ran else entry.get("reasons")) or [],
            "dump_bytes": result.get("dump_bytes", 0),
            "phases": result.get("phases", {}),
            "verified": _verified(result if ran else entry),
        }
        if result.get("parallelism"):  # data_path parallel: copies and index builds that ran at once
            item["parallelism"] = result["parallelism"]
        if result.get("state"):  # online migration: following, cut_over, aborted
            item["state"] = result["state"]
        if result.get("downtime") is not None:  # a cutover's, from its start to the verified target
            item["downtime"] = result["downtime"]
        if failed:
            item["phase"] = result.get("phase")
            item["message"] = result.get("msg")
            problems.append("%s: failed in phase %s: %s" % (entry["name"], result.get("phase"), result.get("msg")))
        elif ran and item["action"] in COPYING_ACTIONS and item["verified"]["equal"] is False:
            problems.append("%s: the copy differs from the source" % entry["name"])
        elif not ran and item["action"] != "unchanged" and results is None:
            problems.append("%s: %s (%s)" % (entry["name"], item["action"], "; ".join(str(r) for r in item["reasons"])))
        databases.append(item)
    return {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "mode": "plan" if results is None else "run",
        "databases": databases,
        "totals": {
            "databases": len(databases),
            "changed": sum(1 for d in databases if d["changed"]),
            "failed": sum(1 for d in databases if d["failed"]),
            "source_bytes": sum(d["source_bytes"] or 0 for d in databases),
            "dump_bytes": sum(d["dump_bytes"] or 0 for d in databases),
            "rows_verified": sum(d["verified"]["rows"] or 0 for d in databases),
        },
        "problems": problems,
    }


def _size(count):
    return "-" if count is None else human_bytes(count)


def _seconds(phases, name):
    value = (phases or {}).get(name)
    return "-" if value is None else "%.1f" % value


def migration_servers(preflight, source, target):
    """'source postgres@db:5432 (PostgreSQL 13.16, superuser) -> target ... ; client 17.2' (no secrets)."""
    versions = preflight.get("versions") or {}
    privileges = preflight.get("privileges") or {}

    def side(role, server):
        return "%s %s@%s:%s (PostgreSQL %s, %s)" % (role, server.get("user"), server.get("host"), server.get("port", 5432),
                                                    versions.get(role + "_server", "?"), privileges.get(role, "?"))
    return "%s -> %s; pg_dump %s" % (side("source", source), side("target", target), versions.get("client", "?"))


# How the plan says what will happen (and check mode, what would).
PLANNED = {"migrated": "migrate", "refreshed": "refresh", "resumed": "resume"}


def _planned(action, would):
    if action in PLANNED:
        return "%s %s" % ("would" if would else "will", PLANNED[action])
    return action or "-"


def _why(entry):
    if entry.get("failed"):
        return entry.get("message") or "failed"
    return "; ".join(str(reason) for reason in entry.get("reasons") or [])


def _columns(rows):
    """Fixed-width lines: a header, a rule, the rows (the last column is not padded)."""
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    return lines[:1] + ["-" * max(len(line) for line in lines[:1])] + lines[1:]


def _name(entry):
    return entry["name"] if entry["name"] == entry.get("target_name", entry["name"]) else \
        "%s -> %s" % (entry["name"], entry["target_name"])


def migration_table(entries, mode="report"):
    """Fixed-width lines for the play output: the report (`report`), or the plan as it will be
    carried out (`plan`) or, in check mode, would be (`check`). Every line says why."""
    if mode in ("plan", "check"):
        rows = [("database", "action", "size", "why")]
        rows += [(_name(e), _planned(e.get("action"), mode == "check"), _size(e.get("size", e.get("source_bytes"))),
                  _why(e)) for e in entries]
        return _columns(rows)
    rows = [("database", "action", "size", "dump", "restore", "verify", "analyze", "total s", "tables", "rows", "why")]
    for entry in entries:
        phases = entry.get("phases") or {}
        verified = entry.get("verified") or {}
        if verified.get("equal") is None:
            verified = {}
        action = "FAILED (%s)" % entry.get("phase") if entry.get("failed") else entry.get("action") or "-"
        rows.append((_name(entry), action, _size(entry.get("source_bytes", entry.get("size"))),
                     _seconds(phases, "dump"), _seconds(phases, "restore"), _seconds(phases, "verify"),
                     _seconds(phases, "analyze"), _seconds(phases, "total"),
                     str(verified.get("tables", "-")), str(verified.get("rows", "-")), _why(entry)))
    return _columns(rows)


def migration_plan(preflight, source, target, check_mode=False):
    """The plan as printed before anything is written: both servers, which databases and why
    those, and per database what will (in check mode: would) happen and why."""
    lines = [migration_servers(preflight, source, target)]
    codacy = preflight.get("codacy_databases")
    if codacy:
        lines.append("databases: Codacy's that the source has: %s%s" % (
            ", ".join(codacy["found"]) or "none",
            " (it has no %s)" % ", ".join(codacy["missing"]) if codacy["missing"] else ""))
    else:
        lines.append("databases: as listed in db_migration_databases")
    if preflight.get("unlisted"):
        lines.append("not migrated (on the source, not listed): %s" % ", ".join(preflight["unlisted"]))
    return lines + migration_table(preflight.get("databases") or [], "check" if check_mode else "plan")


def _get(host, name):
    """A variable of a host from hostvars (None when it has none)."""
    try:
        return host.get(name)
    except Exception:  # pylint: disable=broad-except
        return None


def _installation(host, inventory_host):
    return _get(host, "_db_migration_installation") or {"name": inventory_host}


def migration_shared_problems(hosts, inventory_hosts, me):
    """Problems of the installation of inventory host `me` with what it shares with the other
    installations of the run: their names, the file system of a work directory on one migration
    host, a server's connections. `hosts` are the hostvars of `inventory_hosts` (the play's hosts
    still running). Only installations whose own preflight found no problem count: the others will
    not run."""
    installations = []
    for host, name in zip(hosts, inventory_hosts):
        preflight = _get(host, "_db_migration_preflight") or {}
        installations.append({"host": name, "name": _installation(host, name)["name"],
                              "shared": preflight.get("shared") if not preflight.get("problems") else None})
    mine = next(i for i in installations if i["host"] == me)
    problems = []
    namesakes = [i["host"] for i in installations if i["name"] == mine["name"]]
    if len(namesakes) > 1:
        problems.append("installation name %s is given to inventory hosts %s: give each its own "
                        "db_migration_installation (it names the run directory and the report)"
                        % (mine["name"], ", ".join(namesakes)))
    if not mine["shared"]:
        return problems
    others = [i for i in installations if i["shared"] and i is not mine]
    work_dir = mine["shared"]["work_dir"]
    sharing = [i for i in others if i["shared"]["machine"] == mine["shared"]["machine"]
               and i["shared"]["work_dir"]["device"] == work_dir["device"]]
    needed = work_dir["needed"] + sum(i["shared"]["work_dir"]["needed"] for i in sharing)
    free = min([work_dir["free"]] + [i["shared"]["work_dir"]["free"] for i in sharing])
    if sharing and work_dir["needed"] and needed > free:
        problems.append("installations %s write their dumps to the same file system on the same migration host "
                        "(db_migration_work_dir %s): together they need about %s but it has %s free: give them "
                        "work directories on other file systems, use db_migration_data_path: parallel or stream, or migrate "
                        "them one after the other (--limit)"
                        % (", ".join(sorted([mine["name"]] + [i["name"] for i in sharing])), work_dir["path"],
                           _size(needed), _size(free)))
    for server in mine["shared"]["servers"]:
        users = [(i, theirs) for i in others for theirs in i["shared"]["servers"] if theirs["id"] == server["id"]]
        needed = server["needed"] + sum(theirs["needed"] for _i, theirs in users)
        room = min([server["room"]] + [theirs["room"] for _i, theirs in users])
        if users and server["needed"] and needed > room:
            problems.append("installations %s use the same server %s (the %s of %s): together they open up to %d "
                            "connections but it allows %d more: lower db_migration_concurrency or db_migration_jobs "
                            "of some, or migrate them one after the other (--limit)"
                            % (", ".join(sorted(set([mine["name"]] + [i["name"] for i, _theirs in users]))),
                               server["address"], server["role"], mine["name"], needed, max(room, 0)))
    return problems


def migration_fleet(hosts, inventory_hosts):
    """The fleet summary: per installation (one per inventory host of the play), what happened to
    each of its databases, or why it failed. `hosts` are the hostvars of `inventory_hosts`."""
    installations = []
    for host, name in zip(hosts, inventory_hosts):
        about = _installation(host, name)
        report = _get(host, "_db_migration_report")
        failure = _get(host, "_db_migration_failure")
        planned_only = report is None
        if planned_only:  # failed before its report: its plan, if it got that far, which did not run
            report = migration_report(_get(host, "_db_migration_plan") or [])
        entries = [{"name": d["name"], "target_name": d["target_name"],
                    "action": "not run" if planned_only and d["action"] != "unchanged" else d["action"],
                    "failed": d["failed"], "source_bytes": d["source_bytes"],
                    "seconds": (d.get("phases") or {}).get("total"),
                    "verified_rows": d["verified"]["rows"] if d["verified"]["equal"] else None,
                    "why": _why(d)} for d in report["databases"]]
        status = "failed" if failure or any(d["failed"] for d in entries) else \
            ("no result" if _get(host, "_db_migration_installation") is None else "ok")
        installations.append({
            "installation": about["name"], "inventory_host": name, "migration_host": about.get("migration_host"),
            "report": about.get("report_path") if _get(host, "_db_migration_report") else None,
            "status": status, "failure": failure, "seconds": about.get("seconds"), "databases": entries,
        })
    databases = [d for i in installations for d in i["databases"]]
    actions = {}
    for entry in databases:
        key = "failed" if entry["failed"] else entry["action"]
        actions[key] = actions.get(key, 0) + 1
    return {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "installations": installations,
        "totals": {"installations": len(installations),
                   "ok": sum(1 for i in installations if i["status"] == "ok"),
                   "failed": sum(1 for i in installations if i["status"] != "ok"),
                   "databases": len(databases), "actions": actions,
                   "source_bytes": sum(d["source_bytes"] or 0 for d in databases)},
    }


def _failure_text(failure):
    """'target authentication failed for ... [in: Stop when anything would go wrong, ...]'."""
    message = failure.get("message")
    if isinstance(message, list):  # a heading ending in ':' and its items
        lines = [str(line) for line in message]
        message = (lines[0] + " " + "; ".join(lines[1:])) if lines and lines[0].endswith(":") else "; ".join(lines)
    return "%s [in: %s]" % (message, failure.get("task") or "?")


def migration_fleet_table(fleet):
    """Fixed-width lines of the fleet summary, one per database (or per failed installation), and a total."""
    rows = [("installation", "database", "action", "size", "total s", "rows verified", "why")]
    for item in fleet["installations"]:
        for entry in item["databases"]:
            action = "FAILED" if entry["failed"] else entry["action"] or "-"
            rows.append((item["installation"], _name(entry), action, _size(entry["source_bytes"]),
                         "-" if entry["seconds"] is None else "%.1f" % entry["seconds"],
                         "-" if entry["verified_rows"] is None else str(entry["verified_rows"]), entry["why"]))
        if item["failure"]:
            rows.append((item["installation"], "-", "FAILED", "-", "-", "-", _failure_text(item["failure"])))
        elif item["status"] == "no result":
            rows.append((item["installation"], "-", "no result", "-", "-", "-",
                         "it stopped before the migration began (unreachable, or a failure above)"))
    totals = fleet["totals"]
    summary = "%d %s: %d ok, %d failed; %d %s: %s" % (
        totals["installations"], "installation" if totals["installations"] == 1 else "installations", totals["ok"],
        totals["failed"], totals["databases"], "database" if totals["databases"] == 1 else "databases",
        ", ".join("%d %s" % (count, action) for action, count in sorted(totals["actions"].items())) or "none")
    return _columns(rows) + [summary]


class FilterModule(object):
    def filters(self):
        return {
            "migration_creations": migration_creations,
            "migration_fleet": migration_fleet,
            "migration_fleet_table": migration_fleet_table,
            "migration_jobs": migration_jobs,
            "migration_shared_problems": migration_shared_problems,
            "migration_plan": migration_plan,
            "migration_variable_problems": migration_variable_problems,
            "migration_servers": migration_servers,
            "migration_report": migration_report,
            "migration_table": migration_table,
        }
