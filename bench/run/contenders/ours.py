"""`ours` and `directory`: ansible-playbook with the collection from this checkout."""

import json
import os
import re
import shutil
import sys

from bench.run.common import BENCH, ROOT, read
from bench.run.contenders.base import Contender
from bench.run.processes import finish, run_text, spawn

FALLBACK_PLAYBOOK = os.path.join(BENCH, "ours_playbook.yml")
ROLE_PLAYBOOK = os.path.join(ROOT, "playbooks", "migrate.yml")
CALLBACK_DIR = os.path.join(BENCH, "callback_plugins")
COLLECTIONS = os.path.join(ROOT, "build", "collections")
COLLECTION_LINK = os.path.join(COLLECTIONS, "ansible_collections", "codacy", "selfhosted")


def ensure_collection_link():
    """The collection from this checkout, linked where ansible-playbook finds it (as `make collection` does)."""
    if not os.path.lexists(COLLECTION_LINK):
        os.makedirs(os.path.dirname(COLLECTION_LINK), exist_ok=True)
        os.symlink("../../../..", COLLECTION_LINK)


class Ours(Contender):
    name = "ours"
    title = "codacy.selfhosted playbook (defaults)"
    fixed_variables = {}  # role variables that define this contender (over --ours-var)

    @property
    def description(self):
        return ("ansible-playbook %s with default settings (%s) and the checkout's ansible.cfg; passwords in a 0600"
                " vars file passed with -e @file"
                % (os.path.relpath(self.playbook(), ROOT),
                   "the role codacy.selfhosted.db_migration" if self.playbook() == ROLE_PLAYBOOK else
                   "fallback until playbooks/migrate.yml exists: the module over the six databases, sequentially"))

    @staticmethod
    def playbook():
        return ROLE_PLAYBOOK if os.path.exists(ROLE_PLAYBOOK) else FALLBACK_PLAYBOOK

    @staticmethod
    def ansible_playbook():
        local = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
        return local if os.access(local, os.X_OK) else shutil.which("ansible-playbook")

    def available(self, ctx):
        if not self.ansible_playbook():
            return False, "ansible-playbook not found next to %s or on PATH" % sys.executable
        return True, ""

    def version(self, ctx):
        core = run_text([self.ansible_playbook(), "--version"]).splitlines()[:1]
        galaxy = read(os.path.join(ROOT, "galaxy.yml"))
        match = re.search(r"^version:\s*(\S+)", galaxy, re.M)
        commit = run_text(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"]).strip() or "?"
        dirty = "+dirty" if run_text(["git", "-C", ROOT, "status", "--porcelain", "--", "plugins", "roles",
                                      "playbooks"]).strip() else ""
        return "codacy.selfhosted %s (git %s%s), %s, playbook %s" % (
            match.group(1) if match else "?", commit, dirty, core[0] if core else "ansible ?",
            os.path.relpath(self.playbook(), ROOT))

    def work_dir(self, ctx):
        return os.path.join(ctx.workdir, "ours-work")

    def disk_paths(self, ctx, run_dir):
        return [self.work_dir(ctx)]

    def run(self, ctx, run_dir, timeout):
        work_dir = self.work_dir(ctx)
        os.makedirs(work_dir, mode=0o700, exist_ok=True)
        endpoint = {server_role: {"host": s.host, "port": s.port, "user": s.superuser, "password": ctx.password}
                    for server_role, s in (("source", ctx.source), ("target", ctx.target))}
        report_path = os.path.join(run_dir, "report.json")
        variables = {"db_migration_source": endpoint["source"], "db_migration_target": endpoint["target"],
                     "db_migration_databases": list(ctx.databases), "db_migration_work_dir": work_dir,
                     "db_migration_report_path": report_path,
                     "ansible_connection": "local", "ansible_python_interpreter": sys.executable}
        variables.update(ctx.args.ours_var)  # --ours-var: role variables to compare against the defaults
        variables.update(self.fixed_variables)
        vars_path = os.path.join(run_dir, "vars.json")
        fd = os.open(vars_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(variables, handle)
        record = os.path.join(run_dir, "record.jsonl")
        env = ctx.env(passfile=False)
        env.update({
            # the checkout's ansible.cfg, as in the quick start (its internal_poll_interval)
            "ANSIBLE_CONFIG": os.path.join(ROOT, "ansible.cfg"),
            "ANSIBLE_COLLECTIONS_PATH": COLLECTIONS, "ANSIBLE_CALLBACK_PLUGINS": CALLBACK_DIR,
            "ANSIBLE_CALLBACKS_ENABLED": "bench_record", "BENCH_RECORD_FILE": record,
            "ANSIBLE_LOCALHOST_WARNING": "False", "ANSIBLE_INVENTORY_UNPARSED_WARNING": "False",
            "ANSIBLE_NOCOLOR": "1", "ANSIBLE_RETRY_FILES_ENABLED": "False", "PWD": run_dir,
        })
        log_path = os.path.join(run_dir, "ansible.log")
        argv = [self.ansible_playbook(), "-i", "localhost,", self.playbook(), "-e", "@" + vars_path]
        with open(log_path, "w") as out:
            rc = finish(spawn(argv, cwd=run_dir, env=env, stdout=out, stderr=out), timeout)
        text = read(log_path)
        results, stats, tasks = [], {}, {}
        for line in read(record).splitlines():
            item = json.loads(line)
            if item.get("kind") == "result":
                results.append(item)
            elif item.get("kind") == "task":
                tasks[item["task"]] = round(tasks.get(item["task"], 0) + item["seconds"], 3)
            elif item.get("kind") == "stats":
                stats = item["hosts"].get("localhost") or next(iter(item["hosts"].values()), {})
        if os.path.exists(report_path):
            # The role's report (one entry per database): the product's own account of the run.
            with open(report_path) as handle:
                report = json.load(handle)
            per_database = [{"database": d.get("name"), "action": d.get("action"), "phases": d.get("phases") or {},
                             "dump_bytes": d.get("dump_bytes"), "verified": d.get("verified"),
                             "failed": d.get("failed"), "msg": d.get("message"), "downtime": d.get("downtime"),
                             "parallelism": d.get("parallelism")}
                            for d in report.get("databases", [])]
        else:
            # The fallback playbook: the module results recorded by the bench_record callback.
            per_database = [{"database": item.get("database"), "action": item.get("action"),
                             "phases": item.get("phases") or {}, "dump_bytes": item.get("dump_bytes"),
                             "verified": item.get("verified"), "failed": item.get("status") == "failed",
                             "msg": item.get("msg")} for item in results]
        phases = {}
        for item in per_database:
            for phase, seconds in item["phases"].items():
                phases[phase] = round(phases.get(phase, 0) + seconds, 3)
        return {"rc": rc, "log": text, "error_lines": len(re.findall(r"^fatal: ", text, re.M)),
                "playbook": os.path.relpath(self.playbook(), ROOT), "changed_tasks": stats.get("changed"),
                "failed_tasks": stats.get("failures"),
                "actions": {item["database"]: item["action"] for item in per_database},
                "phases_sum_s": phases, "dump_bytes": sum(item["dump_bytes"] or 0 for item in per_database),
                "per_database": per_database, "tasks_s": tasks}


class OursDirectory(Ours):
    """Our playbook with the non-default data path: dump to the work directory, then restore."""

    name = "directory"
    title = "codacy.selfhosted playbook, data_path: directory"
    fixed_variables = {"db_migration_data_path": "directory"}

    @property
    def description(self):
        return "as ours, with db_migration_data_path: directory (pg_dump -Fd -j to disk, then pg_restore -Fd -j)"

    def work_dir(self, ctx):
        return os.path.join(ctx.workdir, "directory-work")


class OursParallel(Ours):
    """Our playbook with the table-parallel data path."""

    name = "parallel"
    title = "codacy.selfhosted playbook, data_path: parallel"
    fixed_variables = {"db_migration_data_path": "parallel"}

    @property
    def description(self):
        return ("as ours, with db_migration_data_path: parallel (COPY between the servers, tables largest first, "
                "each table's indexes as soon as its rows are in)")

    def work_dir(self, ctx):
        return os.path.join(ctx.workdir, "parallel-work")


class OursStream(Ours):
    """Our playbook with the stream data path (pg_dump piped into pg_restore), whatever the default."""

    name = "stream"
    title = "codacy.selfhosted playbook, data_path: stream"
    fixed_variables = {"db_migration_data_path": "stream"}

    @property
    def description(self):
        return "as ours, with db_migration_data_path: stream (pg_dump -Fc -Z0 --data-only piped into pg_restore)"

    def work_dir(self, ctx):
        return os.path.join(ctx.workdir, "stream-work")
