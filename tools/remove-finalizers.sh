#!/usr/bin/env bash
# Uninstall step: removes evscale's finalizer (evscale.io/restore-replicas) from every ScaledObject
# that carries it, so deleting those ScaledObjects no longer waits for evscale. Run it after
# stopping evscale and before (or instead of) deleting it; other finalizers are left alone.
#   tools/remove-finalizers.sh [-n NAMESPACE]    (default: all namespaces)
# Uses kubectl (current context, or $KUBECONFIG) and python3. Each patch is a JSON patch that
# tests the finalizer's position before removing it, so a concurrent change fails instead of
# removing another finalizer.
set -euo pipefail
FIN="evscale.io/restore-replicas"
scope=(-A)
if [ "${1:-}" = "-n" ] && [ -n "${2:-}" ]; then scope=(-n "$2"); fi
kubectl get scaledobjects.keda.sh "${scope[@]}" -o json | python3 -c '
import json, sys
fin = sys.argv[1]
for o in json.load(sys.stdin)["items"]:
    fins = o["metadata"].get("finalizers") or []
    if fin in fins:
        i = fins.index(fin)
        patch = [{"op": "test", "path": "/metadata/finalizers/%d" % i, "value": fin},
                 {"op": "remove", "path": "/metadata/finalizers/%d" % i}]
        print(o["metadata"]["namespace"], o["metadata"]["name"], json.dumps(patch))
' "$FIN" | while read -r ns name patch; do
  kubectl patch scaledobjects.keda.sh "$name" -n "$ns" --type json -p "$patch" >/dev/null
  echo "removed $FIN from $ns/$name"
done
