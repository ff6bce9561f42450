# -*- coding: utf-8 -*-
# Copyright: Contributors to the codacy.selfhosted collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Online migration: copy while the application runs, let the target follow the source by
logical replication, and cut over in seconds. The modes of codacy_db_migrate other than offline.

- online: the copy of copier.Copier, reading the snapshot exported with the replication
  slot (after a publication FOR ALL TABLES), then a subscription over that slot; the record says
  `following`. A rerun reports the lag and changes nothing; it restarts a stopped subscription,
  and copies again when replication cannot go on (the slot was lost or dropped).
- cutover: the application is stopped. Refused while sessions are connected to the source, and
  when the source's definitions changed since the copy (logical replication carries no DDL).
  Waits until the subscriber confirmed the source's WAL position, stops the subscription, proves
  that the slot holds no change it did not apply, sets the sequences, refreshes materialized
  views, verifies (counts or checksums) against the quiesced source, proves again that nothing
  was written, removes the subscription, the slot and the publication, and records the copy
  `cut_over` with the source's fingerprint, so that a later offline run says `unchanged`.
- abort: removes the subscription, the slot and the publication; the record says `aborted`
  (an unfinished copy that the next run copies again).

Whatever a run creates on the source is removed when it fails before the subscription exists;
what an interrupted run left is found by name (replication.name_for) and removed or resumed.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

from ansible_collections.codacy.selfhosted.plugins.module_utils import (
    catalog, connection, copier, fingerprint, inspection, records, replication, rundir)
from ansible_collections.codacy.selfhosted.plugins.module_utils.inspection import Failure
from ansible_collections.codacy.selfhosted.plugins.module_utils.units import human_bytes

MODES = ("offline", "online", "cutover", "abort")


def source_from_target_spec():
    """The argument spec of the modules' source_from_target option (how the target reaches the source)."""
    return dict(type="dict", options=dict(
        host=dict(type="str"),
        port=dict(type="int"),
        sslmode=dict(type="str", choices=connection.SSLMODES),
        sslrootcert=dict(type="str"),
    ))


# Roles whose members may create subscriptions on a managed target (as they may restore).
ADMIN_ROLES = ("rds_superuser", "cloudsqlsuperuser", "azure_pg_admin")


def validate(params, probe_write=True, name=None):
    """inspection.validate() and the options of online migration (`name` as there)."""
    name = name or (lambda option: option)
    problems = inspection.validate(params, probe_write, name=name)
    mode = params.get("mode") or "offline"
    if mode != "offline" and params["schemas"]:
        problems.append("%s must be empty with %s %s (got %s): online migration replicates the whole database; "
                        "use %s: offline to migrate only some schemas"
                        % (name("schemas"), name("mode"), mode, ", ".join(params["schemas"]), name("mode")))
    reach = params.get("source_from_target") or {}
    if reach.get("port") is not None and not 1 <= reach["port"] <= 65535:
        problems.append("%s.port must be between 1 and 65535 (got %d)" % (name("source_from_target"), reach["port"]))
    if reach.get("host") is not None and (not reach["host"] or "\x00" in reach["host"]):
        problems.append("%s.host must not be empty (got %r): give the host by which the target server reaches the "
                        "source, or leave it out to use %s.host" % (name("source_from_target"), reach["host"],
                                                                    name("source")))
    return problems


def replication_report(name, observed):
    """The result's `replication`: the slot's lag and retained WAL, the subscription's state."""
    slot = observed["slot"] or {}
    subscription = observed["subscription"] or {}
    if not (slot or subscription or observed["publication"]):
        return {"name": name}
    return {"name": name, "lag_bytes": slot.get("lag_bytes"), "retained_bytes": slot.get("retained_bytes"),
            "subscription_enabled": subscription.get("enabled"), "apply_running": subscription.get("running")}


class OnlineInspection(inspection.Inspection):
    """The inspection of codacy_db_migrate with mode online, cutover or abort."""

    WRITING_ACTIONS = inspection.COPYING_ACTIONS + ("cut_over", "aborted")

    def __init__(self, params, database, target_database=None, phases=None):
        super(OnlineInspection, self).__init__(params, database, target_database, phases)
        self.mode = params["mode"]
        reach = params.get("source_from_target") or {}
        # The source as the target server reaches it: the subscription's connection, without the password.
        self.reach = {"host": reach.get("host") or self.source.host, "port": reach.get("port") or self.source.port,
                      "sslmode": reach.get("sslmode") or self.source.sslmode, "sslrootcert": reach.get("sslrootcert")}
        self.name = None
        self.observed = None
        self.restart_only = False  # a following target whose stopped subscription only needs starting again
        self.source_key = None
        # The preflight module makes these checks itself, for every database at once.
        self.online_checks = True
        self.report.update(mode=self.mode, state=None, replication=None)

    # -- inspection (reads only) ----------------------------------------------------------------
    def examine(self):
        self.record = records.read_latest(self.tgt)
        if self.mode == "online" or (self.mode == "cutover" and not self.following()):
            # What offline migration would do: the copy's checks, and whether a completed copy is unchanged.
            offline_action, reasons = super(OnlineInspection, self).examine()
        else:
            # The cutover of a following target, or an abort: the checks of a copy do not apply
            # (an abort must work whatever the client programs are).
            offline_action, reasons = None, []
            self.other_sessions = catalog.other_sessions(self.src)
            self.source_identity = {"system_identifier": self.source_info["system_identifier"],
                                    "host": self.source.host, "port": self.source.port, "database": self.database}
            self.report["source_fingerprint"] = fingerprint.digest(self.record["source_fingerprint"]) \
                if self.record else None
        recorded = ((self.record or {}).get("details") or {}).get("replication") or {}
        source_id = self.source_key = self.source_info["system_identifier"] or self.source.address
        target_id = self.target_info["system_identifier"] or self.target.address
        self.name = recorded.get("name") or replication.name_for(source_id, self.database, target_id,
                                                                 self.target_database)
        self.observed = replication.observe(self.src, self.tgt, self.name)
        self.report["replication"] = replication_report(self.name, self.observed)
        self.report["state"] = self.record["state"] if self.record else None
        decide = {"online": self.decide_online, "cutover": self.decide_cutover, "abort": self.decide_abort}[self.mode]
        return decide(offline_action, reasons)

    def following(self):
        return bool(self.record) and self.record["state"] == records.FOLLOWING

    def broken(self):
        """Why a following target cannot follow any more (a sentence), or None."""
        missing = [what for what, there in (("the subscription on the target", self.observed["subscription"]),
                                            ("the replication slot on the source", self.observed["slot"]),
                                            ("the publication on the source", self.observed["publication"]))
                   if not there]
        if missing:
            return "%s of %s %s gone" % (" and ".join(missing), self.name, "is" if len(missing) == 1 else "are")
        if self.observed["slot"]["wal_status"] == "lost":
            return ("the replication slot %s lost WAL it had not sent (max_slot_wal_keep_size): changes are missing"
                    % self.name)
        return None

    def describe_lag(self):
        slot = self.observed["slot"]
        subscription = self.observed["subscription"]
        text = "following the source since %s: %s behind it, the slot %s retains %s of WAL on the source" % (
            (self.record.get("details") or {}).get("following_since") or self.record["started_at"],
            human_bytes(slot["lag_bytes"]), self.name, human_bytes(slot["retained_bytes"]))
        if not subscription["running"]:
            text += ("; the subscription's apply worker is not running now (it restarts by itself after a failure: "
                     "the target server's log says why)")
        return text

    def refusal_for_sessions(self):
        """A refusal while other sessions are connected to the source or the target database."""
        target_sessions = catalog.other_sessions(self.tgt)
        if self.other_sessions and not self.params["force"]:
            return ("%d other sessions are connected to the source database %s (%s): the application must be stopped "
                    "for the cutover (scale Codacy's deployments to 0), or writes after the cutover would be lost. "
                    "Nothing was changed: the target keeps following"
                    % (len(self.other_sessions), self.database, "; ".join(self.other_sessions[:5])))
        if target_sessions and not self.params["force"]:
            return ("%d other sessions are connected to the target database %s (%s): the application must not use "
                    "it before the cutover ends. Nothing was changed: the target keeps following; set force: true "
                    "to cut over anyway" % (len(target_sessions), self.target_database, "; ".join(target_sessions[:5])))
        return None

    def online_problems(self):
        return replication.problems(self.src, self.tgt, self.source, self.target, self.reach, self.database,
                                    records.SCHEMA, ADMIN_ROLES, name=self.name, own=self.observed)

    def decide_online(self, action, reasons):
        leftovers = replication.describe(self.observed, self.name)
        if self.following():
            broken = self.broken()
            if broken is None:
                if self.observed["subscription"]["enabled"]:
                    return "following", [self.describe_lag()]
                self.restart_only = True
                return "resumed", ["the subscription %s was stopped (an interrupted cutover): it is started again; %s"
                                   % (self.name, self.describe_lag())]
            reasons = ["replication cannot go on (%s): the copy is made again" % broken]
            action = "resumed"
            sessions = catalog.other_sessions(self.tgt)
            if sessions and not self.params["force"]:
                return "refused", ["%s, but %d other sessions are connected to the target database (%s). Nothing "
                                   "was written" % (reasons[0], len(sessions), "; ".join(sessions[:5]))]
        if action not in inspection.COPYING_ACTIONS:
            if leftovers:
                self.warnings.append("an earlier online migration left %s: run mode abort to remove %s"
                                     % (", ".join(leftovers), "it" if len(leftovers) == 1 else "them"))
            return action, reasons
        problems = self.online_problems() if self.online_checks else []
        if problems:
            raise Failure("inspect", "online migration of %s cannot start: %s. Nothing was written"
                          % (self.database, " | ".join(problems)), "refused")
        if leftovers:
            reasons.append("an earlier run left %s: removed first" % ", ".join(leftovers))
        return action, reasons

    def decide_cutover(self, action, reasons):
        if self.following():
            broken = self.broken()
            if broken:
                return "refused", ["replication cannot go on (%s), so the target does not hold every change of the "
                                   "source: run mode online again (it copies again), or mode abort. Nothing was "
                                   "changed" % broken]
            refusal = self.refusal_for_sessions()
            if refusal:
                return "refused", [refusal]
            changes = self.definition_changes()
            if changes:
                return "refused", ["the source's definitions changed since the online copy of %s (%s): logical "
                                   "replication does not carry them, so this copy cannot be completed. Nothing was "
                                   "changed and nothing is lost (the target keeps following); run mode abort, then "
                                   "mode online for a new copy" % (self.record["started_at"],
                                                                   "; ".join(fingerprint.limited(changes)))]
            return "cut_over", [self.describe_lag()]
        state = self.record["state"] if self.record else "no copy"
        if state in records.COMPLETED and action == "unchanged":
            return "unchanged", ["the copy was completed at %s (%s) and the source is unchanged since"
                                 % (self.record["finished_at"], state)]
        return "refused", ["there is no online migration following the source in %s on %s (its record: %s): run "
                           "mode online first. Nothing was changed" % (self.target_database, self.target.address, state)]

    def decide_abort(self, _action, _reasons):
        found = replication.describe(self.observed, self.name)
        if found or self.following():
            return "aborted", ["removing %s; the copy stays unfinished" % (", ".join(found) or "the record's replication")]
        return "unchanged", ["nothing to abort: no replication of %s exists on either server" % self.name]

    def definition_changes(self):
        """DDL on the source since the copy: its definitions now against those read for the copy,
        both without what the replicated changes themselves change (TRUNCATE)."""
        recorded = ((self.record.get("details") or {}).get("replication") or {}).get("ddl_catalogs")
        if not recorded:
            return ["the copy's record holds no definitions to compare with"]
        now = fingerprint.read(self.src, records.SCHEMA, replication.REPLICATED_CATALOG_CHANGES)["catalogs"]
        return fingerprint.definition_changes({"catalogs": recorded}, {"catalogs": now})

    def state_after(self):
        return {"cut_over": records.CUT_OVER, "aborted": records.ABORTED}.get(self.action, records.FOLLOWING)


class OnlineCopier(copier.Copier):
    """The writing of codacy_db_migrate with mode online, cutover or abort."""

    REPLICATED = True

    def __init__(self, seen, result):
        super(OnlineCopier, self).__init__(seen, result)
        self.slot_snapshot = None
        self.creating = False  # this run creates a publication and slot of its own (a copy, not a cutover)
        self.subscribed = False
        self.source_rw = None
        self.ddl_catalogs = None
        self.quiet_since = {}  # the source's horizon when the cutover's catch-up began
        self.pending_proofs = []  # how prove_nothing_pending proved it, each time
        # Transactions of ours on the source that wrote nothing but a DROP PUBLICATION: this run's,
        # and those the role's other cutovers noted in the shared run directory.
        self.own_xids = set()
        self.run_dir = rundir.RunDir(self.params["queue"]["dir"]) if self.params.get("queue") else None

    def sequences_settled(self):
        # During the online copy the application moves them; the cutover sets them and checks them exactly.
        return self.seen.mode == "cutover"

    # -- writing ---------------------------------------------------------------------------------
    def source_writer(self):
        """A connection to the source database that may write: for the publication and the slot only."""
        if self.source_rw is None:
            self.source_rw = self.connect(self.seen.source, self.seen.database)
        return self.source_rw

    def copy(self, action):
        if action == "cut_over":
            return self.cut_over()
        if action == "aborted":
            return self.remove_replication()
        if self.seen.restart_only:
            self.phases.current = "resume"
            replication.set_enabled(self.seen.tgt, self.seen.name, True)
            self.result["state"] = records.FOLLOWING
            return None
        if self.seen.following() or replication.describe(self.seen.observed, self.seen.name):
            self.phases.timed("cleanup", self.remove_replication)
        try:
            return super(OnlineCopier, self).copy(action)
        except BaseException:
            if not self.subscribed:
                self.remove_source_objects()
            raise

    def take_snapshot(self):
        """The publication, then the copy's fingerprint (the publication is part of the source's
        definitions until the cutover), then the slot and the snapshot it exports."""
        seen = self.seen
        self.creating = True
        self.phases.timed("publication", replication.create_publication, self.source_writer(), seen.name)
        self.source_fp = fingerprint.read(seen.src, records.SCHEMA)
        self.result["source_fingerprint"] = fingerprint.digest(self.source_fp)
        self.ddl_catalogs = fingerprint.read(seen.src, records.SCHEMA, replication.REPLICATED_CATALOG_CHANGES)["catalogs"]
        try:
            self.slot_snapshot = self.phases.timed("slot", replication.SlotSnapshot, seen.source, seen.database, seen.name)
        except replication.ReplicationProblem as exc:
            raise Failure("slot", "%s: %s. Nothing was written to the target" % (seen.database, exc)) from None
        return self.slot_snapshot.snapshot

    def release_snapshot(self):
        self.slot_snapshot.close()

    def record_details(self):
        return {"mode": "online", "replication": {
            "name": self.seen.name, "consistent_point": self.slot_snapshot.consistent_point,
            "ddl_catalogs": self.ddl_catalogs,
            "source_from_target": {"host": self.seen.reach["host"], "port": self.seen.reach["port"]}}}

    def finish(self, run_id):
        """The copy is verified: subscribe, and record the target as following."""
        seen = self.seen
        conninfo = replication.subscription_conninfo(seen.source, seen.reach, seen.database)
        try:
            refused = self.phases.timed("subscribe", replication.create_subscription, seen.target, seen.target_database,
                                        seen.name, conninfo, seen.source.password)
        except replication.ReplicationProblem as exc:
            raise Failure("subscribe", "%s: %s. The replication slot and the publication on the source are removed; "
                          "the copy stays unfinished" % (seen.database, exc)) from None
        self.subscribed = True
        if refused:
            self.warnings.append("the target user may not turn off %s for its session: had creating the subscription "
                                 "failed, the target server could have logged the statement, which holds the source "
                                 "password" % ", ".join(refused))
        records.update(seen.tgt, run_id, records.FOLLOWING, {
            "phases": self.phases.seconds, "dump_bytes": self.result["dump_bytes"], "verified": self.result["verified"],
            "following_since": catalog.fetchall(seen.tgt, "SELECT now()::text")[0][0]})
        self.result["state"] = records.FOLLOWING
        self.result["replication"] = replication_report(seen.name, replication.observe(seen.src, seen.tgt, seen.name))

    def remove_source_objects(self):
        """After a failure before the subscription existed: the slot and publication go (a slot
        left behind keeps WAL until the source's disk is full). Best effort: say what is left."""
        if self.slot_snapshot is not None:
            self.slot_snapshot.close()
        try:
            conn = self.source_writer()
            replication.drop_slot(conn, self.seen.name, timeout=15)
            replication.drop_publication(conn, self.seen.name)
        except Exception as exc:  # pylint: disable=broad-except
            self.warnings.append("the replication slot and publication %s could not be removed from the source %s "
                                 "(%s): the next run removes them, or mode abort does; until then the slot keeps WAL "
                                 "on the source" % (self.seen.name, self.seen.source.address, exc))

    def abort(self, reason):
        # The watchdog's way out when the main thread is stuck: a slot this run created must not
        # outlive it. Never one it found: a cutover's or an abort's slot holds what the following
        # target has not applied yet.
        if self.creating and not self.subscribed:
            try:
                conn = self.seen.source.connect(self.seen.database)
                try:
                    replication.drop_slot(conn, self.seen.name, timeout=5)
                    replication.drop_publication(conn, self.seen.name)
                finally:
                    conn.close()
            except Exception:  # pylint: disable=broad-except
                pass  # the next run finds them by name
        super(OnlineCopier, self).abort(reason)

    def left_behind(self):
        if self.creating:
            return super(OnlineCopier, self).left_behind()
        return ("the replication is left in place (the source's slot keeps every change the target has not applied): "
                "run mode %s again" % self.seen.mode)

    def remove_replication(self):
        """Remove this migration's subscription, slot and publication wherever they are; a record
        that was following (or copying) becomes aborted."""
        self.phases.current = "abort" if self.seen.mode == "abort" else "cleanup"
        removed = []
        if replication.drop_subscription(self.seen.tgt, self.seen.name):
            removed.append("subscription %s on the target" % self.seen.name)
        conn = self.source_writer()
        if replication.drop_slot(conn, self.seen.name):
            removed.append("replication slot %s on the source" % self.seen.name)
        if replication.publication_exists(conn, self.seen.name):
            replication.drop_publication(conn, self.seen.name)
            removed.append("publication %s on the source" % self.seen.name)
        if self.seen.record and self.seen.record["state"] in (records.FOLLOWING, records.IN_PROGRESS):
            records.update(self.seen.tgt, self.seen.record["id"], records.ABORTED, {"aborted_by": self.seen.mode})
        self.result["removed"] = removed
        if self.seen.mode == "abort":
            self.result["state"] = records.ABORTED if self.seen.record else None

    # -- the cutover ---------------------------------------------------------------------------
    def cut_over(self):
        src, tgt, name = self.seen.src, self.seen.tgt, self.seen.name
        try:
            if not self.seen.observed["subscription"]["enabled"]:  # left stopped by an interrupted cutover
                replication.set_enabled(tgt, name, True)
            self.catch_up()
            self.phases.timed("sequences", replication.sync_sequences, src, tgt, records.SCHEMA)
            refreshed = self.phases.timed("sequences", self.refresh_materialized_views)
            try:
                self.phases.timed("verify", self.verify, None)
            except Failure as exc:
                if exc.phase != "verify" or "differs from the source" not in str(exc):
                    raise
                raise Failure("verify", "%s: the target differs from the quiesced source although it applied every "
                              "change (%s). Was the target written to, or the source changed in a way logical "
                              "replication does not carry? Nothing was removed: the target keeps following; run mode "
                              "abort, then mode online for a new copy"
                              % (self.seen.database, str(exc).split(": ", 1)[-1].split(". It stays marked")[0])) from None
            before = self.phases.timed("cleanup", fingerprint.read, src, records.SCHEMA,
                                       replication.OUR_CATALOG_CHANGES)
            self.phases.timed("proof", self.prove_nothing_pending)
        except BaseException:
            # Back to following: the slot still holds every change, nothing is lost.
            replication.set_enabled(tgt, name, True)
            raise
        after, source_fp = self.phases.timed("cleanup", self.remove_proven_replication)
        doubt = self.written_meanwhile(before, after)
        if doubt:
            records.update(tgt, self.seen.record["id"], records.ABORTED, {"aborted_by": "cutover: %s" % doubt})
            self.result["state"] = records.ABORTED
            raise Failure("cleanup", "%s: the source may have been written while replication was being removed (%s): "
                          "such writes are not on the target, so the copy is left unfinished (replication is gone). "
                          "Check that nothing uses the source, then run mode online again for a new copy (or mode "
                          "offline)" % (self.seen.database, doubt))
        # Downtime ends here, not at verification: until the proof that nothing is pending and the
        # removal of the replication, the cutover can still fail and go back to following.
        self.result["downtime"] = round(time.time() - self.phases.started, 3)
        self.phases.timed("analyze", replication.analyze_changed, tgt, records.SCHEMA)
        self.phases.enter("record")  # (the fingerprint waits for the statistics first)
        self.phases.timed("record", records.complete, tgt, self.seen.record["id"], self.target_fingerprint(), {
            "cutover": {"phases": dict(self.phases.seconds), "downtime": self.result["downtime"],
                        "nothing_pending_proven_by": self.pending_proofs,
                        "verified": self.result["verified"], "refreshed": refreshed}}, records.CUT_OVER, source_fp)
        self.result.update(state=records.CUT_OVER, replication={"name": name, "removed": True}, reasons=[
            "cut over with %.1f s of downtime: the target applied every change of the source (proven by %s), the "
            "sequences were set from the source, the copy verified (%s), the subscription, slot and publication "
            "removed" % (self.result["downtime"], self.pending_proofs[-1] if self.pending_proofs else "the slot",
                         self.params["verify"])])

    def refresh_materialized_views(self):
        """REFRESH counts its rows as written, and a session's counters reach the statistics only
        when it idles or ends: in a session of its own, which target_fingerprint waits for, so that
        the fingerprint recorded at the cutover holds them (else the next run finds the target changed)."""
        conn = self.connect(self.seen.target, self.seen.target_database)
        try:
            return replication.refresh_materialized_views(self.seen.src, conn, records.SCHEMA)
        finally:
            conn.close()

    def remove_proven_replication(self):
        """Drop the subscription, the slot and the publication; the source's fingerprint after
        that (to compare with the one before, then the one recorded)."""
        replication.drop_subscription(self.seen.tgt, self.seen.name)
        replication.drop_slot(self.source_writer(), self.seen.name)
        replication.drop_publication(self.source_writer(), self.seen.name, note_xid=self.note_transaction)
        return (fingerprint.read(self.seen.src, records.SCHEMA, replication.OUR_CATALOG_CHANGES),
                fingerprint.read(self.seen.src, records.SCHEMA))

    def note_transaction(self, xid):
        self.own_xids.add(xid)
        if self.run_dir is not None:
            self.run_dir.note_transaction(self.seen.source_key, xid)

    def our_transactions(self):
        return self.own_xids | (self.run_dir.our_transactions(self.seen.source_key) if self.run_dir else set())

    def catch_up(self):
        """Wait until the target confirmed everything up to the source's WAL position (phase
        catch-up), stop the subscription (pause), and prove that the slot holds no change it did
        not apply (proof)."""
        # Read before the WAL position: see prove_nothing_pending.
        self.quiet_since = fingerprint.horizon(self.seen.src)
        try:
            position = replication.wal_position(self.seen.src)
            self.phases.timed("catch-up", lambda: replication.wait_caught_up(
                self.seen.src, self.seen.name, position, on_poll=lambda behind: self.progress.update(lag_bytes=behind)))
            self.phases.timed("pause", replication.set_enabled, self.seen.tgt, self.seen.name, False)
            self.phases.timed("pause", replication.wait_inactive, self.seen.src, self.seen.name)
        except replication.ReplicationProblem as exc:
            raise Failure("catch-up", "%s: %s. Nothing was changed: the target keeps following"
                          % (self.seen.database, exc)) from None
        self.phases.timed("proof", self.prove_nothing_pending)

    def prove_nothing_pending(self):
        """Fail unless the stopped slot holds no change: every write committed on the source up to
        its WAL position now is on the target. A change there means that the source is still
        written to: the run fails, and the subscription is started again (cut_over())."""
        sessions = catalog.other_sessions(self.seen.src)
        if sessions and not self.params["force"]:
            raise Failure("catch-up", "%s: sessions connected to the source during the cutover (%s): stop the "
                          "application; the target keeps following" % (self.seen.database, "; ".join(sessions[:5])))
        # No transaction took an id on the server since before the WAL position the target confirmed,
        # and none was running then, but our cutovers' DROP PUBLICATIONs (in other databases): every
        # write is on the target. Cheap, and usually so once the application stopped. Else (autovacuum
        # analyzed a table, another client wrote) read the slot: exact, but it decodes all the WAL the
        # slot retains.
        if fingerprint.proven_unwritten(self.quiet_since, fingerprint.horizon(self.seen.src), self.our_transactions()):
            self.pending_proofs.append("the source's transaction ids")
            return
        self.pending_proofs.append("reading the slot")
        replication.wal_position(self.seen.src)
        count, last = replication.pending_changes(self.seen.src, self.seen.name)
        if count:
            raise Failure("catch-up", "%s: %d changes were committed on the source after the cutover began (the last at "
                          "%s): something still writes to it. Stop it (the application, jobs, other clients) and run "
                          "the cutover again; the target keeps following" % (self.seen.database, count, last))

    def written_meanwhile(self, before, after):
        """Why a write to the source between `before` (no change pending then) and `after` (our
        replication removed) cannot be ruled out, or None. Ruled out when no transaction but our
        DROP PUBLICATIONs took an id, else by the write counters when they can be trusted."""
        changes = fingerprint.definition_changes(before, after)
        if changes:
            return "; ".join(fingerprint.limited(changes))
        if fingerprint.proven_unwritten(before, after, self.our_transactions()):
            return None
        taken = after["xids"]["next"] - before["xids"]["next"]
        doubts = [fingerprint.counters_lost(before, after)] + fingerprint.counting_problems(self.seen.src) + \
            ["sessions are connected to it (%s)" % "; ".join(s) for s in [catalog.other_sessions(self.seen.src)] if s]
        doubts = [doubt for doubt in doubts if doubt]
        if doubts:
            return "%d transactions ran on the server meanwhile and %s" % (taken, "; ".join(doubts))
        writes = fingerprint.write_changes(before, after)
        return "; ".join(fingerprint.limited(writes)) or None
