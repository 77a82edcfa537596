#!/usr/bin/env bash
# `make run`: the whole local stack in one terminal. PostgreSQL and Redis
# under .data/run, feed-api on $FANOUT_HTTP_ADDR (127.0.0.1:8080) and two
# feed-workers, their logs prefixed with their names. Ctrl-C stops it all.
set -euo pipefail
cd "$(dirname "$0")/.."

data=.data/run
# Below the ephemeral port range, so no client socket holds them already.
pg_port=${FANOUT_RUN_PG_PORT:-25432}
redis_port=${FANOUT_RUN_REDIS_PORT:-26379}
feed_redis_port=${FANOUT_RUN_FEED_REDIS_PORT:-26378}
profile=${PROFILE:-debug}

scripts/services.sh up "$data" "$pg_port" "$redis_port" "$feed_redis_port"

echo "building feed-api and feed-worker ($profile) ..."
if [ "$profile" = release ]; then cargo build --release --bins -p feed-api -p feed-worker
else cargo build --bins -p feed-api -p feed-worker; fi
bin=target/$profile

export FANOUT_DATABASE_URL="postgres://fanout@127.0.0.1:$pg_port/fanout"
export FANOUT_REDIS_URL="redis://127.0.0.1:$redis_port"
export FANOUT_FEED_REDIS_URL="redis://127.0.0.1:$feed_redis_port"
export FANOUT_HTTP_ADDR=${FANOUT_HTTP_ADDR:-127.0.0.1:8080}
export FANOUT_LOG_FORMAT=${FANOUT_LOG_FORMAT:-pretty}
# A signing key made once per data folder, so tokens survive a restart.
[ -s "$data/jwt-secret" ] || od -An -tx1 -N32 /dev/urandom | tr -d ' \n' > "$data/jwt-secret"
export FANOUT_JWT_SECRET=${FANOUT_JWT_SECRET:-$(cat "$data/jwt-secret")}

pids=()
stop() {
  trap - INT TERM EXIT
  # Finish the clean-up even if whatever reads our output is gone.
  trap '' PIPE
  set +e
  echo "stopping ..."
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  scripts/services.sh down "$data"
  echo "stopped."
}
trap stop INT TERM EXIT

# Each process's lines get its name. The prefixing filters ignore Ctrl-C, so
# the shutdown logs still show; they end when their process does.
prefix() { trap '' INT TERM; exec sed -u "s/^/$1 /"; }
"$bin/feed-api" --migrate > >(prefix "[api]     ") 2>&1 &
pids+=($!)
for i in 1 2; do
  FANOUT_CONSUMER_NAME="worker-$i" FANOUT_WORKER_HTTP_ADDR="127.0.0.1:909$i" \
    "$bin/feed-worker" > >(prefix "[worker-$i]") 2>&1 &
  pids+=($!)
done

echo "Fanout is starting on http://$FANOUT_HTTP_ADDR (workers' metrics on :9091 and :9092). Ctrl-C stops it."
# Stop everything as soon as any process exits.
wait -n "${pids[@]}" || true
