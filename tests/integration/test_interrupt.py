"""Ctrl-C at every point of a role run (before, while and after the background migrations start):
within 10 s every migration it started has stopped, no pg_dump, pg_restore or module process and
no private directory is left, the output names the databases stopped, and the next run converges.

A terminal's Ctrl-C reaches ansible-playbook alone (its workers run in sessions of their own), so
the tests send SIGINT to ansible-playbook's process."""

import os
import signal
import subprocess
import threading
import time

import pytest

from tests.integration.features import (
    add_bulk, create_feature_database, holders, processes, processes_of_home, record_states, wait_for)
from tests.integration.playbook import PASSWORD, Play
from tests.support.compare import compare
from tests.support.pgserver import PgServer

DATABASES = ["analysis", "jobs", "metrics"]


@pytest.fixture(scope="module")
def interrupt_source():
    with PgServer(password=PASSWORD) as source:
        for name in DATABASES:
            create_feature_database(source, name)
        add_bulk(source, "analysis", rows=2000000)  # a restore of several seconds
        yield source


@pytest.fixture
def interrupt_target():
    with PgServer(password=PASSWORD) as target:
        yield target


class Output:
    """ansible-playbook's output as it comes."""

    def __init__(self, proc):
        self.lines, self.proc = [], proc
        self.thread = threading.Thread(target=self._read)
        self.thread.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line)

    def text(self):
        return "".join(self.lines)

    def has(self, needle):
        return needle in self.text()


def leftovers(play, source, target):
    """What a stopped run must not leave: pg_dump, psql or pg_restore of its servers, processes running
    its modules (their files are under its own HOME), private directories."""
    found = ["pg_dump %s" % pid for pid in processes("pg_dump", "port=%d" % source.port)]
    found += ["pg_restore %s" % pid for pid in processes("pg_restore", "port=%d" % target.port)]
    found += ["psql %s" % pid for pid in processes("psql", "port=%d" % source.port)]
    found += ["module or async_wrapper %s" % pid for pid in processes_of_home(str(play.home), "codacy_db_migrate")]
    work_dir = str(play.work_dir)
    found += ["private directory %s" % name for name in os.listdir(work_dir) if name.startswith("codacy_db_migrate-")]
    found += ["holder %s" % pid for pid in holders(work_dir)]
    return found


def process_tree(roots):
    """The processes under the pids `roots` (themselves included): pid, parent, state, what it waits in, argv."""
    table = subprocess.run(["ps", "-e", "-o", "pid=,ppid=,stat=,wchan:24=,args="], stdout=subprocess.PIPE,
                           universal_newlines=True, check=False).stdout.splitlines()
    rows = [line.split(None, 4) for line in table if len(line.split(None, 4)) == 5]
    tree, found = set(roots), True
    while found:
        found = False
        for row in rows:
            if int(row[1]) in tree and int(row[0]) not in tree:
                tree.add(int(row[0]))
                found = True
    return "\n".join(" ".join(row)[:300] for row in rows if int(row[0]) in tree)


def interrupt(play, source, target, when, what, signum=signal.SIGINT):
    """Run the role, send `signum` once `when(output)` holds; return (output, seconds until nothing
    of the run was left)."""
    # (A progress line every second: the tests interrupt in a phase that the progress lines show.)
    proc = play.popen(db_migration_databases=DATABASES, db_migration_concurrency=2, db_migration_progress_interval=1,
                      env={"HOME": str(play.home)})
    output = Output(proc)
    wait_for(lambda: when(output) or proc.poll() is not None, timeout=600, what=what)
    assert proc.poll() is None, "the run ended before the interrupt:\n" + output.text()[-3000:]
    sent = time.time()
    proc.send_signal(signum)
    # ansible-playbook waits for its worker, which waits for the migrations it stops: once it has
    # ended and nothing is left, the run has stopped.
    gone, remaining = {}, []

    def stopped():
        # ansible-playbook and its workers (killed with SIGKILL, it leaves them running)
        remaining[:] = leftovers(play, source, target) + ["ansible-playbook %s" % pid for pid in (
            ([proc.pid] if proc.poll() is None else []) + processes_of_home(str(play.home), "ansible-playbook"))]
        for kind in ("pg_dump", "pg_restore", "psql", "module", "private", "holder", "ansible-playbook"):
            if kind not in gone and not any(item.startswith(kind) for item in remaining):
                gone[kind] = round(time.time() - sent, 1)
        return not remaining and time.time()
    try:
        stopped = wait_for(stopped, timeout=120, what="the run to stop")
    except AssertionError as exc:  # say what outlived the interrupt, and what the run said
        raise AssertionError("%s: still there %s (gone after: %s)\n%s\n%s" % (
            exc, remaining, gone, process_tree([proc.pid] + processes_of_home(str(play.home), "")),
            output.text()[-4000:])) from None
    output.thread.join(timeout=30)
    time.sleep(2)
    assert leftovers(play, source, target) == [], "something started after the run stopped"
    print("lost interrupt refused" if "Ansible went on as if it had not been" in output.text() else "", end=" ")
    said = [line for line in output.lines if "interrupted" in line or "is gone" in line]
    print("stopped %.1f s after %s (gone after: %s): %s" % (stopped - sent, signal.Signals(signum).name, gone, said))
    return output.text(), stopped - sent


def home_play(tmp_path, source, target):
    """A Play whose ansible-playbook has a HOME of its own, so that its module files are its own."""
    play = Play(tmp_path, source, target)
    play.home = tmp_path / "home"
    play.home.mkdir()
    return play


def converges(play, source, target):
    again = play(db_migration_databases=DATABASES, db_migration_concurrency=2)
    assert again.returncode == 0, again.output[-4000:]
    for name in DATABASES:
        assert compare(source.params(), name, target.params(), name) == [], name


def test_interrupt_before_the_migrations_start(interrupt_source, interrupt_target, tmp_path):
    play = home_play(tmp_path, interrupt_source, interrupt_target)
    text, seconds = interrupt(play, interrupt_source, interrupt_target,
                              lambda out: out.has("Create the missing target databases"), "the preflight to end")
    assert seconds <= 10, "%.1f s to stop" % seconds
    assert "interrupted: stopped" not in text  # nothing had started
    converges(play, interrupt_source, interrupt_target)


def test_interrupt_while_the_migrations_start(interrupt_source, interrupt_target, tmp_path):
    play = home_play(tmp_path, interrupt_source, interrupt_target)
    run_dir = play.work_dir / "codacy_db_migration" / "localhost"  # the installation's run directory

    def first_started(out):
        return run_dir.is_dir() and any(name.startswith("progress-") for name in os.listdir(str(run_dir)))
    text, seconds = interrupt(play, interrupt_source, interrupt_target, first_started, "the first migration to start")
    assert seconds <= 10, "%.1f s to stop" % seconds
    assert "] interrupted: stopped the migrations of analysis (in phase " in text, text[-3000:]
    assert "the next run resumes them" in text
    converges(play, interrupt_source, interrupt_target)


def test_interrupt_while_the_migrations_run(interrupt_source, interrupt_target, tmp_path):
    play = home_play(tmp_path, interrupt_source, interrupt_target)
    text, seconds = interrupt(play, interrupt_source, interrupt_target, lambda out: out.has("analysis: restore"),
                              "the restore of analysis")
    assert seconds <= 10, "%.1f s to stop" % seconds
    assert "] interrupted: stopped the migrations of analysis (in phase restore)" in text, text[-3000:]
    assert "the next run resumes them" in text
    converges(play, interrupt_source, interrupt_target)


def test_ansible_playbook_killed_while_the_migrations_run(interrupt_source, interrupt_target, tmp_path):
    """kill -9 of ansible-playbook (the OOM killer, a CI job cancelled): nothing can clean up in it, and
    its worker, which waits for the migrations and keeps their heartbeat fresh, lives on. The worker
    notices that ansible-playbook is gone and stops them as an interrupt would, at once rather than
    when the heartbeat goes stale, and before they finish."""
    play = home_play(tmp_path, interrupt_source, interrupt_target)
    text, seconds = interrupt(play, interrupt_source, interrupt_target, lambda out: out.has("analysis: restore"),
                              "the restore of analysis", signum=signal.SIGKILL)
    assert seconds <= 10, "%.1f s to stop" % seconds
    assert "] ansible-playbook is gone (killed): stopped the migrations of analysis (in phase restore)" in text, \
        text[-3000:]
    assert record_states(interrupt_target, "analysis") == ["in_progress"]
    converges(play, interrupt_source, interrupt_target)
