#!/usr/bin/env bash
# The Molecule suite of codacy.selfhosted, with everything it needs started by itself.
#
#   extensions/molecule/run.sh                    # what `make molecule` runs: docker, images, every scenario
#   extensions/molecule/run.sh test default       # docker, images, then one scenario (several allowed)
#   extensions/molecule/run.sh images             # docker and images only (`make test` runs this
#                                                 #   while pytest runs, then the scenarios with SKIP_IMAGES=1)
#   extensions/molecule/run.sh converge default   # developer loop: any other molecule command, run with
#   extensions/molecule/run.sh verify default     #   this suite's environment on one scenario
#   extensions/molecule/run.sh login default --host codacy-default-target
#   extensions/molecule/run.sh destroy default
#
# `all` (the default) and `test`:
#   1. tests/containers/ensure_docker.sh  installs docker.io and mmdebstrap when missing and starts
#      dockerd when it is not running; fails loudly when it cannot;
#   2. tests/containers/build_images.sh   builds the registry-free PostgreSQL images (skips the
#      up-to-date ones: ~0.2 s when nothing changed);
#   3. `molecule test -s <scenario>` for each scenario; the `default` scenario once per source
#      major of CODACY_MOLECULE_SOURCE_PGS (13 -> 17, then 15 -> 17). Every run goes on after a
#      failure; the summary lists each run with its time, and the exit status is 1 if any failed.
#
# Environment:
#   CODACY_MOLECULE_SCENARIOS    scenarios of `all` (default: default managed_target refusals interrupted online)
#   CODACY_MOLECULE_SOURCE_PGS   source majors of `default` (default: "13 15"; images pg13, pg15)
#   CODACY_MOLECULE_LANES        `all` runs its scenarios in 2 lanes side by side (default); 1: one by one
#   CODACY_MOLECULE_HOME         ANSIBLE_HOME of the suite (default: build/molecule): molecule installs
#                                the collection under test in <it>/collections, and the playbooks use
#                                that copy; logs of `all`/`test` go to <it>/logs
#   MOLECULE                     the molecule program (default: .venv/bin/molecule, else from PATH)
#   SKIP_IMAGES=1                skip steps 1-2 (the images must exist)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

log() { printf '[molecule] %s\n' "$*" >&2; }
die() { printf '[molecule] ERROR: %s\n' "$*" >&2; exit 1; }

# -- the tools: molecule and the ansible it drives, from the same virtualenv ----------------------
if [ -z "${MOLECULE:-}" ]; then
  if [ -x "$ROOT/.venv/bin/molecule" ]; then
    MOLECULE="$ROOT/.venv/bin/molecule"
  else
    MOLECULE="$(command -v molecule || true)"
  fi
fi
[ -n "$MOLECULE" ] && [ -x "$MOLECULE" ] \
  || die "molecule not found: run 'make venv' (it installs requirements-dev.txt into .venv) or set MOLECULE"
export PATH="$(dirname "$MOLECULE"):$PATH"   # ansible-playbook / ansible-galaxy of the same venv

# -- where the collection under test is installed --------------------------------------------------
# Molecule installs the collection from this checkout (ansible-galaxy collection install, honouring
# galaxy.yml's build_ignore) into $ANSIBLE_HOME/collections, and the playbooks load it from there.
# ANSIBLE_COLLECTIONS_PATH is set to exactly that directory: it overrides the checkout's ansible.cfg
# and the Makefile's build/collections symlink (galaxy would try to replace that symlink), and the
# collections bundled with the ansible package (community.docker, community.postgresql) are still
# found on sys.path. A private ANSIBLE_HOME also keeps two checkouts from sharing one installed copy.
export ANSIBLE_HOME="${CODACY_MOLECULE_HOME:-$ROOT/build/molecule}"
export ANSIBLE_COLLECTIONS_PATH="$ANSIBLE_HOME/collections"
mkdir -p "$ANSIBLE_COLLECTIONS_PATH"
unset MOLECULE_EPHEMERAL_DIRECTORY

SCENARIOS="${CODACY_MOLECULE_SCENARIOS:-default managed_target refusals interrupted online}"
SOURCE_PGS="${CODACY_MOLECULE_SOURCE_PGS:-13 15}"

prerequisites() {
  if [ "${SKIP_IMAGES:-}" = 1 ]; then
    log "SKIP_IMAGES=1: using the existing images"
    docker info >/dev/null 2>&1 || die "docker does not answer (run tests/containers/ensure_docker.sh)"
    return
  fi
  log "docker and mmdebstrap (tests/containers/ensure_docker.sh)"
  tests/containers/ensure_docker.sh || die "no usable docker daemon: see the messages above"
  local images="pg13 pg17 migrator migrator13" pg
  for pg in $SOURCE_PGS; do
    case " $images " in *" pg$pg "*) ;; *) images="$images pg$pg" ;; esac
  done
  log "images: $images (tests/containers/build_images.sh)"
  tests/containers/build_images.sh $images || die "image build failed: see the messages above"
}

# Runs one `molecule test`, logging to $ANSIBLE_HOME/logs/<label>.log; records the outcome.
RESULTS=()
FAILED=0
run_test() {
  local label="$1" scenario="$2" started status
  shift 2
  mkdir -p "$ANSIBLE_HOME/logs"
  log "=== $label: molecule test -s $scenario ($*)"
  started=$(date +%s)
  if env "$@" "$MOLECULE" test -s "$scenario" 2>&1 | tee "$ANSIBLE_HOME/logs/$label.log"; then
    status=passed
  else
    status=FAILED
    FAILED=1
  fi
  RESULTS+=("$(printf '%-22s %-7s %4d s   log: %s' "$label" "$status" $(( $(date +%s) - started )) \
               "$ANSIBLE_HOME/logs/$label.log")")
}

summary() {
  local total=$(( $(date +%s) - SUITE_STARTED ))
  printf '\n[molecule] summary (%d s in all, images included)\n' "$total" >&2
  printf '  %s\n' "${RESULTS[@]}" >&2
}

command="${1:-all}"
[ $# -gt 0 ] && shift
SUITE_STARTED=$(date +%s)
case "$command" in
  all)
    prerequisites
    if [ "${CODACY_MOLECULE_LANES:-2}" -gt 1 ]; then
      # Two lanes side by side (the scenarios wait on containers most of the time): `default` (its
      # runs share ports) and `online` in one, the others in the other. Each lane has its own
      # ANSIBLE_HOME, where molecule installs the collection, and its own logs.
      lane_one="" lane_two=""
      for scenario in $SCENARIOS; do
        case "$scenario" in default|online) lane_one="$lane_one $scenario" ;; *) lane_two="$lane_two $scenario" ;; esac
      done
      lanes=()
      for lane in one two; do
        eval "list=\$lane_$lane"
        [ -n "$list" ] || continue
        mkdir -p "$ANSIBLE_HOME/lane-$lane"
        log "lane $lane:$list (output: $ANSIBLE_HOME/lane-$lane/lane.log)"
        CODACY_MOLECULE_LANES=1 CODACY_MOLECULE_SCENARIOS="$list" CODACY_MOLECULE_HOME="$ANSIBLE_HOME/lane-$lane" \
          SKIP_IMAGES=1 MOLECULE="$MOLECULE" "$ROOT/extensions/molecule/run.sh" all \
          > "$ANSIBLE_HOME/lane-$lane/lane.log" 2>&1 &
        lanes+=("$lane:$!")
      done
      for entry in "${lanes[@]}"; do
        lane="${entry%%:*}"
        if wait "${entry#*:}"; then
          sed -n '/summary (/,$p' "$ANSIBLE_HOME/lane-$lane/lane.log" >&2
        else
          FAILED=1
          for failed_log in $(sed -n 's/^ .* FAILED .*log: //p' "$ANSIBLE_HOME/lane-$lane/lane.log"); do
            printf '\n[molecule] the end of %s:\n' "$failed_log" >&2
            tail -n 120 "$failed_log" >&2
          done
          sed -n '/summary (/,$p' "$ANSIBLE_HOME/lane-$lane/lane.log" >&2
          grep -q 'summary (' "$ANSIBLE_HOME/lane-$lane/lane.log" || tail -n 60 "$ANSIBLE_HOME/lane-$lane/lane.log" >&2
        fi
      done
      printf '[molecule] %d s in all, two lanes\n' $(( $(date +%s) - SUITE_STARTED )) >&2
      exit "$FAILED"
    fi
    for scenario in $SCENARIOS; do
      if [ "$scenario" = default ]; then
        for pg in $SOURCE_PGS; do
          run_test "default-pg$pg" default CODACY_MOLECULE_SOURCE_PG="$pg"
        done
      else
        run_test "$scenario" "$scenario"
      fi
    done
    summary
    exit "$FAILED"
    ;;
  test)
    [ $# -gt 0 ] || die "usage: $0 test <scenario> [<scenario> ...]"
    prerequisites
    for scenario in "$@"; do
      run_test "$scenario" "$scenario" CODACY_MOLECULE_SOURCE_PG="${CODACY_MOLECULE_SOURCE_PG:-13}"
    done
    summary
    exit "$FAILED"
    ;;
  images)
    prerequisites
    ;;
  -h|--help|help)
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    ;;
  *)
    # The developer loop: molecule <command> -s <scenario> [args] with this suite's environment.
    [ $# -gt 0 ] || die "usage: $0 <molecule command> <scenario> [molecule args]"
    scenario="$1"
    shift
    exec "$MOLECULE" "$command" -s "$scenario" "$@"
    ;;
esac
