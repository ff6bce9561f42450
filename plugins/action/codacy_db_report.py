# -*- coding: utf-8 -*-
# Copyright: Contributors to the codacy.selfhosted collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Write a migration report as JSON on the controller, readable by its owner only.

Done here, in ansible-playbook's own process, rather than with ansible.builtin.copy, which runs two
modules (stat and copy) per file: about a second of an unchanged rerun whose every other step takes
less."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import tempfile

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.json import AnsibleJSONEncoder
from ansible.module_utils.common.text.converters import to_native
from ansible.plugins.action import ActionBase


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("content", "dest"))
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        args = self._task.args
        if not args.get("dest"):
            raise AnsibleActionFail("codacy_db_report: dest is required")
        dest = os.path.abspath(os.path.expanduser(to_native(args["dest"])))
        text = json.dumps(args.get("content"), cls=AnsibleJSONEncoder, indent=4, sort_keys=True, separators=(",", ": "),
                          ensure_ascii=False) + "\n"
        result.update(changed=False, dest=dest)  # a report, not a change to the servers: reruns stay at changed=0
        if self._task.check_mode:
            result["skipped_write"] = True
            return result
        directory = os.path.dirname(dest)
        try:
            fd, temporary = tempfile.mkstemp(prefix=".codacy-db-report-", dir=directory)  # created 0600
        except OSError as exc:
            raise AnsibleActionFail("codacy_db_report: cannot write the report %s (%s): check that the directory "
                                    "exists and is writable" % (dest, exc.strerror)) from None
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.replace(temporary, dest)  # a reader never sees half a report
        except OSError as exc:
            if os.path.exists(temporary):
                os.unlink(temporary)
            raise AnsibleActionFail("codacy_db_report: cannot write the report %s (%s)" % (dest, exc.strerror)) from None
        return result
