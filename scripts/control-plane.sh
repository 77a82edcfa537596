#!/usr/bin/env bash
# A real Kubernetes control plane on loopback for the operator's tests:
# etcd, kube-apiserver (RBAC, client certificates, service-account tokens),
# kube-controller-manager, kube-scheduler and kwok, whose fake Node turns
# scheduled pods Running and Ready (and Job pods Succeeded). No kubelet: pods
# never run; the data plane runs as local processes beside it.
#
#   scripts/control-plane.sh build       # go build the binaries into .tools/bin
#   scripts/control-plane.sh up DIR      # start everything (idempotent); DIR/kubeconfig is admin
#   scripts/control-plane.sh down DIR    # stop everything, delete DIR
#   scripts/control-plane.sh replaces V  # print go.mod's replace block for kubernetes V
#
# The binaries (and a kubectl of the same version) come from the Go module
# in controlplane/ (pinned versions, go.sum committed), built with Go's own
# caches: a cold build takes minutes, a warm one seconds. Without a Go toolchain new enough for that module,
# `build` and `up` print SKIPPED and why, and exit 0 leaving no kubeconfig:
# the tests then skip too, unless FANOUT_REQUIRE_CONTROL_PLANE=1 (CI) makes
# that a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
bin="$root/.tools/bin"
module="$root/controlplane"

# Ports below the ephemeral range (32768-60999), beside the test
# PostgreSQL's 25433, so no client socket already holds them.
ETCD_PORT=${ETCD_PORT:-25379}
ETCD_PEER_PORT=${ETCD_PEER_PORT:-25380}
APISERVER_PORT=${APISERVER_PORT:-25443}
CONTROLLER_MANAGER_PORT=${CONTROLLER_MANAGER_PORT:-25257}
SCHEDULER_PORT=${SCHEDULER_PORT:-25259}
# Service IPs are fake (nothing routes them); the first is the API's own.
SERVICE_CIDR=10.96.0.0/16
# Processes, in the order they start.
BINARIES=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)

skip() {
  if [ "${FANOUT_REQUIRE_CONTROL_PLANE:-}" = 1 ]; then
    echo "error: the control plane is required here (FANOUT_REQUIRE_CONTROL_PLANE=1), but $*" >&2
    exit 1
  fi
  echo "SKIPPED: the control plane: $*" >&2
  exit 0
}

# The Go version controlplane/go.mod asks for, and whether `go` has it.
check_go() {
  command -v go >/dev/null 2>&1 || skip "no Go toolchain on PATH (install Go $(go_wanted) or newer)"
  local have want
  have=$(go env GOVERSION | sed 's/^go//')
  want=$(go_wanted)
  if [ "$(printf '%s\n%s\n' "$want" "$have" | sort -V | head -1)" != "$want" ]; then
    skip "Go $have is older than the $want that controlplane/go.mod needs"
  fi
}
go_wanted() { awk '$1 == "go" { print $2; exit }' "$module/go.mod"; }

version_of() { awk -v m="$1" '$1 == m { print $2; exit }' "$module/go.mod"; }

build() {
  check_go
  local k8s major minor ldflags
  k8s=$(version_of k8s.io/kubernetes)
  major=$(echo "${k8s#v}" | cut -d. -f1)
  minor=$(echo "${k8s#v}" | cut -d. -f2)
  # The version the binaries report (`kubectl version`, discovery), which
  # clients that parse it need; without it they say v0.0.0-master.
  ldflags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$k8s -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
  done
  mkdir -p "$bin"
  local started=$SECONDS
  echo "building the control plane ($k8s) into .tools/bin ..."
  (cd "$module" && CGO_ENABLED=0 GOFLAGS=-mod=readonly go build -trimpath -ldflags "$ldflags" -o "$bin/" \
    k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler \
    k8s.io/kubernetes/cmd/kubectl \
    sigs.k8s.io/kwok/cmd/kwok \
    ./cmd/etcd)
  echo "built in $((SECONDS - started)) s"
}

replaces() {
  local version=${1:?kubernetes version, e.g. v1.36.3} mod staging
  mod=$(cd "$module" && go mod download -json "k8s.io/kubernetes@$version" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  staging="v0.${version#v1.}"
  echo "replace ("
  sed -nE "s#^\s*(k8s\.io/\S+) => \./staging/.*#\t\1 => \1 $staging#p" "$mod"
  echo ")"
}

# --- PKI: a throwaway CA, serving and client certificates, SA keys --------

pki() {
  local pki=$1
  [ -f "$pki/admin.crt" ] && return
  mkdir -p "$pki"
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=fanout-test-ca" \
    -keyout "$pki/ca.key" -out "$pki/ca.crt" 2>/dev/null
  # The API server's serving certificate: loopback, and the names
  # in-cluster clients use (its Service takes the first IP of the range).
  cert "$pki" apiserver "/CN=kube-apiserver" \
    "subjectAltName=IP:127.0.0.1,DNS:localhost,IP:10.96.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local" \
    serverAuth
  # Cluster administrator (system:masters bypasses RBAC): the test harness,
  # the controller-manager, the scheduler and kwok. The operator under test
  # never uses it; it gets a token of the chart's ServiceAccount.
  cert "$pki" admin "/O=system:masters/CN=fanout-admin" "" clientAuth
  # One key pair signs and verifies service-account tokens.
  openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
  openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
}

cert() {
  local pki=$1 name=$2 subject=$3 san=$4 usage=$5 ext
  ext=$(mktemp)
  {
    echo "basicConstraints=CA:FALSE"
    echo "keyUsage=digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$usage"
    [ -z "$san" ] || echo "$san"
  } >"$ext"
  openssl req -newkey rsa:2048 -nodes -subj "$subject" \
    -keyout "$pki/$name.key" -out "$pki/$name.csr" 2>/dev/null
  openssl x509 -req -in "$pki/$name.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
    -CAcreateserial -days 30 -extfile "$ext" -out "$pki/$name.crt" 2>/dev/null
  rm -f "$ext" "$pki/$name.csr"
}

kubeconfig() {
  local dir=$1 pki=$1/pki
  cat >"$dir/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: fanout-test
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority: $pki/ca.crt
users:
- name: admin
  user:
    client-certificate: $pki/admin.crt
    client-key: $pki/admin.key
contexts:
- name: fanout-test
  context: {cluster: fanout-test, user: admin}
current-context: fanout-test
EOF
}

# --- processes -------------------------------------------------------------

start() {
  local dir=$1 name=$2
  shift 2
  if [ -f "$dir/run/$name.pid" ] && kill -0 "$(cat "$dir/run/$name.pid")" 2>/dev/null; then
    return
  fi
  # A session of its own, so `down` can stop it and anything it started.
  setsid "$bin/$name" "$@" >"$dir/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$dir/run/$name.pid"
}

wait_for() {
  local what=$1 limit=$2 log=$3
  shift 3
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then
      echo "error: $what not ready after ${limit}s; the end of $log:" >&2
      tail -30 "$log" >&2
      exit 1
    fi
    sleep 0.5
  done
}

kctl() { "$bin/kubectl" --kubeconfig "$dir/kubeconfig" "$@"; }

up() {
  dir=$(mkdir -p "${1:?data folder}" && cd "$1" && pwd)
  check_go
  # kubectl too: the tests use one of the same version (a system kubectl
  # may be outside the supported skew).
  for b in "${BINARIES[@]}" kubectl; do
    [ -x "$bin/$b" ] || { build; break; }
  done
  local started=$SECONDS
  mkdir -p "$dir/logs" "$dir/run" "$dir/etcd" "$dir/kwok"
  pki "$dir/pki"
  kubeconfig "$dir"
  local pki=$dir/pki

  # Tests need no durability: etcd skips fsync.
  start "$dir" etcd --name fanout-test --data-dir "$dir/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "fanout-test=http://127.0.0.1:$ETCD_PEER_PORT" \
    --listen-metrics-urls "" \
    --unsafe-no-fsync --quota-backend-bytes 1073741824 --log-level warn
  wait_for etcd 30 "$dir/logs/etcd.log" curl -sf "http://127.0.0.1:$ETCD_PORT/health"

  start "$dir" kube-apiserver \
    --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$APISERVER_PORT" \
    --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
    --client-ca-file "$pki/ca.crt" \
    --authorization-mode RBAC \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$pki/sa.pub" \
    --service-account-signing-key-file "$pki/sa.key" \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --allow-privileged \
    --audit-policy-file "$module/audit-policy.yaml" \
    --audit-log-path "$dir/audit.log" --audit-log-maxsize 100 \
    --profiling=false
  wait_for kube-apiserver 60 "$dir/logs/kube-apiserver.log" kctl get --raw /readyz

  start "$dir" kube-controller-manager \
    --kubeconfig "$dir/kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$CONTROLLER_MANAGER_PORT" \
    --authentication-kubeconfig "$dir/kubeconfig" --authorization-kubeconfig "$dir/kubeconfig" \
    --controllers '*' \
    --service-account-private-key-file "$pki/sa.key" \
    --root-ca-file "$pki/ca.crt" \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --leader-elect=false \
    --profiling=false
  start "$dir" kube-scheduler \
    --kubeconfig "$dir/kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$SCHEDULER_PORT" \
    --authentication-kubeconfig "$dir/kubeconfig" --authorization-kubeconfig "$dir/kubeconfig" \
    --leader-elect=false \
    --profiling=false
  # No --server-address: kwok then opens no port at all (it would serve
  # an unauthenticated /debug/pprof). KWOK_WORKDIR keeps it from reading a
  # ~/.kwok/kwok.yaml of the user's.
  KWOK_WORKDIR="$dir/kwok" start "$dir" kwok \
    --kubeconfig "$dir/kubeconfig" \
    --config "$module/kwok/stages.yaml" \
    --manage-nodes-with-annotation-selector kwok.x-k8s.io/node=fake

  kctl apply --server-side -f "$module/kwok/node.yaml" >/dev/null
  wait_for "the kwok Node" 60 "$dir/logs/kwok.log" \
    kctl wait node/kwok-node-0 --for=condition=Ready --timeout=1s
  # The controller-manager makes each namespace's default ServiceAccount;
  # pods are refused until it exists.
  wait_for kube-controller-manager 60 "$dir/logs/kube-controller-manager.log" \
    kctl get serviceaccount default -n default
  echo "control plane up in $((SECONDS - started)) s: KUBECONFIG=$dir/kubeconfig"
}

# Stops the named processes: SIGTERM, then SIGKILL to whatever is left
# after 5 s, with anything it started.
stop() {
  local dir=$1 name pid pids=()
  shift
  for name in "$@"; do
    [ -f "$dir/run/$name.pid" ] || continue
    pid=$(cat "$dir/run/$name.pid")
    kill -TERM -- "-$pid" 2>/dev/null && pids+=("$pid")
    rm -f "$dir/run/$name.pid"
  done
  for _ in $(seq 50); do
    local alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ $alive = 1 ] || break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || true; done
}

down() {
  local dir=${1:?data folder}
  [ -d "$dir" ] || return 0
  # etcd last: the API server shuts down gracefully only while it answers.
  stop "$dir" kwok kube-scheduler kube-controller-manager kube-apiserver
  stop "$dir" etcd
  rm -rf "$dir"
}

case "${1:-}" in
  build) build ;;
  up) up "${2:-}" ;;
  down) down "${2:-}" ;;
  replaces) replaces "${2:-}" ;;
  *)
    echo "usage: $0 build | up DIR | down DIR | replaces KUBERNETES_VERSION" >&2
    exit 2
    ;;
esac
