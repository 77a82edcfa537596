# Fanout: `make run` starts the local stack, `make test` runs every test.
# Both install what is missing (redis-server, PostgreSQL) on Debian/Ubuntu.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c

DATA            ?= .data
# Below the ephemeral port range (32768-60999), where a client socket could
# already hold the port.
TEST_PG_PORT    ?= 25433
TEST_DATABASE_URL := postgres://fanout@127.0.0.1:$(TEST_PG_PORT)/fanout
# The Kubernetes control plane the operator's tests run against.
CLUSTER_DIR     := $(DATA)/cluster

# Builds use the committed query metadata in .sqlx/: no database needed.
export SQLX_OFFLINE := true
# Tools `make deps` installs for the tests (helm).
export PATH := $(CURDIR)/.tools/bin:$(PATH)

.PHONY: monitoring-check run test fuzz-api browser-test scale-out bench drills autoscale-lab e2e deps lint fmt generate sqlx-prepare stop clean \
	control-plane cluster-up cluster-down

## run: PostgreSQL + Redis + feed-api on 127.0.0.1:8080 + two feed-workers (Ctrl-C stops all)
run: deps
	scripts/run.sh

# The tests run a second time against a 3-primary Redis Cluster (each test
# its own, see testkit): the feed store's, the workers' and the API's end to
# end. The autoscaling tests stay on one server: they time real workers.
REDIS_CLUSTER_TESTS := --test feed_store --test probe --test consumer --test removals \
	--test celebrities --test feed --test feed_redis --test outage --test recovery \
	--test stream --test warm_reads --test ops

## test: start a test PostgreSQL and a Kubernetes control plane, then run every test (each test starts its own redis-server), the feed and end-to-end tests again on a Redis Cluster, the web client's in headless Chromium last
test: deps monitoring-check
	scripts/services.sh up $(DATA)/test $(TEST_PG_PORT)
	scripts/control-plane.sh up $(CLUSTER_DIR)
	@# The binaries some tests run as processes (kubectl-fanout), built from
	@# this tree: cargo test builds only its own test harnesses.
	cargo build --workspace --all-targets
	kubeconfig=$(CURDIR)/$(CLUSTER_DIR)/kubeconfig; \
	  if [ -f $$kubeconfig ]; then export FANOUT_TEST_KUBECONFIG=$$kubeconfig; fi; \
	  DATABASE_URL=$(TEST_DATABASE_URL) cargo test --workspace --all-targets --no-fail-fast
	DATABASE_URL=$(TEST_DATABASE_URL) cargo test --workspace --doc
	FANOUT_TEST_REDIS=cluster DATABASE_URL=$(TEST_DATABASE_URL) \
	  cargo test --workspace $(REDIS_CLUSTER_TESTS) --no-fail-fast
	scripts/browser-test.sh

## monitoring-check: promtool checks and unit-tests the chart's alert rules; the dashboards are JSON
monitoring-check: deps
	promtool check rules charts/fanout/monitoring/alerts.yaml
	promtool test rules charts/fanout/monitoring/alerts_test.yaml
	for dashboard in charts/fanout/monitoring/dashboards/*.json; do \
	  python3 -m json.tool $$dashboard >/dev/null || { echo "$$dashboard is not JSON" >&2; exit 1; }; \
	done

## control-plane: build kube-apiserver, kube-controller-manager, kube-scheduler, etcd and kwok into .tools/bin (needs Go)
control-plane:
	scripts/control-plane.sh build

## cluster-up: start that control plane on 127.0.0.1 (KUBECONFIG=.data/cluster/kubeconfig); cluster-down: stop it
cluster-up:
	scripts/control-plane.sh up $(CLUSTER_DIR)

cluster-down:
	scripts/control-plane.sh down $(CLUSTER_DIR)

## fuzz-api: Schemathesis against a running stack with a signed-in user (no 5xx, responses as documented)
fuzz-api: deps
	scripts/fuzz-api.sh

## scale-out: fan-out on one Redis and on a 3-primary Redis Cluster, side by side (docs/benchmarks.md, "Scale-out")
scale-out: deps
	cargo run --release -p fanout-bench --bin scale-out

## browser-test: the web client in headless Chromium against a stack of its own (screenshots and latency: e2e/browser/artifacts)
browser-test: deps
	scripts/browser-test.sh

## bench: write, fan-out, read and drain beside pgbench and redis-benchmark (QUICK=1: a 2-minute smoke run)
bench: deps
	scripts/bench.sh

## drills: kill and restart workers, the API, both Redis servers and PostgreSQL under load; fails if an acknowledged post is lost or doubled
drills: deps
	scripts/drills.sh

## autoscale-lab: every shipped trace through the autoscaler and the KEDA + HPA model: docs/autoscaling/ (tables, against the cost floor too, and plots)
autoscale-lab:
	FANOUT_REGENERATE=1 cargo test -p fanout-autoscale-lab --test lab --test against_the_floor
	cargo build -p fanout-autoscale-lab --bin autoscale-lab
	for trace in autoscale-lab/traces/*.csv; do \
	  name=$$(basename $$trace .csv); \
	  target/debug/autoscale-lab simulate --trace $$trace --autoscaling autoscale-lab/traces/autoscaling.yaml \
	    --start-delay 10 --service-rate 200 --initial-replicas 0 --baseline keda-hpa \
	    --out /dev/null --plot docs/autoscaling/$$name.png; \
	done
	mkdir -p docs/autoscaling/wide
	for trace in autoscale-lab/traces/wide/*.csv; do \
	  name=$$(basename $$trace .csv); \
	  target/debug/autoscale-lab simulate --trace $$trace --autoscaling autoscale-lab/traces/autoscaling.yaml \
	    --start-delay 10 --service-rate 200 --initial-replicas 0 --baseline keda-hpa --keda-sweep \
	    --out /dev/null --plot docs/autoscaling/wide/$$name.png --frontier docs/autoscaling/wide/$$name-frontier.png; \
	done

## e2e: the whole story on kind (needs docker, kind, kubectl, helm; skips, saying so, without them)
e2e:
	e2e/run.sh

## deps: install redis-server and PostgreSQL if missing
deps:
	scripts/install-deps.sh

## lint: formatting and clippy, as CI checks them
lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

fmt:
	cargo fmt --all

## generate: rewrite the generated artefacts (event JSON Schemas, OpenAPI, the CRD) from the code
generate:
	FANOUT_REGENERATE=1 cargo test -p feed-core --test generated
	FANOUT_REGENERATE=1 cargo test -p feed-api --test generated
	FANOUT_REGENERATE=1 cargo test -p fanout-operator --test crd

## sqlx-prepare: refresh .sqlx/ after changing a query (needs a database with the schema)
sqlx-prepare: deps
	scripts/services.sh up $(DATA)/test $(TEST_PG_PORT)
	scripts/sqlx-prepare.sh postgres://fanout@127.0.0.1:$(TEST_PG_PORT)

## stop: stop the PostgreSQL and Redis that run/test left running
stop:
	-scripts/services.sh down $(DATA)/run
	-scripts/services.sh down $(DATA)/test
	-scripts/services.sh down $(DATA)/fuzz
	-scripts/services.sh down $(DATA)/browser
	-scripts/services.sh down $(DATA)/bench
	-scripts/services.sh down $(DATA)/drills
	-scripts/control-plane.sh down $(CLUSTER_DIR)

clean: stop
	rm -rf $(DATA)
