# -*- coding: utf-8 -*-
# Copyright: Contributors to the codacy.selfhosted collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""How sizes are written for people: one format in every message, table and progress line."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


def human_bytes(size):
    """'512 B', '1.5 kB', '3.1 GB' (multiples of 1024); None counts as 0."""
    size = float(size or 0)
    for unit in ("B", "kB", "MB", "GB"):
        if abs(size) < 1024:
            return "%d %s" % (size, unit) if unit == "B" else "%.1f %s" % (size, unit)
        size /= 1024.0
    return "%.1f TB" % size
