#!/usr/bin/env bash
# Draws the chart's Feed and Workers dashboards without Grafana: a real
# Prometheus (Debian's package) scrapes a local stack (PostgreSQL, Redis,
# feed-api, two feed-workers) under a small load, then every panel's query
# is run on it and drawn in the dashboard's grid, into docs/monitoring/.
# Panels fed by the operator's autoscaler (per-stream backlog, freshness)
# stay empty here: that needs a cluster; tests check their metric names.
#
#   scripts/dashboard-preview.sh            # about 3 minutes
#   SECONDS_OF_LOAD=60 scripts/dashboard-preview.sh
set -euo pipefail
cd "$(dirname "$0")/.."

data=.data/preview
# Ports of their own, beside make run's and the tests'.
pg_port=25634
redis_port=26389
api_port=28380
worker_ports=(28381 28382)
prom_port=28390
load_seconds=${SECONDS_OF_LOAD:-150}
feedcluster=local/preview

# Debian's python3-matplotlib lives in the system Python, which may not be
# the first python3 on PATH.
py=python3
python3 -c "import matplotlib" 2>/dev/null || py=/usr/bin/python3
missing=()
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
$py -c "import matplotlib" 2>/dev/null || missing+=(python3-matplotlib)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

scripts/services.sh up "$data" "$pg_port" "$redis_port"
cargo build --bins -p feed-api -p feed-worker
pids=()
stop() {
  trap - INT TERM EXIT
  set +e
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null; done
  scripts/services.sh down "$data"
}
trap stop INT TERM EXIT

export FANOUT_DATABASE_URL="postgres://fanout@127.0.0.1:$pg_port/fanout"
export FANOUT_REDIS_URL="redis://127.0.0.1:$redis_port"
export FANOUT_JWT_SECRET=preview-secret-that-is-at-least-32-bytes
export FANOUT_LOG_FORMAT=json RUST_LOG=warn
# One address sends all the load.
export FANOUT_RATE_LIMIT_ADDRESS_PER_MIN=0
FANOUT_HTTP_ADDR=127.0.0.1:$api_port target/debug/feed-api --migrate >"$data/api.log" 2>&1 &
pids+=($!)
for i in 0 1; do
  FANOUT_CONSUMER_NAME="worker-$i" FANOUT_WORKER_HTTP_ADDR="127.0.0.1:${worker_ports[$i]}" \
    target/debug/feed-worker >"$data/worker-$i.log" 2>&1 &
  pids+=($!)
done

# A fresh database: only this run in the plots.
rm -rf "$data/prometheus"
mkdir -p "$data/prometheus"
cat >"$data/prometheus.yml" <<YAML
global:
  scrape_interval: 2s
scrape_configs:
  - job_name: api
    static_configs:
      - targets: ['127.0.0.1:$api_port']
        labels: {feedcluster: '$feedcluster'}
  - job_name: workers
    static_configs:
      - targets: ['127.0.0.1:${worker_ports[0]}', '127.0.0.1:${worker_ports[1]}']
        labels: {feedcluster: '$feedcluster'}
YAML
prometheus --config.file="$data/prometheus.yml" --storage.tsdb.path="$data/prometheus" \
  --web.listen-address="127.0.0.1:$prom_port" >"$data/prometheus.log" 2>&1 &
pids+=($!)

for url in "http://127.0.0.1:$api_port/readyz" "http://127.0.0.1:$prom_port/-/ready"; do
  for _ in $(seq 120); do curl -fs "$url" >/dev/null && break; sleep 0.5; done
  curl -fs "$url" >/dev/null || { echo "error: $url never answered" >&2; exit 1; }
done

python3 scripts/dashboard-preview.py load "http://127.0.0.1:$api_port" "$load_seconds"
# Two more scrapes, so the last of the load is in.
sleep 5
mkdir -p docs/monitoring
minutes=$(( (load_seconds + 30) / 60 + 1 ))
for dashboard in feed workers; do
  $py scripts/dashboard-preview.py plot "http://127.0.0.1:$prom_port" \
    "charts/fanout/monitoring/dashboards/$dashboard.json" "docs/monitoring/$dashboard.png" \
    "$minutes" "$feedcluster"
done
