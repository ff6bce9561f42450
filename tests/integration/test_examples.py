"""The README's example inventory: it parses, its vault decrypts with the documented example
password, and, copied and edited as the README says, it runs on the host it names."""

import json
import os
import re
import shutil
import subprocess
import sys

import yaml

from tests.integration.conftest import ROOT, ansible_env, write_private
from tests.support import dataset
from tests.support.compare import compare
from tests.support.pgserver import PgServer

EXAMPLE = os.path.join(ROOT, "examples", "inventory")
BIN = os.path.dirname(sys.executable)
HOST = "migrator.example.internal"


def test_example_inventory_with_vaulted_passwords(tmp_path):
    password_file = str(tmp_path / "vault-password")
    write_private(password_file, "codacy-example\n")
    out = subprocess.run([os.path.join(BIN, "ansible-inventory"), "-i", EXAMPLE, "--vault-password-file",
                          password_file, "--host", HOST], env=ansible_env(), capture_output=True, text=True,
                         check=True).stdout
    host = json.loads(out)
    assert "db_migration_hosts" not in host  # the playbook runs on the group codacy_migration
    assert host["vault_db_migration_source_password"] == "source-password-here"
    assert host["db_migration_target"]["password"] == "{{ vault_db_migration_target_password }}"
    with open(os.path.join(EXAMPLE, "group_vars", "codacy_migration", "vault.yml")) as handle:
        assert handle.readline().startswith("$ANSIBLE_VAULT;")
    graph = subprocess.run([os.path.join(BIN, "ansible-playbook"), "-i", EXAMPLE, "--list-hosts",
                            os.path.join(ROOT, "playbooks", "migrate.yml")], env=ansible_env(), capture_output=True,
                           text=True, check=True).stdout
    assert re.search(r"hosts \(1\):\s+%s\s*$" % re.escape(HOST), graph), graph


def test_example_inventory_runs_on_the_host_it_names(tmp_path):
    """The example copied and edited as the README says (servers, vault), its migration host a
    local connection under its own name, run with nothing passed by -e."""
    password = "ex'ample \"pa:ss\\word"
    with PgServer(password=password) as source, PgServer(password=password) as target:
        dataset.generate(source.params(), scale_mb=1, databases=["accounts", "jobs", "listener"],
                         progress=lambda *args: None)
        inventory = tmp_path / "inventory"
        shutil.copytree(EXAMPLE, str(inventory))
        (inventory / "host_vars").mkdir()
        (inventory / "host_vars" / (HOST + ".yml")).write_text(yaml.safe_dump(
            {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}))
        group_vars = inventory / "group_vars" / "codacy_migration"
        variables = yaml.safe_load((group_vars / "vars.yml").read_text())
        for name, server in (("db_migration_source", source), ("db_migration_target", target)):
            variables[name] = dict(variables[name], host=server.host, port=server.port, user=server.superuser)
            variables[name].pop("sslrootcert", None)
            variables[name]["sslmode"] = "prefer"
        (tmp_path / "work").mkdir()
        variables.update(db_migration_work_dir=str(tmp_path / "work"), db_migration_jobs=2)
        (group_vars / "vars.yml").write_text(yaml.safe_dump(variables))
        # `ansible-vault create` of the README, done with a password file.
        vault_password = str(tmp_path / "vault-password")
        write_private(vault_password, "test-vault-password\n")
        plain = str(tmp_path / "vault-plain.yml")
        write_private(plain, yaml.safe_dump({"vault_db_migration_source_password": password,
                                             "vault_db_migration_target_password": password}))
        os.unlink(str(group_vars / "vault.yml"))
        subprocess.run([os.path.join(BIN, "ansible-vault"), "encrypt", "--vault-password-file", vault_password,
                        "--output", str(group_vars / "vault.yml"), plain], env=ansible_env(), check=True,
                       capture_output=True)
        os.unlink(plain)

        run = subprocess.run([os.path.join(BIN, "ansible-playbook"), "-i", str(inventory), "--vault-password-file",
                              vault_password, os.path.join(ROOT, "playbooks", "migrate.yml")],
                             env=ansible_env({"PWD": str(tmp_path)}), cwd=str(tmp_path), capture_output=True,
                             text=True, timeout=900, check=False)
        assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
        recap = run.stdout.split("PLAY RECAP", 1)[1]
        assert re.search(r"^%s\s*: ok=\d+\s+changed=[1-9]" % re.escape(HOST), recap, re.M), recap
        assert "localhost" not in recap
        assert re.search(r"^\[%s\] " % re.escape(HOST), run.stdout, re.M), "no progress line of %s" % HOST
        # Codacy's databases that the source has, named in the plan; crow and the rest are absent.
        assert "accounts, jobs, listener" in run.stdout
        for name in ("accounts", "jobs", "listener"):
            assert compare(source.params(), name, target.params(), name) == []
        assert password not in run.stdout + run.stderr
