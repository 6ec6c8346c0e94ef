#!/bin/sh
# provision.sh - install the Debian packages the end-to-end tests need.
#
# Idempotent: apt-get runs only when a package is missing, `apt-get update`
# runs once before the first install (not at all if the caller exported
# ASBB_APT_UPDATED=1 after running it), and a temporary policy-rc.d keeps
# the packaged munge/slurmctld/slurmd services from being started.
#
# Usage: tests/e2e/provision.sh [--runtime-only]
#   --runtime-only  skip the build dependencies (libslurm-dev, liblua5.1-0-dev)
set -eu

runtime="munge slurmctld slurmd slurm-client"
build="libslurm-dev liblua5.1-0-dev gcc make"

pkgs="$runtime"
if [ "${1:-}" != "--runtime-only" ]; then
	pkgs="$pkgs $build"
fi

missing=""
for p in $pkgs; do
	st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
	[ "$st" = "installed" ] || missing="$missing $p"
done

if [ -z "$missing" ]; then
	echo "provision: all packages present ($pkgs)"
	exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
	echo "provision: missing packages:$missing (run as root to install)" >&2
	exit 1
fi

echo "provision: installing:$missing"
policy=/usr/sbin/policy-rc.d
restore=""
if [ -e "$policy" ]; then
	restore=$(mktemp)
	cp -p "$policy" "$restore"
fi
cleanup() {
	if [ -n "$restore" ]; then
		mv -f "$restore" "$policy"
	else
		rm -f "$policy"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
printf '#!/bin/sh\nexit 101\n' >"$policy"
chmod 755 "$policy"

export DEBIAN_FRONTEND=noninteractive
if [ "${ASBB_APT_UPDATED:-0}" != 1 ]; then
	apt-get update -q
fi
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing
echo "provision: done"
