"""`make demo`: two throwaway PostgreSQL servers on loopback, Codacy-shaped sample data, and
playbooks/migrate.yml between them. Run it again to see an idempotent rerun; `make demo-clean`
stops the servers and deletes everything under build/demo.

Environment: DEMO_SCALE_MB (sample data size, default 100).
"""

import json
import os
import secrets
import shutil
import subprocess
import sys

from tests.support import dataset
from tests.support.pgserver import PgServer, find_bindir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

HOME = os.path.join(ROOT, "build", "demo")
STATE = os.path.join(HOME, "state.json")
VARS = os.path.join(HOME, "vars.json")
INVENTORY = os.path.join(HOME, "inventory.yml")
REPORT = os.path.join(HOME, "report.json")


def private(path, text):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def server(name, state):
    """The demo's server `name`, started (and created the first time)."""
    entry = state.setdefault(name, {"port": None})
    pg = PgServer(password=state["password"], port=entry["port"], basedir=os.path.join(HOME, name))
    entry["port"] = pg.port
    if pg.postmaster_pid() is None or not os.path.exists("/proc/%d" % pg.postmaster_pid()):
        pg.start()
    return pg


def ensure_postgresql():
    try:
        find_bindir()
    except RuntimeError:
        if os.geteuid() != 0:
            sys.exit("The demo needs the PostgreSQL server packages: sudo apt-get install postgresql "
                     "(or your distribution's postgresql-server), then run `make demo` again.")
        print("Installing the PostgreSQL server packages (apt-get install postgresql)...")
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "postgresql", "postgresql-contrib"], check=True,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))


def clean():
    if os.path.exists(STATE):
        with open(STATE) as handle:
            state = json.load(handle)
        for name in ("source", "target"):
            if name in state:
                PgServer(password="", port=state[name]["port"], basedir=os.path.join(HOME, name)).stop()
    shutil.rmtree(HOME, ignore_errors=True)
    print("Demo servers stopped and build/demo removed.")


def main():
    if sys.argv[1:] == ["clean"]:
        return clean()
    ensure_postgresql()
    os.makedirs(HOME, exist_ok=True)
    os.chmod(HOME, 0o711)  # the servers run as postgres and need to reach their directories
    state = {"password": secrets.token_urlsafe(18)}
    if os.path.exists(STATE):
        with open(STATE) as handle:
            state = json.load(handle)
    source, target = server("source", state), server("target", state)
    private(STATE, json.dumps(state))
    scale = float(os.environ.get("DEMO_SCALE_MB", "100"))
    print("Source: PostgreSQL on 127.0.0.1:%d, target: 127.0.0.1:%d (data in build/demo)" % (source.port, target.port))
    print("Filling the source with %g MB of Codacy-shaped sample data (reused on the next run)..." % scale)
    dataset.generate(source.params(), scale_mb=scale, progress=lambda *args: None)

    private(VARS, json.dumps({
        "db_migration_source": source.endpoint(), "db_migration_target": target.endpoint(),
        "db_migration_work_dir": HOME, "db_migration_report_path": REPORT,
        "db_migration_fleet_report_path": os.path.join(HOME, "fleet.json"), "db_migration_progress_interval": 2}))
    private(INVENTORY, json.dumps({"all": {"hosts": {"localhost": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}))
    playbook = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", INVENTORY,
                "-e", "@" + VARS, os.path.join(ROOT, "playbooks", "migrate.yml")]
    print("\n$ ansible-playbook -i build/demo/inventory.yml -e @build/demo/vars.json playbooks/migrate.yml\n")
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, "build", "collections"))
    if os.path.exists(REPORT):
        os.unlink(REPORT)  # an earlier run's: never shown as this one's
    result = subprocess.run(playbook, env=env, check=False)
    if not os.path.exists(REPORT):
        print("\nNo report: ansible-playbook ended (exit %d) before it wrote one. Run `make demo` again: it "
              "resumes what was stopped." % result.returncode)
        return result.returncode
    with open(REPORT) as handle:
        report = json.load(handle)
    print("\nReport (%s):" % os.path.relpath(REPORT, ROOT))
    for entry in report["databases"]:
        verified = entry["verified"]
        print("  %-10s %-10s %8.1f MB  %s" % (
            entry["name"], entry["action"] if not entry["failed"] else "FAILED", (entry["source_bytes"] or 0) / 2**20,
            "%s rows in %s tables verified%s" % (verified["rows"], verified["tables"],
                                                 " (the copy of %s)" % verified["copied_at"]
                                                 if verified.get("copied_at") else "")
            if verified["equal"] else "not verified: %s" % (entry.get("message") or "-")))
    print("\nRun `make demo` again: the second run finds every database unchanged and changes nothing.")
    print("Change something on the source (psql -h 127.0.0.1 -p %d -U postgres analysis; the password is in "
          "build/demo/state.json) and the next run refreshes that database." % source.port)
    print("`make demo-clean` stops both servers and removes build/demo.")
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
