"""The fleet's pure logic: what installations that share a migration host or a server need
together, and the fleet summary built from every installation's hostvars."""

from ansible_collections.codacy.selfhosted.plugins.filter import migration as filters

GB = 1024 ** 3


def host(name, machine="m1", device=1, free=10 * GB, needed=0, servers=(), problems=(), installation=None):
    return {"_db_migration_installation": {"name": installation or name},
            "_db_migration_preflight": {"problems": list(problems), "shared": {
                "machine": machine, "work_dir": {"path": "/var/tmp", "device": device, "free": free, "needed": needed},
                "servers": [dict(role=role, address="db:%s" % sid, id=sid, room=room, needed=need)
                            for role, sid, room, need in servers]}}}


def problems(hosts, me):
    names = [name for name, _vars in hosts]
    return filters.migration_shared_problems([hostvars for _name, hostvars in hosts], names, me)


def test_alone_nothing_is_shared():
    assert problems([("eu", host("eu", needed=20 * GB, servers=[("target", "s1", 10, 50)]))], "eu") == []


def test_dumps_on_one_file_system_of_one_host_add_up():
    hosts = [("eu", host("eu", needed=6 * GB)), ("us", host("us", needed=6 * GB))]
    [found] = problems(hosts, "eu")
    assert found.startswith("installations eu, us write their dumps to the same file system on the same migration host")
    assert "together they need about 12.0 GB but it has 10.0 GB free" in found


def test_other_host_or_file_system_or_streaming_shares_no_disk():
    for other in (host("us", machine="m2", needed=6 * GB), host("us", device=2, needed=6 * GB), host("us", needed=0)):
        assert problems([("eu", host("eu", needed=6 * GB)), ("us", other)], "eu") == []


def test_connections_to_one_server_add_up_whatever_its_name_or_role():
    hosts = [("eu", host("eu", servers=[("target", "sys-1", 15, 10), ("source", "sys-2", 100, 10)])),
             ("us", host("us", servers=[("source", "sys-1", 14, 10)]))]
    [found] = problems(hosts, "eu")
    assert found == ("installations eu, us use the same server db:sys-1 (the target of eu): together they open up to 20 "
                     "connections but it allows 14 more: lower db_migration_concurrency or db_migration_jobs of some, "
                     "or migrate them one after the other (--limit)")
    assert problems(hosts, "us")[0].startswith("installations eu, us use the same server db:sys-1 (the source of us)")


def test_installations_that_will_not_run_do_not_count():
    hosts = [("eu", host("eu", needed=6 * GB)), ("us", host("us", needed=6 * GB, problems=["wrong password"]))]
    assert problems(hosts, "eu") == []


def test_an_installation_name_given_twice():
    hosts = [("eu-a", host("eu-a", installation="eu")), ("eu-b", host("eu-b", installation="eu"))]
    assert problems(hosts, "eu-a") == ["installation name eu is given to inventory hosts eu-a, eu-b: give each its own "
                                       "db_migration_installation (it names the run directory and the report)"]


def report(*databases):
    return {"databases": [dict({"target_name": d["name"], "failed": False, "source_bytes": 2 * GB, "reasons": ["why"],
                                "phases": {"total": 12.5}, "verified": {"rows": 100, "equal": True}}, **d)
                          for d in databases]}


def test_fleet_summary_of_done_failed_and_unreached_installations():
    hosts = [
        {"_db_migration_installation": {"name": "eu", "report_path": "/r/eu.json"},
         "_db_migration_report": report({"name": "accounts", "action": "migrated"},
                                        {"name": "jobs", "action": "unchanged"})},
        {"_db_migration_installation": {"name": "us", "report_path": "/r/us.json"},
         "_db_migration_failure": {"task": "Stop when anything would go wrong",
                                   "message": ["Preflight found 1 problem; nothing was written:", "wrong password"]}},
        {},
    ]
    fleet = filters.migration_fleet(hosts, ["eu", "us", "apac"])
    by_name = dict((item["installation"], item) for item in fleet["installations"])
    assert [by_name[n]["status"] for n in ("eu", "us", "apac")] == ["ok", "failed", "no result"]
    assert by_name["eu"]["report"] == "/r/eu.json" and by_name["us"]["report"] is None
    assert by_name["eu"]["databases"][0] == {"name": "accounts", "target_name": "accounts", "action": "migrated",
                                             "failed": False, "source_bytes": 2 * GB, "seconds": 12.5,
                                             "verified_rows": 100, "why": "why"}
    assert fleet["totals"]["actions"] == {"migrated": 1, "unchanged": 1}
    lines = filters.migration_fleet_table(fleet)
    assert any(line.startswith("us ") and line.endswith("Preflight found 1 problem; nothing was written: wrong password "
                                                        "[in: Stop when anything would go wrong]") for line in lines)
    assert any(line.startswith("apac") and "no result" in line for line in lines)
    assert lines[-1] == "3 installations: 1 ok, 2 failed; 2 databases: 1 migrated, 1 unchanged"


def test_databases_of_an_installation_that_failed_before_they_ran_are_not_run():
    """Its plan said what would happen; the summary must not count that as done."""
    plan = [{"name": "analysis", "target_name": "analysis", "action": "migrated", "size": GB,
             "reasons": ["the target database will be created"]},
            {"name": "jobs", "target_name": "jobs", "action": "unchanged", "size": GB, "reasons": ["unchanged"]}]
    hosts = [{"_db_migration_installation": {"name": "eu"}, "_db_migration_plan": plan,
              "_db_migration_failure": {"task": "Migrate the databases", "message": "interrupted"}}]
    fleet = filters.migration_fleet(hosts, ["eu"])
    assert [d["action"] for d in fleet["installations"][0]["databases"]] == ["not run", "unchanged"]
    assert filters.migration_fleet_table(fleet)[-1] == "1 installation: 0 ok, 1 failed; 2 databases: 1 not run, " \
                                                       "1 unchanged"
