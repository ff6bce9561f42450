#!/usr/bin/env bash
# Make sure a working Docker daemon and mmdebstrap are available on this host.
#
# - Installs mmdebstrap (needed by build_images.sh) when missing.
# - If `docker info` already works, stops there (exit 0).
# - Otherwise installs docker.io when dockerd is missing, starts dockerd in the
#   background (no systemd needed) and waits for it to answer.
#
# Must run as root (apt-get, dockerd). Idempotent: safe to run any number of times.
#
# Environment:
#   DOCKERD_LOG            dockerd log file      (default /var/log/codacy-test-dockerd.log)
#   DOCKERD_WAIT_SECONDS   how long to wait for `docker info` per attempt (default 60)
#   DOCKERD_FLAGS          extra dockerd flags; when set, exactly one attempt is made with
#                          these flags. When unset, dockerd is first started with its
#                          defaults and, if it dies, once more with the sandbox fallback
#                          flags "--iptables=false --bridge=none" (the tests only use
#                          --network host, so no bridge/NAT is needed).
#
# Exit codes: 0 docker works (and mmdebstrap is installed); 1 failure (message on stderr).
set -euo pipefail

DOCKERD_LOG="${DOCKERD_LOG:-/var/log/codacy-test-dockerd.log}"
DOCKERD_WAIT_SECONDS="${DOCKERD_WAIT_SECONDS:-60}"
DOCKERD_PIDFILE=/var/run/docker.pid
FALLBACK_FLAGS="--iptables=false --bridge=none"

log() { printf '[ensure_docker] %s\n' "$*" >&2; }
die() { printf '[ensure_docker] ERROR: %s\n' "$*" >&2; exit 1; }

apt_updated=0
apt_install() {
    [[ $(id -u) -eq 0 ]] || die "need root to install packages: $*"
    export DEBIAN_FRONTEND=noninteractive
    if [[ $apt_updated -eq 0 ]]; then
        log "apt-get update"
        apt-get update -qq || die "apt-get update failed"
        apt_updated=1
    fi
    log "apt-get install $*"
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null \
        || die "apt-get install $* failed"
}

docker_ok() { docker info >/dev/null 2>&1; }

# 1. mmdebstrap (build_images.sh) - needed whether or not docker already runs.
#    debian-archive-keyring: signatures of bullseye/bookworm/trixie; uidmap is not
#    needed because we build in root mode.
if ! command -v mmdebstrap >/dev/null 2>&1; then
    apt_install mmdebstrap debian-archive-keyring ca-certificates
else
    log "mmdebstrap present: $(mmdebstrap --version 2>/dev/null | head -n1)"
fi

# 2. Docker already usable?
if command -v docker >/dev/null 2>&1 && docker_ok; then
    log "docker daemon already running ($(docker version --format 'server {{.Server.Version}}' 2>/dev/null || echo '?'))"
    exit 0
fi

[[ $(id -u) -eq 0 ]] || die "docker is not usable and starting dockerd requires root"

# 3. Install the engine when missing. docker.io brings dockerd, containerd, runc,
#    iptables and a docker CLI (/usr/bin/docker).
if ! command -v dockerd >/dev/null 2>&1; then
    apt_install docker.io
fi
command -v dockerd >/dev/null 2>&1 || die "dockerd still not found after installing docker.io"
command -v docker >/dev/null 2>&1 || die "docker CLI not found after installing docker.io"

dockerd_pid() {
    local pid
    [[ -s $DOCKERD_PIDFILE ]] || return 1
    pid=$(<"$DOCKERD_PIDFILE")
    [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null && printf '%s\n' "$pid"
}

# Wait until `docker info` answers. Returns 0 when ready, 1 if dockerd (pid $1) died,
# 2 on timeout.
wait_for_docker() {
    local pid=$1 i
    for ((i = 0; i < DOCKERD_WAIT_SECONDS; i++)); do
        docker_ok && return 0
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 1
    done
    docker_ok && return 0
    return 2
}

start_dockerd() {
    # $@: dockerd flags. Sets global started_pid.
    mkdir -p "$(dirname "$DOCKERD_LOG")"
    # A stale pid file (dockerd killed without cleanup) makes dockerd refuse to start.
    if [[ -e $DOCKERD_PIDFILE ]] && ! dockerd_pid >/dev/null; then
        log "removing stale $DOCKERD_PIDFILE"
        rm -f "$DOCKERD_PIDFILE"
    fi
    printf '\n===== %s: dockerd %s =====\n' "$(date -Is)" "$*" >>"$DOCKERD_LOG"
    log "starting: dockerd $* (log: $DOCKERD_LOG)"
    # setsid + nohup: keep running after this script (and its session) ends.
    setsid nohup dockerd "$@" >>"$DOCKERD_LOG" 2>&1 </dev/null &
    started_pid=$!
}

fail_with_log() {
    log "dockerd log tail ($DOCKERD_LOG):"
    tail -n 40 "$DOCKERD_LOG" >&2 || true
    die "$1"
}

# 4. A dockerd may already be starting (e.g. started by a previous run seconds ago).
if pid=$(dockerd_pid); then
    log "dockerd already running (pid $pid), waiting for it to answer"
    rc=0; wait_for_docker "$pid" || rc=$?
    [[ $rc -eq 0 ]] && { log "docker is ready"; exit 0; }
    fail_with_log "dockerd (pid $pid) is running but 'docker info' does not answer after ${DOCKERD_WAIT_SECONDS}s; stop it or inspect the log"
fi

# 5. Start dockerd.
if [[ -n ${DOCKERD_FLAGS:-} ]]; then
    attempts=("$DOCKERD_FLAGS")
else
    attempts=("" "$FALLBACK_FLAGS")
fi

for flags in "${attempts[@]}"; do
    # shellcheck disable=SC2086 # intentional word splitting of a flag list
    start_dockerd $flags
    rc=0; wait_for_docker "$started_pid" || rc=$?
    case $rc in
        0)
            log "docker is ready: $(docker version --format 'client {{.Client.Version}}, server {{.Server.Version}}' 2>/dev/null || true)"
            log "storage driver: $(docker info --format '{{.Driver}}' 2>/dev/null || echo '?')"
            exit 0 ;;
        1)
            log "dockerd exited during startup (flags: '${flags:-<defaults>}'):"
            tail -n 15 "$DOCKERD_LOG" >&2 || true ;;
        2)
            kill "$started_pid" 2>/dev/null || true
            fail_with_log "dockerd (flags: '${flags:-<defaults>}') did not answer 'docker info' within ${DOCKERD_WAIT_SECONDS}s" ;;
    esac
done

fail_with_log "could not start dockerd (tried flags: $(printf "'%s' " "${attempts[@]}")). Set DOCKERD_FLAGS to try others."
