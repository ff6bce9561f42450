#!/usr/bin/env bash
# What building PostgreSQL's regression database needs (tests/support/regressdb.py): a C
# toolchain and `apt-get source` of the installed server's package, which needs deb-src lines.
# Release tarballs carry their generated parser files, and configure runs --without-readline
# --without-zlib --without-icu, so bison, flex and -dev libraries are not needed.
# Installs what is missing when we are root; otherwise says exactly what to do. Never skips.
set -euo pipefail

has_deb_src() {
  grep -qsE '^[[:space:]]*(deb-src[[:space:]]|Types:.*deb-src)' \
    /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources
}

# The deb-src lines are not enough: apt must have fetched their indexes (a machine whose
# /var/lib/apt/lists was emptied, as container images do, has the lines and no index).
has_source_indexes() {
  compgen -G '/var/lib/apt/lists/*_Sources*' >/dev/null
}

missing=()
for tool in gcc make dpkg-source; do
  command -v "$tool" >/dev/null 2>&1 || { missing=(build-essential); break; }
done
has_deb_src || need_src=1
has_source_indexes || need_update=1

if [ ${#missing[@]} -eq 0 ] && [ -z "${need_src:-}" ] && [ -z "${need_update:-}" ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  [ ${#missing[@]} -eq 0 ] || echo "ERROR: building the regression database needs: ${missing[*]} (sudo apt-get install -y ${missing[*]})" >&2
  [ -z "${need_src:-}" ] || echo "ERROR: apt has no deb-src lines, so 'apt-get source postgresql-<major>' cannot work: add deb-src entries for your Debian suites and run apt-get update" >&2
  [ -n "${need_src:-}" ] || [ -z "${need_update:-}" ] || echo "ERROR: apt has deb-src lines but no source package indexes: run sudo apt-get update" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
if [ -n "${need_src:-}" ]; then
  # The same archives as the binary entries, for source packages.
  echo "Adding deb-src entries to /etc/apt/sources.list.d/ (for apt-get source postgresql-<major>)..."
  for file in /etc/apt/sources.list.d/*.sources; do
    [ -e "$file" ] || continue
    sed -E 's/^Types:.*/Types: deb-src/' "$file" >"/etc/apt/sources.list.d/src-$(basename "$file")"
  done
  for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -e "$file" ] || continue
    sed -nE 's/^[[:space:]]*deb[[:space:]]/deb-src /p' "$file" >"/etc/apt/sources.list.d/src-$(basename "$file")"
  done
  has_deb_src || { echo "ERROR: found no deb entries to derive deb-src entries from" >&2; exit 1; }
fi
apt-get update -qq
if [ ${#missing[@]} -gt 0 ]; then
  echo "Installing ${missing[*]} (apt-get)..."
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
