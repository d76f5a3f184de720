#!/usr/bin/env bash
# Stops what start_cluster.sh started: jobs, slurmd, slurmctld, munged. Idempotent.
set -uo pipefail
DIR="${LMGAUGE_SLURM_DIR:-/tmp/lmgauge-slurm}"
command -v scancel >/dev/null && scancel --quiet --full --user=root 2>/dev/null
stop() {  # the pid in a pid file, TERM then KILL
  local pidfile="$1"
  [ -f "$pidfile" ] || return 0
  local pid
  pid="$(cat "$pidfile" 2>/dev/null)"
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null
  fi
  rm -f "$pidfile"
}
stop "$DIR/slurmd.pid"
stop "$DIR/slurmctld.pid"
stop /run/munge/munged.pid
exit 0
