#!/usr/bin/env bash
# Builds the libFuzzer harnesses (preset `fuzz`) and runs each for a bounded time, starting from the
# checked-in seeds. Exit 1 when any harness finds a crash; reproducers are left in
# build/fuzz/artifacts/ (re-run one with: build/fuzz/tests/fuzz/<target> <artifact>).
# Usage: tests/fuzz/run.sh [SECONDS_PER_TARGET=20] [TARGET...]
set -euo pipefail
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SECS=${1:-20}
shift || true
TARGETS=("$@")
[[ ${#TARGETS[@]} -gt 0 ]] || TARGETS=(fuzz_index fuzz_manifest fuzz_config fuzz_docker_manifest fuzz_tar)
command -v clang++ >/dev/null || { echo "SKIP: clang++ is not installed"; exit 77; }

B=$SRC/build/fuzz
cmake --preset fuzz -S "$SRC" >/dev/null
ninja -C "$B" "${TARGETS[@]}" >/dev/null
mkdir -p "$B/artifacts"
rc=0
for t in "${TARGETS[@]}"; do
  # Work on a copy so new inputs found during the run do not land in the source tree.
  corpus=$B/corpus/$t
  mkdir -p "$corpus"
  cp -n "$SRC/tests/fuzz/corpus/$t/"* "$corpus/" 2>/dev/null || true
  log=$B/artifacts/$t.log
  # Harnesses make their scratch dir under TMPDIR; libFuzzer may exit without running atexit.
  tmp=$B/fuzz-tmp/$t
  rm -rf "$tmp" && mkdir -p "$tmp"
  if TMPDIR=$tmp "$B/tests/fuzz/$t" -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
      -print_final_stats=1 -artifact_prefix="$B/artifacts/$t-" "$corpus" >"$log" 2>&1; then
    echo "ok: $t ($(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}') runs in ${SECS}s)"
  else
    echo "CRASH: $t; log $log; reproducer: $(ls -t "$B/artifacts/$t-"* 2>/dev/null | head -n1)"
    grep -E 'ERROR|SUMMARY|#[0-9]+ 0x' "$log" | head -n 15 | sed 's/^/    /'
    rc=1
  fi
  rm -rf "$tmp"
done
exit "$rc"
