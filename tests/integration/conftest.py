"""Fixtures for integration tests: two throwaway PostgreSQL servers and a way to run the module
exactly as Ansible runs it (ansible-playbook with the collection from the checkout).

The servers are real (initdb/pg_ctl from the PostgreSQL server packages) and a missing binary
fails the session: nothing here is ever skipped.
"""

import itertools
import json
import os
import subprocess
import sys
import tempfile

import pytest

from tests.support.pgserver import PgServer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Quotes, spaces, ':' and '\' in a password must survive the passfile and never reach argv.
PASSWORD = "s3cr'et \"pa:ss\\word SENTINEL-7f3a"
ANSIBLE_PLAYBOOK = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")

_names = itertools.count(1)


@pytest.fixture(scope="session")
def source():
    with PgServer(password=PASSWORD) as server:
        yield server


@pytest.fixture(scope="session")
def target():
    with PgServer(password=PASSWORD) as server:
        yield server


@pytest.fixture
def dbname(request):
    """A database name unique to the test (tests share the two servers)."""
    return "t%d_%s" % (next(_names), request.node.name.replace("[", "_").replace("]", "")[:30].lower())


def ansible_env(extra=None):
    env = dict(os.environ)
    env.update({
        "ANSIBLE_COLLECTIONS_PATH": os.path.join(ROOT, "build", "collections"),
        "ANSIBLE_LOCALHOST_WARNING": "False",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "False",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
        "ANSIBLE_LOCAL_TEMP": tempfile.gettempdir(),
    })
    env.update(extra or {})
    return env


def write_private(path, text):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


class ModuleRunner:
    """Run codacy.selfhosted.codacy_db_migrate (or `module`) through ansible-playbook and return its result."""

    def __init__(self, tmpdir, module="codacy.selfhosted.codacy_db_migrate"):
        self.tmpdir = str(tmpdir)
        self.module = module

    def playbook(self, args, check=False):
        """Write a playbook running the module once and saving the registered result as JSON.

        The task's arguments are written into the playbook file (0600), never on a command line.
        (The registered result is saved rather than read from a JSON callback, since callbacks
        overwrite a result's `action` key with the task's action name; by the collection's report
        action, which writes on the controller without running a module.)"""
        number = next(_names)
        self.result_path = os.path.join(self.tmpdir, "result-%d.json" % number)
        play = [{"hosts": "localhost", "connection": "local", "gather_facts": False, "tasks": [
            {"name": "migrate", self.module: args, "check_mode": check,
             "diff": True, "ignore_errors": True, "register": "result"},
            {"name": "save the result", "codacy.selfhosted.codacy_db_report": {
                "content": "{{ result }}", "dest": self.result_path},
             "check_mode": False, "diff": False}]}]
        path = os.path.join(self.tmpdir, "play-%d.yml" % number)
        write_private(path, json.dumps(play))
        return path

    def popen(self, args, check=False, verbosity=0, **kwargs):
        argv = [ANSIBLE_PLAYBOOK, "-i", "localhost,", self.playbook(args, check)]
        if verbosity:
            argv.append("-" + "v" * verbosity)
        return subprocess.Popen(argv, env=ansible_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                cwd=self.tmpdir, **kwargs)

    def result(self, proc):
        """Wait for a run started with popen() and return the module's result."""
        out, err = proc.communicate(timeout=900)
        if not os.path.exists(self.result_path):
            raise AssertionError("ansible-playbook saved no result (rc %s):\n%s\n%s" % (proc.returncode, out, err))
        with open(self.result_path) as handle:
            result = json.load(handle)
        result["_stdout"], result["_stderr"] = out, err
        return result

    def __call__(self, args, check=False, verbosity=0):
        return self.result(self.popen(args, check, verbosity))


@pytest.fixture
def run_module(tmp_path):
    return ModuleRunner(tmp_path)


@pytest.fixture
def work_dir(tmp_path):
    path = tmp_path / "work"
    path.mkdir()
    return str(path)


def module_args(source, target, database, work_dir, **extra):
    args = {"database": database, "source": source.endpoint(), "target": target.endpoint(),
            "work_dir": work_dir, "jobs": 2}
    args.update(extra)
    return args


def succeeded(result, action):
    """Assert that a run did not fail and took `action`; return the result."""
    assert not result.get("failed"), "the run (%s: %s) failed in phase %s: %s" % (
        result.get("action"), result.get("reasons"), result.get("phase"), result.get("msg"))
    assert result["action"] == action, "expected %s, got %s: %s" % (action, result["action"], result.get("reasons"))
    return result


def run_in_process(args, check_mode=False):
    """Run the module's code in this process and return what the module would return.

    For the tests that must act within seconds of a write (a session's statistics are flushed
    after about 10 s of idleness) and for the long matrix of object kinds, where starting
    ansible-playbook for each run would dominate. The arguments go through the module's own
    argument spec and validation; `failed` and `msg` are set as the module sets them."""
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

    from ansible_collections.codacy.selfhosted.plugins.modules import codacy_db_migrate

    validated = ArgumentSpecValidator(codacy_db_migrate.ARGUMENT_SPEC).validate(args)
    assert not validated.error_messages, validated.error_messages
    result = codacy_db_migrate.run_one(validated.validated_parameters, check_mode=check_mode)
    result.setdefault("warnings", [])
    return result
