"""The db_migration role and playbooks/migrate.yml against two real PostgreSQL servers."""

import os
import pwd
import re

import pytest

from tests.integration.playbook import PASSWORD, PLAYBOOK, Play, databases
from tests.integration.features import create_database, execute
from tests.support import dataset
from tests.support.compare import compare
from tests.support.pgserver import PgServer

SIX = ["accounts", "analysis", "filestore", "jobs", "metrics", "results"]


@pytest.fixture
def servers():
    with PgServer(password=PASSWORD) as source, PgServer(password=PASSWORD) as target:
        yield source, target


@pytest.fixture
def six(servers):
    """The six Codacy databases, small, on the source."""
    source = servers[0]
    dataset.generate(source.params(), scale_mb=2, progress=lambda *args: None)
    return servers


@pytest.fixture
def play(tmp_path, servers):
    return Play(tmp_path, *servers)


def assert_all_equal(source, target, names=None):
    for name in names or SIX:
        differences = compare(source.params(), name, target.params(), name)
        assert differences == [], "%s: %s" % (name, differences)


def test_full_run_then_idempotent_rerun(six, play):
    source, target = six
    first = play()
    assert first.returncode == 0, first.output
    assert_all_equal(source, target)
    report = first_report = play.report_json()
    assert [d["action"] for d in report["databases"]] == ["migrated"] * 6
    assert all(d["verified"]["equal"] for d in report["databases"])
    assert oct(os.stat(play.report).st_mode & 0o777) == "0o600"
    assert PASSWORD not in open(play.report).read()
    # The plan says what will happen and why, and which databases; progress and the table follow.
    assert "databases: Codacy's that the source has: accounts, analysis, filestore, jobs, metrics, results " \
           "(it has no listener, crow)" in first.stdout
    assert re.search(r"results\s+will migrate\s+\S+ \w?B\s+the target database will be created", first.stdout)
    assert re.search(r"\[localhost\] results: migrated", first.stdout)
    assert re.search(r"results\s+migrated\s+\S+ \w?B .* \d+\s+\d+\s+the target database is empty", first.stdout)

    second = play()
    assert second.returncode == 0, second.output
    assert second.changed == 0, second.stdout
    report = play.report_json()
    assert [d["action"] for d in report["databases"]] == ["unchanged"] * 6
    # An unchanged database shows the verified figures of the copy it keeps, and why nothing ran.
    # (By name: the report lists the largest first, and reading a database can change its size.)
    copied = dict((d["name"], d) for d in first_report["databases"])
    assert sorted(copied) == sorted(d["name"] for d in report["databases"])
    for entry in report["databases"]:
        assert entry["verified"]["rows"] == copied[entry["name"]]["verified"]["rows"] > 0 \
            and entry["verified"]["equal"], entry
    rows = dict((d["name"], d["verified"]["rows"]) for d in report["databases"])
    assert re.search(r"results\s+unchanged\s+.*\s%d\s+the source is unchanged since the copy of " % rows["results"],
                     second.stdout), second.stdout

    # A change on the source: the plan and the table say which database is refreshed, and why.
    source.execute("UPDATE job SET attempts = attempts + 1 WHERE id = (SELECT min(id) FROM job)", dbname="jobs")
    third = play()
    assert third.returncode == 0, third.output
    assert re.search(r"jobs\s+will refresh\s+\S+ \w?B\s+source: write activity in public.job", third.stdout)
    assert re.search(r"jobs\s+refreshed\s+.*source: write activity in public.job", third.stdout)


def test_target_user_without_admin_rights_is_refused(six, play):
    source, target = six
    target.execute("CREATE ROLE plain LOGIN PASSWORD 'plainpw' CREATEDB")
    before = databases(target)
    result = play(db_migration_target=dict(target.endpoint(), user="plain", password="plainpw"))
    assert result.returncode != 0
    assert "target user plain@127.0.0.1:%d is neither SUPERUSER nor a member of rds_superuser" % target.port \
        in result.stdout
    assert databases(target) == before


def test_rds_like_admin_member_of_rds_superuser(servers, play):
    source, target = servers
    # The source belongs to the application's role, as in Codacy's chart.
    source.execute("CREATE ROLE codacy LOGIN CREATEDB PASSWORD 'codacypw'")
    dataset.generate(dict(source.params(), user="codacy", password="codacypw"), scale_mb=2,
                     progress=lambda *args: None)
    # What RDS gives its master user: no SUPERUSER; CREATEDB, CREATEROLE, membership of
    # rds_superuser, and of the application's role so that it can own its objects.
    target.execute("CREATE ROLE rds_superuser NOLOGIN; CREATE ROLE codacy LOGIN;"
                   " CREATE ROLE admin LOGIN NOSUPERUSER CREATEDB CREATEROLE PASSWORD 'adminpw';"
                   " GRANT rds_superuser TO admin; GRANT codacy TO admin")
    result = play(db_migration_target=dict(target.endpoint(), user="admin", password="adminpw"))
    assert result.returncode == 0, result.output
    assert "target admin@127.0.0.1:%d (PostgreSQL 15" % target.port in result.stdout
    assert "member of rds_superuser" in result.stdout
    # It may not see the sessions of roles it is not a member of: the preflight says what to grant.
    warnings = " ".join(result.stderr.split())
    assert "target user admin@127.0.0.1:%d cannot see the details of other roles' sessions" % target.port \
        in warnings and "GRANT pg_read_all_stats TO admin" in warnings
    assert_all_equal(source, target)
    owners = target.execute("SELECT DISTINCT pg_get_userbyid(datdba) FROM pg_database WHERE datname = ANY(%s)", (SIX,))
    assert owners == [("codacy",)]
    assert play(db_migration_target=dict(target.endpoint(), user="admin", password="adminpw")).changed == 0


def test_missing_source_database_fails_before_writing(six, play):
    source, target = six
    before = databases(target)
    result = play(db_migration_databases=SIX + ["nosuchdb"])
    assert result.returncode != 0
    assert "database nosuchdb does not exist on the source 127.0.0.1:%d (it has: " % source.port in result.stdout
    assert "fix db_migration_databases" in result.stdout
    assert databases(target) == before


def test_target_with_foreign_tables_fails_before_writing(six, play):
    source, target = six
    create_database(target, "jobs")
    execute(target, "jobs", "CREATE EXTENSION file_fdw; CREATE SERVER files FOREIGN DATA WRAPPER file_fdw;"
                            " CREATE FOREIGN TABLE legacy_jobs (id int) SERVER files OPTIONS (filename '/dev/null')")
    before = databases(target)
    result = play()
    assert result.returncode != 0
    assert "jobs: the target database holds data this module did not put there (foreign server files, foreign table " \
           "public.legacy_jobs); nothing was written. Point its target_name in db_migration_databases at an empty " \
           "database, or set db_migration_force: true to replace that content" in result.stdout
    assert databases(target) == before
    assert execute(target, "jobs", "SELECT to_regnamespace('codacy_migration')")[0][0] is None


def test_active_session_is_refused_then_allowed(six, play):
    source, target = six
    session = source.connect("analysis")
    try:
        refused = play()
        assert refused.returncode != 0
        assert re.search(r"1 other sessions are connected to analysis on the source: pid \d+ postgres@", refused.stdout)
        assert databases(target) == {"postgres"}
        allowed = play(db_migration_allow_active_sessions=True)
        assert allowed.returncode == 0, allowed.output
    finally:
        session.close()
    assert_all_equal(source, target)


def test_check_mode_reports_and_writes_nothing(six, play):
    source, target = six
    result = play(PLAYBOOK, "--check")
    assert result.returncode == 0, result.output
    for name in SIX:
        assert re.search(r"%s\s+would migrate\s+\S+ \w?B\s+the target database will be created" % name, result.stdout)
    assert "will migrate" not in result.stdout, result.stdout
    assert re.search(r"Show what happened to each database\] \*+\nskipping: \[localhost\]", result.stdout)
    assert databases(target) == {"postgres"}
    assert not os.path.exists(play.report)
    assert os.listdir(str(play.work_dir)) == []


def test_preflight_tag_only_checks(six, play):
    source, target = six
    result = play(PLAYBOOK, "--tags", "preflight")
    assert result.returncode == 0, result.output
    assert databases(target) == {"postgres"}


def test_role_included_from_another_playbook(six, play, tmp_path):
    source, target = six
    playbook = tmp_path / "site.yml"
    playbook.write_text("""
- name: An existing playbook that migrates two databases among other things
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Something before
      ansible.builtin.debug:
        msg: before
    - name: Migrate accounts and jobs under other names
      ansible.builtin.include_role:
        name: codacy.selfhosted.db_migration
      vars:
        db_migration_databases:
          - accounts
          - {name: jobs, target_name: codacy_jobs}
        db_migration_concurrency: 1
""")
    result = play(str(playbook))
    assert result.returncode == 0, result.output
    assert databases(target) == {"postgres", "accounts", "codacy_jobs"}
    assert compare(source.params(), "jobs", target.params(), "codacy_jobs") == []
    assert compare(source.params(), "accounts", target.params(), "accounts") == []


def test_home_other_than_the_users_home_directory(six, play, tmp_path):
    """Under sudo -E, CI runners or AWX, HOME is not the home directory of the password database:
    the background jobs write their results under $HOME, and the wait must find them there."""
    source, target = six
    home = tmp_path / "elsewhere"
    home.mkdir()
    assert str(home) != os.path.expanduser("~" + pwd.getpwuid(os.getuid()).pw_name)
    result = play(env={"HOME": str(home)}, timeout=300, db_migration_databases=["accounts", "jobs"])
    assert result.returncode == 0, result.output
    assert {d["name"]: d["action"] for d in play.report_json()["databases"]} == {"accounts": "migrated",
                                                                                 "jobs": "migrated"}
    assert os.listdir(str(home / ".ansible_async")) == [], "results files were left behind"
