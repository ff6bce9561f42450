"""Many Codacy installations in one run: one inventory host each, in the group codacy_migration.

Three installations, two of them on the same migration host with the same work_dir, one with a
wrong target password: the two migrate and verify, the third fails with its message, the fleet
summary shows all three; after the password is fixed, the rerun migrates only the third and
changes nothing of the others. Installations that share a server are refused before anything is
written when together they need more connections than it allows."""

import json
import os
import re
import subprocess
import sys

from tests.integration.conftest import ROOT, ansible_env, write_private
from tests.support import dataset
from tests.support.compare import compare
from tests.support.pgserver import PgServer

PLAYBOOK = os.path.join(ROOT, "playbooks", "migrate.yml")
PASSWORD = "fl'eet \"pa:ss\\word"
DATABASES = ["accounts", "jobs"]


class Fleet:
    """An inventory of installations (local connections) and ansible-playbook over it."""

    def __init__(self, tmp_path):
        self.dir = tmp_path
        self.hosts = {}
        self.inventory = str(tmp_path / "inventory.yml")

    def add(self, name, source, target, work_dir, **variables):
        os.makedirs(work_dir, exist_ok=True)
        self.hosts[name] = dict({
            "ansible_connection": "local", "ansible_python_interpreter": sys.executable,
            "db_migration_source": source.endpoint(), "db_migration_target": target.endpoint(),
            "db_migration_work_dir": str(work_dir)}, **variables)

    def run(self, *args):
        """ansible-playbook over the fleet, with a HOME that is not the user's home directory, as in an
        execution environment."""
        write_private(self.inventory, json.dumps({"codacy_migration": {"hosts": self.hosts}}))
        home = self.dir / "home"
        home.mkdir(exist_ok=True)
        env = ansible_env({"PWD": str(self.dir), "HOME": str(home)})
        proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", self.inventory,
                               "-f", "5", PLAYBOOK] + list(args), env=env, cwd=str(self.dir), capture_output=True,
                              text=True, timeout=1800, check=False)
        proc.recap = dict((m.group(1), {"changed": int(m.group(2)), "failed": int(m.group(3))}) for m in re.finditer(
            r"^(\S+)\s*: ok=\d+\s+changed=(\d+)\s+unreachable=\d+\s+failed=(\d+)", proc.stdout, re.M))
        return proc

    def report(self, name):
        with open(str(self.dir / ("codacy-db-migration-report-%s.json" % name))) as handle:
            return json.load(handle)

    def fleet(self):
        path = str(self.dir / "codacy-db-migration-fleet.json")
        assert oct(os.stat(path).st_mode & 0o777) == "0o600"
        with open(path) as handle:
            return dict((item["installation"], item) for item in json.load(handle)["installations"])


def databases(server):
    return set(r[0] for r in server.execute("SELECT datname FROM pg_database WHERE NOT datistemplate")) - {"postgres"}


def test_three_installations_one_failing_then_fixed(tmp_path):
    servers = [PgServer(password=PASSWORD) for _number in range(6)]
    try:
        for server in servers:
            server.start()
        sources, targets = servers[:3], servers[3:]
        for source in sources:
            dataset.generate(source.params(), scale_mb=1, databases=DATABASES, progress=lambda *args: None)
        fleet = Fleet(tmp_path)
        shared = tmp_path / "shared-work"  # one migration host (this machine) and one work_dir for two installations
        fleet.add("eu-prod", sources[0], targets[0], shared)
        fleet.add("us-prod", sources[1], targets[1], shared)
        fleet.add("apac-prod", sources[2], targets[2], tmp_path / "apac-work",
                  db_migration_target=dict(targets[2].endpoint(), password="wrong"))

        first = fleet.run()
        assert first.returncode != 0
        assert first.recap == {"eu-prod": {"changed": first.recap["eu-prod"]["changed"], "failed": 0},
                               "us-prod": {"changed": first.recap["us-prod"]["changed"], "failed": 0},
                               "apac-prod": {"changed": 0, "failed": 1}}, first.recap
        for name, source, target in (("eu-prod", sources[0], targets[0]), ("us-prod", sources[1], targets[1])):
            assert [d["action"] for d in fleet.report(name)["databases"]] == ["migrated", "migrated"]
            for database in DATABASES:
                assert compare(source.params(), database, target.params(), database) == [], (name, database)
        wrong = "target authentication failed for postgres@127.0.0.1:%d: check db_migration_target.user and " \
                "db_migration_target.password" % targets[2].port
        assert wrong in first.stdout
        assert databases(targets[2]) == set(), "the failed installation wrote to its target"
        assert fleet.report("apac-prod")["failure"]["task"].startswith("Stop when anything would go wrong")
        # Each installation has its own run directory, also when they share a work_dir.
        assert sorted(os.listdir(str(shared / "codacy_db_migration"))) == ["eu-prod", "us-prod"]
        # One fleet summary, on screen and in a file, with all three.
        assert first.stdout.count("TASK [codacy.selfhosted.db_migration : Fleet summary]") == 1
        summary = first.stdout.split("TASK [codacy.selfhosted.db_migration : Fleet summary]", 1)[1]
        assert re.search(r"eu-prod\s+accounts\s+migrated\s+\S+ \w?B\s+[\d.]+\s+\d+\s+the target database is empty", summary)
        assert re.search(r"us-prod\s+jobs\s+migrated", summary)
        assert re.search(r"apac-prod\s+-\s+FAILED\s+-\s+-\s+-\s+Preflight found 1 problem; nothing was written: %s "
                         r"\[in: Stop when anything would go wrong" % re.escape(wrong), summary)
        assert "3 installations: 2 ok, 1 failed; 4 databases: 4 migrated" in summary
        summary_file = fleet.fleet()
        assert [summary_file[n]["status"] for n in ("eu-prod", "us-prod", "apac-prod")] == ["ok", "ok", "failed"]
        assert wrong in json.dumps(summary_file["apac-prod"]["failure"])
        assert summary_file["eu-prod"]["report"].endswith("codacy-db-migration-report-eu-prod.json")
        assert all(d["verified_rows"] for n in ("eu-prod", "us-prod") for d in summary_file[n]["databases"])
        for path in (tmp_path / "codacy-db-migration-fleet.json", tmp_path / "inventory.yml"):
            if "fleet" in str(path):
                assert PASSWORD not in path.read_text()

        fleet.hosts["apac-prod"]["db_migration_target"] = targets[2].endpoint()
        second = fleet.run()
        assert second.returncode == 0, second.stdout[-4000:]
        assert second.recap["eu-prod"]["changed"] == 0 and second.recap["us-prod"]["changed"] == 0, second.recap
        assert second.recap["apac-prod"]["changed"] > 0 and second.recap["apac-prod"]["failed"] == 0
        summary_file = fleet.fleet()
        assert [d["action"] for n in ("eu-prod", "us-prod") for d in summary_file[n]["databases"]] == ["unchanged"] * 4
        assert [d["action"] for d in summary_file["apac-prod"]["databases"]] == ["migrated", "migrated"]
        assert "3 installations: 3 ok, 0 failed; 6 databases: 2 migrated, 4 unchanged" in second.stdout
        for database in DATABASES:
            assert compare(sources[2].params(), database, targets[2].params(), database) == []
    finally:
        for server in servers:
            server.destroy()


def test_installations_sharing_a_server_are_counted_together(tmp_path):
    """Each fits in the target's connections alone, not both at once: refused before anything is
    written, with both named; one at a time (--limit) they migrate."""
    with PgServer(password=PASSWORD) as source, PgServer(password=PASSWORD, settings={"max_connections": 18}) as target:
        dataset.generate(source.params(), scale_mb=1, databases=DATABASES, progress=lambda *args: None)
        fleet = Fleet(tmp_path)
        for name in ("blue", "green"):
            fleet.add(name, source, target, tmp_path / "work", db_migration_jobs=2, db_migration_concurrency=2,
                      db_migration_databases=[{"name": db, "target_name": "%s_%s" % (name, db)} for db in DATABASES])
        refused = fleet.run()
        assert refused.returncode != 0
        assert refused.recap["blue"]["failed"] == 1 and refused.recap["green"]["failed"] == 1, refused.recap
        assert re.search(r"installations blue, green use the same server 127\.0\.0\.1:%d \(the target of (blue|green)\): "
                         r"together they open up to 20 connections but it allows \d+ more" % target.port, refused.stdout)
        assert databases(target) == set()
        alone = fleet.run("--limit", "blue")
        assert alone.returncode == 0, alone.stdout[-4000:]
        assert databases(target) == {"blue_accounts", "blue_jobs"}
