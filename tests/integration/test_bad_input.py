"""Bad input to the role: each case ends in one clear message naming the value and what to do,
and changes nothing on the target. (Module cases are in test_module.py and the unit tests; the
full list is in tests/README.md.)"""

import pytest

from tests.integration.test_role import Play, databases


@pytest.fixture(scope="module")
def role_servers():
    from tests.integration.test_role import PASSWORD, PgServer, dataset
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
    ("empty database list", lambda s, t: {"db_migration_databases": []},
     "databases is empty: list the databases to migrate"),
    ("duplicated database", lambda s, t: {"db_migration_databases": ["accounts", "accounts"]},
     "databases: accounts is listed twice"),
    ("two sources into one target", lambda s, t: {"db_migration_databases": [
        {"name": "accounts", "target_name": "one"}, {"name": "jobs", "target_name": "one"}]},
     "accounts and jobs would both be migrated into target database one"),
    ("item of the wrong type", lambda s, t: {"db_migration_databases": ["accounts", 42]},
     "databases: 42 is neither a name nor a dict with a name"),
    ("item with an unknown key", lambda s, t: {"db_migration_databases": [{"name": "jobs", "target": "x"}]},
     "has unknown keys target (allowed: name, target_name)"),
    ("concurrency 0", lambda s, t: {"db_migration_concurrency": 0}, "concurrency must be at least 1 (got 0)"),
    ("jobs 0", lambda s, t: {"db_migration_jobs": 0}, "jobs must be at least 1 (got 0)"),
    ("source without host", lambda s, t: {"db_migration_source": {"user": "postgres"}},
     "missing required arguments: host found in db_migration_source"),
    ("port that is not a number", lambda s, t: {"db_migration_target": endpoint(t, port="fivefour")},
     "fivefour"),
    ("unknown sslmode", lambda s, t: {"db_migration_target": endpoint(t, sslmode="sometimes")},
     "sslmode must be one of: disable, allow, prefer, require, verify-ca, verify-full, got: sometimes"),
    ("unknown verify mode", lambda s, t: {"db_migration_verify": "everything"},
     "db_migration_verify must be one of: counts, checksums, none, got: everything"),
    ("work_dir that is a file", lambda s, t: {"db_migration_work_dir": "/etc/hostname"},
     "work_dir /etc/hostname is not a directory"),
    ("unresolvable host", lambda s, t: {"db_migration_target": endpoint(t, host="no-such-host.invalid")},
     "target host 'no-such-host.invalid' cannot be resolved"),
    ("wrong password", lambda s, t: {"db_migration_target": endpoint(t, password="wrong")},
     "target authentication failed for postgres@127.0.0.1"),
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
