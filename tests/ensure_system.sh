#!/usr/bin/env bash
# Make sure this machine has what the tests need besides Python packages: the PostgreSQL
# server and client programs (the throwaway test servers), npm (other PostgreSQL majors
# for cross-version tests) and pgcopydb (compared with in the benchmark's smoke test). Installs them when missing and we are root; otherwise says
# exactly what to install. Never skips: missing infrastructure is an error.
set -euo pipefail

# Building PostgreSQL's regression database (tests/support/regressdb.py) needs a C toolchain
# and deb-src lines for `apt-get source`: that script sees to them.
"$(dirname "$0")/ensure_regress_build.sh"

missing=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
command -v pg_dump >/dev/null 2>&1 || missing+=(postgresql-client)
command -v npm >/dev/null 2>&1 || missing+=(npm)
command -v pgcopydb >/dev/null 2>&1 || missing+=(pgcopydb)   # a contender in the benchmark
command -v python3 >/dev/null 2>&1 || missing+=(python3)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "ERROR: the tests need: ${missing[*]}. Install them, e.g.: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "Installing ${missing[*]} (apt-get)..."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" postgresql-contrib >/dev/null
# Debian's package creates and starts a default cluster on port 5432; the tests start their
# own servers on free ports, so stop it (there is no systemd here to keep it around anyway).
pg_lsclusters -h 2>/dev/null | while read -r ver name _; do pg_ctlcluster "$ver" "$name" stop 2>/dev/null || true; done
