#!/usr/bin/env bash
# `make browser-test`: the web client in headless Chromium (Debian's
# `chromium`, driven by playwright-core from npm) against a stack of its
# own: PostgreSQL and Redis under .data/browser, feed-api and a feed-worker
# on their own ports. Screenshots and the measured post → screen latency go
# to e2e/browser/artifacts/.
set -euo pipefail
cd "$(dirname "$0")/.."

data=.data/browser
# Below the ephemeral port range, apart from the other scripts' ports.
pg_port=${FANOUT_BROWSER_PG_PORT:-25437}
redis_port=${FANOUT_BROWSER_REDIS_PORT:-26383}
api_port=${FANOUT_BROWSER_API_PORT:-28095}
target=${CARGO_TARGET_DIR:-target}

command -v chromium >/dev/null 2>&1 || { echo "error: chromium missing; run scripts/install-deps.sh" >&2; exit 1; }
(cd e2e/browser && { [ -d node_modules/playwright-core ] || npm ci --no-audit --no-fund --silent; })

scripts/services.sh up "$data" "$pg_port" "$redis_port"
cargo build --bins -p feed-api -p feed-worker
api=http://127.0.0.1:$api_port

export FANOUT_DATABASE_URL="postgres://fanout@127.0.0.1:$pg_port/fanout"
export FANOUT_REDIS_URL="redis://127.0.0.1:$redis_port"
export FANOUT_JWT_SECRET=browser-test-secret-at-least-32-bytes
export FANOUT_LOG_FORMAT=json RUST_LOG=warn

# A fresh database each run.
psql -q "postgres://fanout@127.0.0.1:$pg_port/postgres" \
  -c "DROP DATABASE IF EXISTS fanout" -c "CREATE DATABASE fanout"
redis-cli -p "$redis_port" FLUSHALL >/dev/null

pids=()
stop() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  scripts/services.sh down "$data"
}
trap stop EXIT
FANOUT_HTTP_ADDR=127.0.0.1:$api_port "$target/debug/feed-api" --migrate > "$data/api.log" 2>&1 &
pids+=($!)
FANOUT_WORKER_HTTP_ADDR=127.0.0.1:$((api_port + 1)) "$target/debug/feed-worker" > "$data/worker.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -sf "$api/readyz" >/dev/null && break; sleep 0.2; done
curl -sf "$api/readyz" >/dev/null || { cat "$data/api.log"; echo "feed-api did not become ready"; exit 1; }

status=0
(cd e2e/browser && FANOUT_BROWSER_BASE=$api npm test) || status=$?
if grep -q '"level":"ERROR"' "$data/api.log"; then
  echo "feed-api logged errors during the run:"
  grep '"level":"ERROR"' "$data/api.log" | head -20
  status=1
fi
exit $status
