"""Benchmark: the vendor guide's script, our playbook, pgcopydb and reference data paths, side by side.

    python -m bench.run [--scale-mb 2800] [--runs 3] [--only vendor,ours,pgcopydb,directory,bound,rerun] [--smoke]

Run from the collection root. Starts two throwaway PostgreSQL servers (source and target, the host's
PostgreSQL, the same settings for both), generates the Codacy-shaped dataset on the source once (kept
under bench/data/ and reused by later invocations), then runs every contender from a clean target,
alternating, `--runs` times, checks every copy against the source with tests/support/compare.py and
writes a table to stdout and bench/results/<timestamp>.{md,json} (+ latest.md). The last line is

    RESULT vendor_s=.. ours_s=.. pgcopydb_s=..|na bound_s=.. rerun_s=.. ratio_vendor=.. ratio_pgcopydb=..|na

See bench/README.md for what each contender is and what each column means.

One module per layer, each importing only those above it:

    common.py       paths, units, the six databases, logging
    processes.py    process control: start, wait with a limit, stop a group, reap; the process table
    sampling.py     /proc sampling during a run (Sampler), the machine's counters and description
    servers.py      the source and target servers, the dataset, the Context contenders share
    contenders/     one module per contender; REGISTRY and the Lineup of an invocation
    measure.py      one timed, sampled and checked run; the rounds; medians
    report.py       the report, its tables, markdown and JSON, the RESULT line, the verdict
    online.py       --online: the application writes during an online copy, then the cutover
    cli.py          the arguments and main(); __main__.py runs it
"""
