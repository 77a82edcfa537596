#!/usr/bin/env bash
# `make bench`: Fanout against PostgreSQL's and Redis' own limits, in one
# run on this machine. Starts its own PostgreSQL and Redis under
# .data/bench, builds the release binaries, seeds a graph and runs the
# scenarios; writes bench/results/latest.json, and the table and plots of
# docs/benchmarks.md.
#
#   make bench              the full run (under 10 minutes)
#   make bench QUICK=1      a smoke run (under 2 minutes; numbers indicative)
#   PROFILE=debug           use debug binaries (CI's smoke run reuses the
#                           test build)
#   scripts/bench.sh --write-only [--rounds N]
#                           pgbench and the write scenario alone, N rounds
#                           (other arguments go to fanout-bench as well)
set -euo pipefail
cd "$(dirname "$0")/.."

data=.data/bench
# Below the ephemeral port range, apart from run's, test's and fuzz's.
pg_port=${FANOUT_BENCH_PG_PORT:-25435}
redis_port=${FANOUT_BENCH_REDIS_PORT:-26381}
feed_redis_port=${FANOUT_BENCH_FEED_REDIS_PORT:-26382}
profile=${PROFILE:-release}

scripts/services.sh up "$data" "$pg_port" "$redis_port" "$feed_redis_port"
trap 'scripts/services.sh down "$data"' EXIT

if [ "$profile" = release ]; then
  cargo build --release -p feed-api -p feed-worker -p fanout-bench
else
  # The same features as `make test` builds: reuses its binaries.
  cargo build --workspace --all-targets
fi
bin=target/$profile

args=(--bin-dir "$bin"
  --database-url "postgres://fanout@127.0.0.1:$pg_port/fanout"
  --redis-url "redis://127.0.0.1:$redis_port"
  --feed-redis-url "redis://127.0.0.1:$feed_redis_port")
if [ -n "${QUICK:-}" ]; then
  args+=(--quick --out "$data/quick.json")
else
  args+=(--docs)
fi
"$bin/fanout-bench" "${args[@]}" "$@"
