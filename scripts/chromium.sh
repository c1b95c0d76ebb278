#!/usr/bin/env bash
# Prints the path of a Chromium binary for the console's browser tests (MESHLET_CHROMIUM),
# installing Debian's `chromium` package when none is there, as scripts/redis.sh installs
# Redis: a fresh CI machine needs nothing by hand. MESHLET_CHROMIUM, when set to an
# executable, wins. The last line of stdout is the path; progress goes to stderr.
set -euo pipefail

find_chromium() {
  if [ -n "${MESHLET_CHROMIUM:-}" ] && [ -x "$MESHLET_CHROMIUM" ]; then echo "$MESHLET_CHROMIUM"; return 0; fi
  # Debian's /usr/bin/chromium is a wrapper script that adds flags of its own; the binary
  # itself is under /usr/lib/chromium, and the tests pass every flag they want.
  [ -x /usr/lib/chromium/chromium ] && { echo /usr/lib/chromium/chromium; return 0; }
  for c in chromium chromium-browser; do
    if p="$(command -v "$c" 2>/dev/null)"; then echo "$p"; return 0; fi
  done
  return 1
}

if path="$(find_chromium)"; then echo "$path"; exit 0; fi

echo "chromium.sh: installing chromium from Debian's packages (a few minutes the first time)" >&2
export DEBIAN_FRONTEND=noninteractive
sudo_=""
[ "$(id -u)" -eq 0 ] || sudo_="sudo"
start=$(date +%s)
$sudo_ apt-get update -qq >/dev/null
$sudo_ apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
echo "chromium.sh: installed in $(( $(date +%s) - start )) s" >&2

if path="$(find_chromium)"; then echo "$path"; exit 0; fi
echo "chromium.sh: apt-get installed chromium but no binary was found" >&2
exit 1
