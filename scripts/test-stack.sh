# Sourced by the scripts that test a running stack of their own
# (scripts/fuzz-api.sh, scripts/browser-test.sh), not run: after
# `scripts/services.sh up DATA PG_PORT REDIS_PORT` and a build,
#
#   test_stack_start DATA PG_PORT REDIS_PORT API_PORT BIN_DIR
#
# starts feed-api on API_PORT and a feed-worker on the port after it, on a
# fresh database and an empty Redis, logging to DATA/{api,worker}.log, and
# waits until the API is ready. On exit both stop and the services go down.
# Set FANOUT_JWT_SECRET (and any other FANOUT_ settings) before calling.

test_stack_pids=()
test_stack_data=

test_stack_stop() {
  for pid in "${test_stack_pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${test_stack_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  [ -z "$test_stack_data" ] || scripts/services.sh down "$test_stack_data"
}

test_stack_start() {
  local data=$1 pg_port=$2 redis_port=$3 api_port=$4 bin=$5
  test_stack_data=$data
  export FANOUT_DATABASE_URL="postgres://fanout@127.0.0.1:$pg_port/fanout"
  export FANOUT_REDIS_URL="redis://127.0.0.1:$redis_port"
  export FANOUT_LOG_FORMAT=json RUST_LOG=warn
  # A fresh database each run, so a run is reproducible.
  psql -q "postgres://fanout@127.0.0.1:$pg_port/postgres" \
    -c "DROP DATABASE IF EXISTS fanout" -c "CREATE DATABASE fanout"
  redis-cli -p "$redis_port" FLUSHALL >/dev/null
  trap test_stack_stop EXIT
  FANOUT_HTTP_ADDR=127.0.0.1:$api_port "$bin/feed-api" --migrate > "$data/api.log" 2>&1 &
  test_stack_pids+=($!)
  FANOUT_WORKER_HTTP_ADDR=127.0.0.1:$((api_port + 1)) "$bin/feed-worker" > "$data/worker.log" 2>&1 &
  test_stack_pids+=($!)
  local api=http://127.0.0.1:$api_port
  for _ in $(seq 100); do curl -sf "$api/readyz" >/dev/null && break; sleep 0.2; done
  curl -sf "$api/readyz" >/dev/null || { cat "$data/api.log"; echo "feed-api did not become ready"; exit 1; }
}
