"""The example inventory parses, and its vault decrypts with the documented example password."""

import json
import os
import subprocess
import sys

from tests.integration.conftest import ROOT, ansible_env, write_private


def test_example_inventory_with_vaulted_passwords(tmp_path):
    password_file = str(tmp_path / "vault-password")
    write_private(password_file, "codacy-example\n")
    out = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-inventory"),
                          "-i", os.path.join(ROOT, "examples", "inventory"), "--vault-password-file", password_file,
                          "--host", "migrator.example.internal"], env=ansible_env(), capture_output=True, text=True,
                         check=True).stdout
    host = json.loads(out)
    assert host["db_migration_hosts"] == "migration"
    assert host["vault_db_migration_source_password"] == "source-password-here"
    assert host["db_migration_target"]["password"] == "{{ vault_db_migration_target_password }}"
    with open(os.path.join(ROOT, "examples", "inventory", "group_vars", "migration", "vault.yml")) as handle:
        assert handle.readline().startswith("$ANSIBLE_VAULT;")
