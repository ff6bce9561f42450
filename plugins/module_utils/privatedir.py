# -*- coding: utf-8 -*-
# Copyright: Contributors to the codacy.selfhosted collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A migration's private directory in work_dir (its dump and passfile) is claimed with a lock that
the kernel releases if the process is killed before its cleanup (kill -9, the OOM killer): the next
run removes such a directory, and never one a live run holds.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import fcntl
import glob
import os
import shutil

PRIVATE_PREFIX = "codacy_db_migrate-"
CLAIM = ".claimed"


def claim(directory):
    """Hold a private directory for as long as this process lives; returns the handle to keep. The
    claim appears already locked (renamed into place), so it is never seen unheld while alive."""
    unnamed = os.path.join(directory, "%s.%d" % (CLAIM, os.getpid()))
    handle = open(unnamed, "w")
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.rename(unnamed, os.path.join(directory, CLAIM))
    return handle


def remove_abandoned(work_dir):
    """Remove the private directories in `work_dir` of migrations killed before their cleanup: their
    claim is still there but nobody holds it. (A kept dump has no claim left; a live run holds its
    own.) Returns the directories removed."""
    removed = []
    for path in glob.glob(os.path.join(work_dir, PRIVATE_PREFIX + "*")):
        claimed = os.path.join(path, CLAIM)
        try:
            with open(claimed) as handle:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
        except OSError:
            continue  # no claim (a kept dump), or its process still holds it
    return removed
