#!/usr/bin/env bash
# Run a throw-away PostgreSQL server from one of the codacy-selfhosted-test/pgNN images.
#
# Usage:
#   pg_container.sh start  <container-name> <image> <port> <superuser> <password-file>
#   pg_container.sh stop   <container-name>
#   pg_container.sh status <container-name>
#
# start: runs the container (docker run -d --network host), then configures the
#   image's Debian cluster /etc/postgresql/<ver>/main:
#     conf.d/90-codacy-test.conf  listen_addresses='127.0.0.1', port=<port>,
#                                 password_encryption=scram-sha-256, test settings
#     pg_hba.conf                 local peer; host 127.0.0.1/32 scram-sha-256
#   starts it with `pg_ctlcluster <ver> main start` (restart if the config changed),
#   waits until it accepts connections, creates <superuser> (unless it is postgres)
#   and sets its password from the FIRST LINE of <password-file> (trailing CR
#   stripped; spaces, quotes, ':' and '\' are fine). The password never appears in a
#   command line: the SQL is piped to psql over stdin. Finally it checks a real
#   scram login over TCP 127.0.0.1:<port> (again with the password only on stdin).
#   Idempotent: an existing running container of the same image is reused; a stopped
#   one, or one from a different image, is removed and recreated (data is lost).
# stop:   stops the cluster cleanly and removes the container (no-op if absent).
# status: prints the container state and pg_lsclusters.
#
# Host networking is mandatory: tests may only talk to 127.0.0.0/8, so every server
# listens on 127.0.0.1:<port> of the host; use a distinct port per container.
#
# Environment:
#   PG_WAIT_SECONDS  how long to wait for the server (default 60)
#   PG_SHM_SIZE      docker --shm-size (default 256m; PostgreSQL uses /dev/shm for
#                    parallel query, docker's default 64m is tight)
#
# Exit codes:
#   0  success (status: container running and server accepting connections)
#   1  failure (message and, where useful, the server log tail on stderr)
#   2  usage error
#   3  status only: container absent or not running
#   4  status only: container running but server not accepting connections
set -euo pipefail

PG_WAIT_SECONDS="${PG_WAIT_SECONDS:-60}"
PG_SHM_SIZE="${PG_SHM_SIZE:-256m}"

log() { printf '[pg_container] %s\n' "$*" >&2; }
die() { printf '[pg_container] ERROR: %s\n' "$*" >&2; exit 1; }
usage() { # [exit-code]: 0 prints to stdout (help), otherwise to stderr
    local rc=${1:-2}
    if ((rc == 0)); then
        sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
    else
        sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" >&2
    fi
    exit "$rc"
}

container_running() { [[ $(docker inspect -f '{{.State.Running}}' "$1" 2>/dev/null) == true ]]; }
container_exists() { docker inspect "$1" >/dev/null 2>&1; }

# PostgreSQL major version of the (single) cluster in the container.
pg_version() {
    local v
    v=$(docker exec "$1" sh -c 'ls /etc/postgresql 2>/dev/null') || true
    [[ $v =~ ^[0-9]+$ ]] || die "container $1: expected exactly one /etc/postgresql/<version>, found: '${v//$'\n'/ }'"
    printf '%s\n' "$v"
}

server_log_tail() {
    log "server log tail (/var/log/postgresql/postgresql-$2-main.log in $1):"
    docker exec "$1" tail -n 25 "/var/log/postgresql/postgresql-$2-main.log" >&2 || true
}

port_in_use() {
    # Bash-only TCP probe (no ss/netstat needed on the host).
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Script run inside the container as root: writes the config, (re)starts the
# cluster, waits for it. Arguments: <ver> <port> <wait-seconds>. No secrets here.
read -r -d '' CONFIGURE_SCRIPT <<'EOS' || true
set -euo pipefail
ver=$1 port=$2 wait=$3
dir=/etc/postgresql/$ver/main
changed=0

install_if_changed() { # <dest> <mode>; content on stdin
    local tmp
    tmp=$(mktemp "$1.XXXXXX")
    cat >"$tmp"
    chown postgres:postgres "$tmp"; chmod "$2" "$tmp"
    if [[ -f $1 ]] && cmp -s "$tmp" "$1"; then rm -f "$tmp"; else mv -f "$tmp" "$1"; changed=1; fi
}

mkdir -p "$dir/conf.d"
install_if_changed "$dir/conf.d/90-codacy-test.conf" 0644 <<EOF
# Written by tests/containers/pg_container.sh (codacy.selfhosted test infrastructure).
listen_addresses = '127.0.0.1'   # host networking: loopback only
port = $port
password_encryption = 'scram-sha-256'
unix_socket_directories = '/var/run/postgresql'
# Throw-away test server: durability off for speed, small memory footprint.
fsync = off
synchronous_commit = off
full_page_writes = off
shared_buffers = '64MB'
max_connections = 100
timezone = 'UTC'
log_timezone = 'UTC'
EOF
install_if_changed "$dir/pg_hba.conf" 0640 <<'EOF'
# Written by tests/containers/pg_container.sh (codacy.selfhosted test infrastructure).
# TYPE  DATABASE     USER      ADDRESS         METHOD
local   all          postgres                  peer
local   all          all                       peer
host    all          all       127.0.0.1/32    scram-sha-256
host    replication  all       127.0.0.1/32    scram-sha-256
EOF

# pg_ctlcluster creates the socket directory too, but be explicit (fresh /run).
install -d -o postgres -g postgres -m 2775 /var/run/postgresql

if pg_ctlcluster "$ver" main status >/dev/null 2>&1; then
    if [[ $changed == 1 ]]; then
        echo "configuration changed: restarting cluster $ver/main"
        pg_ctlcluster "$ver" main restart -m fast
    else
        echo "cluster $ver/main already running with this configuration"
    fi
else
    echo "starting cluster $ver/main on 127.0.0.1:$port"
    pg_ctlcluster "$ver" main start
fi

for ((i = 0; i < wait; i++)); do
    # As postgres (peer auth) for the socket; -U postgres over TCP just gets the
    # scram challenge and hangs up, which the server does not log as an error.
    if runuser -u postgres -- pg_isready -q -h /var/run/postgresql -p "$port" \
            && pg_isready -q -h 127.0.0.1 -p "$port" -U postgres -d postgres; then
        echo "cluster $ver/main accepts connections on 127.0.0.1:$port"
        exit 0
    fi
    sleep 1
done
echo "cluster $ver/main not ready on 127.0.0.1:$port after ${wait}s" >&2
exit 1
EOS

# Script run inside the container: checks a scram login over TCP. The password
# arrives as the first line of stdin and is put into a private, temporary pgpass
# file. Arguments: <port> <user>.
read -r -d '' LOGIN_CHECK_SCRIPT <<'EOS' || true
set -euo pipefail
port=$1 user=$2
IFS= read -r pw || [[ -n $pw ]]
umask 077
pgpass=$(mktemp)
trap 'rm -f "$pgpass"' EXIT
esc_pw=${pw//\\/\\\\}; esc_pw=${esc_pw//:/\\:}
esc_user=${user//\\/\\\\}; esc_user=${esc_user//:/\\:}
printf '127.0.0.1:%s:*:%s:%s\n' "$port" "$esc_user" "$esc_pw" >"$pgpass"
PGPASSFILE=$pgpass PGCONNECT_TIMEOUT=10 psql -X -w -At -h 127.0.0.1 -p "$port" -U "$user" -d postgres \
    -c "select 'login ok: ' || current_user || ', superuser=' || current_setting('is_superuser') || ', ' || version()"
EOS

sql_literal() { local s=${1//\'/\'\'}; printf "'%s'" "$s"; }
sql_ident() { local s=${1//\"/\"\"}; printf '"%s"' "$s"; }

cmd_start() {
    (($# == 5)) || usage
    local name=$1 image=$2 port=$3 user=$4 pwfile=$5
    [[ $name =~ ^[A-Za-z0-9][A-Za-z0-9_.-]*$ ]] || die "invalid container name: $name"
    if ! [[ $port =~ ^[0-9]+$ ]] || ((port < 1024 || port > 65535)); then
        die "port must be 1024..65535, got: $port"
    fi
    [[ -n $user && ${#user} -le 63 ]] || die "superuser name must be 1..63 characters"
    [[ -r $pwfile ]] || die "password file not readable: $pwfile"

    local pw=""
    IFS= read -r pw <"$pwfile" || [[ -n $pw ]] || die "password file is empty: $pwfile"
    pw=${pw%$'\r'}
    [[ -n $pw ]] || die "password (first line of $pwfile) is empty"

    docker image inspect "$image" >/dev/null 2>&1 \
        || die "image $image not found (build it with $(dirname "${BASH_SOURCE[0]}")/build_images.sh)"
    local want_id have_id=""
    want_id=$(docker image inspect -f '{{.Id}}' "$image")

    if container_exists "$name"; then
        have_id=$(docker inspect -f '{{.Image}}' "$name")
        if container_running "$name" && [[ $have_id == "$want_id" ]]; then
            log "container $name already running from $image: reusing it"
        else
            log "container $name exists but is stopped or from another image: recreating it"
            docker rm -f "$name" >/dev/null
        fi
    fi
    if ! container_exists "$name"; then
        if port_in_use "$port"; then
            die "127.0.0.1:$port is already in use on this host; pick another port"
        fi
        log "starting container $name from $image (--network host)"
        docker run -d --name "$name" --network host --shm-size "$PG_SHM_SIZE" \
            --label codacy.test=pg_container --label "codacy.pg_port=$port" \
            "$image" >/dev/null || die "docker run failed for $name"
    fi

    local ver
    ver=$(pg_version "$name")
    log "configuring PostgreSQL $ver cluster in $name for 127.0.0.1:$port"
    if ! printf '%s\n' "$CONFIGURE_SCRIPT" \
            | docker exec -i "$name" bash -s -- "$ver" "$port" "$PG_WAIT_SECONDS" >&2; then
        server_log_tail "$name" "$ver"
        die "could not start PostgreSQL $ver in $name on 127.0.0.1:$port"
    fi

    # Role + password: SQL over stdin to psql via the local socket (peer auth as
    # postgres). Keep the statement out of the server log even on error.
    log "setting password of superuser '$user'"
    local sql
    sql="SET log_statement = 'none';
SET log_min_error_statement = 'panic';
SET log_min_duration_statement = -1;
SET standard_conforming_strings = on;
SELECT NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $(sql_literal "$user")) AS need_create \\gset
\\if :need_create
CREATE ROLE $(sql_ident "$user") WITH LOGIN SUPERUSER;
\\endif
ALTER ROLE $(sql_ident "$user") WITH LOGIN SUPERUSER PASSWORD $(sql_literal "$pw");
"
    if ! printf '%s' "$sql" | docker exec -i "$name" \
            runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -h /var/run/postgresql -p "$port" -d postgres >/dev/null; then
        die "could not create/alter role '$user' in $name"
    fi

    log "checking scram login as '$user' over 127.0.0.1:$port"
    local out
    if ! out=$(printf '%s\n' "$pw" | docker exec -i "$name" bash -c "$LOGIN_CHECK_SCRIPT" login-check "$port" "$user" 2>&1); then
        printf '%s\n' "$out" >&2
        server_log_tail "$name" "$ver"
        die "password login as '$user' on 127.0.0.1:$port failed"
    fi
    log "$out"
    log "ready: $name  PostgreSQL $ver  host=127.0.0.1 port=$port user=$user dbname=postgres"
}

cmd_stop() {
    (($# == 1)) || usage
    local name=$1
    if ! container_exists "$name"; then
        log "container $name does not exist: nothing to do"
        return 0
    fi
    if container_running "$name"; then
        local ver
        if ver=$(docker exec "$name" sh -c 'ls /etc/postgresql 2>/dev/null') && [[ $ver =~ ^[0-9]+$ ]]; then
            log "stopping cluster $ver/main in $name"
            docker exec "$name" pg_ctlcluster "$ver" main stop -m fast >/dev/null 2>&1 || true
        fi
    fi
    docker rm -f "$name" >/dev/null
    log "removed container $name"
}

cmd_status() {
    (($# == 1)) || usage
    local name=$1
    if ! container_exists "$name"; then
        log "$name: no such container"
        return 3
    fi
    if ! container_running "$name"; then
        log "$name: container exists but is not running ($(docker inspect -f '{{.State.Status}}' "$name"))"
        return 3
    fi
    local image port
    image=$(docker inspect -f '{{.Config.Image}}' "$name")
    port=$(docker exec "$name" sh -c "sed -n 's/^port = //p' /etc/postgresql/*/main/conf.d/90-codacy-test.conf 2>/dev/null" || true)
    printf 'container %s: running, image %s, configured port %s\n' "$name" "$image" "${port:-?}"
    docker exec "$name" pg_lsclusters || true
    if [[ -n $port ]] && docker exec "$name" pg_isready -h 127.0.0.1 -p "$port" -U postgres -d postgres; then
        return 0
    fi
    return 4
}

(($# >= 1)) || usage
cmd=$1; shift
case $cmd in
    start) cmd_start "$@" ;;
    stop) cmd_stop "$@" ;;
    status) cmd_status "$@" ;;
    -h|--help|help) usage 0 ;;
    *) log "unknown command: $cmd"; usage ;;
esac
