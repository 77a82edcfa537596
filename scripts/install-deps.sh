#!/usr/bin/env bash
# Installs what Fanout's local stack and tests need and the machine lacks:
# redis-server and PostgreSQL (server binaries and client), Debian/Ubuntu;
# and the Python validator of Kubernetes manifests.
set -euo pipefail

have_pg() {
  command -v initdb >/dev/null 2>&1 || compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null
}

# Offline validation of the Kubernetes manifests (operator tests).
if ! python3 -m pip --version >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-pip >/dev/null
fi
if ! python3 -c "import kubernetes_validate, jsonschema, yaml" >/dev/null 2>&1; then
  echo "installing kubernetes-validate (PyPI) ..."
  python3 -m pip install -q kubernetes-validate==1.33.1 2>/dev/null \
    || python3 -m pip install -q --user --break-system-packages kubernetes-validate==1.33.1
fi

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
have_pg || missing+=(postgresql)
command -v psql >/dev/null 2>&1 || missing+=(postgresql-client)
[ ${#missing[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
  echo "error: please install ${missing[*]} (no apt-get on this machine)" >&2
  exit 1
fi
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
echo "installing ${missing[*]} ..."
$sudo apt-get update -qq
# The packages' own services are not used: Fanout runs its own instances.
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
