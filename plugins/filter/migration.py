# -*- coding: utf-8 -*-
# Copyright: Contributors to the codacy.selfhosted collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the db_migration role: the plan, the jobs, the report and its table.

Kept in Python (not Jinja) so that the report's rules live in one readable, unit-tested place.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

from ansible_collections.codacy.selfhosted.plugins.module_utils.connection import endpoint_problems

COPYING_ACTIONS = ("migrated", "refreshed", "resumed")


def migration_jobs(plan, run_dir):
    """The plan's entries with the progress file each background migration writes."""
    return [dict(entry, progress_file="%s/progress-%s.json" % (run_dir, entry["position"])) for entry in plan]


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
    if count is None:
        return "-"
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if count < 1024 or unit == "TB":
            return ("%d %s" if unit == "B" else "%.1f %s") % (count, unit)
        count /= 1024.0
    return str(count)


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


class FilterModule(object):
    def filters(self):
        return {
            "migration_jobs": migration_jobs,
            "migration_plan": migration_plan,
            "migration_variable_problems": migration_variable_problems,
            "migration_servers": migration_servers,
            "migration_report": migration_report,
            "migration_table": migration_table,
        }
