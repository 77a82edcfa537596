#!/usr/bin/env bash
# End-to-end on kind. This script makes the world: a kind cluster, the image
# built and loaded, the operator installed with Helm. The Rust test
# operator/tests/e2e.rs then tells the story against it: apply the sample
# FeedCluster, wait for Ready, drive the REST API, see a deleted child come
# back, push a backlog and watch the workers scale up and back down, delete
# the FeedCluster and check everything it owned is gone.
#
#   e2e/run.sh            (make e2e)   KEEP=1 keeps the cluster afterwards
#
# Needs docker (with a running engine), kind, kubectl, helm and cargo.
# Where one is missing it says so and skips: it never reports a pass it did
# not see.
set -euo pipefail
cd "$(dirname "$0")/.."
PATH="$PWD/.tools/bin:$PATH"

for tool in docker kind kubectl helm cargo; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "SKIPPED: e2e needs $tool, which is not installed here."
    exit 0
  fi
done
if ! docker info >/dev/null 2>&1; then
  echo "SKIPPED: e2e needs a running Docker engine (docker info fails)."
  exit 0
fi

# Its own cluster, so the run (and its clean-up) never touches the one a
# user made from kind-config.yaml.
cluster=fanout-e2e
tag="e2e-$(git rev-parse --short HEAD 2>/dev/null || date +%s)"
image="fanout:$tag"
api=http://localhost:8080
step() { printf '\n=== %s\n' "$*"; }
fail() { echo "FAILED: $*"; kubectl get all,fc -A 2>/dev/null | tail -40; exit 1; }
cleanup() { [ "${KEEP:-0}" = 1 ] || kind delete cluster --name "$cluster" >/dev/null 2>&1 || true; }
trap cleanup EXIT

step "cluster"
kind get clusters | grep -qx "$cluster" || kind create cluster --name "$cluster" --config kind-config.yaml --wait 120s

step "image $image"
docker build -t "$image" .
kind load docker-image "$image" --name "$cluster"

step "operator (Helm)"
helm upgrade --install fanout charts/fanout --namespace fanout-system --create-namespace \
  --set image.repository=fanout --set image.tag="$tag" --wait --timeout 5m

step "the story (operator/tests/e2e.rs)"
FANOUT_E2E_API=$api SQLX_OFFLINE=true \
  cargo test -p fanout-operator --test e2e -- --ignored --nocapture \
  || fail "the e2e test failed"
echo "PASSED: e2e on kind"
