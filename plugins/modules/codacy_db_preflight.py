#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Contributors to the codacy.selfhosted collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: codacy_db_preflight
short_description: Check that a set of Codacy databases can be migrated, before anything is written
version_added: 1.0.0
description:
  - Runs every check that the role C(codacy.selfhosted.db_migration) makes before it writes anything, and
    reports all problems together, each with what to do. It only reads.
  - Both servers are reachable and the credentials valid; each user is C(SUPERUSER) or a member of one
    of O(admin_roles) (managed services have no C(SUPERUSER)), and the target user may create databases
    when some are missing; C(pg_dump) and C(pg_restore) are at least the source server's major version;
    every listed database exists on the source (databases that are not listed are named in a warning);
    the extensions installed in them are available on the target server; O(work_dir) is writable (and,
    with O(data_path=directory), has room for the dumps of the O(concurrency) largest databases); no other
    session is connected to a source database (unless O(allow_active_sessions=true)); both servers accept
    the connections the migration will open.
  - For every target database that exists, decides with the code of M(codacy.selfhosted.codacy_db_migrate)
    (in check mode, writing nothing) what a migration would do, and counts its refusals as problems
    (data this collection did not put there, a copy changed on the target, encoding or collation,
    missing roles, a schema restriction that would lose objects, the source itself).
  - Returns the plan the role follows, largest database first, with each database's planned action and
    what is needed to create missing target databases (encoding, C(LC_COLLATE), C(LC_CTYPE), owner).
  - With O(mode=online), also what online migration needs (see M(codacy.selfhosted.codacy_db_migrate)),
    C(wal_level=logical) on the source, free replication slots and WAL senders there for every database, the
    C(REPLICATION) right (or C(rds_replication)) of the source user, the target user's right to create
    subscriptions and free logical replication workers on the target, the target server reaching the source
    (O(source_from_target)), and in every source database a primary key or replica identity on every table, no
    large objects and no unlogged tables. Sessions on the source are then expected (the application runs).
  - In every mode, warns about each replication slot of this collection on the source that nobody uses, or
    that retains more than O(max_slot_lag) bytes of WAL.
author:
  - Codacy Self-hosted team (@codacy)
extends_documentation_fragment:
  - codacy.selfhosted.endpoints
  - codacy.selfhosted.endpoints.source_from_target
options:
  databases:
    description:
      - The databases to migrate. An item is a name, or a dict with C(name) (on the source) and
        C(target_name) (on the target, default the same). A listed database that the source lacks is a problem.
      - When omitted, every one of Codacy's eight databases (C(accounts), C(analysis), C(filestore), C(jobs),
        C(metrics), C(results), C(listener), C(crow)) that exists on the source; RV(codacy_databases) says which.
    type: list
    elements: raw
  admin_roles:
    description:
      - Roles whose members count as administrators where the user is not C(SUPERUSER).
    type: list
    elements: str
    default: [rds_superuser, cloudsqlsuperuser, azure_pg_admin]
  allow_active_sessions:
    description:
      - Do not treat other sessions connected to the source databases as a problem (they are still
        listed in a warning). The application should be stopped for the final copy.
    type: bool
    default: false
  work_dir:
    description: Directory where the dumps will be written.
    type: path
    default: /var/tmp
  concurrency:
    description:
      - How many databases will be migrated at the same time. The default is that of the role
        C(codacy.selfhosted.db_migration) (C(db_migration_concurrency)).
    type: int
    default: 3
  jobs:
    description: Parallel workers per database (connections the migration opens on each server).
    type: int
    default: 2
  bin_dir:
    description: Directory with C(pg_dump) and C(pg_restore) (see M(codacy.selfhosted.codacy_db_migrate)).
    type: path
  schemas:
    description: The schemas that will be migrated (see M(codacy.selfhosted.codacy_db_migrate)).
    type: list
    elements: str
    default: []
  force:
    description:
      - Whether target databases holding data this collection did not put there will be replaced
        (see M(codacy.selfhosted.codacy_db_migrate)); without it they are problems.
    type: bool
    default: false
  data_path:
    description:
      - How the data will travel (see M(codacy.selfhosted.codacy_db_migrate)). With V(directory),
        O(work_dir) must hold the dumps of the O(concurrency) largest databases; with V(stream) only the
        definitions of their tables, indexes and constraints are written there, as with V(parallel),
        which also opens up to 3 x O(jobs) + 2 connections per database to the target.
    type: str
    choices: [stream, directory, parallel]
    default: parallel
  maintenance_database:
    description: Database to connect to on each server for server-wide checks.
    type: str
    default: postgres
  connect_timeout:
    description: Seconds to wait for each connection.
    type: int
    default: 10
  timeout:
    description: The time limit the migrations will have (see M(codacy.selfhosted.codacy_db_migrate)); only checked here.
    type: int
    default: 0
  names_prefix:
    description:
      - Prefix of the option names that messages give, so that they name what the caller wrote. The role
        C(codacy.selfhosted.db_migration) sets V(db_migration_), so that a problem with O(jobs) names
        C(db_migration_jobs).
    type: str
    default: ""
  mode:
    description:
      - The O(codacy.selfhosted.codacy_db_migrate#module:mode) the migration will run with.
    type: str
    choices: [offline, online, cutover, abort]
    default: offline
  max_slot_lag:
    description:
      - Warn when a replication slot of this collection retains more than this many bytes of WAL on the source
        (a slot keeps WAL until its subscriber confirms it, or until the source's disk is full).
    type: int
    default: 1073741824
  fail_on_problems:
    description:
      - Fail when a problem is found. With V(false) the problems are only returned in RV(problems),
        so that a caller can add its own and report them all at once (the role does).
    type: bool
    default: true
attributes:
  check_mode:
    support: full
    description: The module only reads; it runs the same in check mode.
  diff_mode:
    support: none
    description: Nothing to compare.
  idempotent:
    support: full
    description: It only reads.
"""

EXAMPLES = r"""
- name: Can these databases be migrated?
  codacy.selfhosted.codacy_db_preflight:
    source: "{{ codacy_source }}"
    target: "{{ codacy_target }}"
    databases: [accounts, analysis, {name: results, target_name: codacy_results}]
    work_dir: /data/migration
  register: plan
"""

RETURN = r"""
problems:
  description: Every problem found, one sentence each with what to do. Empty when the migration can go ahead.
  returned: always
  type: list
  elements: str
  sample: ["target user codacy@rds:5432 is neither SUPERUSER nor a member of rds_superuser, ..."]
databases:
  description: The plan, largest source database first (those missing on the source are left out).
  returned: always
  type: list
  elements: dict
  sample:
    - {name: results, target_name: results, size: 1073741824, estimated_dump_bytes: 734003200, encoding: UTF8,
       lc_collate: en_US.UTF-8, lc_ctype: en_US.UTF-8, owner: codacy, target_exists: false, target_owner: codacy,
       extensions: [pg_trgm], position: 0, action: migrated, reasons: [the target database will be created]}
codacy_databases:
  description: When O(databases) is omitted, which of Codacy's eight databases the source has (C(found)) and lacks
    (C(missing)); V(null) when O(databases) is given.
  returned: always
  type: dict
  sample: {found: [accounts, analysis, filestore, jobs, metrics, results], missing: [listener, crow]}
unlisted:
  description: Databases on the source that are not migrated (other than templates and maintenance databases).
  returned: always
  type: list
  elements: str
  sample: [listener, crow]
versions:
  description: Versions of the client programs and of both servers.
  returned: when connected
  type: dict
  sample: {client: "17.2", source_server: "13.16", target_server: "17.2"}
shared:
  description:
    - What the migration needs of what other migrations run at the same time may share with it, for a caller
      that adds them up (the role does, across its installations). C(machine) identifies this host; C(work_dir)
      has the file system's C(device), C(free) bytes and the bytes the dumps C(needed) (0 unless O(data_path=directory));
      C(servers) has, for the source and the target, an C(id) (the system identifier, the same whatever name
      reaches the server), the connections the server has C(room) for and those C(needed).
  returned: when connected
  type: dict
  sample:
    machine: 3f1c9a0d2b7e4410a2c1
    work_dir: {path: /var/tmp, device: 2049, free: 53687091200, needed: 0}
    servers:
      - {role: source, address: "10.0.0.5:5432", id: "7301234567890123456", room: 290, needed: 15}
      - {role: target, address: "codacy.abc.rds.amazonaws.com:5432", id: "started 2026-11-30 08:00:01.123+00",
         room: 180, needed: 15}
privileges:
  description: How each user qualifies as administrator (C(superuser), C(member of rds_superuser), or C(none)).
  returned: when connected
  type: dict
  sample: {source: superuser, target: member of rds_superuser}
replication_slots:
  description: The replication slots of this collection on the source server, with the WAL each retains.
  returned: when connected
  type: list
  elements: dict
  sample: [{name: codacy_migration_0f3c2a9b71de, database: analysis, active: true, lag_bytes: 8192,
            retained_bytes: 1048576, confirmed: 0/3000148, wal_status: reserved}]
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.codacy.selfhosted.plugins.module_utils import online
from ansible_collections.codacy.selfhosted.plugins.module_utils.connection import (
    HAS_PSYCOPG2, PSYCOPG2_IMPORT_ERROR, endpoint_argument_spec, forget_module_file)
from ansible_collections.codacy.selfhosted.plugins.module_utils.preflight import Preflight

ARGUMENT_SPEC = dict(
    source=endpoint_argument_spec(),
    target=endpoint_argument_spec(),
    databases=dict(type="list", elements="raw"),
    admin_roles=dict(type="list", elements="str", default=["rds_superuser", "cloudsqlsuperuser", "azure_pg_admin"]),
    allow_active_sessions=dict(type="bool", default=False),
    work_dir=dict(type="path", default="/var/tmp"),
    concurrency=dict(type="int", default=3),  # the role's db_migration_concurrency
    jobs=dict(type="int", default=2),
    bin_dir=dict(type="path"),
    schemas=dict(type="list", elements="str", default=[]),
    force=dict(type="bool", default=False),
    data_path=dict(type="str", default="parallel", choices=["stream", "directory", "parallel"]),
    maintenance_database=dict(type="str", default="postgres"),
    connect_timeout=dict(type="int", default=10),
    timeout=dict(type="int", default=0),
    names_prefix=dict(type="str", default=""),
    mode=dict(type="str", default="offline", choices=list(online.MODES)),
    source_from_target=online.source_from_target_spec(),
    max_slot_lag=dict(type="int", default=1073741824),
    fail_on_problems=dict(type="bool", default=True),
)


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    forget_module_file(module)  # it holds the passwords
    if not HAS_PSYCOPG2:
        module.fail_json(msg=missing_required_lib("psycopg2"), exception=PSYCOPG2_IMPORT_ERROR)
    preflight = Preflight(module)
    result = preflight.run()
    for warning in preflight.warnings:
        module.warn(warning)
    if result["problems"] and module.params["fail_on_problems"]:
        module.fail_json(msg="the migration cannot start: " + " | ".join(result["problems"]), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
