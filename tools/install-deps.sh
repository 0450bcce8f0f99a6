#!/usr/bin/env bash
# Installs every build and test dependency of evscale from Debian packages.
# Idempotent; works as root or through sudo. Set EVS_SKIP_APT=1 to skip (offline builds). (EVS_, not EVSCALE_: every EVSCALE_* variable is
# an evscale configuration key, and evscale refuses unknown ones.)
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "install-deps: need root or sudo" >&2; exit 1; fi
fi

PKGS=(
  # build
  build-essential cmake pkg-config gcc clang libclang-rt-14-dev clang-format
  libuv1-dev node-llhttp libhiredis-dev libyaml-dev libmbedtls-dev libjansson-dev libcmocka-dev
  # tests and tools
  python3 curl ca-certificates openssl tzdata procps
  redis-server prometheus prometheus-pushgateway
  # the local Kubernetes control plane (tools/controlplane.sh builds it from Debian's source)
  etcd-server golang-go dpkg-dev rsync golang-github-modern-go-reflect2-dev
  # benchmarks
  linux-perf
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# kubectl: Debian's kubernetes-client, unless the machine already has a kubectl
# (some images ship another at /usr/bin/kubectl and the package then fails to install).
if ! command -v kubectl >/dev/null 2>&1; then missing+=(kubernetes-client); fi

if [ "${EVS_SKIP_APT:-0}" = 1 ] || [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all packages present"
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts redis-server and prometheus as services on install; our tests start their own
# instances on free loopback ports, so the system ones are left alone.
echo "install-deps: done"
