"""preflight.normalize_databases: the list of databases as the user wrote it, checked and made
uniform; every refusal names the option as the caller spelled it and the bad item."""

import pytest

from ansible_collections.codacy.selfhosted.plugins.module_utils.preflight import normalize_databases


def test_names_and_dicts_become_name_and_target_name():
    assert normalize_databases(["accounts", {"name": "results", "target_name": "codacy_results"},
                                {"name": "jobs"}, {"name": "metrics", "target_name": None}]) == [
        {"name": "accounts", "target_name": "accounts"},
        {"name": "results", "target_name": "codacy_results"},
        {"name": "jobs", "target_name": "jobs"},
        {"name": "metrics", "target_name": "metrics"},
    ]


def test_two_sources_may_swap_names_as_long_as_targets_differ():
    assert normalize_databases([{"name": "a", "target_name": "b"}, {"name": "b", "target_name": "a"}]) == [
        {"name": "a", "target_name": "b"}, {"name": "b", "target_name": "a"}]


@pytest.mark.parametrize("items, message", [
    ([], "db_migration_databases is empty: list the databases to migrate, or leave it unset for Codacy's databases"),
    (["accounts", "accounts"], "db_migration_databases: accounts is listed twice"),
    (["accounts", {"name": "accounts", "target_name": "other"}], "db_migration_databases: accounts is listed twice"),
    ([{"name": "a", "target_name": "x"}, {"name": "b", "target_name": "x"}],
     "db_migration_databases: a and b would both be migrated into target database x"),
    (["x", {"name": "b", "target_name": "x"}],
     "db_migration_databases: x and b would both be migrated into target database x"),
    (["accounts", 42], "db_migration_databases: 42 is neither a name nor a dict with a name: give e.g. `analysis` or "
                       "`{name: analysis, target_name: codacy_analysis}`"),
    ([{"target_name": "x"}], "db_migration_databases: {'target_name': 'x'} is neither a name nor a dict with a name"),
    ([{"name": 7}], "db_migration_databases: {'name': 7} is neither a name nor a dict with a name"),
    (["  "], "db_migration_databases: {'name': '  '} is neither a name nor a dict with a name"),
    ([["accounts"]], "db_migration_databases: ['accounts'] is neither a name nor a dict with a name"),
    ([{"name": "jobs", "target": "x"}],
     "db_migration_databases: {'name': 'jobs', 'target': 'x'} has unknown key target (allowed: name, target_name)"),
    ([{"name": "jobs", "target": "x", "owner": "y"}], "has unknown keys owner, target (allowed: name, target_name)"),
    (["bad\x00name"], "db_migration_databases: {'name': 'bad\\x00name'} contains a NUL character"),
    ([{"name": "a", "target_name": "b\x00"}], "contains a NUL character"),
])
def test_refusals_name_the_callers_option_and_the_item(items, message):
    with pytest.raises(ValueError) as err:
        normalize_databases(items, "db_migration_databases")
    assert message in str(err.value)
    assert str(err.value).startswith("db_migration_databases")


def test_the_option_is_called_databases_by_default():
    with pytest.raises(ValueError) as err:
        normalize_databases([])
    assert str(err.value).startswith("databases is empty")
