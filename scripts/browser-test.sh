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

export FANOUT_JWT_SECRET=browser-test-secret-at-least-32-bytes
. scripts/test-stack.sh
test_stack_start "$data" "$pg_port" "$redis_port" "$api_port" "$target/debug"

status=0
(cd e2e/browser && FANOUT_BROWSER_BASE=$api npm test) || status=$?
if grep -q '"level":"ERROR"' "$data/api.log"; then
  echo "feed-api logged errors during the run:"
  grep '"level":"ERROR"' "$data/api.log" | head -20
  status=1
fi
exit $status
