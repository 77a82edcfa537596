#!/usr/bin/env bash
# End-to-end on kind: create a cluster, build and load the image, install the
# operator with Helm, apply the sample FeedCluster, wait for Ready, drive the
# REST API, push a backlog and watch the workers scale up and back down,
# delete the FeedCluster and check everything it owned is gone.
#
#   e2e/run.sh            (make e2e)   KEEP=1 keeps the cluster afterwards
#
# Needs docker (with a running engine), kind, kubectl, helm, curl and jq.
# Where one is missing it says so and skips: it never reports a pass it did
# not see.
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in docker kind kubectl helm curl jq; do
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

step "FeedCluster"
kubectl apply -f crds/samples/feedcluster.yaml
kubectl wait fc/demo --for=condition=Ready --timeout=10m || fail "the FeedCluster did not become Ready"
kubectl get fc demo

step "REST API"
json='content-type: application/json'
for i in $(seq 60); do curl -sf $api/readyz >/dev/null && break; sleep 2; done
signup() { curl -sf $api/users -H "$json" -d "{\"handle\":\"$1\",\"password\":\"correct horse\"}" | jq -r .id; }
login() { curl -sf $api/auth/login -H "$json" -d "{\"handle\":\"$1\",\"password\":\"correct horse\"}" | jq -r .access_token; }
alice_id=$(signup alice); signup bob >/dev/null
alice=$(login alice); bob=$(login bob)
curl -sf -X POST $api/users/$alice_id/follow -H "authorization: Bearer $bob" >/dev/null
post=$(curl -sf $api/posts -H "authorization: Bearer $alice" -H "$json" -d '{"content":"hello from kind"}' | jq -r .id)
for i in $(seq 50); do
  [ "$(curl -sf $api/feed -H "authorization: Bearer $bob" | jq -r '.items[0].id')" = "$post" ] && break
  sleep 0.2
  [ "$i" = 50 ] && fail "bob's feed never showed alice's post"
done
echo "bob's feed has alice's post"

step "backlog: workers scale up"
workers() { kubectl get deploy demo-workers -o jsonpath='{.spec.replicas}'; }
# 20,000 likes of a post that does not exist: real work for the workers
# (each re-reads PostgreSQL), and a backlog the autoscaler must drain.
nil=00000000-0000-7000-8000-000000000000
event="{\"event_id\":\"$nil\",\"event_type\":\"post.liked\",\"version\":1,\"occurred_at\":\"2026-01-01T00:00:00Z\",\"correlation_id\":null,\"actor_id\":\"$nil\",\"payload\":{\"post_id\":\"$nil\",\"user_id\":\"$nil\"}}"
for i in $(seq 20000); do printf "XADD events:post.liked * event '%s'\n" "$event"; done \
  | kubectl exec -i statefulset/demo-redis -- redis-cli > /tmp/fanout-e2e-xadd.log
added=$(grep -c -- '-' /tmp/fanout-e2e-xadd.log || true)
[ "$added" -ge 20000 ] || fail "only $added of 20000 entries were added: $(grep -v -- '-' /tmp/fanout-e2e-xadd.log | head -3)"
for i in $(seq 60); do [ "$(workers)" -gt 1 ] && break; sleep 2; done
[ "$(workers)" -gt 1 ] || fail "workers did not scale up"
echo "workers: $(workers)"; kubectl get fc demo -o jsonpath='{.status.lastScale.reason}'; echo

step "backlog drained: workers scale down"
for i in $(seq 120); do [ "$(workers)" -le 1 ] && break; sleep 5; done
[ "$(workers)" -le 1 ] || fail "workers did not scale back down"
echo "workers: $(workers)"

step "delete: nothing left behind"
kubectl delete fc demo --wait
for i in $(seq 60); do
  left=$(kubectl get deploy,sts,svc,cm,job,pvc -l app.kubernetes.io/instance=demo -o name | wc -l)
  [ "$left" = 0 ] && break; sleep 2
done
[ "$left" = 0 ] || fail "objects of the deleted FeedCluster remain"
echo "PASSED: e2e on kind"
