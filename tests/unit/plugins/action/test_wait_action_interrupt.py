"""The wait action's check for a Ctrl-C that ansible-playbook received but did not act on, on real
processes: a process that catches SIGINT (as ansible-playbook does until its first Ctrl-C) and one
whose SIGINT is back to the default (as after it)."""

import subprocess
import sys
import time

import pytest

from ansible_collections.codacy.selfhosted.plugins.action.codacy_db_wait import interrupt_lost

PROGRAM = """
import signal, sys, time
if sys.argv[1] == "caught":
    signal.signal(signal.SIGINT, lambda *_: None)
else:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
print("ready", flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("disposition, name, lost", [("caught", "ansible-playbook", False),
                                                     ("default", "ansible-playbook", True),
                                                     ("default", "sh", False)])  # not ansible-playbook: cannot tell
def test_a_lost_interrupt_is_seen_in_the_parents_signal_disposition(disposition, name, lost):
    proc = subprocess.Popen([sys.executable, "-c", PROGRAM, disposition, name], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "ready\n"
        assert interrupt_lost(proc.pid) is lost
    finally:
        proc.kill()
        proc.wait()


def test_nothing_is_lost_where_it_cannot_tell():
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    time.sleep(0.1)
    assert interrupt_lost(finished.pid) is False  # gone: /proc has no status
