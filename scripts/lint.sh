#!/usr/bin/env bash
# Style and static checks, as CI runs them.
#   scripts/lint.sh [BUILD_DIR]   check (BUILD_DIR holds compile_commands.json; default build/ci)
#   scripts/lint.sh --fix         reformat every source file in place with clang-format
set -euo pipefail
cd "$(dirname "$0")/.."

clang_format=$(command -v clang-format-14 || command -v clang-format)
clang_tidy=$(command -v clang-tidy-14 || command -v clang-tidy)

mapfile -t sources < <(find image cli tests bench tracer probe packer pipeline -path '*/build' -prune -o \
  \( -name '*.cpp' -o -name '*.hpp' \) -type f -print 2>/dev/null | sort)

if [ "${1:-}" = "--fix" ]; then
  "$clang_format" -i "${sources[@]}"
  exit 0
fi

build_dir=${1:-build/ci}
status=0

echo "lint: clang-format (${#sources[@]} files)"
if ! "$clang_format" --dry-run --Werror "${sources[@]}"; then
  echo "lint: formatting differs; run 'bash scripts/lint.sh --fix'" >&2
  status=1
else
  echo "lint: clang-format ok"
fi

if [ ! -f "$build_dir/compile_commands.json" ]; then
  echo "lint: $build_dir/compile_commands.json missing; configure first (cmake --preset ci)" >&2
  exit 1
fi
mapfile -t tidy_sources < <(find image/src -name '*.cpp' -type f | sort)
echo "lint: clang-tidy (${#tidy_sources[@]} files)"
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
# One clang-tidy per file in parallel; each writes its own log so reports do not interleave.
printf '%s\n' "${tidy_sources[@]}" | xargs -P "$(nproc)" -I{} sh -c \
  '"$0" -p "$1" --quiet "$2" >"$3/$(echo "$2" | tr / _).log" 2>&1 || touch "$3/failed"' \
  "$clang_tidy" "$build_dir" {} "$logs"
if [ -e "$logs/failed" ]; then
  # clang-tidy prints "N warnings generated" per file even when all are in system headers.
  cat "$logs"/*.log | grep -v -E '^[0-9]+ warnings? (and [0-9]+ errors? )?generated\.$' >&2 || true
  echo "lint: clang-tidy found problems" >&2
  status=1
else
  echo "lint: clang-tidy ok"
fi
[ $status -eq 0 ] && echo "lint: ok"
exit $status
