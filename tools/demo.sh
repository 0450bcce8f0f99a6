#!/usr/bin/env bash
# The README's first command: installs what is needed, builds evscale and runs it on a local demo.
# Until the Kubernetes client lands, the demo is evscale itself with config/example.yaml: it
# serves /healthz, /readyz and /metrics, reloads on SIGHUP or when the file changes, and stops
# cleanly on Ctrl-C. EVS_DEMO_ARGS adds arguments to `evscale run`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh
cmake -S . -B build/demo -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build/demo -j "$(nproc 2>/dev/null || echo 2)"
echo "demo: evscale is starting; try: curl -s localhost:8080/metrics | head; Ctrl-C stops it"
exec build/demo/evscale run --config config/example.yaml ${EVS_DEMO_ARGS:-}
