# Shared by install_*.sh: an idempotent, interrupt-safe venv install under $LMGAUGE_SERVERS.
# The venv is built in place (venvs are not relocatable) and a stamp file is written LAST; a folder
# without the stamp is a half-done install and is wiped and redone. flock serialises concurrent runs.
set -euo pipefail
SERVERS_ROOT="${LMGAUGE_SERVERS:-$HOME/.cache/lmgauge-servers}"
SERVERS_SCRIPTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STAMP_NAME=".lmgauge-installed"

# venv_install NAME INSTALL_FUNCTION: prints the venv path; runs INSTALL_FUNCTION VENV when not installed
venv_install() {
  local name="$1" fn="$2"
  local dest="$SERVERS_ROOT/$name"
  if [ -f "$dest/$STAMP_NAME" ]; then echo "$dest"; return 0; fi
  mkdir -p "$SERVERS_ROOT"
  exec 9>"$SERVERS_ROOT/.$name.lock"
  flock 9
  if [ -f "$dest/$STAMP_NAME" ]; then echo "$dest"; return 0; fi   # another run finished meanwhile
  rm -rf "$dest"
  local t0=$SECONDS
  echo "installing $name into $dest (log: $dest.log)" >&2
  python3 -m venv "$dest"
  if ! "$fn" "$dest" >"$dest.log" 2>&1; then
    echo "install of $name FAILED; last lines of $dest.log:" >&2
    tail -n 40 "$dest.log" >&2
    return 1
  fi
  echo "installed $name in $((SECONDS - t0)) s ($(du -sh "$dest" | cut -f1))" >&2
  date -u +%FT%TZ >"$dest/$STAMP_NAME"
  echo "$dest"
}
