# -*- coding: utf-8 -*-
# Copyright: Contributors to the codacy.selfhosted collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # Both servers of a migration; `target` reuses `source`'s suboptions through a YAML anchor.
    DOCUMENTATION = r"""
options:
  source:
    description:
      - How to reach the server that holds the databases to migrate.
      - The connections are read-only (C(default_transaction_read_only)), so nothing is ever written to the source.
      - The user must be a superuser or a member of the managed service's admin role
        (for example C(rds_superuser)), so that pg_dump can read every object.
    type: dict
    required: true
    suboptions: &server
      host:
        description:
          - Host name or IP address of the server.
        type: str
        required: true
      port:
        description:
          - TCP port of the server.
        type: int
        default: 5432
      user:
        description:
          - Role to connect as.
        type: str
        required: true
      password:
        description:
          - Password of the user.
          - Given to C(pg_dump) and C(pg_restore) through a private 0600 passfile, never on a command line.
          - When omitted, libpq's own sources apply (C(PGPASSWORD), C(PGPASSFILE), C(~/.pgpass)).
        type: str
      sslmode:
        description:
          - libpq C(sslmode) for this server.
        type: str
        default: prefer
        choices: [disable, allow, prefer, require, verify-ca, verify-full]
      sslrootcert:
        description:
          - File with the certificate authorities that may sign the server's certificate
            (for C(sslmode=verify-ca) or C(sslmode=verify-full)).
        type: path
  target:
    description:
      - How to reach the server that receives the copies.
      - The user must be a superuser or a member of the managed service's admin role
        (for example C(rds_superuser)), and be able to act as the owners of the restored objects.
    type: dict
    required: true
    suboptions: *server
requirements:
  - psycopg2 (C(psycopg2-binary)) on the host that runs the module.
"""

    # Only the target server. Its suboptions are the same text as above (ansible-test wants
    # literal strings here); tests/unit/test_docs.py keeps the two equal.
    TARGET = r"""
options:
  target:
    description:
      - How to reach the server that receives the copies.
      - The user must be a superuser or a member of the managed service's admin role
        (for example C(rds_superuser)), and be able to act as the owners of the restored objects.
    type: dict
    required: true
    suboptions:
      host:
        description:
          - Host name or IP address of the server.
        type: str
        required: true
      port:
        description:
          - TCP port of the server.
        type: int
        default: 5432
      user:
        description:
          - Role to connect as.
        type: str
        required: true
      password:
        description:
          - Password of the user.
          - Given to C(pg_dump) and C(pg_restore) through a private 0600 passfile, never on a command line.
          - When omitted, libpq's own sources apply (C(PGPASSWORD), C(PGPASSFILE), C(~/.pgpass)).
        type: str
      sslmode:
        description:
          - libpq C(sslmode) for this server.
        type: str
        default: prefer
        choices: [disable, allow, prefer, require, verify-ca, verify-full]
      sslrootcert:
        description:
          - File with the certificate authorities that may sign the server's certificate
            (for C(sslmode=verify-ca) or C(sslmode=verify-full)).
        type: path

requirements:
  - psycopg2 (C(psycopg2-binary)) on the host that runs the module.
"""

    # How the target server reaches the source in online migration (codacy_db_migrate, codacy_db_preflight).
    SOURCE_FROM_TARGET = r"""
options:
  source_from_target:
    description:
      - With O(mode=online), how the target server reaches the source, since the target pulls the changes (for
        example the source's address on the cluster network, when the migration host reaches it through a port
        forward). Each key defaults to the O(source) option's.
      - M(codacy.selfhosted.codacy_db_preflight) proves that the target reaches the source with a subscription that
        connects and is rolled back.
      - The subscription's connection string, stored on the target in C(pg_subscription.subconninfo) (readable by
        superusers only) until the cutover or abort removes it, holds the source password. The statement that
        creates it runs with statement logging turned off where the target user may do so.
    type: dict
    suboptions:
      host:
        description: Host name or address of the source, as seen from the target server.
        type: str
      port:
        description: Port of the source, as seen from the target server.
        type: int
      sslmode:
        description: libpq C(sslmode) of the target server's connection to the source.
        type: str
        choices: [disable, allow, prefer, require, verify-ca, verify-full]
      sslrootcert:
        description: CA bundle for that connection, a path on the B(target server).
        type: str
"""
