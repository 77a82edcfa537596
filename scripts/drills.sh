#!/usr/bin/env bash
# `make drills`: fault drills on the real binaries. Starts a PostgreSQL of
# its own under .data/drills (the drills run both Redis servers, the API and
# two workers themselves), builds the debug binaries (those `make test`
# builds) and runs target/debug/fanout-drills, which injects each fault
# while a writer posts and a reader reads, and fails if an acknowledged post
# is lost or shown twice, or a deleted or unfollowed one stays in a feed. Loopback only; it stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."

data=.data/drills
# Below the ephemeral port range, apart from run's, test's, fuzz's and bench's.
pg_port=${FANOUT_DRILLS_PG_PORT:-25436}

rm -rf "$data"
mkdir -p "$data"
scripts/services.sh up "$data" "$pg_port"
trap 'scripts/services.sh down "$data"' EXIT
# The same features as `make test` builds: reuses its binaries.
cargo build --workspace --all-targets
target/debug/fanout-drills --data "$data" --pg-port "$pg_port" --report "$data/report.md"
