"""fingerprint: comparing two fingerprints of a source database, and the proof that nothing was
written."""

from ansible_collections.codacy.selfhosted.plugins.module_utils import fingerprint


class TestFingerprint:
    base = {"format": 2, "catalogs": {"pg_class": "a"}, "tables": {"public.t": [1, 2, 3]}, "sequences": {},
            "statistics": {"cluster_reset": "t0", "database_reset": None}, "xids": {"next": 10, "running": []}}

    def test_equal(self):
        assert fingerprint.definition_changes(self.base, dict(self.base)) == []
        assert fingerprint.write_changes(self.base, dict(self.base)) == []
        assert fingerprint.counters_lost(self.base, dict(self.base)) is None

    def test_limit(self):
        found = ["write activity in public.t%d" % i for i in range(20)]
        assert fingerprint.limited(found, 3) == found[:3] + ["and 17 more"]

    def test_digest_is_stable(self):
        assert fingerprint.digest(self.base) == fingerprint.digest(dict(self.base))

    def test_proof_needs_no_transaction_running_and_none_since(self):
        assert fingerprint.proven_unwritten(self.base, dict(self.base))
        assert not fingerprint.proven_unwritten(self.base, dict(self.base, xids={"next": 11, "running": []}))
        running = dict(self.base, xids={"next": 10, "running": [9]})
        assert not fingerprint.proven_unwritten(running, dict(running))
        crashed = dict(self.base, statistics={"cluster_reset": "t1", "database_reset": None})
        assert not fingerprint.proven_unwritten(self.base, crashed)

    def test_only_our_transactions_may_have_taken_ids(self):
        """Ids taken or running since `before` are allowed only when every one of them is ours."""
        since = dict(self.base, xids={"next": 13, "running": []})
        assert fingerprint.proven_unwritten(self.base, since, {10, 11, 12})
        assert fingerprint.proven_unwritten(self.base, since, {3, 10, 11, 12, 40})
        assert not fingerprint.proven_unwritten(self.base, since, {10, 12})  # 11 is someone else's
        running = dict(self.base, xids={"next": 10, "running": [8, 9]})
        assert fingerprint.proven_unwritten(running, dict(running), {8, 9})
        assert not fingerprint.proven_unwritten(running, dict(running), {9})
        crashed = dict(since, statistics={"cluster_reset": "t1", "database_reset": None})
        assert not fingerprint.proven_unwritten(self.base, crashed, {10, 11, 12})
        assert not fingerprint.proven_unwritten(since, self.base, {10, 11, 12})  # ids never go back

    def test_skipped_catalogs_and_volatile_columns_say_why(self):
        for reasons in [fingerprint.SKIPPED_CATALOGS] + list(fingerprint.VOLATILE_COLUMNS.values()):
            assert all(len(why) > 20 for why in reasons.values())
