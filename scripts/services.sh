#!/usr/bin/env bash
# Starts and stops the local PostgreSQL and Redis that `make run` and
# `make test` use: plain processes under a data folder of the project, never
# the system services.
#
#   scripts/services.sh up   DIR PG_PORT [REDIS_PORT [FEED_REDIS_PORT]]   # start (idempotent)
#   scripts/services.sh down DIR                                           # stop
#
# Without REDIS_PORT only PostgreSQL starts (the tests start a redis-server
# of their own per test). FEED_REDIS_PORT adds a second Redis for the home
# feeds (FANOUT_FEED_REDIS_URL), a cache that keeps nothing on disk.
#
# PostgreSQL refuses to run as root; as root the cluster belongs to the
# `postgres` user (created if missing). Its superuser is `fanout`, trusted on
# loopback only: this is a development and test cluster.
set -euo pipefail

cmd=${1:?usage: services.sh up|down DIR [PG_PORT REDIS_PORT]}
dir=$(mkdir -p "${2:?data folder}" && cd "$2" && pwd)
pg_data="$dir/postgres"
redis_dir="$dir/redis"
feed_redis_dir="$dir/feed-redis"

pg_bin() {
  local name=$1
  if command -v "$name" >/dev/null 2>&1; then command -v "$name"; return; fi
  for d in /usr/lib/postgresql/*/bin; do
    if [ -x "$d/$name" ]; then echo "$d/$name"; return; fi
  done
  echo "error: $name not found; run scripts/install-deps.sh" >&2
  exit 1
}

as_pg_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

up() {
  local pg_port=${1:?PG_PORT} redis_port=${2:-} feed_redis_port=${3:-}
  mkdir -p "$redis_dir" "$feed_redis_dir"
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
    mkdir -p "$pg_data" && chown postgres: "$pg_data"
    # The postgres user must be able to reach its data folder.
    chmod o+x "$dir"
  else
    mkdir -p "$pg_data"
  fi
  chmod 700 "$pg_data"

  if [ ! -f "$pg_data/PG_VERSION" ]; then
    as_pg_owner "$(pg_bin initdb)" -D "$pg_data" -U fanout --auth=trust \
      --encoding=UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
      || { cat "$dir/initdb.log" >&2; exit 1; }
  fi
  if ! as_pg_owner "$(pg_bin pg_ctl)" -D "$pg_data" status >/dev/null 2>&1; then
    # fsync stays on: tests and benchmarks measure what production would do.
    # max_connections: every #[sqlx::test] opens its own pool.
    # pg_stat_statements: the bench counts the statements a read runs.
    as_pg_owner "$(pg_bin pg_ctl)" -D "$pg_data" -l "$pg_data/server.log" -w -t 60 start \
      -o "-p $pg_port -c listen_addresses=127.0.0.1 -c unix_socket_directories=$pg_data -c max_connections=300 -c shared_buffers=256MB -c shared_preload_libraries=pg_stat_statements" \
      >/dev/null || { tail -20 "$pg_data/server.log" >&2; exit 1; }
  fi
  as_pg_owner "$(pg_bin psql)" -h 127.0.0.1 -p "$pg_port" -U fanout -d postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname = 'fanout'" | grep -q 1 \
    || as_pg_owner "$(pg_bin createdb)" -h 127.0.0.1 -p "$pg_port" -U fanout fanout

  # Append-only file with fsync every second: a restart keeps the streams.
  [ -z "$redis_port" ] || redis_up "$redis_port" "$redis_dir" --appendonly yes --appendfsync everysec
  # Feeds are rebuilt from PostgreSQL: their Redis writes nothing to disk.
  [ -z "$feed_redis_port" ] || redis_up "$feed_redis_port" "$feed_redis_dir" --appendonly no
}

redis_up() {
  local port=$1 dir=$2
  shift 2
  redis-cli -p "$port" ping >/dev/null 2>&1 && return
  redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --save "" "$@" \
    --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log"
  for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  redis-cli -p "$port" ping >/dev/null
}

down() {
  if [ -f "$pg_data/postmaster.pid" ]; then
    as_pg_owner "$(pg_bin pg_ctl)" -D "$pg_data" -m fast -w stop >/dev/null || true
  fi
  for d in "$redis_dir" "$feed_redis_dir"; do
    if [ -f "$d/redis.pid" ]; then
      kill "$(cat "$d/redis.pid")" 2>/dev/null || true
      rm -f "$d/redis.pid"
    fi
  done
}

case "$cmd" in
  up) shift 2; up "$@" ;;
  down) down ;;
  *) echo "usage: services.sh up|down DIR [PG_PORT REDIS_PORT FEED_REDIS_PORT]" >&2; exit 2 ;;
esac
