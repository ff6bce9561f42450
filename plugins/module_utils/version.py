# -*- coding: utf-8 -*-
# Copyright: Contributors to the codacy.selfhosted collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The collection's version, recorded with every migration (a unit test keeps it equal to galaxy.yml)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

COLLECTION_VERSION = "1.0.0"
