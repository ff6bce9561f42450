# -*- coding: utf-8 -*-
# Copyright: Contributors to the codacy.selfhosted collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The checks of the codacy_db_preflight module: everything the migration needs, checked before
anything is written, and the plan the role follows."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import concurrent.futures
import os
import re
import socket

from ansible_collections.codacy.selfhosted.plugins.module_utils import (
    catalog, fingerprint, migration, online, parallel, pgtools, records, replication)
from ansible_collections.codacy.selfhosted.plugins.module_utils.connection import ConnectionProblem, Endpoint
from ansible_collections.codacy.selfhosted.plugins.module_utils.inspection import Failure
from ansible_collections.codacy.selfhosted.plugins.module_utils.units import human_bytes

# Codacy's databases, as current charts create them (the migration guide lists the first six).
CODACY_DATABASES = ("accounts", "analysis", "filestore", "jobs", "metrics", "results", "listener", "crow")

# Databases that managed services and PostgreSQL keep for themselves: never migrated, never warned about.
SYSTEM_DATABASES = ("postgres", "template0", "template1", "rdsadmin", "azure_maintenance", "azure_sys",
                    "cloudsqladmin")

# Databases inspected at the same time: their catalogs and fingerprints are read by the servers,
# which work on them side by side (an unchanged rerun of eight databases takes the time of a few).
EXAMINED_AT_ONCE = 4

PRIVILEGES_SQL = """
SELECT r.rolsuper, r.rolcreatedb,
       ARRAY(SELECT a.rolname::text FROM pg_roles a
              WHERE a.rolname = ANY(%s) AND pg_has_role(current_user, a.oid, 'MEMBER') ORDER BY 1)
  FROM pg_roles r WHERE r.rolname = current_user
"""

SOURCE_DATABASES_SQL = """
SELECT d.datname, pg_database_size(d.oid), pg_encoding_to_char(d.encoding), d.datcollate, d.datctype,
       pg_get_userbyid(d.datdba)
  FROM pg_database d WHERE NOT d.datistemplate AND d.datallowconn
"""

# The uncompressed dump is about the size of the tables' data (heap and TOAST), without indexes.
DUMP_ESTIMATE_SQL = """
SELECT coalesce(sum(pg_table_size(c.oid)), 0) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
   AND n.nspname NOT LIKE 'pg\\_toast%%'
"""


def normalize_databases(items, option="databases"):
    """[{'name', 'target_name'}] from names or dicts; raises ValueError naming a bad item (and the
    option, as `option`)."""
    plan, seen_targets = [], {}
    for given in items:
        item = {"name": given} if isinstance(given, str) else given
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"].strip():
            raise ValueError("%s: %r is neither a name nor a dict with a name: give e.g. `analysis` or "
                             "`{name: analysis, target_name: codacy_analysis}`" % (option, item))
        unknown = set(item) - {"name", "target_name"}
        if unknown:
            raise ValueError("%s: %r has unknown %s %s (allowed: name, target_name)"
                             % (option, item, plural(len(unknown), "key", "keys"), ", ".join(sorted(unknown))))
        target_name = item.get("target_name") or item["name"]
        if "\x00" in item["name"] + target_name:
            raise ValueError("%s: %r contains a NUL character" % (option, item))
        if any(entry["name"] == item["name"] for entry in plan):
            raise ValueError("%s: %s is listed twice" % (option, item["name"]))
        if target_name in seen_targets:
            raise ValueError("%s: %s and %s would both be migrated into target database %s"
                             % (option, seen_targets[target_name], item["name"], target_name))
        seen_targets[target_name] = item["name"]
        plan.append({"name": item["name"], "target_name": target_name})
    if not plan:
        raise ValueError("%s is empty: list the databases to migrate, or leave it unset for Codacy's databases"
                         % option)
    return plan


def sessions_finding(database, sessions, mode, allow_active_sessions, allow_option="allow_active_sessions"):
    """What other sessions on a source database mean for this run: ("problem" | "warning", message).
    An online copy runs beside the application; an offline copy of a database still written to
    would miss what is written after the dump."""
    message = "%d other sessions are connected to %s on the source: %s" % (
        len(sessions), database, "; ".join(sessions[:5]))
    if mode in ("online", "abort"):
        return "warning", message + " (the application may run during an online copy)"
    if allow_active_sessions:
        return "warning", message + " (allowed; writes after the dump are not copied)"
    return "problem", (message + ": stop the Codacy application (and any other client) first, or set %s: true "
                       "for a trial run" % allow_option)


def plural(count, one, many):
    return one if count == 1 else many


def machine_id():
    """This host, whatever name the inventory gives it (two installations may share it)."""
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            with open(path) as handle:
                value = handle.read().strip()
        except OSError:
            continue
        if value:
            return value
    return socket.gethostname()


def admin_status(conn, endpoint, admin_roles, needs_createdb=False):
    """(description, problem or None) of how the user qualifies as administrator."""
    superuser, createdb, memberships = catalog.fetchall(conn, PRIVILEGES_SQL, (list(admin_roles),))[0]
    if superuser:
        return "superuser", None
    if not memberships:
        return "none", ("%s user %s is neither SUPERUSER nor a member of %s: connect as the server's admin user, "
                        "or grant one of these roles to %s" % (endpoint.role, endpoint.who,
                                                               " or ".join(admin_roles) or "an admin role",
                                                               endpoint.user))
    if needs_createdb and not createdb:
        return "member of %s" % memberships[0], (
            "%s user %s may not create databases (no CREATEDB) and some target databases are missing: "
            "ALTER ROLE %s CREATEDB, or create them first" % (endpoint.role, endpoint.who, endpoint.user))
    return "member of %s" % ", ".join(memberships), None


class Findings:
    """The problems and warnings found about one database."""

    def __init__(self):
        self.problems, self.warnings = [], []


class Preflight:
    def __init__(self, module):
        self.module = module
        self.params = module.params
        timeout = self.params["connect_timeout"]
        self.source = Endpoint("source", self.params["source"], timeout, self.name("source"))
        self.target = Endpoint("target", self.params["target"], timeout, self.name("target"))
        self.problems, self.warnings = [], []
        self.result = {"changed": False, "problems": self.problems, "databases": [], "unlisted": [],
                       "codacy_databases": None}

    def name(self, option):
        """The name the caller gave `option` (the role's db_migration_jobs for jobs)."""
        return self.params["names_prefix"] + option

    def in_callers_words(self, message):
        """A message of the migration module, with the options it names as the caller named them."""
        for option in ("force", "schemas"):
            message = re.sub(r"\b%s: " % option, self.name(option) + ": ", message)
        if self.params["names_prefix"]:
            message = message.replace("Point target_database at", "Point its target_name in %s at" % self.name("databases"))
        return message

    def connect(self, endpoint, dbname):
        try:
            return endpoint.connect(dbname, read_only=endpoint.role == "source")
        except ConnectionProblem as exc:
            self.problems.append(str(exc))
            return None

    def run(self):
        # The options first: servers are only asked once the options make sense.
        self.problems.extend(online.validate(self.params, probe_write=not self.module.check_mode, name=self.name))
        if self.params["concurrency"] < 1:
            self.problems.append("%s must be at least 1 (got %d)" % (self.name("concurrency"), self.params["concurrency"]))
        plan = None  # omitted: Codacy's databases, once the source says which it has
        try:
            if self.params["databases"] is not None:
                plan = normalize_databases(self.params["databases"], self.name("databases"))
        except ValueError as exc:
            self.problems.append(str(exc))
        if self.problems:
            return self.result
        maintenance = self.params["maintenance_database"]
        src = self.connect(self.source, maintenance)
        tgt = self.connect(self.target, maintenance)
        if src is None or tgt is None:
            return self.result
        try:
            self.check(src, tgt, plan)
        finally:
            src.close()
            tgt.close()
        return self.result

    def codacy_databases(self, source_dbs):
        """The plan when no databases are listed: Codacy's databases that the source has."""
        found = [name for name in CODACY_DATABASES if name in source_dbs]
        self.result["codacy_databases"] = {"found": found, "missing": [n for n in CODACY_DATABASES if n not in found]}
        if not found:
            self.problems.append("none of Codacy's databases (%s) exist on the source %s (it has: %s): list the "
                                 "databases to migrate in %s"
                                 % (", ".join(CODACY_DATABASES), self.source.address,
                                    ", ".join(sorted(d for d in source_dbs if d not in SYSTEM_DATABASES)) or "none",
                                    self.name("databases")))
        return [{"name": name, "target_name": name} for name in found]

    def check(self, src, tgt, plan):
        source_info, target_info = catalog.server_info(src), catalog.server_info(tgt)
        source_dbs = dict((row[0], row[1:]) for row in catalog.fetchall(src, SOURCE_DATABASES_SQL))
        if plan is None:
            plan = self.codacy_databases(source_dbs)
        target_dbs = set(r[0] for r in catalog.fetchall(tgt, "SELECT datname FROM pg_database"))
        target_roles = set(r[0] for r in catalog.fetchall(tgt, "SELECT rolname FROM pg_roles"))
        missing_on_target = [e for e in plan if e["target_name"] not in target_dbs]

        self.result["versions"] = {"source_server": source_info["version"], "target_server": target_info["version"]}
        source_priv, problem = admin_status(src, self.source, self.params["admin_roles"])
        self.problems.extend([problem] if problem else [])
        target_priv, problem = admin_status(tgt, self.target, self.params["admin_roles"], bool(missing_on_target))
        self.problems.extend([problem] if problem else [])
        self.result["privileges"] = {"source": source_priv, "target": target_priv}
        for endpoint, conn in ((self.source, src), (self.target, tgt)):
            if not catalog.sees_all_sessions(conn):
                self.warnings.append(
                    "%s user %s cannot see the details of other roles' sessions (it is neither SUPERUSER nor a member "
                    "of pg_read_all_stats): each such session counts as an application session, so a database with "
                    "one is %s. GRANT pg_read_all_stats TO %s to tell them apart"
                    % (endpoint.role, endpoint.who, "copied again" if endpoint.role == "source" else "refused",
                       endpoint.user))
        self.check_clients(source_info)
        if target_info["major"] < source_info["major"]:
            self.problems.append(
                "the target server (PostgreSQL %s) is older than the source (PostgreSQL %s): use a target of "
                "PostgreSQL %d or newer" % (target_info["version"], source_info["version"], source_info["major"]))

        absent = [e["name"] for e in plan if e["name"] not in source_dbs]
        if absent:
            self.problems.append("%s %s %s on the source %s (it has: %s): fix %s"
                                 % (plural(len(absent), "database", "databases"), ", ".join(absent),
                                    plural(len(absent), "does not exist", "do not exist"), self.source.address,
                                    ", ".join(sorted(d for d in source_dbs if d not in SYSTEM_DATABASES)) or "none",
                                    self.name("databases")))
        listed = set(e["name"] for e in plan)
        self.result["unlisted"] = sorted(d for d in source_dbs if d not in listed and d not in SYSTEM_DATABASES)
        if self.result["unlisted"]:
            self.warnings.append("%s on the source that %s not migrated: %s (list %s in %s if %s data you need)"
                                 % (plural(len(self.result["unlisted"]), "database", "databases"),
                                    plural(len(self.result["unlisted"]), "is", "are"), ", ".join(self.result["unlisted"]),
                                    plural(len(self.result["unlisted"]), "it", "them"), self.name("databases"),
                                    plural(len(self.result["unlisted"]), "it holds", "they hold")))

        available = set(r[0] for r in catalog.fetchall(tgt, "SELECT name FROM pg_available_extensions"))
        entries = []
        for entry in plan:
            if entry["name"] not in source_dbs:
                continue
            size, encoding, collate, ctype, owner = source_dbs[entry["name"]]
            entry.update(size=size, encoding=encoding, lc_collate=collate, lc_ctype=ctype, owner=owner,
                         target_exists=entry["target_name"] in target_dbs)
            entry["target_owner"] = owner if owner in target_roles else self.target.user
            entries.append(entry)
        entries.sort(key=lambda e: (-e["size"], e["name"]))
        for position, entry in enumerate(entries):
            entry["position"] = position
        self.examine_all(entries, available)
        self.result["databases"] = entries
        self.check_space(entries)
        self.check_connection_room(src, tgt)
        self.result["shared"] = self.shared_needs(((self.source, src, source_info), (self.target, tgt, target_info)),
                                                  entries)
        self.check_slots(src)
        if self.params["mode"] == "online":
            self.check_online(src, tgt, entries)

    def shared_needs(self, sides, entries):
        """What this migration needs of what other migrations of the same run (the role's other
        installations) may share with it: the file system of the work directory on this host, and
        each server's connections. The role adds them up across installations."""
        copying = [e for e in entries if e.get("action") != "unchanged"]
        slots = min(self.params["concurrency"], len(copying))
        work_dir = self.params["work_dir"]
        stat = os.statvfs(work_dir)
        dumps = sorted((e.get("estimated_dump_bytes", 0) for e in copying), reverse=True)[:slots]
        servers = []
        for endpoint, conn, info in sides:
            room = catalog.fetchall(conn, catalog.CONNECTION_ROOM_SQL)[0][0]
            servers.append({"role": endpoint.role, "address": endpoint.address, "room": room,
                            "needed": slots * (self.params["jobs"] + 3),
                            # the same server whatever name reaches it (start time where the identifier is hidden)
                            "id": info["system_identifier"] or "started %s" % info.get("started")})
        return {"machine": machine_id(), "servers": servers,
                "work_dir": {"path": work_dir, "device": os.stat(work_dir).st_dev, "free": stat.f_bavail * stat.f_frsize,
                             "needed": sum(dumps) if self.params["data_path"] == "directory" else 0}}

    def check_slots(self, src):
        """Warn about our replication slots that nobody uses or that retain much WAL."""
        slots = replication.leftovers(src) if src.server_version >= 100000 else []
        self.result["replication_slots"] = slots
        for found in slots:
            if not found["active"]:
                self.warnings.append("%s: nothing follows it (an interrupted or abandoned online migration?). It keeps "
                                     "WAL on the source until removed: run the migration with db_migration_mode: abort "
                                     "(or online to resume), or SELECT pg_drop_replication_slot('%s') on the source"
                                     % (replication.describe_slot(found), found["name"]))
            elif found["retained_bytes"] > self.params["max_slot_lag"]:
                self.warnings.append("%s: more than db_migration_max_slot_lag (%s). The source's disk fills up while "
                                     "the target does not keep up: cut over soon, or abort"
                                     % (replication.describe_slot(found), human_bytes(
                                         self.params["max_slot_lag"])))

    def check_online(self, src, tgt, entries):
        """What online migration of every listed database needs, all at once (the decision of
        each database skips these checks)."""
        names = set(e["name"] for e in entries)
        following = len([s for s in self.result["replication_slots"] if s["database"] in names])
        subscribed = catalog.fetchall(tgt, "SELECT count(*) FROM pg_subscription WHERE subname LIKE %s",
                                      (replication.LIKE_PREFIX,))[0][0]
        found = replication.source_server_problems(src, self.source, len(entries) - following)
        if src.server_version < 100000:
            self.problems.extend(found)
            return
        found += replication.target_server_problems(tgt, self.target, len(entries) - subscribed, online.ADMIN_ROLES)
        reach = dict((key, (self.params["source_from_target"] or {}).get(key) or default) for key, default in (
            ("host", self.source.host), ("port", self.source.port), ("sslmode", self.source.sslmode),
            ("sslrootcert", None)))
        for entry in entries:
            conn = self.connect(self.source, entry["name"])
            if conn is None:
                continue
            try:
                found += replication.source_database_problems(conn, entry["name"], records.SCHEMA)
            finally:
                conn.close()
            problem = replication.reach_problem(tgt, self.target, self.source, reach, entry["name"],
                                                replication.PREFIX + "preflight")
            if problem:
                found.append("%s: %s" % (entry["name"], problem))
        self.problems.extend(found)

    def examine_all(self, entries, available):
        """Inspect and decide every database, EXAMINED_AT_ONCE at a time (the servers do the work:
        catalogs and fingerprints); problems and warnings are reported in the plan's order."""
        def examine(entry):
            found = Findings()
            self.inspect_source_database(entry, available, found)
            self.decide(entry, found)
            return found
        with concurrent.futures.ThreadPoolExecutor(max_workers=EXAMINED_AT_ONCE) as pool:
            for found in pool.map(examine, entries):
                self.problems.extend(found.problems)
                self.warnings.extend(found.warnings)

    def decide(self, entry, found):
        """The action the migration module will take for this database, decided by the module's own
        code without writing anything; its refusals are problems."""
        if not entry["target_exists"]:
            entry.update(action="migrated", reasons=["the target database will be created"])
            return
        try:
            with migration.inspect(self.params, entry["name"], entry["target_name"],
                                   online_checks=False) as seen:  # (check_online() makes them for every database)
                entry.update(action=seen.action, reasons=seen.reasons)
                if seen.action == "unchanged":
                    entry["verified"] = seen.copy_verified()  # of the copy that stays
        except (Failure, ConnectionProblem, pgtools.ToolProblem) as exc:
            entry.update(action="refused", reasons=[str(exc)])
        if entry["action"] == "refused":
            reason = self.in_callers_words(entry["reasons"][0])
            entry["reasons"] = [reason]
            found.problems.append("%s: %s" % (entry["name"], reason))

    def check_clients(self, source_info):
        try:
            clients = pgtools.find_clients(self.params["bin_dir"])
            self.result["versions"]["client"] = clients["version"]
            pgtools.check_client_version(clients, source_info["major"], source_info["version"])
        except pgtools.ToolProblem as exc:
            self.problems.append(str(exc))

    def inspect_source_database(self, entry, available, found):
        try:
            conn = self.source.connect(entry["name"], read_only=True)
        except ConnectionProblem as exc:
            found.problems.append(str(exc))
            return
        try:
            entry["estimated_dump_bytes"] = int(catalog.fetchall(conn, DUMP_ESTIMATE_SQL)[0][0])
            entry["extensions"] = [r[0] for r in catalog.fetchall(conn, catalog.EXTENSIONS_SQL)]
            sessions = catalog.other_sessions(conn)
            uncounted = fingerprint.counting_problems(conn)
        finally:
            conn.close()
        if uncounted:
            found.warnings.append("%s: writes to it may not be counted (%s): a later run cannot trust the write counters "
                                  "and copies it again unless no transaction at all ran on the source server since; "
                                  "remove the setting to make reruns cheap" % (entry["name"], "; ".join(uncounted)))
        missing = [e for e in entry["extensions"] if e not in available]
        if missing:
            found.problems.append("extensions %s used in %s are not available on the target server %s: install them "
                                  "there (on a managed service, check its list of supported extensions)"
                                  % (", ".join(missing), entry["name"], self.target.address))
        if sessions:
            kind, message = sessions_finding(entry["name"], sessions, self.params["mode"],
                                             self.params["allow_active_sessions"], self.name("allow_active_sessions"))
            (found.problems if kind == "problem" else found.warnings).append(message)

    def check_space(self, entries):
        work_dir = self.params["work_dir"]  # checked by validate()
        if self.params["data_path"] != "directory":
            return  # the data does not touch the disk
        stat = os.statvfs(work_dir)
        free = stat.f_bavail * stat.f_frsize
        largest = sorted((e.get("estimated_dump_bytes", 0) for e in entries), reverse=True)
        needed = sum(largest[:max(1, self.params["concurrency"])])
        if needed > free:
            self.problems.append("%s %s has %s free but the dumps of the %d largest databases need about %s: "
                                 "free some space, choose another %s, or lower %s"
                                 % (self.name("work_dir"), work_dir, human_bytes(free),
                                    min(len(largest), self.params["concurrency"]), human_bytes(needed),
                                    self.name("work_dir"), self.name("concurrency")))

    def check_connection_room(self, src, tgt):
        # Per database at most: pg_dump/pg_restore workers and their leader, and the module's own
        # two connections; every database in the queue's slots at once. (Each database's own
        # connection limit is checked by the migration module's decision.)
        # data_path: parallel opens more sessions on the target (copy, index and analyze workers).
        concurrency, jobs = self.params["concurrency"], self.params["jobs"]
        source_room = (concurrency * (jobs + 3),
                       "%s %d x (%s %d + 3)" % (self.name("concurrency"), concurrency, self.name("jobs"), jobs))
        target_room = source_room
        if self.params["data_path"] == "parallel":
            target_room = (concurrency * parallel.target_connections(jobs),
                           "%s %d x (3 x %s %d + 2)" % (self.name("concurrency"), concurrency, self.name("jobs"), jobs))
        for endpoint, conn, (needed, what) in ((self.source, src, source_room), (self.target, tgt, target_room)):
            shortfall = catalog.connection_shortfall(conn, endpoint, needed, what)
            if shortfall:
                instead = "lower %s or %s" % (self.name("jobs"), self.name("concurrency"))
                self.problems.append(shortfall.replace("lower jobs", instead))
