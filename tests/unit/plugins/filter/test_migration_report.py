"""migration_report: the report's entries, totals and problems, branch by branch (failed, a copy
that differs, the plan of a run that did not happen, unchanged, online state and downtime)."""

from ansible_collections.codacy.selfhosted.plugins.filter.migration import migration_report


def planned(name, action="migrated", size=100, reasons=("the target database will be created",), **extra):
    return dict({"name": name, "target_name": "t_" + name, "size": size, "action": action,
                 "reasons": list(reasons)}, **extra)


def ran(name, action="migrated", equal=True, **extra):
    return dict({"database": name, "action": action, "changed": action != "unchanged", "reasons": ["copied"],
                 "dump_bytes": 40, "phases": {"total": 1.5},
                 "verified": {"mode": "full", "tables": 3, "rows": 7, "equal": equal}}, **extra)


def test_a_run_that_went_well_has_no_problem_and_adds_up():
    report = migration_report([planned("a", size=100), planned("b", size=50)], [ran("a"), ran("b", action="refreshed")])
    assert report["mode"] == "run" and report["problems"] == []
    [a, b] = report["databases"]
    assert a == {"name": "a", "target_name": "t_a", "source_bytes": 100, "action": "migrated", "changed": True,
                 "failed": False, "reasons": ["copied"], "dump_bytes": 40, "phases": {"total": 1.5},
                 "verified": {"mode": "full", "tables": 3, "rows": 7, "equal": True}}
    assert b["action"] == "refreshed"
    assert report["totals"] == {"databases": 2, "changed": 2, "failed": 0, "source_bytes": 150, "dump_bytes": 80,
                                "rows_verified": 14}


def test_a_failed_migration_says_its_phase_and_message():
    failure = ran("a", failed=True, phase="restore", msg="pg_restore: out of disk", verified=None)
    report = migration_report([planned("a")], [failure])
    [entry] = report["databases"]
    assert entry["failed"] is True and entry["phase"] == "restore" and entry["message"] == "pg_restore: out of disk"
    assert entry["verified"] == {"mode": None, "tables": 0, "rows": 0, "equal": None}
    assert report["problems"] == ["a: failed in phase restore: pg_restore: out of disk"]
    assert report["totals"]["failed"] == 1


def test_a_copy_that_differs_is_a_problem_for_every_copying_action():
    for action in ("migrated", "refreshed", "resumed"):
        report = migration_report([planned("a")], [ran("a", action=action, equal=False)])
        assert report["problems"] == ["a: the copy differs from the source"], action
        assert report["databases"][0]["failed"] is False


def test_an_unequal_verification_of_an_action_that_copies_nothing_is_not_a_copy_problem():
    report = migration_report([planned("a")], [ran("a", action="unchanged", equal=False)])
    assert report["problems"] == []


def test_without_results_the_report_is_the_plan_and_what_would_change_is_a_problem():
    plan = [planned("a", reasons=["the target database will be created"]),
            planned("b", action="refused", reasons=["data this collection did not put there", 42]),
            planned("c", action="unchanged", reasons=["the copy is current"],
                    verified={"mode": "full", "tables": 2, "rows": 5, "equal": True, "copied_at": "2026-11-30T08:00:00Z"})]
    report = migration_report(plan)
    assert report["mode"] == "plan"
    assert report["problems"] == ["a: migrated (the target database will be created)",
                                  "b: refused (data this collection did not put there; 42)"]
    a, b, c = report["databases"]
    assert (a["action"], a["changed"], a["reasons"]) == ("migrated", True, ["the target database will be created"])
    assert (b["action"], b["changed"]) == ("refused", True)
    assert (c["action"], c["changed"]) == ("unchanged", False)
    assert c["verified"] == {"mode": "full", "tables": 2, "rows": 5, "equal": True, "copied_at": "2026-11-30T08:00:00Z"}
    assert a["dump_bytes"] == 0 and a["phases"] == {} and "phase" not in a and "state" not in a
    assert report["totals"]["rows_verified"] == 5 and report["totals"]["changed"] == 2


def test_a_database_found_unchanged_did_not_run_and_is_no_problem_in_a_run():
    """In a run (results given), databases the plan found unchanged have no result of their own."""
    plan = [planned("a"), planned("u", action="unchanged", reasons=["the copy is current"],
                                  verified={"mode": "quick", "tables": 1, "rows": 9, "equal": True})]
    report = migration_report(plan, [ran("a")])
    assert report["problems"] == []
    unchanged = report["databases"][1]
    assert (unchanged["action"], unchanged["changed"], unchanged["failed"]) == ("unchanged", False, False)
    assert unchanged["reasons"] == ["the copy is current"] and unchanged["verified"]["rows"] == 9
    assert report["totals"]["rows_verified"] == 16


def test_a_planned_database_without_result_in_a_run_is_not_reported_as_planned():
    """results given but without this database (results is not None): no plan problem."""
    report = migration_report([planned("a")], [])
    assert report["mode"] == "run" and report["problems"] == []
    assert report["databases"][0]["changed"] is True


def test_online_migration_keeps_the_state_and_a_cutovers_downtime():
    plan = [planned("a"), planned("b"), planned("c")]
    results = [ran("a", action="following", state="following"),
               ran("b", action="cut_over", state="cut_over", downtime=2.25),
               ran("c", downtime=0)]
    a, b, c = migration_report(plan, results)["databases"]
    assert a["state"] == "following" and "downtime" not in a
    assert b["state"] == "cut_over" and b["downtime"] == 2.25
    assert "state" not in c and c["downtime"] == 0  # a downtime of 0 is still a downtime


def test_the_parallel_paths_achieved_parallelism_is_kept():
    results = [ran("a", parallelism={"copy_streams": 1.8, "index_builds": 0.6}), ran("b")]
    a, b = migration_report([planned("a"), planned("b")], results)["databases"]
    assert a["parallelism"] == {"copy_streams": 1.8, "index_builds": 0.6} and "parallelism" not in b


def test_a_plan_entry_without_size_counts_as_zero_bytes():
    report = migration_report([planned("a", size=None)], [ran("a", dump_bytes=None)])
    assert report["databases"][0]["source_bytes"] is None
    assert report["totals"]["source_bytes"] == 0 and report["totals"]["dump_bytes"] == 0
