"""The README's variable table and the role's argument_specs cannot drift apart."""

import os
import re

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def spec_options():
    with open(os.path.join(ROOT, "roles", "db_migration", "meta", "argument_specs.yml")) as handle:
        return yaml.safe_load(handle)["argument_specs"]["main"]["options"]


def readme_table():
    with open(os.path.join(ROOT, "README.md")) as handle:
        text = handle.read()
    section = text.split("### Role variables", 1)[1].split("\n#", 1)[0]
    rows = {}
    for line in section.splitlines():
        match = re.match(r"^\| `(db_migration_\w+)` \| (\w+) \| (.+?) \| (.+) \|$", line)
        if match:
            rows[match.group(1)] = (match.group(2), match.group(3))
    return rows


def shown(default):
    if isinstance(default, bool):
        return "`%s`" % str(default).lower()
    if isinstance(default, list):
        return "`[%s]`" % ", ".join(default)
    if default == "":
        return '`""`'
    return "`%s`" % default


def test_every_variable_is_in_the_readme_with_its_type_and_default():
    options, table = spec_options(), readme_table()
    assert sorted(table) == sorted(options)
    for name, option in options.items():
        kind, default = table[name]
        assert kind == option["type"], name
        if option.get("required"):
            assert default == "required", name
        elif name == "db_migration_report_path":
            assert default == "`./codacy-db-migration-report-<installation>.json`"
        elif name == "db_migration_fleet_report_path":
            assert default == "`./codacy-db-migration-fleet.json`"
        elif name == "db_migration_databases":
            assert "default" not in option and default == "Codacy's eight that exist on the source"
        elif name == "db_migration_max_parallel_maintenance_workers":
            assert "default" not in option and default == "the target's setting"
        else:
            assert default == shown(option["default"]), name


def test_defaults_file_matches_argument_specs():
    with open(os.path.join(ROOT, "roles", "db_migration", "defaults", "main.yml")) as handle:
        defaults = yaml.safe_load(handle)
    for name, option in spec_options().items():
        if name in ("db_migration_databases", "db_migration_max_parallel_maintenance_workers"):
            # No default: unset, the preflight takes Codacy's databases that exist on the source, and
            # the index builds the target server's max_parallel_maintenance_workers.
            assert name not in defaults
            continue
        assert name in defaults, name
        if not option.get("required") and name not in ("db_migration_report_path", "db_migration_fleet_report_path"):
            assert defaults[name] == option["default"], name


def test_target_fragment_documents_the_same_server_options():
    from ansible_collections.codacy.selfhosted.plugins.doc_fragments.endpoints import ModuleDocFragment
    both = yaml.safe_load(ModuleDocFragment.DOCUMENTATION)["options"]
    target_only = yaml.safe_load(ModuleDocFragment.TARGET)["options"]
    assert target_only["target"] == both["target"] == dict(both["source"], description=both["target"]["description"])
