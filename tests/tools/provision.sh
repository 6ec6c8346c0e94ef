#!/usr/bin/env bash
# provision.sh - make a Debian 12 machine ready to build and test ASBB.
#
# Idempotent and quick when nothing is missing: it installs only what is
# absent, runs `apt-get update` once, before the first install, and only if
# something must be installed. Run it as root on a fresh machine (CI does,
# through .ci/run); as another user it only reports what is missing.
#
#   PostgreSQL server programs  budget/pgtest starts a private server for tests
#   gcc, make, git              cgo (libasbb, the race detector), the Makefile
#   valgrind                    the C ABI smoke test (tests/abi)
#   Go modules                  go mod download, so tests do not fetch mid-run
#   Slurm                       tests/e2e/provision.sh, unless ASBB_E2E=0
#   chromium                    tests/tools/provision-chromium.sh (HTML report test)
#
# Go itself must already be installed: Debian's is too old for go.mod.
set -euo pipefail
cd "$(dirname "$0")/../.."

log() { printf 'provision: %s\n' "$*" >&2; }

# apt_install installs Debian packages, updating the package lists first if
# this run has not yet. ASBB_APT_UPDATED tells scripts we call that it did.
apt_install() {
	if [ "$(id -u)" -ne 0 ]; then
		log "missing: $* (run as root to install them)"
		return 1
	fi
	if ! command -v apt-get >/dev/null; then
		log "missing: $* (no apt-get here: install them by hand)"
		return 1
	fi
	export DEBIAN_FRONTEND=noninteractive
	if [ "${ASBB_APT_UPDATED:-0}" != 1 ]; then
		log "apt-get update"
		apt-get update -q || return
		export ASBB_APT_UPDATED=1
	fi
	log "installing: $*"
	apt-get install -y -q --no-install-recommends "$@" || return
}

# with_services_held runs a command while policy-rc.d forbids packages to
# start services: installing postgresql must not start a system cluster
# (tests run their own servers, and a daemon would outlive CI's run).
with_services_held() {
	local policy=/usr/sbin/policy-rc.d saved=""
	if [ -e "$policy" ]; then
		saved=$(mktemp)
		cp -p "$policy" "$saved"
	fi
	printf '#!/bin/sh\nexit 101\n' >"$policy"
	chmod 755 "$policy"
	local rc=0
	"$@" || rc=$?
	if [ -n "$saved" ]; then mv -f "$saved" "$policy"; else rm -f "$policy"; fi
	return "$rc"
}

# have_pg_server mirrors budget/pgtest's search for initdb, pg_ctl, postgres.
have_pg_server() {
	local d
	for d in ${ASBB_PG_BINDIR:-} /usr/lib/postgresql/*/bin /usr/pgsql-*/bin /usr/local/pgsql/bin; do
		if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && [ -x "$d/postgres" ]; then
			return 0
		fi
	done
	command -v initdb >/dev/null && command -v pg_ctl >/dev/null && command -v postgres >/dev/null
}

if ! command -v go >/dev/null; then
	log "go is not on PATH: install Go $(sed -n 's/^go //p' go.mod) or newer (https://go.dev/dl), then rerun"
	exit 1
fi

missing=()
have_pg_server || missing+=(postgresql)
command -v gcc >/dev/null || missing+=(gcc libc6-dev)
command -v make >/dev/null || missing+=(make)
command -v git >/dev/null || missing+=(git)
# tests/abi runs the C ABI smoke test under valgrind (required when CI=true).
command -v valgrind >/dev/null || missing+=(valgrind)
if [ ${#missing[@]} -gt 0 ]; then
	with_services_held apt_install "${missing[@]}"
	if ! have_pg_server; then
		log "PostgreSQL server programs still missing after install"
		exit 1
	fi
fi

log "go mod download"
go mod download

if [ "${ASBB_E2E:-1}" != 0 ] && [ -f tests/e2e/provision.sh ]; then
	log "tests/e2e/provision.sh (set ASBB_E2E=0 to skip Slurm)"
	if [ -x tests/e2e/provision.sh ]; then tests/e2e/provision.sh; else sh tests/e2e/provision.sh; fi
fi
# --- analytics (budget/report_browser_test.go): headless chromium ---------
# The HTML compliance report is opened in a real browser by the tests.
tests/tools/provision-chromium.sh
# --- end analytics ---------------------------------------------------------
log "ready"
