"""codacy_db_wait's action plugin does the module's work itself only where the module would run
as the same user on the same machine, with the paths expanded as the module expands them."""

from types import SimpleNamespace

import pytest

from ansible_collections.codacy.selfhosted.plugins.action.codacy_db_wait import expand_paths, runs_here


@pytest.mark.parametrize("transport, become, environment, here", [
    ("local", None, None, True),
    ("local", None, [], True),
    ("local", None, [{}], True),  # what a role's task carries when nothing set one
    ("local", None, [{"PATH": "/usr/lib/postgresql/17/bin"}], False),  # any environment: the module's, not ours
    ("local", object(), None, False),  # another user: its HOME, its files
    ("local", None, [{"HOME": "/srv/migrator"}], False),  # the module would see another HOME
    ("ssh", None, None, False),
    ("community.docker.docker", None, None, False),
])
def test_only_a_local_connection_without_become_or_environment_runs_here(transport, become, environment, here):
    assert runs_here(SimpleNamespace(transport=transport, become=become), environment) is here


def test_paths_are_expanded_as_the_module_would(monkeypatch):
    monkeypatch.setenv("HOME", "/home/migrator")
    monkeypatch.setenv("RUNS", "/srv/runs")
    args = {"interval": 10, "_async_dir": "~/.ansible_async", "_run_dirs": ["$RUNS/production", "/abs"],
            "_work_dir": "~/work", "_jobs": [{"progress_file": "~/not-a-path-option"}]}
    expanded = expand_paths(args)
    assert expanded["_async_dir"] == "/home/migrator/.ansible_async"
    assert expanded["_run_dirs"] == ["/srv/runs/production", "/abs"]
    assert expanded["_work_dir"] == "/home/migrator/work"
    assert expanded["_jobs"] == args["_jobs"], "the jobs' files are not path options: passed as they are"
    assert args["_async_dir"] == "~/.ansible_async", "the caller's arguments are left alone"
