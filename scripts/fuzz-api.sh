#!/usr/bin/env bash
# `make fuzz-api`: Schemathesis against a running stack. It starts its own
# PostgreSQL and Redis under .data/fuzz, feed-api and a feed-worker, signs a
# user up, and lets Schemathesis send what /openapi.json allows (and what it
# does not) with that user's token: every response must be a non-5xx that
# conforms to the document. Exits non-zero on any failure.
#
#   FUZZ_MAX_EXAMPLES (50) test cases per operation and phase; FUZZ_SEED
#   (fixed) makes a run reproducible; the report goes to .data/fuzz/report.
set -euo pipefail
cd "$(dirname "$0")/.."

data=.data/fuzz
# Below the ephemeral port range, apart from `make run`'s and `make test`'s.
pg_port=${FUZZ_PG_PORT:-25434}
redis_port=${FUZZ_REDIS_PORT:-26380}
api_port=${FUZZ_API_PORT:-28080}
max_examples=${FUZZ_MAX_EXAMPLES:-50}
seed=${FUZZ_SEED:-20261123}
SCHEMATHESIS=4.32.5

if ! python3 -c "import schemathesis, sys; sys.exit(schemathesis.__version__ != '$SCHEMATHESIS')" 2>/dev/null; then
  echo "installing schemathesis $SCHEMATHESIS (PyPI) ..."
  python3 -m pip install -q "schemathesis==$SCHEMATHESIS" 2>/dev/null \
    || python3 -m pip install -q --user --break-system-packages "schemathesis==$SCHEMATHESIS"
fi

scripts/services.sh up "$data" "$pg_port" "$redis_port"
# All targets: the same features as `make test` builds, so after it this
# reuses its binaries instead of building others.
cargo build --workspace --all-targets
api=http://127.0.0.1:$api_port

export FANOUT_JWT_SECRET=fuzz-secret-that-is-at-least-32-bytes
# The fuzzer sends hundreds of writes a second from one address: the limits
# would answer most of them 429 and hide what is behind.
export FANOUT_RATE_LIMIT_USER_PER_MIN=0 FANOUT_RATE_LIMIT_ADDRESS_PER_MIN=0
export FANOUT_LOGIN_ATTEMPTS_PER_ADDRESS_PER_MIN=0 FANOUT_LOGIN_ATTEMPTS_PER_HANDLE=0

. scripts/test-stack.sh
test_stack_start "$data" "$pg_port" "$redis_port" "$api_port" target/debug

json='content-type: application/json'
credentials='{"handle":"fuzzer","password":"correct horse battery"}'
curl -sf "$api/users" -H "$json" -d "$credentials" >/dev/null
token=$(curl -sf "$api/auth/login" -H "$json" -d "$credentials" \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')
# Something to find: a post of the fuzzer's own.
curl -sf "$api/posts" -H "$json" -H "authorization: Bearer $token" -d '{"content":"hello"}' >/dev/null

status=0
st --config-file scripts/schemathesis.toml run "$api/openapi.json" \
  --header "Authorization: Bearer $token" \
  --checks all \
  --max-examples "$max_examples" \
  --seed "$seed" \
  --generation-database none \
  --workers 2 \
  --request-timeout 10 \
  --report junit,ndjson --report-dir "$data/report" \
  --no-color || status=$?

if grep -q '"level":"ERROR"' "$data/api.log"; then
  echo "feed-api logged errors during the run:"
  grep '"level":"ERROR"' "$data/api.log" | head -20
  status=1
fi
exit $status
