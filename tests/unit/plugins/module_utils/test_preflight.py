"""The preflight's pure logic. normalize_databases: the list of databases as the user wrote it,
checked and made uniform; every refusal names the option as the caller spelled it and the bad
item. Then the decisions that need no server: sessions, the plan without a list, the room for dumps."""

import os

import pytest

from ansible_collections.codacy.selfhosted.plugins.module_utils import preflight
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


# -- the preflight's decisions that need no server --------------------------------------------------

class FakeModule:
    """What Preflight reads of AnsibleModule: its parameters and check mode."""

    check_mode = False

    def __init__(self, **params):
        self.params = dict(source={"host": "src", "port": 5432, "user": "u"},
                           target={"host": "tgt", "port": 5432, "user": "u"},
                           connect_timeout=10, names_prefix="", concurrency=3, data_path="directory", mode="offline",
                           allow_active_sessions=False)
        self.params.update(params)


@pytest.mark.parametrize("mode, allowed, kind, ending", [
    ("offline", False, "problem", "stop the Codacy application (and any other client) first, or set "
                                  "db_migration_allow_active_sessions: true for a trial run"),
    ("offline", True, "warning", "(allowed; writes after the dump are not copied)"),
    ("online", False, "warning", "(the application may run during an online copy)"),
    ("abort", False, "warning", "(the application may run during an online copy)"),
    ("cutover", False, "problem", "for a trial run"),
])
def test_sessions_on_the_source_are_a_problem_unless_online_or_allowed(mode, allowed, kind, ending):
    sessions = ["pid %d app" % n for n in range(7)]
    found, message = preflight.sessions_finding("jobs", sessions, mode, allowed, "db_migration_allow_active_sessions")
    assert found == kind and message.endswith(ending), message
    assert message.startswith("7 other sessions are connected to jobs on the source: pid 0 app; ")
    assert "pid 4 app" in message and "pid 5 app" not in message  # five named at most


def test_without_a_list_the_plan_is_codacys_databases_that_the_source_has():
    check = preflight.Preflight(FakeModule())
    plan = check.codacy_databases({"postgres", "accounts", "results", "other"})
    assert plan == [{"name": "accounts", "target_name": "accounts"}, {"name": "results", "target_name": "results"}]
    assert check.result["codacy_databases"]["missing"] == ["analysis", "filestore", "jobs", "metrics", "listener",
                                                           "crow"]
    assert check.problems == []


def test_without_a_list_and_none_of_codacys_databases_the_problem_names_what_the_source_has():
    check = preflight.Preflight(FakeModule(names_prefix="db_migration_"))
    assert check.codacy_databases({"postgres", "template1", "gitlab"}) == []
    assert check.problems == ["none of Codacy's databases (accounts, analysis, filestore, jobs, metrics, results, "
                              "listener, crow) exist on the source src:5432 (it has: gitlab): list the databases to "
                              "migrate in db_migration_databases"]


def test_the_migration_modules_messages_in_the_callers_words():
    check = preflight.Preflight(FakeModule(names_prefix="db_migration_"))
    assert check.in_callers_words("refused: set force: true to replace it; schemas: public") == \
        "refused: set db_migration_force: true to replace it; db_migration_schemas: public"
    assert check.in_callers_words("Point target_database at another database") == \
        "Point its target_name in db_migration_databases at another database"
    module_caller = preflight.Preflight(FakeModule())
    assert module_caller.in_callers_words("set force: true") == "set force: true"


@pytest.mark.parametrize("concurrency, needed_for", [(1, 1), (2, 2), (5, 3)])
def test_work_dir_must_hold_the_dumps_that_run_at_once(tmp_path, concurrency, needed_for):
    free = os.statvfs(str(tmp_path))
    free = free.f_bavail * free.f_frsize
    entries = [{"estimated_dump_bytes": free // 2 + 1}, {"estimated_dump_bytes": free // 2 + 1},
               {"estimated_dump_bytes": 1}]
    check = preflight.Preflight(FakeModule(work_dir=str(tmp_path), concurrency=concurrency,
                                           names_prefix="db_migration_"))
    check.check_space(entries)
    if needed_for == 1:
        assert check.problems == []
    else:
        assert len(check.problems) == 1
        assert "the dumps of the %d largest databases need about" % needed_for in check.problems[0]
        assert "choose another db_migration_work_dir, or lower db_migration_concurrency" in check.problems[0]


@pytest.mark.parametrize("data_path", ["stream", "parallel"])
def test_only_the_directory_data_path_needs_room_for_dumps(tmp_path, data_path):
    check = preflight.Preflight(FakeModule(work_dir=str(tmp_path), data_path=data_path))
    check.check_space([{"estimated_dump_bytes": 10 ** 18}])
    assert check.problems == []
