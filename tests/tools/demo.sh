#!/usr/bin/env bash
# demo.sh - run the ASBB demo against a private PostgreSQL (`make demo`).
#
# The server lives in .asbb-dev/pg under the project and keeps running (and
# keeps its data) between runs; `make demo-stop` stops it and
# `rm -rf .asbb-dev` forgets everything. Arguments go to asbb-demo.
set -euo pipefail
cd "$(dirname "$0")/../.."
GO=${GO:-go}

dir="$PWD/.asbb-dev/pg"
ASBB_DATABASE_URL=$("$GO" run ./tests/tools/pgserver start -db asbb "$dir")
export ASBB_DATABASE_URL
echo "demo: PostgreSQL in .asbb-dev/pg, ASBB_DATABASE_URL=$ASBB_DATABASE_URL" >&2
echo "demo: psql \"\$ASBB_DATABASE_URL\" to look inside; make demo-stop to stop it" >&2

"$GO" run ./cmd/asbb-admin database migrate
exec "$GO" run ./cmd/asbb-demo "$@"
