#!/usr/bin/env bash
# The README's first command: evscale scaling a Deployment from a Redis list, live.
#
#   tools/demo.sh [--quick] [--binary PATH] [--no-install] [--keep-controlplane]
#
# Installs the Debian packages (tools/install-deps.sh), builds evscale (Release, build/rel),
# starts a redis-server on a free port and the local Kubernetes control plane
# (tools/controlplane.sh; its first run builds kube-apiserver from Debian's source, 6-15 min,
# and says so), creates the Deployment "worker" (0 replicas) and a ScaledObject with a redis
# trigger (listLength 5, 0..10 replicas), starts evscale with config/demo.yaml, then pushes jobs
# into the list in steps, drains it and waits for the scale to zero. While it runs it prints,
# twice a second, the queue length, the replicas it asks for (ceil(length / 5)), the
# Deployment's replicas and pods and the ScaledObject's Active condition, and for
# every scale write the measured scaling time (push into Redis -> the API server's completion of
# evscale's /scale PATCH, from the audit log). Then the circuit breaker: a second ScaledObject,
# "flappy", made to flap (down, up, down, up within a minute) trips it; evscale hands its
# Deployment to the fallback HPA keda-hpa-flappy (shown with kubectl get hpa, the
# keda.sh/circuit-breaker-triggered annotation and the Ready reason CircuitBreakerOpen), and the
# runbook's reset (kubectl annotate ... keda.sh/circuit-breaker-triggered-) deletes the HPA and
# evscale scales again. Everything it started is stopped on exit or Ctrl-C.
#
#   --quick              a short run (fewer, faster steps; cooldown 5 s): ~1.5 minutes
#   --binary PATH        use this evscale binary; no install, no build
#   --no-install         skip tools/install-deps.sh (EVS_SKIP_APT=1 does the same)
#   --keep-controlplane  leave the control plane running for the next run (starts in ~30 s)
#
# The control plane: KUBE_API_URL, KUBECONFIG and KUBE_AUDIT_LOG set in the environment (e.g.
# `set -a; . ~/.cache/evscale/cp-shared/env`): that one, untouched; else its own in
# $EVS_CACHE/cp-demo (default ~/.cache/evscale/cp-demo), reused if it answers, stopped at the
# end if this run started it. DEMO_NAMESPACE (default evscale-demo) is created and deleted.
# Exit status 0 when the Deployment went up with the queue and back to 0, and the breaker
# tripped to the HPA and recovered.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

QUICK=0 BINARY="" INSTALL=1 KEEP_CP=0
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --binary) BINARY="$2"; shift ;;
    --binary=*) BINARY="${1#--binary=}" ;;
    --no-install) INSTALL=0 ;;
    --keep-controlplane) KEEP_CP=1 ;;
    -h|--help) sed -n '2,32p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "demo: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

say() { printf '\033[1mdemo:\033[0m %s\n' "$*"; }
[ -t 1 ] || say() { printf 'demo: %s\n' "$*"; }
die() { say "error: $*" >&2; exit 1; }

NS="${DEMO_NAMESPACE:-evscale-demo}"
CACHE="${EVS_CACHE:-$HOME/.cache/evscale}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/evscale-demo.XXXXXX")"
REDIS_PID="" EVS_PID="" CP_DIR="" CP_STARTED=0 NS_CREATED=0

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  if [ "$rc" != 0 ] && [ "$rc" != 130 ] && [ -s "$WORK/evscale.log" ]; then
    say "the last lines of evscale's log:"
    tail -n 15 "$WORK/evscale.log" | cut -c1-300 | sed 's/^/  | /'
  fi
  if [ -n "$EVS_PID" ] && kill -0 "$EVS_PID" 2>/dev/null; then
    say "stopping evscale (pid $EVS_PID)"
    kill -TERM "$EVS_PID"
    for _ in $(seq 1 100); do kill -0 "$EVS_PID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$EVS_PID" 2>/dev/null && kill -KILL "$EVS_PID"
    wait "$EVS_PID" 2>/dev/null
  fi
  if [ -n "$REDIS_PID" ] && kill -0 "$REDIS_PID" 2>/dev/null; then
    kill -TERM "$REDIS_PID"; wait "$REDIS_PID" 2>/dev/null
  fi
  if [ "$NS_CREATED" = 1 ]; then
    kubectl delete namespace "$NS" --wait=false >/dev/null 2>&1
  fi
  if [ "$CP_STARTED" = 1 ] && [ "$KEEP_CP" = 0 ]; then
    say "stopping the control plane"
    tools/controlplane.sh stop "$CP_DIR" >/dev/null 2>&1
  fi
  rm -rf "$WORK"
  [ "$rc" = 0 ] && say "done: everything it started is stopped" || say "stopped (status $rc)"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- install and build ---------------------------------------------------------------------
if [ -z "$BINARY" ]; then
  if [ "$INSTALL" = 1 ]; then
    say "installing the Debian packages (tools/install-deps.sh)"
    bash tools/install-deps.sh
  fi
  say "building evscale (Release, build/rel)"
  cmake -S . -B build/rel -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build build/rel -j "$(nproc 2>/dev/null || echo 2)" --target evscale | tail -n 1
  BINARY=build/rel/evscale
fi
[ -x "$BINARY" ] || die "$BINARY is not an executable"
for c in redis-server redis-cli kubectl curl python3; do
  command -v "$c" >/dev/null 2>&1 || die "$c is missing (tools/install-deps.sh installs it)"
done

# --- the control plane ---------------------------------------------------------------------
if [ -n "${KUBE_API_URL:-}" ] && [ -n "${KUBECONFIG:-}" ] && [ -n "${KUBE_AUDIT_LOG:-}" ]; then
  say "using the control plane at $KUBE_API_URL (from the environment)"
else
  CP_DIR="$CACHE/cp-demo"
  reuse=0
  if [ -f "$CP_DIR/env" ]; then
    set -a; . "$CP_DIR/env"; set +a
    curl -fsS --max-time 3 --cacert "$KUBE_CA" -H "Authorization: Bearer $KUBE_TOKEN" \
      "$KUBE_API_URL/readyz" >/dev/null 2>&1 && reuse=1
  fi
  if [ "$reuse" = 1 ]; then
    say "reusing the control plane in $CP_DIR"
  else
    if [ ! -x "$CACHE/bin/kube-apiserver" ]; then
      say "first run: building kube-apiserver and kube-controller-manager from Debian's"
      say "kubernetes source into $CACHE (once; 6-15 min). Progress: $CACHE/build.log"
      ( while sleep 20; do
          [ -f "$CACHE/build.log" ] && say "build: $(tail -n 1 "$CACHE/build.log" | cut -c1-100)"
        done ) &
      PROGRESS=$!
    fi
    say "starting the local control plane (etcd, kube-apiserver, kube-controller-manager)"
    CP_STARTED=1
    tools/controlplane.sh start "$CP_DIR" 2>&1 | sed 's/^/  /'
    [ -n "${PROGRESS:-}" ] && kill "$PROGRESS" 2>/dev/null
    set -a; . "$CP_DIR/env"; set +a
  fi
fi
export KUBECONFIG

# --- redis ---------------------------------------------------------------------------------
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
RPORT="$(free_port)"
# Keyspace notifications for lists (l), DEL (g), expiry and eviction (x, e) on the keyspace
# channel (K): evscale reads the list the moment it changes.
redis-server --port "$RPORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK" \
  --notify-keyspace-events Klgxe >"$WORK/redis.log" 2>&1 &
REDIS_PID=$!
rc() { redis-cli -p "$RPORT" "$@"; }
for _ in $(seq 1 100); do [ "$(rc PING 2>/dev/null)" = PONG ] && break; sleep 0.1; done
[ "$(rc PING 2>/dev/null)" = PONG ] || die "redis-server did not start (log: $WORK/redis.log)"
say "redis-server on 127.0.0.1:$RPORT"

# --- the Deployment and the ScaledObject ---------------------------------------------------
if [ "$QUICK" = 1 ]; then COOLDOWN=5; else COOLDOWN=15; fi
kubectl create namespace "$NS" >/dev/null
NS_CREATED=1
kubectl apply --validate=false -f - >/dev/null <<YAML
apiVersion: apps/v1
kind: Deployment
metadata: {name: worker, namespace: $NS}
spec:
  replicas: 0
  selector: {matchLabels: {app: worker}}
  template:
    metadata: {labels: {app: worker}}
    spec:
      containers: [{name: worker, image: registry.invalid/worker:1}]
---
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: worker, namespace: $NS}
spec:
  scaleTargetRef: {name: worker}
  minReplicaCount: 0
  maxReplicaCount: 10
  pollingInterval: 1
  cooldownPeriod: $COOLDOWN
  triggers:
  - type: redis
    metadata:
      address: 127.0.0.1:$RPORT
      listName: jobs
      listLength: "5"
YAML
say "namespace $NS: Deployment worker (0 replicas), ScaledObject worker (redis list 'jobs',"
say "  5 jobs per replica, 0..10 replicas, cooldown ${COOLDOWN}s). No kubelet: pods stay Pending."

# --- evscale -------------------------------------------------------------------------------
HPORT="$(free_port)"
AUDIT_FROM=$(stat -c %s "$KUBE_AUDIT_LOG")
# The scripts' own variables are EVS_* (not EVSCALE_*): every EVSCALE_* variable is a
# configuration key to evscale, and an unknown one is refused at start.
env EVSCALE_SERVER_ADDRESS="127.0.0.1:$HPORT" EVSCALE_KUBERNETES_NAMESPACES="$NS" \
  EVSCALE_LEADER_ELECTION_LEASE_NAMESPACE="$NS" \
  "$BINARY" run --config config/demo.yaml >"$WORK/evscale.log" 2>&1 &
EVS_PID=$!
for _ in $(seq 1 300); do
  curl -fsS --max-time 2 "http://127.0.0.1:$HPORT/readyz" >/dev/null 2>&1 && break
  kill -0 "$EVS_PID" 2>/dev/null || { tail -n 20 "$WORK/evscale.log"; die "evscale exited"; }
  sleep 0.2
done
say "evscale is running (pid $EVS_PID, config/demo.yaml; /metrics on 127.0.0.1:$HPORT)"

# --- the live view -------------------------------------------------------------------------
# Scaling time of each of evscale's writes: from the last change of the queue before it (a push
# into Redis, or the drain emptying it) to the
# API server's completion of the PATCH (the audit log's stageTimestamp; one clock).
PUSHES="$WORK/pushes"
: >"$PUSHES"
SEEN="$WORK/seen"
: >"$SEEN"
writes() {
  python3 - "$KUBE_AUDIT_LOG" "$AUDIT_FROM" "$NS" "$PUSHES" "$SEEN" "$WORK/evscale.log" <<'PY'
import datetime, json, sys
audit, start, ns, pushes, seen, evlog = sys.argv[1:]
path = "/apis/apps/v1/namespaces/%s/deployments/worker/scale" % ns
with open(audit, "rb") as f:
    f.seek(int(start)); data = f.read()
data = data[:data.rfind(b"\n") + 1]
ts = []
for line in data.splitlines():
    try: e = json.loads(line)
    except ValueError: continue
    if (e.get("verb") == "patch" and e.get("stage") == "ResponseComplete"
            and e.get("requestURI", "").startswith(path) and "evscale" in e.get("userAgent", "")):
        d = datetime.datetime.strptime(e["stageTimestamp"], "%Y-%m-%dT%H:%M:%S.%fZ")
        ts.append(d.replace(tzinfo=datetime.timezone.utc).timestamp())
done = set(open(seen).read().split())
pts = [float(x) for x in open(pushes).read().split()]
scaled = []
for line in open(evlog):
    try: r = json.loads(line)
    except ValueError: continue
    if r.get("msg") == "scaled": scaled.append(r)
for i, t in enumerate(sorted(ts)):
    if str(i) in done: continue
    before = [p for p in pts if p < t]
    r = scaled[i] if i < len(scaled) else {}
    how = "%s -> %s (%s)" % (r.get("from", "?"), r.get("to", "?"), r.get("reason", "?"))
    if before:
        print("scale write %d: %s, %.1f ms after the last change of the queue" % (i + 1, how, (t - before[-1]) * 1000))
    else:
        print("scale write %d: %s" % (i + 1, how))
    with open(seen, "a") as f: f.write("%d\n" % i)
PY
}
replicas() {
  kubectl get deploy worker -n "$NS" -o jsonpath='{.spec.replicas} {.status.replicas}' 2>/dev/null
}
active() {
  kubectl get scaledobject worker -n "$NS" \
    -o jsonpath='{.status.conditions[?(@.type=="Active")].status}' 2>/dev/null
}
show() {
  local spec status n
  read -r spec status <<<"$(replicas)"
  n="$(rc LLEN jobs)"
  # ceil(queue / listLength) within 0..maxReplicaCount: the count the queue asks for.
  printf '  %s  queue %3s jobs  asks for %2s  replicas %2s  pods %2s  active %s\n' "$(date +%T)" \
    "$n" "$(( (n + 4) / 5 > 10 ? 10 : (n + 4) / 5 ))" "${spec:-?}" "${status:-0}" "$(active)"
  writes | sed 's/^/  ** /'
}
push() {
  date +%s.%N >>"$PUSHES"
  rc RPUSH jobs $(seq -f "job-%g" 1 "$1") >/dev/null
}
# wait_for WANT TIMEOUT: prints the view until the Deployment has WANT replicas.
wait_for() {
  local want="$1" deadline=$((SECONDS + $2)) spec status
  while :; do
    show
    read -r spec status <<<"$(replicas)"
    [ "${spec:-}" = "$want" ] && return 0
    [ $SECONDS -ge $deadline ] && die "worker did not reach $want replicas in $2 s (log: evscale.log below)" 
    sleep 0.5
  done
}
watch_for() { local end=$((SECONDS + $1)); while [ $SECONDS -lt $end ]; do show; sleep 0.5; done; }

if [ "$QUICK" = 1 ]; then
  say "pushing 12 jobs: 0 -> 1 (activation) -> ceil(12/5) = 3 replicas"
  push 12; wait_for 3 60
  say "pushing 28 more (40 jobs): -> 8 replicas"
  push 28; wait_for 8 60
else
  say "pushing 12 jobs: 0 -> 1 (activation) -> ceil(12/5) = 3 replicas"
  push 12; wait_for 3 60; watch_for 3
  say "a producer: 4 jobs a second for 7 s (40 jobs): the replicas follow the queue"
  for _ in $(seq 1 7); do push 4; show; sleep 0.5; show; sleep 0.5; done
  wait_for 8 60; watch_for 3
  say "a burst of 30 (70 jobs): -> 10 replicas (maxReplicaCount)"
  push 30; wait_for 10 60; watch_for 3
fi
say "draining: the workers take the jobs"
while [ "$(rc LLEN jobs)" -gt 0 ]; do
  rc LPOP jobs >/dev/null; rc LPOP jobs >/dev/null; rc LPOP jobs >/dev/null; rc LPOP jobs >/dev/null
  rc LPOP jobs >/dev/null; rc LPOP jobs >/dev/null; rc LPOP jobs >/dev/null; rc LPOP jobs >/dev/null
  [ "$(rc LLEN jobs)" -eq 0 ] && date +%s.%N >>"$PUSHES"  # the queue's last change
  show; sleep 0.25
done
say "queue empty: evscale scales to zero once the cooldown (${COOLDOWN}s) has passed"
wait_for 0 $((COOLDOWN + 60))
# The audit log is written as requests complete: wait (up to 10 s) until every write evscale
# logged is in it, and print the rest.
for _ in $(seq 1 20); do
  writes | sed 's/^/  ** /'
  [ "$(wc -l <"$SEEN")" -ge "$(grep -c '"msg":"scaled"' "$WORK/evscale.log")" ] && break
  sleep 0.5
done
say "worker scaled to zero"

# --- the circuit breaker -------------------------------------------------------------------
# A second ScaledObject, "flappy", whose behavior follows the queue at once in both directions
# (stabilization 0, policies per 1 s), on its own Deployment and list. Driven down, up, down,
# up within a minute, its fourth scale event trips the breaker (config/demo.yaml:
# max_scale_events_per_minute 3): evscale refuses that write and creates the fallback HPA
# keda-hpa-flappy (minReplicas = fallback_replicas 2), which the HPA controller runs; the
# runbook's reset deletes it and evscale scales again.
say "the circuit breaker: ScaledObject flappy (its own Deployment and list 'flappy-jobs'),"
say "  with a behavior that follows the queue at once both ways; at most 3 scale events a minute"
rc RPUSH flappy-jobs $(seq -f "f-%g" 1 50) >/dev/null
kubectl apply --validate=false -f - >/dev/null <<YAML
apiVersion: apps/v1
kind: Deployment
metadata: {name: flappy, namespace: $NS}
spec:
  replicas: 10
  selector: {matchLabels: {app: flappy}}
  template:
    metadata: {labels: {app: flappy}}
    spec:
      containers: [{name: flappy, image: registry.invalid/worker:1}]
---
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: flappy, namespace: $NS}
spec:
  scaleTargetRef: {name: flappy}
  minReplicaCount: 1
  maxReplicaCount: 10
  pollingInterval: 1
  advanced:
    horizontalPodAutoscalerConfig:
      behavior:
        scaleUp:
          stabilizationWindowSeconds: 0
          policies: [{type: Pods, value: 10, periodSeconds: 1}]
        scaleDown:
          stabilizationWindowSeconds: 0
          policies: [{type: Percent, value: 100, periodSeconds: 1}]
  triggers:
  - type: redis
    metadata:
      address: 127.0.0.1:$RPORT
      listName: flappy-jobs
      listLength: "5"
YAML
echo 0 >"$WORK/fseen"
hpa_of() {
  kubectl get hpa keda-hpa-flappy -n "$NS" -o jsonpath='{.spec.minReplicas}' 2>/dev/null || true
}
# One line: queue, the Deployment, the HPA, the breaker's annotation and the Ready reason;
# then evscale's writes to flappy since the last line (from its log).
show_flappy() {
  local spec trig reason h
  spec="$(kubectl get deploy flappy -n "$NS" -o jsonpath='{.spec.replicas}' 2>/dev/null)"
  IFS='|' read -r trig reason <<<"$(kubectl get scaledobject flappy -n "$NS" -o jsonpath=\
'{.metadata.annotations.keda\.sh/circuit-breaker-triggered}|{.status.conditions[?(@.type=="Ready")].reason}' \
    2>/dev/null)"
  h="$(hpa_of)"
  printf '  %s  queue %2s jobs  replicas %2s  hpa %-24s  breaker %-6s  Ready reason %s\n' \
    "$(date +%T)" "$(rc LLEN flappy-jobs)" "${spec:-?}" \
    "$([ -n "$h" ] && echo "keda-hpa-flappy (min $h)" || echo -)" \
    "$([ -n "$trig" ] && echo open || echo closed)" "${reason:--}"
  python3 - "$WORK/evscale.log" "$NS/flappy" "$WORK/fseen" <<'PY' | sed 's/^/  ** /'
import json, sys
log, key, seen = sys.argv[1:]
done, n = int(open(seen).read()), 0
for line in open(log):
    try: r = json.loads(line)
    except ValueError: continue
    if r.get("msg") == "scaled" and r.get("scaledobject") == key:
        n += 1
        if n > done:
            print("evscale wrote flappy %s -> %s (%s)" % (r.get("from"), r.get("to"), r.get("reason")))
            open(seen + ".to", "w").write("%s\n" % r.get("to"))
open(seen, "w").write("%d\n" % n)
PY
}
# flappy_until WHAT TIMEOUT CMD...: prints the view until CMD succeeds; 1 after TIMEOUT s.
flappy_until() {
  local what="$1" deadline=$((SECONDS + $2)); shift 2
  while :; do
    show_flappy
    "$@" && return 0
    if [ $SECONDS -ge $deadline ]; then say "flappy: no $what yet"; return 1; fi
    sleep 0.5
  done
}
flappy_is() { [ "$(kubectl get deploy flappy -n "$NS" -o jsonpath='{.spec.replicas}')" = "$1" ]; }
# The last of evscale's writes to flappy printed so far went to $1 replicas.
wrote() { [ "$(cat "$WORK/fseen.to" 2>/dev/null)" = "$1" ]; }
tripped() { [ -n "$(hpa_of)" ]; }
at_or_tripped() { flappy_is "$1" || tripped; }
flappy_until "Ready" 30 bash -c "kubectl get scaledobject flappy -n $NS -o \
  jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}' | grep -qx True" ||
  die "flappy not Ready"
for i in 1 2 3; do
  tripped && break
  say "queue down to 1 job: flappy -> 1 replica"
  rc DEL flappy-jobs >/dev/null; rc RPUSH flappy-jobs f-1 >/dev/null
  flappy_until "scale to 1" 30 at_or_tripped 1 || die "flappy did not scale to 1"
  tripped && break
  say "50 jobs again: flappy -> 10 replicas"
  rc RPUSH flappy-jobs $(seq -f "f-%g" 2 50) >/dev/null
  flappy_until "scale to 10" 30 at_or_tripped 10 || die "flappy did not scale to 10"
done
tripped || die "the breaker did not trip"
say "the breaker tripped: evscale refused the write and handed flappy to an HPA"
kubectl get hpa -n "$NS" | sed 's/^/  | /'
flappy_until "Ready reason CircuitBreakerOpen" 30 bash -c "kubectl get scaledobject flappy -n $NS \
  -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].reason}' | grep -qx CircuitBreakerOpen" ||
  die "no Ready reason CircuitBreakerOpen"
say "the HPA controller takes over: flappy up to its minReplicas 2; evscale writes nothing"
flappy_until "HPA at 2" 45 flappy_is 2 || true
say "recovering with the runbook's reset:"
say "  kubectl annotate scaledobject flappy keda.sh/circuit-breaker-triggered- -n $NS"
kubectl annotate scaledobject flappy keda.sh/circuit-breaker-triggered- -n "$NS" | sed 's/^/  | /'
say "evscale deletes keda-hpa-flappy and scales again: 50 jobs -> 10 replicas"
flappy_until "HPA deleted" 30 bash -c '! kubectl get hpa keda-hpa-flappy -n "$0" >/dev/null 2>&1' "$NS" ||
  die "the HPA was not deleted"
say "keda-hpa-flappy deleted; kubectl get hpa -n $NS:"
kubectl get hpa -n "$NS" 2>&1 | sed 's/^/  | /'
flappy_until "scale to 10 after the reset" 30 wrote 10 || die "evscale did not scale flappy again"
say "breaker closed, flappy back with evscale"
