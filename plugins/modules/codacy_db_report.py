#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Contributors to the codacy.selfhosted collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: codacy_db_report
short_description: Write a migration report as JSON on the controller, readable by its owner only
version_added: 1.1.0
description:
  - Writes O(content) as indented JSON to O(dest) on the controller (where ansible-playbook runs), whatever host the
    task runs for, replacing the file at once (a reader never sees half a report), with mode C(0600).
  - Never reports a change (a report is not a change to the servers), so an unchanged rerun stays at C(changed=0).
  - The role C(codacy.selfhosted.db_migration) writes its per-installation report and its fleet summary with it.
author:
  - Codacy Self-hosted team (@codacy)
options:
  content:
    description: What to write (a dict or a list; it must hold no secrets).
    type: raw
    required: true
  dest:
    description: The file on the controller. Its directory must exist.
    type: path
    required: true
attributes:
  check_mode:
    support: full
    description: In check mode nothing is written.
  diff_mode:
    support: none
    description: Nothing to compare.
  idempotent:
    support: full
    description: The same content gives the same file; the task never reports a change.
  action:
    support: full
    description: Runs on the controller only (an action plugin); the managed host is not contacted.
seealso:
  - module: codacy.selfhosted.codacy_db_migrate
"""

EXAMPLES = r"""
- name: Write the JSON report on the controller
  codacy.selfhosted.codacy_db_report:
    content: "{{ report }}"
    dest: "{{ playbook_dir }}/codacy-db-migration-report.json"
"""

RETURN = r"""
dest:
  description: The absolute path of the report.
  returned: always
  type: str
  sample: /home/ops/codacy-db-migration-report-codacy.json
skipped_write:
  description: Set in check mode, where nothing is written.
  returned: when check mode
  type: bool
  sample: true
"""
