#!/usr/bin/env bash
# Builds flatten_bench with the release preset, makes the benchmark image once (~300 MB
# uncompressed, cached under build/bench-cache/), times it against the zcat floor and writes
# bench/RESULTS.md.  Usage: bench/run.sh [REPS=5] [MB=300]
set -euo pipefail
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REPS=${1:-5}
MB=${2:-300}
cd "$SRC"
# The release preset's settings in a build dir of its own, so a concurrent build/release is untouched.
BUILD=${BENCH_BUILD_DIR:-$SRC/build/bench-release}
cmake --preset release -B "$BUILD" >/dev/null
cmake --build "$BUILD" --target flatten_bench >/dev/null
CACHE=$SRC/build/bench-cache/image-$MB
if [[ ! -f $CACHE/index.json ]]; then
  echo "making the benchmark image in $CACHE (once)"
  python3 bench/make_image.py "$CACHE" "$MB"
fi
python3 bench/measure.py "$BUILD/bench/flatten_bench" "$CACHE" "$SRC/bench/RESULTS.md" "$REPS" \
  "bench/run.sh $*"
