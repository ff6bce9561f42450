#!/usr/bin/env bash
# Build the test images without any container registry:
#   mmdebstrap --variant=minbase ... <suite> - <mirrors>  |  docker import - <tag>
#
# Usage: build_images.sh [-h|--help] [--list] [name ...]      (default: all images)
#
# Images (tag codacy-selfhosted-test/<name>:latest):
#   pg13        bullseye  PostgreSQL 13 server + client
#   pg15        bookworm  PostgreSQL 15 server + client
#   pg17        trixie    PostgreSQL 17 server + client
#   migrator    trixie    postgresql-client-17 + python3 + psycopg2 (runs the modules)
#   migrator13  bullseye  postgresql-client-13 + python3 + psycopg2 (old client)
#
# Every image carries LABEL codacy.recipe=<sha256 of its recipe>; the recipe is the
# suite, the apt sources, the package list, all mmdebstrap/docker-import arguments and
# the source of the functions below that produce them. A build is skipped when an
# image with that tag and that label already exists.
#
# Environment:
#   FORCE=1                 rebuild even when the recipe label matches
#   BUILD_JOBS=N            parallel builds (default 3)
#   BUILD_LOG_DIR=dir       per-image logs (default ${TMPDIR:-/tmp}/codacy-selfhosted-images)
#   DEBIAN_MIRROR=url       default http://deb.debian.org/debian
#   DEBIAN_SECURITY_MIRROR  default http://deb.debian.org/debian-security
#   SKIP_ENSURE_DOCKER=1    do not run ensure_docker.sh when docker/mmdebstrap are missing
#
# Exit codes: 0 all requested images are built and up to date; 1 a build failed (the
#             tail of its log is printed); 2 usage error (unknown image name).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_PREFIX=codacy-selfhosted-test
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
DEBIAN_SECURITY_MIRROR="${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
BUILD_JOBS="${BUILD_JOBS:-3}"
BUILD_LOG_DIR="${BUILD_LOG_DIR:-${TMPDIR:-/tmp}/codacy-selfhosted-images}"
FORCE="${FORCE:-0}"

ALL_IMAGES=(pg13 pg15 pg17 migrator migrator13)
declare -A SUITE=([pg13]=bullseye [pg15]=bookworm [pg17]=trixie [migrator]=trixie [migrator13]=bullseye)
declare -A PG_MAJOR=([pg13]=13 [pg15]=15 [pg17]=17 [migrator]=17 [migrator13]=13)
declare -A ROLE=([pg13]=server [pg15]=server [pg17]=server [migrator]=client [migrator13]=client)

log() { printf '[build_images] %s\n' "$*" >&2; }
die() { printf '[build_images] ERROR: %s\n' "$*" >&2; exit 1; }

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }

# ---------------------------------------------------------------- recipe ---
# Packages of an image, comma separated (mmdebstrap --include syntax).
# In Debian the contrib modules (pg_trgm, citext, ...) ship in postgresql-NN itself
# (postgresql-contrib is an empty transitional package), so nothing extra is needed.
image_packages() {
    local name=$1 major=${PG_MAJOR[$1]}
    # Needed by every image: TLS roots, ps/pgrep, Python for Ansible's docker
    # connection (+psycopg2 for community.postgresql-style modules), sudo for become.
    local common=ca-certificates,procps,python3,python3-psycopg2,sudo
    case ${ROLE[$name]} in
        server) printf '%s\n' "postgresql-$major,postgresql-client-$major,$common" ;;
        client) printf '%s\n' "postgresql-client-$major,$common" ;;
    esac
}

# apt sources (one sources.list line each). They also end up in the image's
# /etc/apt/sources.list, so tests can apt-get install more if they must.
image_sources() {
    local suite=${SUITE[$1]}
    printf '%s\n' \
        "deb $DEBIAN_MIRROR $suite main" \
        "deb $DEBIAN_MIRROR $suite-updates main" \
        "deb $DEBIAN_SECURITY_MIRROR $suite-security main"
}

# mmdebstrap options except suite/target/mirrors.
mmdebstrap_options() {
    local name=$1
    # shellcheck disable=SC2016 # "$1" in the hook is expanded by mmdebstrap's sh
    printf '%s\n' \
        --variant=minbase \
        "--include=$(image_packages "$name")" \
        '--aptopt=Acquire::Retries "3"' \
        '--dpkgopt=force-unsafe-io' \
        '--dpkgopt=path-exclude=/usr/share/doc/*' \
        '--dpkgopt=path-include=/usr/share/doc/*/copyright' \
        '--dpkgopt=path-exclude=/usr/share/man/*' \
        '--dpkgopt=path-exclude=/usr/share/info/*' \
        '--dpkgopt=path-exclude=/usr/share/lintian/*' \
        '--dpkgopt=path-exclude=/usr/share/locale/*' \
        '--dpkgopt=path-include=/usr/share/locale/locale.alias' \
        '--dpkgopt=path-exclude=/usr/lib/postgresql/*/lib/llvmjit*' \
        '--dpkgopt=path-exclude=/usr/lib/postgresql/*/lib/bitcode/*' \
        '--dpkgopt=path-exclude=/usr/lib/*/libLLVM*' \
        '--dpkgopt=path-exclude=/usr/lib/*/libz3.so*' \
        '--customize-hook=rm -rf "$1"/var/log/apt/* "$1"/var/log/dpkg.log "$1"/var/tmp/*'
    # Notes:
    # - mmdebstrap itself removes the package lists, the apt cache and /tmp after the hooks. The
    #   hook must not: its cleanup runs apt-get with the apt.conf it keeps in the chroot's /tmp, and
    #   without that file apt-get ran against the HOST and emptied its /var/lib/apt/lists (which
    #   broke `apt-get source` for the regression database, built while the images build).
    # - force-unsafe-io: no fsync per unpacked file (the tree is tarred afterwards).
    # - docs/man/info/translations: not needed in throw-away test containers
    #   (English server messages are also what tests match on).
    # - LLVM JIT (llvmjit.so, bitcode, libLLVM, libz3, ~150 MB): PostgreSQL silently
    #   disables JIT when llvmjit.so is absent, so queries never try to load it.
}

# docker import --change instructions (without the recipe label).
import_changes() {
    local name=$1 major=${PG_MAJOR[$1]}
    # CMD: a PID 1 that exits on SIGTERM (a bare "sleep infinity" as PID 1 ignores
    # it, so "docker stop" would wait 10 s and then SIGKILL).
    printf '%s\n' \
        "ENV PATH=/usr/lib/postgresql/$major/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
        "ENV LANG=C.UTF-8" \
        "ENV PG_MAJOR=$major" \
        "LABEL codacy.image=$name" \
        "LABEL codacy.suite=${SUITE[$name]}" \
        "LABEL codacy.pg_major=$major" \
        "LABEL codacy.role=${ROLE[$name]}" \
        "WORKDIR /" \
        "CMD [\"/bin/sh\", \"-c\", \"trap 'exit 0' TERM INT; sleep infinity & wait\"]"
}

# Quick check that an imported image is usable before it gets its tag.
smoke_test_script() {
    local name=$1 major=${PG_MAJOR[$1]}
    cat <<EOF
set -eu
python3 -c 'import psycopg2'
psql --version | grep -q " $major\\."
pg_dump --version | grep -q " $major\\."
EOF
    if [[ ${ROLE[$name]} == server ]]; then
        cat <<EOF
test -x /usr/lib/postgresql/$major/bin/postgres
test -f /etc/postgresql/$major/main/postgresql.conf
command -v pg_ctlcluster >/dev/null
for ext in pg_trgm citext; do test -f /usr/share/postgresql/$major/extension/\$ext.control; done
EOF
    fi
}

recipe_hash() {
    local name=$1
    {
        echo "recipe-format 1"
        echo "name $name suite ${SUITE[$name]} pg ${PG_MAJOR[$name]} role ${ROLE[$name]}"
        image_sources "$name"
        mmdebstrap_options "$name"
        import_changes "$name"
        smoke_test_script "$name"
        declare -f image_packages image_sources mmdebstrap_options import_changes \
            smoke_test_script build_one
    } | sha256sum | cut -c1-64
}

# ----------------------------------------------------------------- build ---
# Build one image; all output goes to stdout/stderr (redirected to its log).
build_one() {
    local name=$1 hash=$2 tag="$REPO_PREFIX/$1:latest"
    local -a opts sources changes
    mapfile -t opts < <(mmdebstrap_options "$name")
    mapfile -t sources < <(image_sources "$name")
    mapfile -t changes < <(import_changes "$name")
    changes+=("LABEL codacy.recipe=$hash")

    local -a import_args=()
    local c
    for c in "${changes[@]}"; do import_args+=(--change "$c"); done

    local old_id="" new_id t0=$SECONDS
    old_id=$(docker image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)

    echo "== $(date -Is) building $tag (suite ${SUITE[$name]}, recipe $hash)"
    echo "== mmdebstrap ${opts[*]} ${SUITE[$name]} - ${sources[*]}"
    # Import untagged first: a failed/truncated mmdebstrap stream must never end
    # up under the real tag. pipefail makes the pipeline fail if mmdebstrap fails.
    if ! new_id=$(mmdebstrap "${opts[@]}" "${SUITE[$name]}" - "${sources[@]}" \
                    | docker import "${import_args[@]}" - ); then
        echo "== mmdebstrap | docker import FAILED"
        [[ -n ${new_id:-} ]] && docker rmi "$new_id" >/dev/null 2>&1 || true
        return 1
    fi
    echo "== imported $new_id"

    echo "== smoke test"
    if ! smoke_test_script "$name" | docker run --rm -i --network host "$new_id" bash -s; then
        echo "== smoke test FAILED; removing $new_id"
        docker rmi "$new_id" >/dev/null 2>&1 || true
        return 1
    fi

    docker tag "$new_id" "$tag"
    # Drop the image this one replaces, unless something still uses it.
    if [[ -n $old_id && $old_id != "$new_id" ]]; then
        docker rmi "$old_id" >/dev/null 2>&1 || echo "== note: previous image $old_id kept (in use)"
    fi
    echo "== $(date -Is) done: $tag, $(docker image inspect --format '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1/1e6}'), $((SECONDS - t0)) s"
}

# ------------------------------------------------------------------ main ---
main() {
    local -a names=()
    while (($#)); do
        case $1 in
            -h|--help) usage; exit 0 ;;
            --list) printf '%s\n' "${ALL_IMAGES[@]}"; exit 0 ;;
            -*) log "unknown option: $1"; usage >&2; exit 2 ;;
            *) [[ -n ${SUITE[$1]:-} ]] || { log "unknown image '$1' (known: ${ALL_IMAGES[*]})"; exit 2; }
               names+=("$1") ;;
        esac
        shift
    done
    ((${#names[@]})) || names=("${ALL_IMAGES[@]}")
    [[ $BUILD_JOBS =~ ^[1-9][0-9]*$ ]] || { log "BUILD_JOBS must be a positive integer"; exit 2; }

    if ! command -v mmdebstrap >/dev/null 2>&1 || ! docker info >/dev/null 2>&1; then
        [[ ${SKIP_ENSURE_DOCKER:-0} == 1 ]] && die "docker daemon or mmdebstrap not available (run $HERE/ensure_docker.sh)"
        log "docker or mmdebstrap not available: running ensure_docker.sh"
        "$HERE/ensure_docker.sh"
    fi
    [[ $(id -u) -eq 0 ]] || die "mmdebstrap runs in root mode here: run as root"

    mkdir -p "$BUILD_LOG_DIR"
    local name hash tag current
    local -a todo=()
    declare -A want_hash=()
    for name in "${names[@]}"; do
        hash=$(recipe_hash "$name")
        tag="$REPO_PREFIX/$name:latest"
        current=$(docker image inspect --format '{{ index .Config.Labels "codacy.recipe" }}' "$tag" 2>/dev/null || true)
        if [[ $FORCE != 1 && $current == "$hash" ]]; then
            log "$tag is up to date (recipe ${hash:0:12}), skipping (FORCE=1 to rebuild)"
            continue
        fi
        want_hash[$name]=$hash
        todo+=("$name")
    done
    ((${#todo[@]})) || { log "nothing to build"; return 0; }

    log "building ${todo[*]} with up to $BUILD_JOBS parallel jobs; logs in $BUILD_LOG_DIR/<name>.log"
    local start=$SECONDS
    declare -A pid_of=()
    local -a failed=()
    local running=0 pid rc n
    for name in "${todo[@]}"; do
        # Throttle by polling (portable; exit statuses are collected with
        # "wait <pid>" below, which works for children that already ended).
        while :; do
            running=0
            for n in "${!pid_of[@]}"; do
                if kill -0 "${pid_of[$n]}" 2>/dev/null; then running=$((running + 1)); fi
            done
            ((running < BUILD_JOBS)) && break
            sleep 1
        done
        log "start $name (${SUITE[$name]})"
        ( build_one "$name" "${want_hash[$name]}" ) >"$BUILD_LOG_DIR/$name.log" 2>&1 &
        pid_of[$name]=$!
    done
    for name in "${todo[@]}"; do
        pid=${pid_of[$name]}
        rc=0; wait "$pid" || rc=$?
        if ((rc == 0)); then
            log "ok   $name ($(tail -n1 "$BUILD_LOG_DIR/$name.log" | sed 's/^== [^ ]* done: //'))"
        else
            failed+=("$name")
            log "FAIL $name (exit $rc), log: $BUILD_LOG_DIR/$name.log"
        fi
    done
    log "total build time: $((SECONDS - start)) s"

    if ((${#failed[@]})); then
        for name in "${failed[@]}"; do
            log "----- last 30 lines of $BUILD_LOG_DIR/$name.log -----"
            tail -n 30 "$BUILD_LOG_DIR/$name.log" >&2 || true
        done
        die "failed to build: ${failed[*]}"
    fi
}

main "$@"
