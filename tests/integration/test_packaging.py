"""The collection as users get it: the built tarball holds what it should, installs into an empty
collections path and runs `ansible-playbook codacy.selfhosted.migrate` from there; the execution
environment definition gives ansible-builder a valid build context."""

import json
import os
import subprocess
import sys
import tarfile

import yaml

from tests.integration.conftest import ROOT, write_private
from tests.support import dataset
from tests.support.compare import compare
from tests.support.pgserver import PgServer

BIN = os.path.dirname(sys.executable)


def run(argv, **kwargs):
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    proc = subprocess.run(argv, check=False, **kwargs)
    assert proc.returncode == 0, "%s failed:\n%s\n%s" % (argv[0], proc.stdout[-3000:], proc.stderr[-3000:])
    return proc


def test_built_collection_installs_and_runs_the_playbook(tmp_path):
    with open(os.path.join(ROOT, "galaxy.yml")) as handle:
        version = yaml.safe_load(handle)["version"]
    run([os.path.join(BIN, "ansible-galaxy"), "collection", "build", ROOT, "--output-path", str(tmp_path)])
    tarball = tmp_path / ("codacy-selfhosted-%s.tar.gz" % version)
    with tarfile.open(str(tarball)) as tar:
        names = tar.getnames()
    for required in ("MANIFEST.json", "FILES.json", "plugins/modules/codacy_db_migrate.py",
                     "roles/db_migration/meta/argument_specs.yml", "playbooks/migrate.yml", "README.md",
                     "meta/runtime.yml", "meta/execution-environment.yml", "changelogs/changelog.yaml"):
        assert required in names, required
    for unwanted in ("tests/output", "bench", "tests/bench", ".venv", "build", "demo", ".ci", "collections", ".cache"):
        assert not [name for name in names if name == unwanted or name.startswith(unwanted + "/")], unwanted
    assert not [name for name in names if "__pycache__" in name or ".pytest_cache" in name]

    collections = tmp_path / "collections"
    # A home of its own, so that no other copy of the collection (e.g. one ansible-lint put in
    # ~/.ansible) is found or makes the install a no-op.
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(collections), ANSIBLE_HOME=str(tmp_path / "home"),
               ANSIBLE_LOCALHOST_WARNING="False")
    run([os.path.join(BIN, "ansible-galaxy"), "collection", "install", str(tarball), "-p", str(collections)], env=env)
    env.pop("ANSIBLE_CONFIG", None)
    with PgServer(password="pkg pw:'1") as source, PgServer(password="pkg pw:'1") as target:
        dataset.generate(source.params(), scale_mb=1, databases=["accounts", "jobs"], progress=lambda *args: None)
        variables = str(tmp_path / "vars.json")
        write_private(variables, json.dumps({
            "db_migration_source": source.endpoint(), "db_migration_target": target.endpoint(),
            "db_migration_databases": ["accounts", "jobs"], "db_migration_work_dir": str(tmp_path),
            "db_migration_report_path": str(tmp_path / "report.json"),
            "db_migration_fleet_report_path": str(tmp_path / "fleet.json")}))
        inventory = str(tmp_path / "inventory.json")
        write_private(inventory, json.dumps({"all": {"hosts": {"localhost": {
            "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}))
        # From a directory outside the checkout, so that nothing but the installed copy is found.
        proc = run([os.path.join(BIN, "ansible-playbook"), "-i", inventory, "-e", "@" + variables,
                    "codacy.selfhosted.migrate"], env=env, cwd=str(tmp_path))
        assert str(collections) in run([os.path.join(BIN, "ansible-doc"), "-t", "role", "codacy.selfhosted.db_migration"],
                                       env=env, cwd=str(tmp_path)).stdout
        assert "All 2 databases hold a verified copy of their source." in proc.stdout
        for name in ("accounts", "jobs"):
            assert compare(source.params(), name, target.params(), name) == []


def test_execution_environment_build_context(tmp_path):
    context = tmp_path / "context"
    run([os.path.join(BIN, "ansible-builder"), "create", "-f", os.path.join(ROOT, "meta", "execution-environment.yml"),
         "-c", str(context)])
    with open(str(context / "_build" / "bindep.txt")) as handle:
        bindep = handle.read()
    assert "postgresql-client-17 [platform:dpkg]" in bindep and "postgresql17 [platform:rpm]" in bindep
    with open(str(context / "_build" / "requirements.txt")) as handle:
        assert "psycopg2" in handle.read()
    with open(str(context / "_build" / "requirements.yml")) as handle:
        assert "codacy.selfhosted" in handle.read()
    assert (context / "Dockerfile").exists() or (context / "Containerfile").exists()
