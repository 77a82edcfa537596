#!/usr/bin/env bash
# Draws the chart's dashboards without Grafana: a real Prometheus (Debian's
# package) scrapes a local stack (PostgreSQL, Redis, feed-api, two
# feed-workers) under a small load, then every panel's query is run on it
# and drawn in the dashboard's grid, into docs/monitoring/.
#
# With the control plane binaries built (make control-plane), the operator
# runs too: a control plane of its own (scripts/control-plane.sh, so its
# ports must be free: make cluster-down first), the chart's CRD, and a
# FeedCluster whose external Redis is the local stack's, so the autoscaler
# reads the very streams the workers consume. Halfway, the workers are
# stopped for a while (SIGSTOP), so a backlog builds, the autoscaler scales
# up (kwok's pods), and the workers then drain it. Without those binaries
# the operator's dashboard and the panels it feeds stay empty.
#
#   scripts/dashboard-preview.sh            # about 4 minutes
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
operator_port=28383
load_seconds=${SECONDS_OF_LOAD:-150}
# The FeedCluster the operator watches; the API's and workers' series get
# the same label, as the chart's PodMonitors give them.
namespace=preview
feedcluster=$namespace/demo
with_operator=false
[ -x .tools/bin/kube-apiserver ] && [ -x .tools/bin/kubectl ] && [ -x .tools/bin/helm ] && with_operator=true

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

# A fresh stack each time: nothing from an earlier run in the plots.
scripts/services.sh down "$data" >/dev/null 2>&1 || true
rm -rf "$data"
scripts/services.sh up "$data" "$pg_port" "$redis_port"
cargo build --bins -p feed-api -p feed-worker -p fanout-operator
pids=()
stop() {
  trap - INT TERM EXIT
  set +e
  for pid in "${pids[@]}"; do kill -CONT "$pid" 2>/dev/null; kill -TERM "$pid" 2>/dev/null; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null; done
  scripts/services.sh down "$data"
  if $with_operator; then scripts/control-plane.sh down "$data/cluster"; fi
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
workers=()
for i in 0 1; do
  FANOUT_CONSUMER_NAME="worker-$i" FANOUT_WORKER_HTTP_ADDR="127.0.0.1:${worker_ports[$i]}" \
    target/debug/feed-worker >"$data/worker-$i.log" 2>&1 &
  pids+=($!)
  workers+=($!)
done

operator_scrape=""
if $with_operator; then
  scripts/control-plane.sh up "$data/cluster"
  kubeconfig=$data/cluster/kubeconfig
  k() { .tools/bin/kubectl --kubeconfig "$kubeconfig" "$@"; }
  .tools/bin/helm upgrade --install fanout charts/fanout -n fanout-system --create-namespace \
    --kubeconfig "$kubeconfig" --set image.repository=fanout --set image.tag=preview >/dev/null
  k wait crd/feedclusters.fanout.dev --for=condition=Established --timeout=60s >/dev/null
  k create namespace "$namespace" >/dev/null
  k -n "$namespace" create secret generic postgres --from-literal=url="$FANOUT_DATABASE_URL" >/dev/null
  k -n "$namespace" create secret generic redis --from-literal=url="$FANOUT_REDIS_URL" >/dev/null
  for _ in $(seq 60); do k -n "$namespace" get serviceaccount default >/dev/null 2>&1 && break; sleep 1; done
  k apply -f - >/dev/null <<YAML
apiVersion: fanout.dev/v1alpha1
kind: FeedCluster
metadata: {name: demo, namespace: $namespace}
spec:
  workers: {minReplicas: 1, maxReplicas: 6}
  autoscaling:
    pollIntervalSeconds: 2
    drainSeconds: 10
    scaleUp: {stabilizationWindowSeconds: 0, maxStep: 4}
    scaleDown: {stabilizationWindowSeconds: 10, maxStep: 2}
  postgres: {external: {secretName: postgres}}
  redis: {external: {secretName: redis}}
YAML
  KUBECONFIG=$kubeconfig FANOUT_WATCH_NAMESPACE=$namespace POD_NAMESPACE=fanout-system \
    POD_NAME=preview FANOUT_LEADER_ELECTION=false FANOUT_OPERATOR_HTTP_ADDR=127.0.0.1:$operator_port \
    FANOUT_OPERATOR_IMAGE=fanout:preview RUST_LOG=info target/debug/fanout-operator >"$data/operator.log" 2>&1 &
  pids+=($!)
  operator_scrape="  - job_name: operator
    static_configs:
      - targets: ['127.0.0.1:$operator_port']"
fi

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
$operator_scrape
YAML
prometheus --config.file="$data/prometheus.yml" --storage.tsdb.path="$data/prometheus" \
  --web.listen-address="127.0.0.1:$prom_port" >"$data/prometheus.log" 2>&1 &
pids+=($!)

for url in "http://127.0.0.1:$api_port/readyz" "http://127.0.0.1:$prom_port/-/ready"; do
  for _ in $(seq 120); do curl -fs "$url" >/dev/null && break; sleep 0.5; done
  curl -fs "$url" >/dev/null || { echo "error: $url never answered" >&2; exit 1; }
done

python3 scripts/dashboard-preview.py load "http://127.0.0.1:$api_port" "$load_seconds" &
load=$!
# A third of the way in, the workers stop for a third of the run: a backlog
# builds (and the autoscaler scales up), then they drain it.
sleep $((load_seconds / 3))
kill -STOP "${workers[@]}"
sleep $((load_seconds / 3))
kill -CONT "${workers[@]}"
wait $load
# Two more scrapes, so the last of the load is in.
sleep 5
mkdir -p docs/monitoring
minutes=$(( (load_seconds + 30) / 60 + 1 ))
dashboards=(feed workers)
if $with_operator; then dashboards+=(operator); fi
for dashboard in "${dashboards[@]}"; do
  $py scripts/dashboard-preview.py plot "http://127.0.0.1:$prom_port" \
    "charts/fanout/monitoring/dashboards/$dashboard.json" "docs/monitoring/$dashboard.png" \
    "$minutes" "$feedcluster"
done
