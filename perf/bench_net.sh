#!/usr/bin/env bash
# Builds perf/bench_http_client.c (Release) and runs it against a real local kube-apiserver.
#
#   perf/bench_net.sh [--append-results perf/RESULTS.md] [bench args: -n 500 -w 10 -b 40 -p 4 -c 50 -m 50]
#
# The control plane: KUBE_* from the environment when set, else the shared one of
# test/e2e/evstest.py (~/.cache/evscale/cp-shared), started when it does not answer.
# Build directory: $EVS_PERFNET_BUILD (default build-perfnet in the repository).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
BUILD="${EVS_PERFNET_BUILD:-$REPO/build-perfnet}"
APPEND=""
if [ "${1:-}" = "--append-results" ]; then
  APPEND="$2"
  shift 2
fi

cmake -S "$REPO" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DEVSCALE_WERROR=ON >/dev/null
cmake --build "$BUILD" --target bench_http_client -j2 >/dev/null

ENVFILE="$(mktemp /tmp/evs-perfnet-env.XXXXXX)"
trap 'rm -f "$ENVFILE"' EXIT
(cd "$REPO" && python3 -c "
import sys; sys.path.insert(0, 'test/e2e'); import evstest
e = evstest.controlplane()
open('$ENVFILE', 'w').write(''.join(k + '=' + v + '\n' for k, v in e.items()))")

OUT="$(EVS_CP_ENV="$ENVFILE" "$BUILD/bench_http_client" "$@")"
echo "$OUT"
if [ -n "$APPEND" ]; then
  {
    echo
    echo "## evscale HTTP client against kube-apiserver ($(date -u '+%Y-%m-%d %H:%M UTC'))"
    echo
    echo "Command: \`$(echo "perf/bench_net.sh $*" | sed 's/ *$//')\` (Release build of perf/bench_http_client.c)  "
    echo "Machine: $(hostname), $(nproc) CPUs, \`uptime\`: $(uptime | sed 's/^ *//') (shared machine: other engineers' builds and tests run at the same time)"
    echo
    echo "$OUT" | sed 's/^### /#### /'
  } >>"$APPEND"
fi
