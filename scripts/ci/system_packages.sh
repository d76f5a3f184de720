#!/usr/bin/env bash
# Debian packages the tests use (real parts: a sandbox, a Slurm cluster...). Installs only what is
# missing, so a re-run on the same machine costs nothing. Root, or sudo; the README's test command
# and .ci/run both call it, so a newcomer's run covers what CI's covers.
set -euo pipefail
# command -> package; add a line per tool a test needs
declare -A NEEDED=(
  [bwrap]=bubblewrap
  [slurmctld]=slurm-wlm
  [munged]=munge
  [chromium]=chromium
)
missing=()
for cmd in "${!NEEDED[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin:/sbin" command -v "$cmd" >/dev/null 2>&1 || missing+=("${NEEDED[$cmd]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0
as_root=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    as_root=(sudo)
  else
    echo "system_packages.sh: the tests need ${missing[*]}; install them as root (apt-get install ${missing[*]})," >&2
    echo "or run the tests with LMGAUGE_TESTS_ALLOW_MISSING_TOOLS=1 to skip what needs them (a run that covers less than CI)" >&2
    exit 1
  fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "system_packages.sh: no apt-get here; install the Debian packages ${missing[*]} (or your system's equivalents)" >&2
  exit 1
fi
echo "installing Debian packages: ${missing[*]}"
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
