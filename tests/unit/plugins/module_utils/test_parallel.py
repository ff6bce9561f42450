"""Unit tests of the parallel engine's pure logic: when and how tables split, the ranges, which
post-data entries a table makes as soon as its rows are in, achieved concurrency."""

import signal

from ansible_collections.codacy.selfhosted.plugins.module_utils import parallel

MB = 1 << 20


class TestSplitting:
    def test_one_worker_never_splits(self):
        assert parallel.split_parts(10000 * MB, 10000 * MB, 1) == 1

    def test_a_table_within_its_share_is_not_split(self):
        assert parallel.split_parts(400 * MB, 1000 * MB, 2) == 1  # share: 500 MB

    def test_small_tables_are_not_split_even_when_dominant(self):
        assert parallel.split_parts(200 * MB, 210 * MB, 4) == 1

    def test_a_dominant_table_splits_into_parts_of_half_a_share(self):
        # 80% of 10 GB with 2 workers: parts of 2.5 GB.
        assert parallel.split_parts(8000 * MB, 10000 * MB, 2) == 4
        assert parallel.split_parts(8000 * MB, 10000 * MB, 8) == 13

    def test_parts_are_capped(self):
        assert parallel.split_parts(100000 * MB, 100000 * MB, 64) == parallel.MAX_PARTS

    def test_ranges_cover_everything_with_open_ends(self):
        assert parallel.ranges(1, 100, 4) == [(None, 26), (26, 51), (51, 76), (76, None)]
        assert parallel.ranges(0, 10, 1) == [(None, None)]
        assert parallel.ranges(None, None, 4) == [(None, None)]  # an empty table
        assert parallel.ranges(5, 7, 4) == [(None, None)]  # fewer values than parts

    def test_ranges_of_negative_and_huge_keys(self):
        low, high = -(2 ** 63), 2 ** 63 - 1
        found = parallel.ranges(low, high, 3)
        assert found[0][0] is None and found[-1][1] is None
        assert all(a[1] == b[0] for a, b in zip(found, found[1:]))
        assert all(low < bound <= high for bound, _upper in found[1:])


TOC = [
    "3273; 2606 16575 CONSTRAINT public issue_occurrence issue_occurrence_pkey postgres",
    "3269; 2606 16552 CONSTRAINT public issue issue_pkey postgres",
    "3265; 1259 16572 INDEX public issue_commit_sha_idx postgres",
    "3266; 1259 16590 INDEX public parted_idx postgres",
    "3300; 1259 16591 INDEX ATTACH public parted_1_idx postgres",
    "3301; 2620 16600 TRIGGER public issue issue_touch postgres",
    "3302; 2618 16601 RULE public issue issue_rule postgres",
    "3303; 3256 16602 POLICY public issue issue_policy postgres",
    "3304; 0 16603 MATERIALIZED VIEW DATA public busy postgres",
    "3305; 0 0 COMMENT public INDEX issue_commit_sha_idx postgres",
    "3275; 2606 16576 FK CONSTRAINT public issue_occurrence issue_occurrence_issue_fk postgres",
]
OWNERS = {(2606, 16575): 2, (2606, 16552): 1, (1259, 16572): 1, (1259, 16590): 9, (1259, 16591): 3,
          (2620, 16600): 1, (2618, 16601): 1, (3256, 16602): 1}


class TestAssignEntries:
    def test_a_tables_own_entries_go_with_it_in_toc_order(self):
        per_table, rest = parallel.assign_entries(TOC, OWNERS, {1, 2, 3})
        assert per_table[1] == [TOC[1], TOC[2], TOC[5], TOC[6], TOC[7]]
        assert per_table[2] == [TOC[0]]

    def test_attachments_foreign_keys_comments_and_other_relations_wait_for_the_end(self):
        per_table, rest = parallel.assign_entries(TOC, OWNERS, {1, 2, 3})
        # The partitioned parent (9) is not copied; attachments and foreign keys keep main's passes.
        assert rest == [TOC[3], TOC[4], TOC[8], TOC[9], TOC[10]]
        assert 3 not in per_table

    def test_nothing_is_lost_or_doubled(self):
        per_table, rest = parallel.assign_entries(TOC, OWNERS, {1})
        assigned = [line for lines in per_table.values() for line in lines]
        assert sorted(assigned + rest) == sorted(TOC)


def test_concurrency_is_time_weighted():
    assert parallel.concurrency([(0, 10), (0, 10)], 0, 10) == 2.0
    assert parallel.concurrency([(0, 5), (5, 10)], 0, 10) == 1.0
    assert parallel.concurrency([], 0, 0) == 0.0


def test_target_connections_cover_copy_index_and_wide_restore():
    # jobs copy + (jobs - 1) index + one pg_restore with a leader and jobs workers + the rest + ours.
    assert parallel.target_connections(2) == 2 + 1 + 3 + 1 + 1


def test_rows_come_from_psqls_last_copy_tag(tmp_path):
    tags = tmp_path / "copy-1.tags"
    tags.write_text("BEGIN\nSET\nSET\nCOPY 1200\nCOMMIT\n")
    assert parallel._copied_rows(parallel._tags(str(tags))) == 1200
    tags.write_text("BEGIN\nSET\n")  # psql stopped before its \copy ended
    assert parallel._copied_rows(parallel._tags(str(tags))) is None
    assert parallel._tags(str(tmp_path / "missing.tags")) == ""


def test_a_sending_psql_that_lost_its_reader_is_told_from_a_failing_source(tmp_path):
    log = tmp_path / "copy-1.log"
    log.write_text("")
    assert parallel._broke_the_pipe(-signal.SIGPIPE, str(log))
    assert not parallel._broke_the_pipe(-signal.SIGKILL, str(log))
    log.write_text("psql: error: could not write COPY data: Broken pipe\n")
    assert parallel._broke_the_pipe(1, str(log))
    log.write_text("psql:<stdin>:1: ERROR:  canceling statement due to statement timeout\n")
    assert not parallel._broke_the_pipe(1, str(log))
