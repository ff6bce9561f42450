"""The gold standards: PostgreSQL's own regression database (545 tables and materialized views,
nearly every kind of object, large objects, C functions in regress.so; built once per machine by
tests/support/regressdb.py) and a database holding every kind of object a Codacy database can
hold. Each migrates with the module on both data paths, verifies, and the independent oracle
(tests/support/compare.py: catalog snapshot with per-table counts and hashes, sequences, large
objects, database properties; and a normalised schema dump diff) finds no difference beyond
pg_dump's limits, each named below. README's "What travels" lists the same limits."""

import pytest

from tests.integration.conftest import module_args, succeeded
from tests.integration.features import create_database, execute
from tests.support import compare, regressdb
from tests.support.pgserver import PgServer

REORDERED = ("b_star", "c_star", "d_star", "e_star", "f_star", "gtestxx_4", "renamecolumnanother", "renamecolumnchild",
             "test_type_diff2_c1", "test_type_diff2_c2", "test_type_diff_c")

# What a dump and restore does not reproduce in PostgreSQL 15's regression database, each with
# the oracle's lines (prefixes) it explains, and the module's warnings that name it.
REGRESSION_LIMITS = {
    # CREATE TABLE ... INHERITS puts the parent's columns first: a child whose columns were in
    # another order on the source (the parent got a column after the child, or the child was
    # created first and attached with ALTER TABLE ... INHERIT) gets its parent's order. Rows are
    # compared by column name, so their content is still verified.
    "inheritance children take their parents' column order": {
        "differences": ["table public.%s: column order differs: " % table for table in REORDERED] +
                       ["schema dump TABLE public.%s: differs: " % table
                        for table in ("gtestxx_4", "test_type_diff2_c1", "test_type_diff2_c2")],
        "warnings": ["table public.%s has its columns in another order on the target" % table for table in REORDERED],
    },
    # pg_restore refreshes a materialized view: one whose tables changed since its last REFRESH
    # arrives with what REFRESH gives, which the module verifies and names in a warning (with
    # checksums: the number of rows is the same).
    "stale materialized views arrive refreshed": {
        "differences": ["table public.mvtest_bb: same row count (1) but content differs"],
        "warnings with checksums": ["materialized view public.mvtest_bb was stale on the source"],
    },
    # PostgreSQL clones a foreign key for each partition (of its table, or of the partitioned
    # table it references); pg_dump does not dump the clones, so restoring the foreign key makes
    # them again under new names. Same definitions, other names.
    "constraints cloned for partitions are named anew": {
        "differences": [
            "constraint fkpart4.dropfk.dropfk_a_fkey3: only in target",
            'constraint fkpart4.dropfk.dropfk_a_fkey4 definition: source="FOREIGN KEY (a) REFERENCES '
            'fkpart4.droppk2_d(a)", target="FOREIGN KEY (a) REFERENCES fkpart4.droppk_d(a)"',
            "constraint fkpart4.dropfk.dropfk_a_fkey5: only in source",
        ] + ["constraint public.%s.%s: only in %s" % (table, name, side)
             for table in ("fk_partitioned_fk_4", "fk_partitioned_fk_4_1", "fk_partitioned_fk_4_2")
             for name, side in (("fk_partitioned_fk_4_a_b_fkey", "source"), ("fk_partitioned_fk_a_b_fkey", "target"))],
        "warnings": ["the constraint on fkpart4.dropfk cloned for a partition"] * 2 +
                    ["the constraint on public.%s cloned for a partition" % table
                     for table in ("fk_partitioned_fk_4", "fk_partitioned_fk_4_1", "fk_partitioned_fk_4_2")],
    },
}

# Not in the regression database but covered by tests/integration/test_fidelity.py: invalid
# indexes are not dumped (a warning names each); partitioned indexes created ON ONLY a parent
# travel, invalid as on the source; NOT VALID constraints travel NOT VALID.

PARAMETERS = [("stream", "counts"), ("stream", "checksums"), ("directory", "counts"), ("directory", "checksums")]


def explained(found, expected_prefixes):
    """Assert that each line found starts with one expected prefix and each prefix is found as
    often as listed: the limits are exactly these, no more, no fewer."""
    unexplained = [line for line in found if not any(line.startswith(prefix) for prefix in expected_prefixes)]
    assert unexplained == [], "\n".join(unexplained)
    for prefix in set(expected_prefixes):
        assert sum(line.startswith(prefix) for line in found) == expected_prefixes.count(prefix), \
            "expected %d lines starting with %r in:\n%s" % (expected_prefixes.count(prefix), prefix, "\n".join(found))


def independent_differences(source, database, target, target_database):
    """The oracle's differences: catalog snapshots with content hashes, then schema dumps."""
    differences = compare.compare(source.params(), database, target.params(), target_database)
    return differences + compare.dump_diff(source.params(), database, target.params(), target_database)


def migrate(run_module, source, target, database, target_database, work_dir, data_path, mode):
    create_database(target, target_database)
    args = module_args(source, target, database, work_dir, target_database=target_database, data_path=data_path)
    if mode != "counts":  # counts is the default: leave it out
        args["verify"] = mode
    result = succeeded(run_module(args), "migrated")
    assert result["verified"]["equal"] is True
    return result


@pytest.fixture(scope="module")
def regress_source():
    server = regressdb.clone()
    yield server
    server.destroy()


@pytest.fixture(scope="module")
def regress_target(regress_source):
    with PgServer(password=regressdb.PASSWORD) as server:
        # Roles are global: the target needs those the database refers to (README: create them first).
        for (role,) in regress_source.execute("SELECT quote_ident(rolname) FROM pg_roles"
                                              " WHERE rolname !~ '^pg_' AND rolname <> current_user"):
            server.execute("CREATE ROLE %s" % role)
        yield server


@pytest.mark.parametrize("data_path, mode", PARAMETERS)
def test_regression_database(regress_source, regress_target, run_module, work_dir, data_path, mode):
    database = regressdb.DATABASE
    target_database = "%s_%s_%s" % (database, data_path, mode)
    result = migrate(run_module, regress_source, regress_target, database, target_database, work_dir, data_path, mode)
    assert result["verified"]["tables"] == 545 and result["verified"]["rows"] > 100000, result["verified"]
    limits = REGRESSION_LIMITS.values()
    explained(result.get("warnings", []), [prefix for limit in limits for key in ("warnings", "warnings with " + mode)
                                           for prefix in limit.get(key, [])])
    explained(independent_differences(regress_source, database, regress_target, target_database),
              [prefix for limit in limits for prefix in limit["differences"]])


# Every kind of object a Codacy database can hold, owned by an application role, with grants to
# another. {owner} and {reader} are roles that exist on both servers.
EVERY_KIND = r"""
CREATE EXTENSION citext;
CREATE EXTENSION pg_trgm;
CREATE EXTENSION "uuid-ossp";
GRANT CREATE ON DATABASE {db} TO {owner};
COMMENT ON DATABASE {db} IS 'every kind of object';
ALTER DATABASE {db} SET work_mem = '8MB';
ALTER ROLE {reader} IN DATABASE {db} SET statement_timeout = '1min';
GRANT CONNECT ON DATABASE {db} TO {reader};
SET ROLE {owner};

CREATE SCHEMA app;
COMMENT ON SCHEMA app IS 'the application';
CREATE COLLATION app.ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
CREATE COLLATION app.bytewise (provider = libc, locale = 'C');
CREATE TYPE app.severity AS ENUM ('info', 'warning', 'error');
CREATE DOMAIN app.email AS citext CONSTRAINT email_has_at CHECK (VALUE LIKE '%@%');
CREATE DOMAIN app.positive AS integer CONSTRAINT positive_check CHECK (VALUE > 0);
CREATE TYPE app.span AS (first_line integer, last_line integer);
CREATE TYPE app.line_range AS RANGE (subtype = integer);
COMMENT ON TYPE app.severity IS 'how bad';
CREATE SEQUENCE app.ticket_seq START 1000 INCREMENT 7;
SELECT setval('app.ticket_seq', 4242);

CREATE TABLE app.account (
    id bigint GENERATED ALWAYS AS IDENTITY (START WITH 10) PRIMARY KEY,
    uuid uuid NOT NULL DEFAULT uuid_generate_v4() UNIQUE,
    email app.email NOT NULL UNIQUE,
    name text COLLATE app.bytewise NOT NULL,
    name_ci text COLLATE app.ci,
    name_lower text GENERATED ALWAYS AS (lower(name)) STORED,
    tenant text NOT NULL DEFAULT current_user,
    settings jsonb NOT NULL DEFAULT '{{}}',
    balance numeric(12, 2) CHECK (balance > -100),
    created timestamptz NOT NULL DEFAULT now()
) WITH (fillfactor = 80);
ALTER TABLE app.account ALTER COLUMN settings SET STORAGE EXTERNAL, ALTER COLUMN name SET STATISTICS 500;
ALTER TABLE app.account REPLICA IDENTITY FULL;
COMMENT ON COLUMN app.account.email IS 'login';
CREATE STATISTICS app.account_stats (dependencies) ON name, tenant FROM app.account;
ALTER TABLE app.account ENABLE ROW LEVEL SECURITY;
ALTER TABLE app.account FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON app.account USING (tenant = current_user);
CREATE POLICY owner_rows ON app.account TO {owner} USING (true) WITH CHECK (true);
COMMENT ON POLICY tenant_rows ON app.account IS 'one tenant at a time';

CREATE TABLE app.issue (
    id bigint GENERATED BY DEFAULT AS IDENTITY,
    account_id bigint NOT NULL REFERENCES app.account (id) ON DELETE CASCADE,
    created date NOT NULL,
    severity app.severity NOT NULL,
    span app.span,
    lines app.line_range,
    weight app.positive,
    message text NOT NULL,
    tags text[],
    score double precision,
    PRIMARY KEY (id, created)
) PARTITION BY RANGE (created);
CREATE TABLE app.issue_2024 PARTITION OF app.issue FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE app.issue_2025 PARTITION OF app.issue FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')
    PARTITION BY RANGE (created);
CREATE TABLE app.issue_2025_h1 PARTITION OF app.issue_2025 FOR VALUES FROM ('2025-01-01') TO ('2025-07-01');
CREATE TABLE app.issue_2025_h2 PARTITION OF app.issue_2025 DEFAULT;
CREATE TABLE app.issue_later PARTITION OF app.issue DEFAULT;
CREATE INDEX issue_message_trgm ON app.issue USING gin (message gin_trgm_ops);
CREATE INDEX issue_open_idx ON app.issue (account_id) WHERE severity = 'error';
CREATE INDEX issue_2024_score_idx ON app.issue_2024 (score DESC NULLS LAST);
ALTER TABLE app.issue_2024 CLUSTER ON issue_2024_score_idx;

CREATE TABLE app.issue_note (
    id bigserial PRIMARY KEY,
    issue_id bigint NOT NULL,
    issue_created date NOT NULL,
    body text,
    FOREIGN KEY (issue_id, issue_created) REFERENCES app.issue (id, created)
);
CREATE TABLE app.event (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(), what text);
CREATE TABLE app.login_event (ip inet) INHERITS (app.event);
CREATE UNLOGGED TABLE app.cache (key text PRIMARY KEY, value bytea, expires timestamptz);
CREATE TABLE app.document (id serial PRIMARY KEY, name text, content oid);
CREATE TABLE app.archive (id bigint PRIMARY KEY, payload jsonb);
CREATE RULE archive_is_append_only AS ON DELETE TO app.archive DO INSTEAD NOTHING;

CREATE FUNCTION app.touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.settings := NEW.settings || '{{"touched": true}}'; RETURN NEW; END $$;
CREATE TRIGGER account_touch BEFORE UPDATE ON app.account FOR EACH ROW EXECUTE FUNCTION app.touch();
CREATE FUNCTION app.count_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM nextval('app.ticket_seq'); RETURN NULL; END $$;
CREATE TRIGGER issue_counted AFTER INSERT ON app.issue FOR EACH STATEMENT EXECUTE FUNCTION app.count_events();
CREATE TRIGGER issue_row_counted AFTER INSERT ON app.issue FOR EACH ROW EXECUTE FUNCTION app.count_events();
CREATE CONSTRAINT TRIGGER note_checked AFTER INSERT ON app.issue_note DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION app.count_events();
ALTER TABLE app.issue_note DISABLE TRIGGER note_checked;
COMMENT ON TRIGGER account_touch ON app.account IS 'keeps settings fresh';
CREATE FUNCTION app.issue_weight(app.issue) RETURNS integer LANGUAGE sql IMMUTABLE AS
    'SELECT coalesce($1.weight, 1)';
CREATE FUNCTION app.whoami() RETURNS text LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog
    AS 'SELECT current_user';
CREATE PROCEDURE app.purge(before date) LANGUAGE plpgsql AS $$
BEGIN DELETE FROM app.issue WHERE created < before; END $$;
CREATE AGGREGATE app.product(double precision) (sfunc = float8mul, stype = double precision, initcond = '1');
COMMENT ON FUNCTION app.whoami() IS 'who runs this';

CREATE VIEW app.error_issue WITH (security_barrier) AS
    SELECT i.id, i.created, a.email, i.message FROM app.issue i JOIN app.account a ON a.id = i.account_id
    WHERE i.severity = 'error';
CREATE VIEW app.recent_event AS SELECT id, at, what FROM app.event WHERE at > '2024-01-01'
    WITH CASCADED CHECK OPTION;
CREATE MATERIALIZED VIEW app.issue_count AS
    SELECT account_id, severity, count(*) AS issues FROM app.issue GROUP BY 1, 2;
CREATE UNIQUE INDEX issue_count_key ON app.issue_count (account_id, severity);
CREATE MATERIALIZED VIEW app.nightly_report AS SELECT account_id, sum(score) AS total FROM app.issue GROUP BY 1
    WITH NO DATA;
COMMENT ON MATERIALIZED VIEW app.issue_count IS 'refreshed hourly';

INSERT INTO app.account (email, name, name_ci, balance, settings)
SELECT 'User' || i || '@Example.com', 'user ' || i, 'User ' || i, i * 1.5, jsonb_build_object('n', i)
  FROM generate_series(1, 300) i;
INSERT INTO app.issue (account_id, created, severity, span, lines, weight, message, tags, score)
SELECT 10 + i % 300, date '2024-03-01' + (i % 700), (ARRAY['info', 'warning', 'error'])[1 + i % 3]::app.severity,
       ROW(i, i + 3)::app.span, int4range(i, i + 10)::text::app.line_range, nullif(i % 5, 0), 'issue ' || md5(i::text),
       ARRAY['t' || i % 7, 'x'], i / 7.0
  FROM generate_series(1, 5000) i;
INSERT INTO app.issue_note (issue_id, issue_created, body)
SELECT id, created, 'note ' || id FROM app.issue WHERE id % 10 = 0;
INSERT INTO app.event (what) SELECT 'event ' || i FROM generate_series(1, 50) i;
INSERT INTO app.login_event (what, ip) SELECT 'login ' || i, ('10.0.0.' || i)::inet FROM generate_series(1, 20) i;
INSERT INTO app.cache VALUES ('k1', '\x00ff', NULL);
INSERT INTO app.archive VALUES (1, '{{"old": true}}');
INSERT INTO app.document (name, content) VALUES ('report', lo_from_bytea(0, convert_to(repeat('report ', 5000), 'UTF8')));
INSERT INTO app.document (name, content) VALUES ('logo', lo_from_bytea(0, '\x89504e47'));
REFRESH MATERIALIZED VIEW app.issue_count;

GRANT USAGE ON SCHEMA app TO {reader};
GRANT SELECT ON app.issue, app.error_issue TO {reader};
GRANT SELECT (id, email) ON app.account TO {reader};
GRANT USAGE ON SEQUENCE app.ticket_seq TO {reader} WITH GRANT OPTION;
REVOKE EXECUTE ON FUNCTION app.whoami() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.whoami() TO {reader};
GRANT USAGE ON TYPE app.severity TO {reader};
ALTER DEFAULT PRIVILEGES IN SCHEMA app GRANT SELECT ON TABLES TO {reader};
ALTER DEFAULT PRIVILEGES REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
SELECT lo_from_bytea(777001, 'a large object of its own');
GRANT SELECT ON LARGE OBJECT 777001 TO {reader};
COMMENT ON LARGE OBJECT 777001 IS 'kept apart';
RESET ROLE;
"""


@pytest.fixture(scope="module")
def kinds_servers():
    password = "every-kind"
    with PgServer(password=password) as source, PgServer(password=password) as target:
        for server in (source, target):
            server.execute('CREATE ROLE "app owner"; CREATE ROLE app_reader')
        create_database(source, "codacy")
        execute(source, "codacy", EVERY_KIND.format(db="codacy", owner='"app owner"', reader="app_reader"))
        yield source, target


@pytest.mark.parametrize("data_path, mode", PARAMETERS[1::2])
def test_every_kind_of_object(kinds_servers, run_module, work_dir, data_path, mode):
    source, target = kinds_servers
    target_database = "codacy_%s" % data_path
    result = migrate(run_module, source, target, "codacy", target_database, work_dir, data_path, mode)
    assert result.get("warnings", []) == []
    assert {"account", "issue_2024", "issue_2025_h1", "issue_count", "login_event", "cache"} <= \
        set(t["table"] for t in result["tables"])
    assert independent_differences(source, "codacy", target, target_database) == []
