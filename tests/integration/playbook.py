"""ansible-playbook running playbooks/migrate.yml (the db_migration role) for the integration tests."""

import json
import os
import re
import subprocess
import sys

from tests.integration.conftest import ROOT, ansible_env, write_private

PLAYBOOK = os.path.join(ROOT, "playbooks", "migrate.yml")
# The role tests' servers' password: quotes and a backslash, which every layer must pass intact.
PASSWORD = "r0le 'pass\":w\\rd"


UNSET = object()  # a variable override that removes the variable


class Play:
    """ansible-playbook with vars in a 0600 file and localhost running the migration."""

    def __init__(self, tmp_path, source, target):
        self.dir = tmp_path
        self.report = str(tmp_path / "report.json")
        self.work_dir = tmp_path / "work"
        self.work_dir.mkdir()
        self.fleet_report = str(tmp_path / "fleet.json")
        self.vars = {"db_migration_source": source.endpoint(), "db_migration_target": target.endpoint(),
                     "db_migration_work_dir": str(self.work_dir), "db_migration_report_path": self.report,
                     "db_migration_fleet_report_path": self.fleet_report}
        self.inventory = str(tmp_path / "inventory.yml")
        write_private(self.inventory, json.dumps({"all": {"hosts": {"localhost": {
            "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}))

    def argv(self, playbook, args, overrides):
        variables = dict((k, v) for k, v in dict(self.vars, **overrides).items() if v is not UNSET)
        vars_file = str(self.dir / "vars.json")
        write_private(vars_file, json.dumps(variables))
        return [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", self.inventory,
                "-e", "@" + vars_file, playbook] + list(args)

    def popen(self, playbook=PLAYBOOK, *args, env=None, **overrides):
        """Start ansible-playbook (stdout and stderr together, as text) and return the process."""
        return subprocess.Popen(self.argv(playbook, args, overrides), env=ansible_env(env), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, cwd=str(self.dir))

    def __call__(self, playbook=PLAYBOOK, *args, env=None, timeout=900, **overrides):
        proc = subprocess.run(self.argv(playbook, args, overrides), env=ansible_env(env), capture_output=True,
                              text=True, timeout=timeout, cwd=str(self.dir), check=False)
        proc.output = proc.stdout + proc.stderr
        recap = re.search(r"localhost\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", proc.stdout)
        proc.changed = int(recap.group(2)) if recap else None
        return proc

    def report_json(self):
        with open(self.report) as handle:
            return json.load(handle)


def databases(server):
    return set(r[0] for r in server.execute("SELECT datname FROM pg_database WHERE NOT datistemplate"))
