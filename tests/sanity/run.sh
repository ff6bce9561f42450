#!/usr/bin/env bash
# antsibull-docs lint and ansible-test sanity on what the collection ships, offline-friendly: ansible-test bootstraps pip in its virtualenvs with a
# get-pip script from a host that is not always reachable; we seed its cache with a shim that
# installs pip from the pip wheel on PyPI instead. ansible-test needs the collection under an
# ansible_collections/<namespace>/<name> path, so the checkout's files are copied there.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=$(cd "${BIN:-.venv/bin}" && pwd)
PYTHON_VERSION=$("$BIN/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
CACHE=~/.ansible/test/cache
PIP_VERSION=$("$BIN/python" - <<'PY'
import re, ansible_test, os
path = os.path.join(os.path.dirname(ansible_test.__file__), "_internal", "python_requirements.py")
print(re.search(r"pip='([^']+)'", open(path).read()).group(1))
PY
)
mkdir -p "$CACHE"
SHIM="$CACHE/get_pip_${PIP_VERSION//./_}.py"
if ! ls "$CACHE"/pip-"$PIP_VERSION"-*.whl >/dev/null 2>&1; then
  "$BIN/pip" download --quiet --disable-pip-version-check --no-deps --dest "$CACHE" "pip==$PIP_VERSION"
fi
cat > "$SHIM" <<PY
# Stand-in for get-pip.py (written by tests/sanity/run.sh): install pip $PIP_VERSION from its wheel.
import glob, os, runpy, sys
wheel = glob.glob(os.path.join(os.path.dirname(os.path.abspath(__file__)), "pip-$PIP_VERSION-*.whl"))[0]
args = [wheel if a.startswith("pip==") else a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
sys.path.insert(0, wheel)
sys.argv = ["pip", "install"] + args
runpy.run_module("pip", run_name="__main__", alter_sys=True)
PY

TREE=build/sanity/ansible_collections/codacy/selfhosted
rm -rf build/sanity
mkdir -p "$TREE"
# What the collection ships: the checkout's tracked and new files (not ignored, not symlinks,
# not deleted), without galaxy.yml's build_ignore (the benchmark, the demo, CI glue).
"$BIN/python" - "$TREE" <<'PY'
import fnmatch, os, shutil, subprocess, sys, yaml
ignored = yaml.safe_load(open("galaxy.yml"))["build_ignore"]
files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], capture_output=True, check=True,
                       text=True).stdout.split("\0")
for path in filter(None, files):
    parts = path.split("/")
    if any(fnmatch.fnmatch(path, pattern) or fnmatch.fnmatch(parts[0], pattern) for pattern in ignored):
        continue
    if os.path.isfile(path) and not os.path.islink(path):
        os.makedirs(os.path.join(sys.argv[1], os.path.dirname(path)), exist_ok=True)
        shutil.copy2(path, os.path.join(sys.argv[1], path))
PY
cd "$TREE"
git init -q . && git add -A >/dev/null 2>&1   # ansible-test lists the collection's files with git
PATH="$BIN:$PATH" "$BIN/antsibull-docs" lint-collection-docs --plugin-docs .
"$BIN/ansible-test" sanity --venv --python "$PYTHON_VERSION" "$@"
