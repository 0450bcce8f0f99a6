#!/usr/bin/env bash
# A real local Kubernetes control plane on loopback (etcd + kube-apiserver + kube-controller-manager),
# the way controller-runtime's envtest does it, built from Debian's own `kubernetes` source package.
#
#   tools/controlplane.sh build        build kube-apiserver + kube-controller-manager once into the cache
#   tools/controlplane.sh start DIR    PKI, etcd, apiserver, controller manager, CRDs; writes DIR/env
#   tools/controlplane.sh stop DIR     stop the processes recorded in DIR/pids
#   tools/controlplane.sh crds DIR     re-apply test/data/crds on a running one if they changed
#
# Environment: EVS_CACHE (default ~/.cache/evscale) holds the source, the build log and bin/;
# EVS_CP_HPA_SYNC_PERIOD (default 5s) is the HPA controller's sync period, read at start.
# Works as root in CI (no TTY). No scheduler, no kubelet: pods stay Pending, which is all an
# autoscaler needs (it writes /scale; the ReplicaSet controller still creates the Pods).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
CACHE="${EVS_CACHE:-$HOME/.cache/evscale}"
BIN="$CACHE/bin"
SRC="$CACHE/src"
APISERVER="$BIN/kube-apiserver"
CONTROLLER="$BIN/kube-controller-manager"
# Bump when the way the binaries are built changes, so that stale cached binaries are rebuilt.
RECIPE="kubernetes-1.20.2 reflect2-1.0.2"

log() { echo "controlplane: $*" >&2; }
die() { log "error: $*"; exit 1; }

STARTING=""
SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi

have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

install_pkgs() {
  local missing=() p
  for p in "$@"; do have_pkg "$p" || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# ---------------------------------------------------------------------------------------------
# build
# ---------------------------------------------------------------------------------------------

# Writes a deb822 deb-src entry mirroring the machine's own main Debian entry (the first
# paragraph of its deb822 file; the security archive comes after it), so the source comes from
# the same mirror and snapshot as the installed binaries. Nothing is hard-coded: URIs/Suites/Components/Signed-By
# are copied from /etc/apt/sources.list.d/debian.sources (or the first deb822 file with Debian).
add_deb_src() {
  local out=/etc/apt/sources.list.d/evscale-src.sources src=""
  [ -f "$out" ] && return 0
  for f in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] && grep -q '^Types:.*deb' "$f" && grep -qi 'debian' "$f" && { src="$f"; break; }
  done
  if [ -z "$src" ]; then
    # Classic one-line format: derive from the first "deb http... <suite> main" line.
    local line
    line="$(grep -hE '^deb ' /etc/apt/sources.list 2>/dev/null | grep -v security | head -1 || true)"
    [ -n "$line" ] || die "no Debian apt source found to derive a deb-src entry from"
    echo "deb-src ${line#deb }" | $SUDO tee /etc/apt/sources.list.d/evscale-src.list >/dev/null
    return 0
  fi
  # First paragraph of the deb822 file (up to the first blank line) is the main archive.
  awk '/^[[:space:]]*$/{if(seen)exit} /^[A-Za-z-]+:/{seen=1}
       seen && /^(URIs|Suites|Components|Signed-By|Architectures):/ {print}' "$src" >"$CACHE/src.tmp"
  grep -q '^URIs:' "$CACHE/src.tmp" || die "could not parse $src"
  { echo "# Added by evscale tools/controlplane.sh: source packages from the same mirror as $src"
    echo "Types: deb-src"; cat "$CACHE/src.tmp"; } | $SUDO tee "$out" >/dev/null
  rm -f "$CACHE/src.tmp"
  log "added $out"
}

fetch_source() {
  local dir
  dir="$(find "$SRC" -maxdepth 1 -mindepth 1 -type d -name 'kubernetes-*' 2>/dev/null | head -1)"
  if [ -n "$dir" ] && [ -f "$dir/Makefile" ]; then echo "$dir"; return 0; fi
  add_deb_src
  $SUDO apt-get update -qq
  mkdir -p "$SRC"
  (cd "$SRC" && apt-get source -qq kubernetes) >&2
  dir="$(find "$SRC" -maxdepth 1 -mindepth 1 -type d -name 'kubernetes-*' | head -1)"
  [ -n "$dir" ] || die "apt-get source kubernetes produced no tree"
  echo "$dir"
}

# Kubernetes 1.20 vendors github.com/modern-go/reflect2 v1.0.1, which breaks under Go >= 1.18
# (the runtime's map layout changed): the API server then panics with a nil dereference in
# reflect2.(*frozenConfig).Type2 while decoding e.g. a Deployment. reflect2 v1.0.2 is the upstream
# fix (Kubernetes itself moved to it for Go 1.18); Debian ships it as
# golang-github-modern-go-reflect2-dev, so the vendored copy is replaced by Debian's.
patch_reflect2() {
  local tree="$1" vend="$1/vendor/github.com/modern-go/reflect2"
  local deb=/usr/share/gocode/src/github.com/modern-go/reflect2
  [ -f "$vend/go_above_118.go" ] && return 0
  install_pkgs golang-github-modern-go-reflect2-dev
  [ -f "$deb/go_above_118.go" ] || die "Debian's reflect2 in $deb lacks the Go 1.18 fix"
  find "$vend" -maxdepth 1 -type f \( -name '*.go' -o -name '*.s' \) -delete
  cp "$deb"/*.go "$deb"/*.s "$vend"/
  log "replaced vendored reflect2 v1.0.1 with Debian's $(dpkg-query -W -f='${Version}' golang-github-modern-go-reflect2-dev)"
}

do_build_locked() {
  if built; then log "binaries cached in $BIN"; return 0; fi
  install_pkgs etcd-server golang-go dpkg-dev openssl rsync
  local tree gopath
  tree="$(fetch_source)"
  patch_reflect2 "$tree"
  # The Makefile insists on $GOPATH/src/k8s.io/kubernetes; a symlink to the unpacked tree is enough.
  gopath="$CACHE/gopath"
  mkdir -p "$gopath/src/k8s.io"
  ln -sfn "$tree" "$gopath/src/k8s.io/kubernetes"
  log "building kube-apiserver + kube-controller-manager from $tree (log: $CACHE/build.log)"
  local start=$SECONDS
  (
    cd "$gopath/src/k8s.io/kubernetes"
    export GOPATH="$gopath" CGO_ENABLED=0 GO111MODULE=off GOFLAGS=""
    # No .git needed: the upstream tarball is a `git archive` with the version (v1.20.2, commit
    # faecb196815e248d3ecfb03c680a4507229c2a56) substituted into hack/lib/version.sh.
    make WHAT="cmd/kube-apiserver cmd/kube-controller-manager"
  ) >"$CACHE/build.log" 2>&1 || { tail -30 "$CACHE/build.log" >&2; die "build failed"; }
  mkdir -p "$BIN"
  local out="$gopath/src/k8s.io/kubernetes/_output/bin"
  [ -x "$out/kube-apiserver" ] || out="$(dirname "$(find "$tree/_output" -name kube-apiserver -type f | head -1)")"
  cp "$out/kube-apiserver" "$BIN/kube-apiserver.tmp" && mv "$BIN/kube-apiserver.tmp" "$APISERVER"
  cp "$out/kube-controller-manager" "$BIN/kcm.tmp" && mv "$BIN/kcm.tmp" "$CONTROLLER"
  echo "$RECIPE" >"$BIN/recipe"
  log "built in $((SECONDS - start)) s: $BIN"
}

built() {
  [ -x "$APISERVER" ] && [ -x "$CONTROLLER" ] && [ "$(cat "$BIN/recipe" 2>/dev/null)" = "$RECIPE" ]
}

cmd_build() {
  mkdir -p "$CACHE"
  if built; then return 0; fi
  # One builder at a time; a second caller waits for the first and then finds the binaries.
  exec 9>"$CACHE/build.lock"
  flock 9
  do_build_locked
  exec 9>&-
}

# ---------------------------------------------------------------------------------------------
# start
# ---------------------------------------------------------------------------------------------

# N free loopback TCP ports, all held open at once so that they are distinct. (A port can still be
# taken by someone else between here and the bind; start retries once on failure.)
free_ports() {
  python3 -c '
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))' "$1"
}

# Test PKI. EC P-256 keys with SHA-256 signatures (mbedTLS 2.28 accepts them); the service
# account key is RSA 2048 because that is what every Kubernetes version signs tokens with by default.
make_pki() {
  local pki="$1/pki"
  mkdir -p "$pki"
  (
    cd "$pki"
    umask 077
    openssl ecparam -name prime256v1 -genkey -noout -out ca.key 2>/dev/null
    openssl req -x509 -new -key ca.key -sha256 -days 3650 -subj "/CN=evscale-test-ca" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
      -out ca.crt 2>/dev/null
    issue() { # name subject extensions...
      local name="$1" subj="$2"; shift 2
      openssl ecparam -name prime256v1 -genkey -noout -out "$name.key" 2>/dev/null
      openssl req -new -key "$name.key" -sha256 -subj "$subj" -out "$name.csr" 2>/dev/null
      printf '%s\n' "$@" >"$name.ext"
      openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -sha256 \
        -days 3650 -extfile "$name.ext" -out "$name.crt" 2>/dev/null
      rm -f "$name.csr" "$name.ext"
    }
    # kubernetes.default.svc and 10.0.0.1 (the first address of the service range below) are the
    # in-cluster names of the API server; 127.0.0.1/::1/localhost are how tests reach it.
    issue apiserver "/CN=kube-apiserver" \
      "subjectAltName=IP:127.0.0.1,IP:::1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local" \
      "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth"
    # O=system:masters is the group RBAC grants everything to.
    issue admin "/O=system:masters/CN=evscale-admin" \
      "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=clientAuth"
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    chmod 644 ./*.crt sa.pub
    chmod 600 ./*.key
  )
}

write_configs() {
  local dir="$1" port="$2" token="$3"
  # token,user,uid,"group1,group2"
  printf '%s,evscale-admin,evscale-admin,"system:masters"\n' "$token" >"$dir/tokens.csv"
  chmod 600 "$dir/tokens.csv"
  cat >"$dir/audit-policy.yaml" <<'YAML'
# Metadata for everything: enough for per-request timing (requestReceivedTimestamp and
# stageTimestamp of the ResponseComplete stage), and no bodies in the log.
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Metadata
YAML
  cat >"$dir/kubeconfig" <<YAML
apiVersion: v1
kind: Config
clusters:
- name: evscale
  cluster:
    server: https://127.0.0.1:$port
    certificate-authority: $dir/pki/ca.crt
users:
- name: admin
  user:
    token: $token
contexts:
- name: evscale
  context: {cluster: evscale, user: admin, namespace: default}
current-context: evscale
YAML
  chmod 600 "$dir/kubeconfig"
}

# Starts "$@" detached in its own session (so that a test runner's signals to its process group do
# not reach a control plane shared between tests), logging to DIR/NAME.log; records the pid.
spawn() {
  local dir="$1" name="$2"; shift 2
  setsid "$@" </dev/null >"$dir/$name.log" 2>&1 &
  echo "$name $!" >>"$dir/pids"
}

# A zombie (a child of this shell not yet reaped) counts as gone: kill -0 alone would say alive.
alive() {
  local st
  st="$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1)" || return 1
  [ -n "$st" ] && [ "$st" != Z ]
}

# Guards against pid reuse: only signal a pid whose command line still names the program.
ours() { alive "$1" && tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -q -- "$2"; }

pid_of() { awk -v n="$2" '$1 == n {print $2}' "$1/pids" 2>/dev/null; }

# wait_for DIR SECONDS DESCRIPTION COMMAND...: polls COMMAND every 0.25 s; fails early when a
# recorded process has died, pointing at its log.
wait_for() {
  local dir="$1" secs="$2" what="$3"; shift 3
  local deadline=$((SECONDS + secs)) name pid
  while ! "$@" >/dev/null 2>&1; do
    while read -r name pid; do
      alive "$pid" || { tail -20 "$dir/$name.log" >&2; die "$name exited while waiting for $what (log: $dir/$name.log)"; }
    done <"$dir/pids"
    [ $SECONDS -lt $deadline ] || die "timed out after ${secs}s waiting for $what"
    sleep 0.25
  done
}

api_get() { # DIR PORT TOKEN PATH
  curl -fsS --max-time 5 --cacert "$1/pki/ca.crt" -H "Authorization: Bearer $3" "https://127.0.0.1:$2$4"
}

start_etcd() {
  local dir="$1" cport="$2" pport="$3"
  mkdir -p "$dir/etcd"
  chmod 700 "$dir/etcd"
  spawn "$dir" etcd etcd --name evscale --data-dir "$dir/etcd" \
    --listen-client-urls "http://127.0.0.1:$cport" --advertise-client-urls "http://127.0.0.1:$cport" \
    --listen-peer-urls "http://127.0.0.1:$pport" --initial-advertise-peer-urls "http://127.0.0.1:$pport" \
    --initial-cluster "evscale=http://127.0.0.1:$pport" --initial-cluster-state new \
    --listen-metrics-urls "" --log-level warn
}

start_apiserver() {
  local dir="$1" port="$2" eport="$3" pki="$1/pki"
  # --endpoint-reconciler-type=none: the "kubernetes" Service's Endpoints would otherwise be
  # reconciled to the loopback advertise address, which Endpoints validation rejects (log noise).
  # --audit-log-maxsize: the tests read the audit log by byte offset, and a rotation moves it
  # (0 does not mean "never": lumberjack's default applies, 100 MiB, which a benchmark or a long
  # test run reaches); 1 TiB never rotates here.
  spawn "$dir" kube-apiserver "$APISERVER" \
    --etcd-servers "http://127.0.0.1:$eport" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$port" --insecure-port 0 \
    --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
    --client-ca-file "$pki/ca.crt" --token-auth-file "$dir/tokens.csv" \
    --authorization-mode Node,RBAC \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
    --service-cluster-ip-range 10.0.0.0/24 --endpoint-reconciler-type none \
    --audit-policy-file "$dir/audit-policy.yaml" --audit-log-path "$dir/audit.log" \
    --audit-log-maxsize 1048576 --cert-dir "$pki" --v 1
}

start_controller_manager() {
  local dir="$1" pki="$1/pki"
  # --port 0 / --secure-port 0: no serving at all, so several control planes never collide on
  # the 1.20 defaults (10252/10257).
  # --horizontal-pod-autoscaler-sync-period: how often the HPA controller reconciles (default
  # 15 s); shorter here so the circuit breaker's hand-over tests (issue 18) see the real HPA act
  # sooner. EVS_CP_HPA_SYNC_PERIOD overrides it; a control plane already running keeps the period
  # it started with (tests allow for 15 s).
  spawn "$dir" kube-controller-manager "$CONTROLLER" \
    --kubeconfig "$dir/kubeconfig" \
    --controllers deployment,replicaset,statefulset,horizontalpodautoscaling,namespace,garbagecollector,serviceaccount,serviceaccount-token \
    --horizontal-pod-autoscaler-sync-period "${EVS_CP_HPA_SYNC_PERIOD:-5s}" \
    --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
    --use-service-account-credentials=false --leader-elect=false --port 0 --secure-port 0 --v 1
}

kubectl_dir() { local dir="$1"; shift; KUBECONFIG="$dir/kubeconfig" kubectl "$@"; }

# KEDA's CRDs (test/data/crds: v2.20.2, unmodified). kubectl validates client-side against its own
# (1.32) idea of the schema, hence --validate=false; the server validates for real.
# A 1.20 API server silently drops the schema fields it does not know. In KEDA's v2.20 CRDs that is
# exactly one: the ScaledObject spec's x-kubernetes-validations (CEL, served from 1.25), the rule
# minReplicaCount <= maxReplicaCount, so this control plane accepts min > max where a current one
# refuses it. check_crds compares what the server stored with the files and fails on any other
# loss, so a later CRD cannot lose a field (and a test its meaning) unnoticed.
# The files' digest goes on each CRD as an annotation: `crds DIR` (run by evstest when it reuses a
# running control plane) re-applies them only when they changed.
CRD_NAMES="crd/scaledobjects.keda.sh crd/triggerauthentications.keda.sh crd/clustertriggerauthentications.keda.sh"
CRD_DIGEST_KEY="evscale.test/crd-files-sha256"

crd_digest() { cat "$REPO"/test/data/crds/*.yaml | sha256sum | cut -c1-64; }

check_crds() {
  local dir="$1" f
  for f in "$REPO"/test/data/crds/*.yaml; do
    python3 -c '
import json, sys
want = json.load(open(sys.argv[1]))
have = json.load(open(sys.argv[2]))
# The only fields a 1.20 server may drop (see install_crds).
DROPPABLE = {"x-kubernetes-validations"}
lost = []
def walk(w, h, path):
    if isinstance(w, dict):
        if not isinstance(h, dict):
            lost.append(path); return
        for k, v in w.items():
            if k not in h:
                if k not in DROPPABLE:
                    lost.append(path + "." + k)
            else:
                walk(v, h[k], path + "." + k)
    elif isinstance(w, list):
        if not isinstance(h, list) or len(w) != len(h):
            lost.append(path); return
        for i, (a, b) in enumerate(zip(w, h)):
            walk(a, b, "%s[%d]" % (path, i))
    elif w != h:
        lost.append(path)
walk(want["spec"], have["spec"], want["metadata"]["name"] + ".spec")
if lost:
    sys.exit("the API server changed or dropped: " + ", ".join(lost))
' <(kubectl_dir "$dir" create --dry-run=client --validate=false -o json -f "$f") \
      <(kubectl_dir "$dir" get -o json -f "$f") || die "$(basename "$f") is not stored as written"
  done
}

install_crds() {
  local dir="$1" digest
  digest="$(crd_digest)"
  # shellcheck disable=SC2086
  { kubectl_dir "$dir" apply --validate=false -f "$REPO/test/data/crds/" &&
    kubectl_dir "$dir" wait --for condition=established --timeout=30s $CRD_NAMES; } \
    >>"$dir/crds.log" 2>&1 || { cat "$dir/crds.log" >&2; die "installing the CRDs failed"; }
  check_crds "$dir"
  # shellcheck disable=SC2086
  kubectl_dir "$dir" annotate --overwrite $CRD_NAMES "$CRD_DIGEST_KEY=$digest" >>"$dir/crds.log" 2>&1 ||
    { cat "$dir/crds.log" >&2; die "annotating the CRDs failed"; }
}

# Re-applies the CRDs on a running control plane when test/data/crds changed since they were
# installed (a control plane outlives a checkout: the shared one runs for days). Idempotent.
cmd_crds() {
  local dir
  dir="$(cd "$1" && pwd)"
  [ -f "$dir/env" ] || die "no control plane in $dir"
  local have
  have="$(kubectl_dir "$dir" get crd/scaledobjects.keda.sh \
    -o "jsonpath={.metadata.annotations.evscale\.test/crd-files-sha256}" 2>/dev/null || true)"
  [ "$have" = "$(crd_digest)" ] && return 0
  log "CRDs in $dir differ from test/data/crds; re-applying"
  install_crds "$dir"
}

ensure_kubectl() {
  command -v kubectl >/dev/null 2>&1 && return 0
  install_pkgs kubernetes-client
}

cmd_start() {
  local dir rc attempt
  mkdir -p "$1"
  dir="$(cd "$1" && pwd)"
  if [ -f "$dir/pids" ]; then
    local name pid
    while read -r name pid; do
      ours "$pid" "$name" && die "$dir already runs a control plane ($name pid $pid); stop it first"
    done <"$dir/pids"
  fi
  command -v etcd >/dev/null 2>&1 || install_pkgs etcd-server
  command -v curl >/dev/null 2>&1 || install_pkgs curl
  ensure_kubectl
  # A free port can be taken by someone else between free_ports and the bind: one retry with
  # new ports. Each attempt runs in a subshell whose EXIT trap stops what it started.
  for attempt in 1 2; do
    set +e
    (set -e; start_once "$dir")
    rc=$?
    set -e
    [ $rc -eq 0 ] && return 0
    [ $attempt -eq 1 ] && log "start failed; retrying once with new ports"
  done
  die "could not start the control plane in $dir (logs: $dir/*.log)"
}

start_once() {
  local dir="$1" token eport pport aport t0=$SECONDS
  rm -rf "$dir/etcd" "$dir/pids" "$dir/env" "$dir/etcd.env" "$dir/audit.log" "$dir/pki" "$dir"/*.log
  STARTING="$dir"
  trap '[ -n "$STARTING" ] && cmd_stop "$STARTING" >/dev/null 2>&1' EXIT
  trap 'exit 1' INT TERM
  make_pki "$dir"
  token="$(openssl rand -hex 24)"
  read -r eport pport aport < <(free_ports 3)
  write_configs "$dir" "$aport" "$token"
  : >"$dir/pids"
  start_etcd "$dir" "$eport" "$pport"
  wait_for "$dir" 30 "etcd" curl -fsS --max-time 2 "http://127.0.0.1:$eport/health"
  start_apiserver "$dir" "$aport" "$eport"
  wait_for "$dir" 90 "kube-apiserver /readyz" api_get "$dir" "$aport" "$token" /readyz
  start_controller_manager "$dir"
  install_crds "$dir"
  wait_for "$dir" 60 "the default ServiceAccount" \
    api_get "$dir" "$aport" "$token" /api/v1/namespaces/default/serviceaccounts/default
  cat >"$dir/env.tmp" <<ENV
KUBE_API_URL=https://127.0.0.1:$aport
KUBE_CA=$dir/pki/ca.crt
KUBE_TOKEN=$token
KUBE_CLIENT_CERT=$dir/pki/admin.crt
KUBE_CLIENT_KEY=$dir/pki/admin.key
KUBECONFIG=$dir/kubeconfig
KUBE_AUDIT_LOG=$dir/audit.log
ENV
  # etcd's client URL, kept out of DIR/env (whose names are fixed): tests use it to compact etcd
  # and get a real 410 Gone from the API server.
  echo "ETCD_URL=http://127.0.0.1:$eport" >"$dir/etcd.env"
  mv "$dir/env.tmp" "$dir/env"
  STARTING=""
  trap - EXIT INT TERM
  log "ready in $((SECONDS - t0)) s: $dir/env (KUBE_API_URL=https://127.0.0.1:$aport)"
}

# ---------------------------------------------------------------------------------------------
# stop
# ---------------------------------------------------------------------------------------------
cmd_stop() {
  local dir="$1" name pid pids=()
  dir="$(cd "$dir" 2>/dev/null && pwd)" || { log "no such directory $1"; return 0; }
  [ -f "$dir/pids" ] || { log "no $dir/pids: nothing to stop"; return 0; }
  # Reverse start order: controller manager, API server, then etcd.
  while read -r name pid; do ours "$pid" "$name" && pids=("$pid" "${pids[@]}"); done <"$dir/pids"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for _ in $(seq 1 60); do
    local left=0
    for pid in "${pids[@]}"; do alive "$pid" && left=1; done
    [ $left = 0 ] && break
    sleep 0.25
  done
  for pid in "${pids[@]}"; do alive "$pid" && { log "pid $pid ignored TERM; killing"; kill -KILL "$pid" 2>/dev/null || true; }; done
  for pid in "${pids[@]}"; do while alive "$pid"; do sleep 0.1; done; done
  rm -f "$dir/pids" "$dir/env" "$dir/etcd.env"
  log "stopped $dir"
}

# ---------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------
case "${1:-}" in
  build) cmd_build ;;
  start) [ $# -eq 2 ] || die "usage: $0 start DIR"; cmd_build; cmd_start "$2" ;;
  stop) [ $# -eq 2 ] || die "usage: $0 stop DIR"; cmd_stop "$2" ;;
  crds) [ $# -eq 2 ] || die "usage: $0 crds DIR"; ensure_kubectl; cmd_crds "$2" ;;
  *) echo "usage: $0 build | start DIR | stop DIR | crds DIR" >&2; exit 2 ;;
esac
