# -*- coding: utf-8 -*-
# Copyright: Contributors to the codacy.selfhosted collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Native logical replication for online migration: the PostgreSQL side of it.

One name per migrated database pair (name_for()) serves the publication and the replication slot
on the source and the subscription on the target, so that whatever a run leaves behind is found
again by name, with the WAL it retains (leftovers()).

- The source gets a publication FOR ALL TABLES and a logical slot (pgoutput) created on a
  replication connection with an exported snapshot (SlotSnapshot): the copy reads exactly that
  snapshot, and the slot holds every change committed after it, so nothing is lost or applied twice.
- The target gets a subscription over that slot with copy_data = false. Its connection string
  holds the source password (pg_subscription.subconninfo, readable by superusers only); the
  statement that creates it runs with statement logging off where the user may turn it off.
- Caught up is proven from the slot, never from a sleep: the slot's confirmed position reaches the
  source's WAL position (wait_caught_up()), and once the subscription is stopped, decoding what the
  slot still holds finds no change at all (pending_changes()).
- Sequences, which logical replication does not carry, are set from the quiesced source
  (sync_sequences()); materialized views, whose REFRESH it does not carry, are refreshed.

Nothing here decides anything: online.py does, and the checks before anything is written are in
problems().
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import json
import time

from ansible_collections.codacy.selfhosted.plugins.module_utils.units import human_bytes

try:
    import psycopg2
    import psycopg2.extensions
    import psycopg2.extras
    from psycopg2 import sql
except ImportError:  # reported by the modules through connection.HAS_PSYCOPG2
    psycopg2 = sql = None

PREFIX = "codacy_migration_"
LIKE_PREFIX = PREFIX.replace("_", "\\_") + "%"  # for LIKE: every name of ours

# Catalog columns that the changes logical replication carries also change: TRUNCATE gives a
# table (and its indexes and TOAST table) a new file. Left out of the definitions compared at
# cutover, which must find DDL only.
REPLICATED_CATALOG_CHANGES = {"pg_class": ("relfilenode",)}

# What our own publication changes in the source's definitions: compared without it when proving
# that nothing else changed while replication was removed.
OUR_CATALOG_CHANGES = {"pg_publication": None, "pg_publication_rel": None, "pg_authid": None}

# pgoutput messages that carry data: Insert, Update, Delete, Truncate (the others are Begin,
# Commit, Relation, Type, Origin and logical Messages).
DATA_MESSAGES = (ord("I"), ord("U"), ord("D"), ord("T"))

# Session settings for the statement that holds the source password: no statement logging,
# nothing in pg_stat_activity or pg_stat_statements. Superuser-only on most servers.
QUIET_SETTINGS = (("log_statement", "none"), ("log_min_error_statement", "panic"),
                  ("log_min_duration_statement", "-1"), ("log_min_duration_sample", "-1"),
                  ("log_transaction_sample_rate", "0"), ("track_activities", "off"),
                  ("pg_stat_statements.track_utility", "off"))


class ReplicationProblem(Exception):
    """Replication cannot go on; str() says what happened and what to do (never a password)."""


def name_for(source_id, database, target_id, target_database):
    """The name of the publication, slot and subscription of one migrated database pair. Slot
    names allow [a-z0-9_] only: a digest of both sides (system identifiers, else addresses)."""
    key = json.dumps([source_id, database, target_id, target_database])
    return PREFIX + hashlib.sha256(key.encode("utf-8")).hexdigest()[:12]


def _ident(name):
    return sql.Identifier(name)


def fetchall(conn, query, args=None):
    with conn.cursor() as cur:
        cur.execute(query, args)
        return cur.fetchall() if cur.description else []


def redact(text, password):
    """`text` without `password` (error messages may quote a connection string)."""
    text = str(text)
    return text.replace(password, "********") if password else text


# -- the source: publication, slot, progress ---------------------------------------------------

def create_publication(conn, name):
    fetchall(conn, sql.SQL("CREATE PUBLICATION {} FOR ALL TABLES").format(_ident(name)))


def drop_publication(conn, name, note_xid=None):
    """Drop the publication `name` if it exists. `note_xid(xid)` is told the id of the transaction
    that drops it before it commits: the cutovers of other databases know it for one of ours."""
    statement = sql.SQL("DROP PUBLICATION IF EXISTS {}").format(_ident(name))
    if note_xid is None:
        fetchall(conn, statement)
        return
    autocommit = conn.autocommit
    conn.autocommit = False
    try:
        note_xid(fetchall(conn, "SELECT txid_current()")[0][0])
        fetchall(conn, statement)
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    finally:
        conn.autocommit = autocommit


def publication_exists(conn, name):
    return bool(fetchall(conn, "SELECT 1 FROM pg_publication WHERE pubname = %s", (name,)))


class SlotSnapshot:
    """A logical replication slot created with an exported snapshot. The snapshot can be imported
    (pg_dump --snapshot, SET TRANSACTION SNAPSHOT) until close(), which also frees the slot for
    the subscription."""

    def __init__(self, endpoint, database, name):
        params = endpoint.libpq_params(database)
        if endpoint.password is not None:
            params["password"] = endpoint.password
        try:
            self.conn = psycopg2.connect(connection_factory=psycopg2.extras.LogicalReplicationConnection, **params)
        except psycopg2.OperationalError as exc:
            raise ReplicationProblem("could not open a replication connection to %s: %s" % (
                endpoint.address, endpoint.describe_failure(database, exc))) from None
        try:
            with self.conn.cursor() as cur:
                # The pre-15 spelling, which every server since 10 accepts. It waits for the
                # transactions running on the server to end (the slot's consistent point).
                cur.execute("CREATE_REPLICATION_SLOT %s LOGICAL pgoutput EXPORT_SNAPSHOT" % name)
                self.name, self.consistent_point, self.snapshot, _plugin = cur.fetchone()
        except psycopg2.Error as exc:
            self.conn.close()
            raise ReplicationProblem("could not create the replication slot %s on %s: %s"
                                     % (name, endpoint.address, str(exc).strip())) from None

    def close(self):
        try:
            self.conn.close()
        except Exception:  # pylint: disable=broad-except
            pass


def _slot_columns(conn):
    wal_status = "wal_status" if conn.server_version >= 130000 else "NULL"
    return ("slot_name, database, active, active_pid,"
            " pg_wal_lsn_diff(pg_current_wal_insert_lsn(), confirmed_flush_lsn)::bigint,"
            " pg_wal_lsn_diff(pg_current_wal_insert_lsn(), restart_lsn)::bigint,"
            " confirmed_flush_lsn::text, %s" % wal_status)


def _slot_row(row):
    keys = ("name", "database", "active", "active_pid", "lag_bytes", "retained_bytes", "confirmed", "wal_status")
    return dict(zip(keys, row))


def slot(conn, name):
    """The slot `name` on the server of `conn`: {name, database, active, active_pid, lag_bytes (WAL
    not yet confirmed by the subscriber), retained_bytes (WAL the slot keeps), confirmed,
    wal_status ('lost': it cannot go on)}, or None."""
    rows = fetchall(conn, "SELECT %s FROM pg_replication_slots WHERE slot_name = %%s" % _slot_columns(conn), (name,))
    return _slot_row(rows[0]) if rows else None


def leftovers(conn):
    """Every slot of this collection on the server of `conn`, whatever its database, largest
    retention first: what earlier runs may have left behind."""
    rows = fetchall(conn, "SELECT %s FROM pg_replication_slots WHERE slot_name LIKE %%s ORDER BY 6 DESC, 1"
                    % _slot_columns(conn), (LIKE_PREFIX,))
    return [_slot_row(row) for row in rows]


def describe_slot(found):
    return "replication slot %s (database %s, %s, retains %s of WAL%s)" % (
        found["name"], found["database"], "in use" if found["active"] else "not in use",
        human_bytes(found["retained_bytes"]), ", lost: it can no longer be used" if found["wal_status"] == "lost" else "")


def drop_slot(conn, name, timeout=30.0):
    """Drop the slot `name` if it exists, first ending the walsender that still uses it."""
    deadline = time.time() + timeout
    while True:
        found = slot(conn, name)
        if found is None:
            return False
        if not found["active"]:
            try:
                fetchall(conn, "SELECT pg_drop_replication_slot(%s)", (name,))
                return True
            except psycopg2.Error as exc:
                if "does not exist" in str(exc):
                    return False
                if "is active" not in str(exc) or time.time() > deadline:
                    raise
        elif time.time() > deadline:
            raise ReplicationProblem("the replication slot %s is still in use by process %s: end it "
                                     "(SELECT pg_terminate_backend(%s)) and drop the slot (SELECT "
                                     "pg_drop_replication_slot('%s'))"
                                     % (name, found["active_pid"], found["active_pid"], name))
        elif found["active_pid"]:
            # Our subscription's walsender, which ends by itself once the subscription is gone.
            fetchall(conn, "SELECT pg_terminate_backend(%s)", (found["active_pid"],))
        time.sleep(0.1)


def wait_inactive(conn, name, timeout=30.0):
    """Wait until no walsender uses the slot (the subscription was stopped)."""
    deadline = time.time() + timeout
    terminate_after = time.time() + 0.2
    while True:
        found = slot(conn, name)
        if found is None or not found["active"]:
            return found
        if time.time() > deadline:
            raise ReplicationProblem("the replication slot %s is still in use by process %s %ds after its "
                                     "subscription was stopped" % (name, found["active_pid"], timeout))
        if time.time() > terminate_after and found["active_pid"]:
            # The apply worker notices a disabled subscription within a second or so; its walsender
            # can go at once (what it did not confirm stays in the slot).
            fetchall(conn, "SELECT pg_terminate_backend(%s)", (found["active_pid"],))
            terminate_after = deadline
        time.sleep(0.05)


def wal_position(conn):
    """The source's WAL insert position, once written to disk: logical decoding reads only up to
    the flushed WAL, and with synchronous_commit = off a commit returns before its flush."""
    position = fetchall(conn, "SELECT pg_current_wal_insert_lsn()::text")[0][0]
    deadline = time.time() + 30
    while not fetchall(conn, "SELECT pg_current_wal_flush_lsn() >= %s::pg_lsn", (position,))[0][0]:
        if time.time() > deadline:
            raise ReplicationProblem("the source server did not write its WAL up to %s within 30 s" % position)
        time.sleep(0.02)
    return position


def wait_caught_up(conn, name, position, stall_timeout=120.0, on_poll=None):
    """Wait until the subscriber confirmed every change up to `position` (the slot's
    confirmed_flush_lsn). Fails when the slot stops advancing for `stall_timeout` seconds."""
    last, last_change = None, time.time()
    while True:
        row = fetchall(conn, "SELECT confirmed_flush_lsn::text, confirmed_flush_lsn >= %s::pg_lsn,"
                             " pg_wal_lsn_diff(%s::pg_lsn, confirmed_flush_lsn)::bigint, active"
                             " FROM pg_replication_slots WHERE slot_name = %s", (position, position, name))
        if not row:
            raise ReplicationProblem("the replication slot %s disappeared from the source" % name)
        confirmed, done, behind, _active = row[0]
        if done:
            return confirmed
        if confirmed != last:
            last, last_change = confirmed, time.time()
        elif time.time() - last_change > stall_timeout:
            raise ReplicationProblem("the subscription stopped confirming changes %d s ago, %s behind the source "
                                     "(slot %s at %s, source at %s): see the target server's log for the apply "
                                     "worker's errors" % (stall_timeout, human_bytes(behind), name, confirmed, position))
        if on_poll:
            on_poll(behind)
        time.sleep(0.05)


def pending_changes(conn, name, limit=1000):
    """Changes committed on the source that the subscriber did not confirm: (count, last LSN) of
    the data messages (insert, update, delete, truncate) the stopped slot would still send. Reads
    without consuming (peek). Only for a slot nobody uses."""
    return fetchall(conn, "SELECT count(*) FILTER (WHERE get_byte(data, 0) = ANY(%s)),"
                          " max(lsn) FILTER (WHERE get_byte(data, 0) = ANY(%s))::text"
                          " FROM pg_logical_slot_peek_binary_changes(%s, NULL, %s, 'proto_version', '1',"
                          " 'publication_names', %s)", (list(DATA_MESSAGES), list(DATA_MESSAGES), name, limit,
                                                        name))[0]


# -- the target: subscription ---------------------------------------------------------------------

def subscription(conn, name):
    """The subscription `name` in the database of `conn`: {enabled, slot_name, running (its apply
    worker is up)}, or None. (subconninfo, which holds the password, is never read.)"""
    rows = fetchall(conn, "SELECT s.subenabled, s.subslotname, EXISTS (SELECT 1 FROM pg_stat_subscription st"
                          " WHERE st.subid = s.oid AND st.pid IS NOT NULL)"
                          " FROM pg_subscription s WHERE s.subname = %s"
                          " AND s.subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())", (name,))
    if not rows:
        return None
    return dict(zip(("enabled", "slot_name", "running"), rows[0]))


def subscription_conninfo(source, reach, database, with_password=True):
    """The connection string the target's subscription uses to reach the source: `reach` (host,
    port, sslmode, sslrootcert as seen from the target server) with the source's user."""
    params = {"host": reach["host"], "port": str(reach["port"]), "user": source.user, "dbname": database,
              "sslmode": reach["sslmode"], "connect_timeout": "10", "keepalives": "1", "keepalives_idle": "30",
              "keepalives_interval": "10", "keepalives_count": "3"}
    if reach.get("sslrootcert"):
        params["sslrootcert"] = reach["sslrootcert"]
    if with_password and source.password is not None:
        params["password"] = source.password
    return psycopg2.extensions.make_dsn(**params)


def quiet_session(conn):
    """Turn off what could record the next statement (logs, pg_stat_activity, pg_stat_statements);
    return the settings this user may not change."""
    refused = []
    for setting, value in QUIET_SETTINGS:
        try:
            fetchall(conn, "SELECT set_config(%s, %s, false)", (setting, value))
        except psycopg2.Error as exc:
            if getattr(exc, "pgcode", None) != "42704":  # undefined_object: the setting does not exist here
                refused.append(setting)
    return refused


def create_subscription(endpoint, database, name, conninfo, password):
    """Create the subscription `name` on the target over the existing slot `name`, applying from
    the slot's start; return the settings that could not be turned off (see quiet_session()). On a
    connection of its own, closed at once: the settings must not outlive that statement."""
    conn = endpoint.connect(database)
    try:
        refused = quiet_session(conn)
        try:
            fetchall(conn, sql.SQL("CREATE SUBSCRIPTION {} CONNECTION %s PUBLICATION {} WITH (create_slot = false,"
                                   " slot_name = %s, copy_data = false, enabled = true)").format(_ident(name), _ident(name)),
                     (conninfo, name))
        except psycopg2.Error as exc:
            raise ReplicationProblem("creating the subscription %s on %s failed: %s"
                                     % (name, endpoint.address, redact(str(exc).strip(), password))) from None
        return refused
    finally:
        conn.close()


def set_enabled(conn, name, enabled):
    fetchall(conn, sql.SQL("ALTER SUBSCRIPTION {} %s" % ("ENABLE" if enabled else "DISABLE")).format(_ident(name)))


def drop_subscription(conn, name):
    """Drop the subscription without touching the source (its slot is dropped from here): a
    subscription with a slot would connect to the source to drop it."""
    if subscription(conn, name) is None:
        return False
    fetchall(conn, sql.SQL("ALTER SUBSCRIPTION {} DISABLE").format(_ident(name)))
    fetchall(conn, sql.SQL("ALTER SUBSCRIPTION {} SET (slot_name = NONE)").format(_ident(name)))
    fetchall(conn, sql.SQL("DROP SUBSCRIPTION {}").format(_ident(name)))
    return True


def observe(src, tgt, name):
    """This migration's replication objects as they are now: {publication: bool, slot: slot() or
    None, subscription: subscription() or None}."""
    return {"publication": publication_exists(src, name), "slot": slot(src, name), "subscription": subscription(tgt, name)}


def describe(observed, name):
    """The objects of observe() that exist, as phrases."""
    found = []
    if observed["subscription"]:
        found.append("the subscription %s on the target (%s)"
                     % (name, "enabled" if observed["subscription"]["enabled"] else "disabled"))
    if observed["slot"]:
        found.append("the " + describe_slot(observed["slot"]) + " on the source")
    if observed["publication"]:
        found.append("the publication %s on the source" % name)
    return found


# -- what logical replication does not carry ----------------------------------------------------

SEQUENCES_SQL = """
SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind = 'S' AND n.nspname <> %(skip)s AND n.nspname NOT LIKE 'pg\\_temp\\_%%' ORDER BY 1
"""


def sync_sequences(source_conn, target_conn, skip_schema):
    """Set every sequence of the target (owned, identity and standalone alike) to the source's
    state: last value and whether it was called. Two round trips whatever their number."""
    names = [row[0] for row in fetchall(source_conn, SEQUENCES_SQL, {"skip": skip_schema})]
    if not names:
        return 0
    query = sql.SQL(" UNION ALL ").join(
        sql.SQL("SELECT {}, last_value, is_called FROM {}").format(sql.Literal(name), sql.SQL(name)) for name in names)
    rows = fetchall(source_conn, query)
    fetchall(target_conn, "SELECT count(pg_catalog.setval(s::regclass, v, c)) FROM unnest(%s::text[], %s::bigint[],"
                          " %s::boolean[]) AS x(s, v, c)",
             ([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]))
    return len(rows)


# Populated materialized views, those built on others after them.
MATVIEWS_SQL = """
WITH RECURSIVE mv AS (
  SELECT c.oid, quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS name
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE c.relkind = 'm' AND c.relispopulated AND n.nspname <> %(skip)s
), uses AS (
  SELECT DISTINCT r.ev_class AS view, d.refobjid AS used
    FROM pg_rewrite r JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
   WHERE r.ev_class IN (SELECT oid FROM mv) AND d.refobjid IN (SELECT oid FROM mv) AND d.refobjid <> r.ev_class
), depth(oid, level) AS (
  SELECT oid, 0 FROM mv
  UNION ALL
  SELECT uses.view, depth.level + 1 FROM depth JOIN uses ON uses.used = depth.oid WHERE depth.level < 100
)
SELECT mv.name FROM mv JOIN (SELECT oid, max(level) AS level FROM depth GROUP BY oid) d ON d.oid = mv.oid
 ORDER BY d.level, mv.name
"""


def refresh_materialized_views(source_conn, target_conn, skip_schema):
    """REFRESH on the target every materialized view populated on the source: logical replication
    does not carry REFRESH, and pg_restore refreshes them too."""
    names = [row[0] for row in fetchall(source_conn, MATVIEWS_SQL, {"skip": skip_schema})]
    for name in names:
        fetchall(target_conn, sql.SQL("REFRESH MATERIALIZED VIEW {}").format(sql.SQL(name)))
    return names


def analyze_changed(conn, skip_schema):
    """ANALYZE the target's tables that replication wrote since their last ANALYZE."""
    names = [row[0] for row in fetchall(
        conn, "SELECT quote_ident(schemaname) || '.' || quote_ident(relname) FROM pg_stat_user_tables"
              " WHERE n_mod_since_analyze > 0 AND schemaname <> %(skip)s ORDER BY 1", {"skip": skip_schema})]
    if names:
        fetchall(conn, sql.SQL("ANALYZE {}").format(sql.SQL(", ").join(sql.SQL(name) for name in names)))
    return names


# -- before anything is written ---------------------------------------------------------------------

# Tables whose UPDATE and DELETE a FOR ALL TABLES publication makes fail: no replica identity.
NO_IDENTITY_SQL = """
SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname)
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind = 'r' AND c.relpersistence = 'p' AND n.nspname NOT IN ('pg_catalog', 'information_schema', %(skip)s)
   AND n.nspname NOT LIKE 'pg\\_%%'
   AND (c.relreplident = 'n' OR (c.relreplident = 'd' AND NOT EXISTS
        (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)))
 ORDER BY 1
"""

UNLOGGED_SQL = """
SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname)
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind = 'r' AND c.relpersistence = 'u' AND n.nspname <> %(skip)s ORDER BY 1
"""

SOURCE_SERVER_SQL = """
SELECT current_setting('wal_level'), current_setting('max_replication_slots')::int,
       (SELECT count(*) FROM pg_replication_slots)::int, current_setting('max_wal_senders')::int,
       (SELECT count(*) FROM pg_stat_replication)::int,
       r.rolsuper, r.rolreplication,
       EXISTS (SELECT 1 FROM pg_roles a WHERE a.rolname = 'rds_replication'
               AND pg_has_role(current_user, a.oid, 'MEMBER'))
  FROM pg_roles r WHERE r.rolname = current_user
"""

TARGET_SERVER_SQL = """
SELECT r.rolsuper,
       ARRAY(SELECT a.rolname::text FROM pg_roles a
              WHERE (a.rolname = ANY(%(admin)s) OR a.rolname = 'pg_create_subscription')
                AND pg_has_role(current_user, a.oid, 'MEMBER')),
       current_setting('max_logical_replication_workers')::int,
       (SELECT count(*) FROM pg_subscription WHERE subenabled)::int,
       current_setting('max_replication_slots')::int,
       (SELECT count(*) FROM pg_replication_origin)::int
  FROM pg_roles r WHERE r.rolname = current_user
"""


def _listed(items, limit=10):
    return ", ".join(items[:limit]) + (" and %d more" % (len(items) - limit) if len(items) > limit else "")


def source_server_problems(conn, endpoint, needed, own_slot=None):
    """What keeps the source server from online migration of `needed` databases, as sentences.
    `own_slot`: this migration's slot left by an earlier run, which is removed first."""
    problems = []
    if conn.server_version < 100000:
        return ["the source server %s runs PostgreSQL %d.%d: online migration needs logical replication, "
                "PostgreSQL 10 or newer; use mode: offline" % (endpoint.address, conn.server_version // 10000,
                                                               conn.server_version // 100 % 100)]
    wal_level, max_slots, slots, max_senders, senders, superuser, replication, rds_replication = \
        fetchall(conn, SOURCE_SERVER_SQL)[0]
    if own_slot:
        slots -= 1
        senders -= 1 if own_slot["active"] else 0
    if wal_level != "logical":
        problems.append(
            "the source server %s has wal_level = %s; online migration needs wal_level = logical, which takes a "
            "restart of the server: in the Codacy chart's values, add walLevel: logical to the bundled "
            "PostgreSQL's extended configuration (postgres.postgresqlExtendedConf) and restart its pod; on Amazon "
            "RDS set rds.logical_replication = 1 in the parameter group; on Cloud SQL the flag "
            "cloudsql.logical_decoding = on; on Azure the server parameter wal_level = logical; elsewhere "
            "ALTER SYSTEM SET wal_level = logical. Or use mode: offline" % (endpoint.address, wal_level))
    if max_slots - slots < needed:
        problems.append("the source server %s has %d free replication slots (max_replication_slots = %d, %d in use) "
                        "but online migration needs one per database (%d): raise max_replication_slots (a restart) "
                        "or drop slots nobody uses" % (endpoint.address, max(max_slots - slots, 0), max_slots, slots,
                                                       needed))
    if max_senders - senders < needed:
        problems.append("the source server %s has %d free WAL senders (max_wal_senders = %d, %d in use) but online "
                        "migration needs one per database (%d): raise max_wal_senders (a restart)"
                        % (endpoint.address, max(max_senders - senders, 0), max_senders, senders, needed))
    if not (superuser or replication or rds_replication):
        problems.append("source user %s has no REPLICATION right, which the replication slot needs: ALTER ROLE %s "
                        "REPLICATION (on Amazon RDS: GRANT rds_replication TO %s)"
                        % (endpoint.who, endpoint.user, endpoint.user))
    return problems


def source_database_problems(conn, database, skip_schema):
    """What logical replication would not carry, or would break, in this source database."""
    problems = []
    args = {"skip": skip_schema}
    missing = [row[0] for row in fetchall(conn, NO_IDENTITY_SQL, args)]
    if missing:
        problems.append("%s: tables without a primary key or replica identity: %s. Once the publication exists an "
                        "UPDATE or DELETE on them fails on the source, and the target could not apply them: add a "
                        "primary key, or ALTER TABLE ... REPLICA IDENTITY FULL (or USING INDEX of a unique index), "
                        "or use mode: offline" % (database, _listed(missing)))
    unlogged = [row[0] for row in fetchall(conn, UNLOGGED_SQL, args)]
    if unlogged:
        problems.append("%s: unlogged tables, which logical replication does not carry: %s. ALTER TABLE ... SET "
                        "LOGGED, or use mode: offline" % (database, _listed(unlogged)))
    large_objects = fetchall(conn, "SELECT count(*) FROM pg_largeobject_metadata")[0][0]
    if large_objects:
        problems.append("%s holds large objects (%d), which logical replication does not carry: migrate it with "
                        "mode: offline" % (database, large_objects))
    return problems


def target_server_problems(conn, endpoint, needed, admin_roles, own_subscription=None):
    """What keeps the target server from following the source with `needed` subscriptions.
    `own_subscription`: this migration's, left by an earlier run, which is removed first."""
    superuser, roles, max_workers, enabled, max_slots, origins = \
        fetchall(conn, TARGET_SERVER_SQL, {"admin": list(admin_roles)})[0]
    if own_subscription:
        origins -= 1
        enabled -= 1 if own_subscription["enabled"] else 0
    problems = []
    may_subscribe = superuser or [r for r in roles if r != "pg_create_subscription"] or \
        ("pg_create_subscription" in roles and conn.server_version >= 160000)
    if not may_subscribe:
        problems.append("target user %s may not create subscriptions: connect as a superuser or the managed "
                        "service's admin (%s), or on PostgreSQL 16 and newer GRANT pg_create_subscription TO %s"
                        % (endpoint.who, " or ".join(admin_roles) or "rds_superuser", endpoint.user))
    if max_workers - enabled < needed:
        problems.append("the target server %s runs at most %d logical replication workers "
                        "(max_logical_replication_workers) and %d subscriptions are enabled, but online migration "
                        "needs one per database (%d): raise max_logical_replication_workers (and max_worker_processes; "
                        "a restart)" % (endpoint.address, max_workers, enabled, needed))
    if conn.server_version < 180000 and max_slots - origins < needed:
        problems.append("the target server %s tracks at most %d replication origins (max_replication_slots) and %d are "
                        "in use, but each subscription needs one (%d): raise max_replication_slots on the target "
                        "(a restart)" % (endpoint.address, max_slots, origins, needed))
    return problems


# libpq's answers that prove the source server was reached (it asked for a password, or refused
# the password-less probe that carries none).
REACHED = ("no password supplied", "password authentication failed", "password is required",
           "non-superusers must provide a password")


def reach_problem(conn, endpoint, source, reach, database, name):
    """Whether the target server reaches the source as `reach` says, proven by a subscription that
    connects and is rolled back; a sentence when it does not, else None. The probe carries no
    password: a source that asks for one was reached (and the password is proven from here)."""
    conninfo = subscription_conninfo(source, reach, database, with_password=False)
    probe = sql.SQL("CREATE SUBSCRIPTION {} CONNECTION %s PUBLICATION {} WITH (connect = true, enabled = false,"
                    " create_slot = false, slot_name = NONE, copy_data = false)").format(_ident(name + "_probe"),
                                                                                         _ident(name))
    with conn.cursor() as cur:
        cur.execute("BEGIN")
        try:
            cur.execute(probe, (conninfo,))
            return None
        except psycopg2.Error as exc:
            message = " ".join(str(exc).split())
            code = getattr(exc, "pgcode", None)
        finally:
            cur.execute("ROLLBACK")
    lowered = message.lower()
    where = "%s:%s" % (reach["host"], reach["port"])
    if any(answer in lowered for answer in REACHED):
        return None
    if code == "42501":
        return ("target user %s may not create subscriptions (%s): connect as a superuser or the managed service's "
                "admin, or on PostgreSQL 16 and newer GRANT pg_create_subscription TO %s"
                % (endpoint.who, message, endpoint.user))
    if "could not connect to the publisher" in lowered or (code or "").startswith("08"):
        return ("the target server %s cannot reach the source as %s (database %s): %s. Set source_from_target "
                "(db_migration_source_from_target) to the host and port by which the target server reaches the "
                "source, and let the source's pg_hba.conf accept the target's address for that database"
                % (endpoint.address, where, database, message))
    # Reached, but refused for another reason: e.g. a table the publication lists is missing here.
    return None


def problems(src, tgt, source, target, reach, database, skip_schema, admin_roles, needed=1, name=None, own=None):
    """Every reason online migration of `database` cannot start, before anything is written: the
    source server's settings and rights, what its database holds, the target's rights and room,
    and whether the target server reaches the source. `own`: this migration's slot and
    subscription left by an earlier run (observe()), which do not count as taken."""
    own = own or {}
    found = source_server_problems(src, source, needed, own.get("slot"))
    if src.server_version < 100000:
        return found
    found += source_database_problems(src, database, skip_schema)
    found += target_server_problems(tgt, target, needed, admin_roles, own.get("subscription"))
    problem = reach_problem(tgt, target, source, reach, database, name or PREFIX + "preflight")
    return found + ([problem] if problem else [])
