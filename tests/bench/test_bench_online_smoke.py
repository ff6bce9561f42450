"""The online benchmark harness (`python -m bench.run --online --smoke`), end to end at a tiny
scale: the application writes, the online copy, following, the cutover, and the harness's own
checks (compare.py and the writer's ledger). Correctness of the harness and of the migration it
drives, not timing."""

import glob
import json
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RESULT = re.compile(r"^RESULT online scale_mb=5 copy_s=\d+\.\d downtime_s=\d+\.\d tps_ratio=\d+\.\d+$")


def test_bench_online_smoke(tmp_path):
    results = tmp_path / "results"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "ANSIBLE_"))}
    # --seed 2: a source cluster of its own, so that it runs beside test_bench_smoke (one run per cluster)
    proc = subprocess.run([sys.executable, "-m", "bench.run", "--online", "--smoke", "--seed", "2",
                           "--results-dir", str(results)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-8000:]
    lines = proc.stdout.strip().splitlines()
    assert RESULT.match(lines[-2]), output[-3000:]
    reports = glob.glob(str(results / "*-online.json"))
    assert len(reports) == 1
    with open(reports[0]) as handle:
        (scale,) = json.load(handle)["scales"]
    databases = ["accounts", "analysis", "jobs", "metrics", "results"]
    assert scale["correct"] and scale["differences"] == [] and scale["writer_errors"] == [], scale
    assert scale["committed"] > 0 and scale["baseline_tps"] > 0 and scale["copy_tps"] > 0
    assert sorted(scale["copy_actions"]) == databases and set(scale["copy_actions"].values()) == {"migrated"}
    assert scale["rerun_changed"] == 0 and set(scale["rerun_actions"].values()) == {"following"}
    assert set(scale["cutover_actions"].values()) == {"cut_over"}
    assert all(seconds > 0 for seconds in scale["downtime_by_database_s"].values()), scale["downtime_by_database_s"]
    assert scale["copy_cpu"]["source_cpu_s"] > 0 and scale["copy_cpu"]["target_cpu_s"] > 0
