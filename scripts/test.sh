#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs dependencies, builds the `ci` preset
# (warnings are errors), runs lint, every unit and e2e test, then each fuzz target briefly.
# Every stage runs even when an earlier check failed, so one run shows all problems; the exit
# status is non-zero if anything failed.
set -uo pipefail
cd "$(dirname "$0")/.."
exec </dev/null

jobs=$(nproc 2>/dev/null || echo 2)
fuzz_seconds=${SLIMTRACE_FUZZ_SECONDS:-20}
failed=()

step() { echo; echo "==> $*"; }

step "setup"
if ! bash scripts/setup.sh; then
  echo "test: setup failed" >&2
  exit 1
fi

step "configure and build (ci preset)"
if ! { cmake --preset ci >/dev/null && cmake --build --preset ci -j "$jobs" -- -k 0; }; then
  echo "test: build failed" >&2
  exit 1
fi

step "lint"
bash scripts/lint.sh build/ci || failed+=(lint)

step "unit and e2e tests"
ctest --preset ci -j "$jobs" || failed+=(ctest)

step "fuzz targets (${fuzz_seconds}s each)"
if compgen -G "tests/fuzz/*.cpp" >/dev/null; then
  if cmake --preset fuzz >/dev/null && cmake --build --preset fuzz -j "$jobs"; then
    mapfile -t targets < <(find build/fuzz -type f -perm -u+x -name 'fuzz_*' | sort)
    [ ${#targets[@]} -eq 0 ] && echo "test: no fuzz_* binaries were built"
    for bin in "${targets[@]}"; do
      name=$(basename "$bin")
      corpus=build/fuzz/corpus-$name
      mkdir -p "$corpus"
      seeds=()
      [ -d "tests/fuzz/corpus/$name" ] && seeds=("tests/fuzz/corpus/$name")
      # Crash reproducers go to build/fuzz/artifacts, the harnesses' scratch files to their own TMPDIR.
      mkdir -p build/fuzz/artifacts "build/fuzz/tmp-$name"
      log=build/fuzz/artifacts/$name.log
      if TMPDIR=$PWD/build/fuzz/tmp-$name "$bin" -max_total_time="$fuzz_seconds" -timeout=10 \
          -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
          -artifact_prefix="build/fuzz/artifacts/$name-" "$corpus" "${seeds[@]}" >"$log" 2>&1; then
        echo "fuzz: $name ok ($(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}') runs)"
      else
        tail -n 40 "$log" >&2
        echo "fuzz: $name FAILED; log $log; reproducers build/fuzz/artifacts/$name-*" >&2
        failed+=("fuzz:$name")
      fi
      rm -rf "build/fuzz/tmp-$name"
    done
  else
    failed+=(fuzz-build)
  fi
else
  echo "test: no fuzz targets in tests/fuzz, skipped"
fi

echo
if [ ${#failed[@]} -ne 0 ]; then
  echo "test: FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "test: all passed"
