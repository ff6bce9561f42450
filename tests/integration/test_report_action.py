"""codacy_db_report writes the role's JSON reports on the controller: 0600, whole, and nothing in check mode."""

import json
import os

from tests.integration.conftest import ModuleRunner


def test_the_report_is_written_whole_and_private(tmp_path):
    dest = tmp_path / "report.json"
    dest.write_text("an older report, readable by all")
    os.chmod(str(dest), 0o644)
    run = ModuleRunner(tmp_path, module="codacy.selfhosted.codacy_db_report")
    result = run({"content": {"databases": [{"name": "accounts", "action": "unchanged"}], "note": "é"},
                  "dest": str(dest)})
    assert not result.get("failed"), result
    assert result["changed"] is False
    assert json.loads(dest.read_text(encoding="utf-8")) == {
        "databases": [{"name": "accounts", "action": "unchanged"}], "note": "é"}
    assert oct(os.stat(str(dest)).st_mode & 0o777) == "0o600"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".codacy-db-report-")] == []


def test_check_mode_writes_nothing(tmp_path):
    dest = tmp_path / "report.json"
    result = ModuleRunner(tmp_path, module="codacy.selfhosted.codacy_db_report")(
        {"content": {"a": 1}, "dest": str(dest)}, check=True)
    assert not result.get("failed"), result
    assert not dest.exists()


def test_a_missing_directory_is_named(tmp_path):
    dest = tmp_path / "no-such-dir" / "report.json"
    result = ModuleRunner(tmp_path, module="codacy.selfhosted.codacy_db_report")({"content": {"a": 1}, "dest": str(dest)})
    assert result.get("failed")
    assert str(dest) in result["msg"] and "directory exists" in result["msg"]
