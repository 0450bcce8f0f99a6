#!/usr/bin/env bash
# Proves the tree reads bottom-up: no room includes a header of a room above it.
#   core (0) < net, obs (1) < kube, scalers (2) < scale (3) < registry (4) < app (5)
# A header include/evscale/X.h belongs to the room of its implementation src/<room>/X.c; a header
# with no implementation belongs to the room named in its first line ("room: NAME"), else core.
# Prints every offending edge and exits 1 if there is one; prints the room graph with -v.
set -euo pipefail
cd "$(dirname "$0")/.."

declare -A level=([core]=0 [net]=1 [obs]=1 [kube]=2 [scalers]=2 [scale]=3 [registry]=4 [app]=5)
declare -A room_of

for h in include/evscale/*.h; do
  name=$(basename "$h" .h)
  impl=$(ls src/*/"$name".c 2>/dev/null | head -n 1 || true)
  if [ -n "$impl" ]; then
    room_of[$name]=$(basename "$(dirname "$impl")")
  else
    r=$(head -n 3 "$h" | sed -n 's/.*room: *\([a-z]*\).*/\1/p' | head -n 1)
    room_of[$name]=${r:-core}
  fi
done

bad=0
declare -A edges
check() { # file room
  local f=$1 from=$2 inc to
  [ -n "${level[$from]:-}" ] || { echo "unknown room '$from' for $f"; bad=1; return; }
  while read -r inc; do
    to=${room_of[$inc]:-}
    [ -n "$to" ] || { echo "$f includes evscale/$inc.h, which does not exist"; bad=1; continue; }
    [ "$from" = "$to" ] && continue
    edges["$from -> $to"]=1
    if [ "${level[$to]}" -gt "${level[$from]}" ]; then
      echo "layer violation: $f ($from) includes evscale/$inc.h ($to)"
      bad=1
    fi
  done < <(grep -oE '^#include "evscale/[a-z0-9_]+\.h"' "$f" | sed -E 's/.*evscale\/([a-z0-9_]+)\.h.*/\1/')
  # A relative include reaching into another room bypasses the header rule.
  if grep -nE '^#include "\.\./' "$f" >/dev/null; then
    echo "relative include across rooms in $f"; bad=1
  fi
}

for f in src/*/*.[ch]; do check "$f" "$(basename "$(dirname "$f")")"; done
for h in include/evscale/*.h; do n=$(basename "$h" .h); check "$h" "${room_of[$n]}"; done

if [ "${1:-}" = "-v" ]; then printf '%s\n' "${!edges[@]}" | sort; fi
if [ "$bad" -ne 0 ]; then echo "check-layers: FAILED"; exit 1; fi
echo "check-layers: ok (${#edges[@]} edges between rooms, none upward)"
