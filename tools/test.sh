#!/usr/bin/env bash
# The test command (README, .ci/run): installs what is needed, then three passes:
#   1. release build with -Werror, every unit and end-to-end test (real redis-server, prometheus,
#      kube-apiserver on loopback);
#   2. the same tests built with AddressSanitizer + UndefinedBehaviorSanitizer;
#   3. every libFuzzer target, EVS_FUZZ_SECONDS each (default 30) from its seed corpus.
# EVS_PASSES selects passes (default "1 2 3"); EVS_BUILD_ROOT the build directory (default build/).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
passes=${EVS_PASSES:-"1 2 3"}
build=${EVS_BUILD_ROOT:-$root/build}
fuzz_seconds=${EVS_FUZZ_SECONDS:-30}
jobs=$(nproc 2>/dev/null || echo 2)

bash tools/install-deps.sh

# One control plane for the whole run (tests reuse it through KUBE_* in the environment). The
# first build from Debian's source takes several minutes and is cached outside the tree.
cp_dir=""
cleanup() {
  if [ -n "$cp_dir" ] && [ -x tools/controlplane.sh ]; then tools/controlplane.sh stop "$cp_dir" || true; fi
}
trap cleanup EXIT
if [ -x tools/controlplane.sh ]; then
  tools/controlplane.sh build
  cp_dir=$(mktemp -d /tmp/evscale-cp.XXXXXX)
  tools/controlplane.sh start "$cp_dir"
  set -a; . "$cp_dir/env"; set +a
fi

run_ctest() {
  local dir=$1
  # Sanitizer reports must fail the run, never scroll by.
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir "$dir" --output-on-failure -j "$jobs" --timeout 900
}

for pass in $passes; do
  case $pass in
  1)
    echo "== pass 1: format check, release build (-Werror) and tests"
    # The checked-in .clang-format is applied to every C file (clang-format -i to fix).
    git ls-files 'src/*.[ch]' 'include/*.h' 'test/*.[ch]' 'perf/*.c' | xargs clang-format --dry-run --Werror
    # No room includes a header of a room above it (core < net, obs < kube, scalers < scale < app).
    bash tools/check-layers.sh
    # Release (-O3): the optimiser finds warnings that -O2 does not.
    cmake -S . -B "$build/release" -DCMAKE_BUILD_TYPE=Release -DEVSCALE_WERROR=ON >/dev/null
    cmake --build "$build/release" -j "$jobs"
    run_ctest "$build/release"
    ;;
  2)
    echo "== pass 2: AddressSanitizer + UndefinedBehaviorSanitizer build and tests"
    cmake -S . -B "$build/asan" -DCMAKE_BUILD_TYPE=Debug -DEVSCALE_SANITIZE=ON -DEVSCALE_WERROR=ON >/dev/null
    cmake --build "$build/asan" -j "$jobs"
    run_ctest "$build/asan"
    ;;
  3)
    echo "== pass 3: libFuzzer targets, ${fuzz_seconds}s each"
    CC=clang cmake -S . -B "$build/fuzz" -DEVSCALE_FUZZ=ON -DEVSCALE_WERROR=ON >/dev/null
    cmake --build "$build/fuzz" -j "$jobs"
    fails=0; count=0
    for src in test/fuzz/fuzz_*.c; do
      name=$(basename "$src" .c)
      corpus="test/fuzz/corpus/$name"
      [ -d "$corpus" ] || { echo "fuzz: $name has no seed corpus at $corpus"; fails=$((fails+1)); continue; }
      work=$(mktemp -d)
      cp -r "$corpus/." "$work/"
      echo "-- $name"
      if (cd "$work" && "$build/fuzz/$name" -max_total_time="$fuzz_seconds" -print_final_stats=1 \
            -timeout=10 -rss_limit_mb=2048 "$work" >"$work/log" 2>&1); then
        count=$((count+1)); grep -E '^stat::number_of_executed_units' "$work/log" || true
      else
        fails=$((fails+1)); tail -n 60 "$work/log"
        mkdir -p "$build/fuzz/crashes"; cp "$work"/crash-* "$work"/leak-* "$work"/timeout-* "$build/fuzz/crashes/" 2>/dev/null || true
      fi
      rm -rf "$work"
    done
    echo "fuzz: $count passed, $fails failed"
    [ "$fails" -eq 0 ]
    ;;
  esac
done
echo "tools/test.sh: all passes green"
