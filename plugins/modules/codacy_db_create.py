#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Contributors to the codacy.selfhosted collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: codacy_db_create
short_description: Create an empty target database for a Codacy database migration
version_added: 1.0.0
description:
  - Creates the database O(name) on the target server from C(template0) with the given encoding,
    C(LC_COLLATE) and C(LC_CTYPE) (those of the source database, so that text sorts and compares
    the same), owned by O(owner). With O(databases), creates several, in order, in one module run.
  - A database that already exists is left alone, whatever it holds; M(codacy.selfhosted.codacy_db_migrate)
    decides whether it may be written to.
author:
  - Codacy Self-hosted team (@codacy)
extends_documentation_fragment:
  - codacy.selfhosted.endpoints.target
options:
  name:
    description:
      - Name of the database to create.
      - Exactly one of O(name) and O(databases) is required; O(encoding), O(lc_collate) and O(lc_ctype) go with O(name).
    type: str
  encoding:
    description: Encoding of the new database.
    type: str
  lc_collate:
    description: C(LC_COLLATE) of the new database.
    type: str
  lc_ctype:
    description: C(LC_CTYPE) of the new database.
    type: str
  owner:
    description:
      - Owner of the new database. When the connecting user may not act as this role, the database is
        owned by the connecting user and a warning says how to keep the owner.
      - Defaults to the connecting user.
    type: str
  databases:
    description:
      - Several databases to create, each like O(name), O(encoding), O(lc_collate), O(lc_ctype) and O(owner)
        (one connection, one module run). The first failure ends the run; the RV(databases) created before it
        are returned.
    type: list
    elements: dict
    version_added: 1.1.0
    suboptions:
      name:
        description: Name of the database to create.
        type: str
        required: true
      encoding:
        description: Encoding of the new database.
        type: str
        required: true
      lc_collate:
        description: C(LC_COLLATE) of the new database.
        type: str
        required: true
      lc_ctype:
        description: C(LC_CTYPE) of the new database.
        type: str
        required: true
      owner:
        description: Owner of the new database, as O(owner).
        type: str
  maintenance_database:
    description: Database to connect to for C(CREATE DATABASE).
    type: str
    default: postgres
  connect_timeout:
    description: Seconds to wait for the connection.
    type: int
    default: 10
attributes:
  check_mode:
    support: full
    description: Reports whether the database would be created; creates nothing.
  diff_mode:
    support: none
    description: Nothing to compare.
  idempotent:
    support: full
    description: An existing database is never changed.
"""

EXAMPLES = r"""
- name: Create the target database like the source one
  codacy.selfhosted.codacy_db_create:
    target: "{{ codacy_target }}"
    name: analysis
    encoding: UTF8
    lc_collate: en_US.UTF-8
    lc_ctype: en_US.UTF-8
    owner: codacy

- name: Create several target databases at once
  codacy.selfhosted.codacy_db_create:
    target: "{{ codacy_target }}"
    databases:
      - {name: analysis, encoding: UTF8, lc_collate: en_US.UTF-8, lc_ctype: en_US.UTF-8, owner: codacy}
      - {name: jobs, encoding: UTF8, lc_collate: en_US.UTF-8, lc_ctype: en_US.UTF-8, owner: codacy}
"""

RETURN = r"""
owner:
  description: Owner of the database (the one created, or the existing one).
  returned: with O(name)
  type: str
  sample: codacy
databases:
  description: With O(databases), each database handled, in order.
  returned: with O(databases)
  type: list
  elements: dict
  contains:
    name:
      description: Name of the database.
      type: str
      sample: analysis
    owner:
      description: Owner of the database (the one created, or the existing one).
      type: str
      sample: codacy
    changed:
      description: Whether it was created (or, in check mode, would be).
      type: bool
      sample: true
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.codacy.selfhosted.plugins.module_utils import catalog
from ansible_collections.codacy.selfhosted.plugins.module_utils.connection import (
    HAS_PSYCOPG2, PSYCOPG2_IMPORT_ERROR, ConnectionProblem, Endpoint, endpoint_argument_spec, forget_module_file)

try:
    from psycopg2 import sql
except ImportError:  # pragma: no cover - reported through HAS_PSYCOPG2
    pass


SPEC = dict(name=dict(type="str", required=True), encoding=dict(type="str", required=True),
            lc_collate=dict(type="str", required=True), lc_ctype=dict(type="str", required=True),
            owner=dict(type="str"))


def create(module, conn, target, spec):
    """Create one database unless it exists; returns (changed, owner)."""
    existing = catalog.fetchall(conn, "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s",
                                (spec["name"],))
    if existing:
        return False, existing[0][0]
    owner = spec["owner"] or target.user
    can_own = catalog.fetchall(conn, "SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_roles WHERE rolname = %s)"
                                     " THEN pg_has_role(current_user, %s, 'MEMBER') ELSE false END",
                               (owner, owner))[0][0]
    if not can_own:
        module.warn("%s cannot act as role %s, so database %s is owned by %s: GRANT %s TO %s and "
                    "ALTER DATABASE ... OWNER TO %s to keep the source's owner"
                    % (target.user, owner, spec["name"], target.user, owner, target.user, owner))
        owner = target.user
    if not module.check_mode:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("CREATE DATABASE {} OWNER {} TEMPLATE template0 ENCODING {} LC_COLLATE {} "
                                "LC_CTYPE {}").format(
                sql.Identifier(spec["name"]), sql.Identifier(owner), sql.Literal(spec["encoding"]),
                sql.Literal(spec["lc_collate"]), sql.Literal(spec["lc_ctype"])))
    return True, owner


def main():
    module = AnsibleModule(
        argument_spec=dict(
            target=endpoint_argument_spec(),
            name=dict(type="str"),
            encoding=dict(type="str"),
            lc_collate=dict(type="str"),
            lc_ctype=dict(type="str"),
            owner=dict(type="str"),
            databases=dict(type="list", elements="dict", options=SPEC),
            maintenance_database=dict(type="str", default="postgres"),
            connect_timeout=dict(type="int", default=10),
        ),
        mutually_exclusive=[("name", "databases")],
        required_one_of=[("name", "databases")],
        required_by={"name": ("encoding", "lc_collate", "lc_ctype")},
        supports_check_mode=True,
    )
    forget_module_file(module)  # it holds the password
    if not HAS_PSYCOPG2:
        module.fail_json(msg=missing_required_lib("psycopg2"), exception=PSYCOPG2_IMPORT_ERROR)
    params = module.params
    single = params["databases"] is None
    specs = [dict((key, params[key]) for key in SPEC)] if single else params["databases"]
    target = Endpoint("target", params["target"], params["connect_timeout"])
    try:
        conn = target.connect(params["maintenance_database"])
    except ConnectionProblem as exc:
        module.fail_json(msg=str(exc))
    done = []
    try:
        for spec in specs:
            try:
                changed, owner = create(module, conn, target, spec)
            except Exception as exc:  # pylint: disable=broad-except
                module.fail_json(msg="could not create database %s on %s: %s" % (spec["name"], target.address, exc),
                                 changed=any(entry["changed"] for entry in done), databases=done)
            done.append({"name": spec["name"], "owner": owner, "changed": changed})
    finally:
        conn.close()
    changed = any(entry["changed"] for entry in done)
    if single:
        module.exit_json(changed=changed, owner=done[0]["owner"])
    module.exit_json(changed=changed, databases=done)


if __name__ == "__main__":
    main()
