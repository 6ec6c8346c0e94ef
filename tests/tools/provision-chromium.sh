#!/usr/bin/env bash
# provision-chromium.sh - install Debian's chromium for the analytics tests.
#
# budget's TestGrantReportInAHeadlessBrowser opens the HTML compliance report
# in a real headless browser (chromium --headless --dump-dom / --screenshot)
# and fails, never skips, when there is none. Idempotent: nothing happens
# when chromium is already on PATH; `apt-get update` runs only if this
# provisioning run has not done it yet (ASBB_APT_UPDATED, set by
# provision.sh). Set ASBB_CHROMIUM=/path/to/browser to use another one.
set -euo pipefail

log() { printf 'provision-chromium: %s\n' "$*" >&2; }

if [ -n "${ASBB_CHROMIUM:-}" ] && [ -x "$ASBB_CHROMIUM" ]; then
	exit 0
fi
if command -v chromium >/dev/null 2>&1; then
	exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
	log "missing: chromium (run as root to install it: apt-get install chromium)"
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
if [ "${ASBB_APT_UPDATED:-0}" != 1 ]; then
	log "apt-get update"
	apt-get update -q
	export ASBB_APT_UPDATED=1
fi
log "installing: chromium"
apt-get install -y -q --no-install-recommends chromium
command -v chromium >/dev/null
