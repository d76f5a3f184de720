#!/usr/bin/env bash
# Debian packages the tests use (real parts: a sandbox, a Slurm cluster...). Installs only what is
# missing, so a re-run on the same machine costs nothing. Needs root, as CI runs.
set -euo pipefail
# command -> package; add a line per tool a test needs
declare -A NEEDED=(
  [bwrap]=bubblewrap
  [slurmctld]=slurm-wlm
  [munged]=munge
)
missing=()
for cmd in "${!NEEDED[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${NEEDED[$cmd]}")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
