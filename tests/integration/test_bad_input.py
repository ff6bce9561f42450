"""Bad input to the role: each case ends in one clear message naming the value and what to do,
and changes nothing on the target. (Module cases are in test_module.py and the unit tests; the
full list is in tests/README.md.)"""

import pytest

from tests.integration.playbook import PASSWORD, UNSET, Play, databases
from tests.support import dataset
from tests.support.pgserver import PgServer


@pytest.fixture(scope="module")
def role_servers():
    with PgServer(password=PASSWORD) as source, PgServer(password=PASSWORD) as target:
        dataset.generate(source.params(), scale_mb=1, databases=["accounts", "jobs"], progress=lambda *args: None)
        yield source, target


@pytest.fixture
def role_play(tmp_path, role_servers):
    return Play(tmp_path, *role_servers)


def endpoint(server, **changes):
    return dict(server.endpoint(), **changes)


CASES = [
    # (id, variables given as a function of (source, target), expected text)
    # Each refusal of the database list is a unit test (tests/unit/.../test_preflight.py); this one
    # proves that the role's preflight names the role's variable.
    ("empty database list", lambda s, t: {"db_migration_databases": []},
     "db_migration_databases is empty: list the databases to migrate"),
    ("concurrency 0", lambda s, t: {"db_migration_concurrency": 0},
     "db_migration_concurrency must be at least 1 (got 0)"),
    ("jobs 0", lambda s, t: {"db_migration_jobs": 0}, "db_migration_jobs must be between 1 and 64 (got 0)"),
    ("jobs 100", lambda s, t: {"db_migration_jobs": 100}, "db_migration_jobs must be between 1 and 64 (got 100)"),
    ("negative timeout", lambda s, t: {"db_migration_timeout": -1}, "db_migration_timeout must be 0 or more seconds"),
    ("progress interval 0", lambda s, t: {"db_migration_progress_interval": 0},
     "db_migration_progress_interval must be at least 1 second (got 0)"),
    ("source without host", lambda s, t: {"db_migration_source": {"user": "postgres"}},
     "db_migration_source.host is missing: set it to the server's host name or address"),
    ("target without keys", lambda s, t: {"db_migration_target": {}},
     "db_migration_target.host is missing: set it to the server's host name or address"),
    ("empty user", lambda s, t: {"db_migration_source": endpoint(s, user="")},
     "db_migration_source.user is empty: set it to the role to connect as"),
    ("source not set", lambda s, t: {"db_migration_source": UNSET},
     "db_migration_source is not set for localhost: give the server that holds the databases now"),
    ("target not set", lambda s, t: {"db_migration_target": UNSET},
     "db_migration_target is not set for localhost: give the server that receives the databases"),
    ("port that is not a number", lambda s, t: {"db_migration_target": endpoint(t, port="fivefour")},
     "fivefour"),
    ("unknown sslmode", lambda s, t: {"db_migration_target": endpoint(t, sslmode="sometimes")},
     "sslmode must be one of: disable, allow, prefer, require, verify-ca, verify-full, got: sometimes"),
    ("unknown verify mode", lambda s, t: {"db_migration_verify": "everything"},
     "db_migration_verify must be one of: counts, checksums, none, got: everything"),
    ("work_dir that is a file", lambda s, t: {"db_migration_work_dir": "/etc/hostname"},
     "db_migration_work_dir /etc/hostname is not a directory"),
    ("unresolvable host", lambda s, t: {"db_migration_target": endpoint(t, host="no-such-host.invalid")},
     "target host 'no-such-host.invalid' cannot be resolved"),
    ("wrong password", lambda s, t: {"db_migration_target": endpoint(t, password="wrong")},
     "check db_migration_target.user and db_migration_target.password"),
    ("source and target the same server under another name",
     lambda s, t: {"db_migration_target": endpoint(s, host="localhost"), "db_migration_databases": ["accounts"]},
     "source and target are the same database"),
    ("unknown role variable type", lambda s, t: {"db_migration_force": "maybe"}, "maybe"),
]


@pytest.mark.parametrize("variables, expected", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_bad_role_input(role_servers, role_play, variables, expected):
    source, target = role_servers
    before = databases(target)
    result = role_play(**variables(source, target))
    assert result.returncode != 0
    assert expected in result.stdout, result.output[-3000:]
    assert databases(target) == before


@pytest.mark.parametrize("variables", [
    {"db_migration_source": {"user": "postgres"}},
    {"db_migration_target": {}},
    {"db_migration_source": UNSET},
], ids=["key missing", "empty dict", "variable unset"])
def test_missing_server_keys_are_one_line_each_without_argument_spec_dump(role_play, variables):
    result = role_play(**variables)
    assert result.returncode != 0
    assert "argument_spec_data" not in result.output and "Validation of arguments failed" not in result.output
    assert "db_migration_source.password" not in result.output  # no dump of what was given either
    # The task that found it (rescued, so that the fleet summary is printed), then the installation's own
    # failure, which repeats why for a playbook that includes the role: each one short, naming the variable.
    failures = [text.split("\n\n", 1)[0] for text in result.stdout.split("fatal:")[1:]]
    assert failures and all(len(failure) < 1000 for failure in failures), failures
    named = "db_migration_source" if "db_migration_source" in variables else "db_migration_target"
    assert all(named in failure for failure in failures), failures
