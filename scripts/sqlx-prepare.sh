#!/usr/bin/env bash
# Refreshes .sqlx/, the query metadata that lets every build (CI, the
# Dockerfile) check sqlx's query! macros without a database.
#   scripts/sqlx-prepare.sh postgres://user@host:port
set -euo pipefail
cd "$(dirname "$0")/.."
server=${1:?PostgreSQL server URL without a database name}
db=fanout_sqlx_prepare
psql "$server/postgres" -qc "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
for f in feed-core/migrations/*.sql; do psql "$server/$db" -q -v ON_ERROR_STOP=1 -f "$f"; done
rm -rf .sqlx && mkdir .sqlx
touch feed-core/src/lib.rs
SQLX_OFFLINE=false SQLX_OFFLINE_DIR="$PWD/.sqlx" DATABASE_URL="$server/$db" \
  cargo check --workspace --all-targets --quiet
echo "wrote $(ls .sqlx | wc -l) queries to .sqlx/"
