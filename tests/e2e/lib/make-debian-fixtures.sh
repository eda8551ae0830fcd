#!/usr/bin/env bash
# Builds the realistic Debian test images (tests/e2e/lib/debian_fixtures.bash), or only warms
# their cache, e.g. before CI runs the e2e tests.
#
#   make-debian-fixtures.sh [-o DIR] [KIND...]
#
# KIND: web, pyapp, batch, service (default: all four). With -o DIR, each image is written as the
# OCI layout DIR/KIND (tag latest); without it only the cache under
# ${SLIMTRACE_CACHE_DIR:-/var/cache/slimtrace}/debian is filled. The base rootfs is made first,
# then the images in parallel. Exit 0 when all were built, 77 when skipped (no mirror or not root),
# 1 on failure.
set -euo pipefail

lib_dir=$(cd "${BASH_SOURCE[0]%/*}" && pwd)
# shellcheck source=common.bash
source "$lib_dir/common.bash"
# shellcheck source=debian_fixtures.bash
source "$lib_dir/debian_fixtures.bash"

usage() {
  echo "usage: ${0##*/} [-o DIR] [KIND...]   (KIND: ${DEBIAN_KINDS[*]})" >&2
  exit 2
}

out=
while getopts 'o:h' opt; do
  case $opt in
  o) out=$OPTARG ;;
  *) usage ;;
  esac
done
shift $((OPTIND - 1))
kinds=("$@")
[[ ${#kinds[@]} -gt 0 ]] || kinds=("${DEBIAN_KINDS[@]}")
for k in "${kinds[@]}"; do
  case $k in web | pyapp | batch | service) ;; *) usage ;; esac
done
if [[ -n $out ]]; then
  mkdir -p "$out"
  out=$(cd "$out" && pwd)
  for k in "${kinds[@]}"; do
    [[ ! -e $out/$k ]] || fail "'$out/$k' exists; remove it first"
  done
fi

t0=$SECONDS
# Shared by every image: made once, before the parallel part (which would only queue on its lock).
_debian_require
_debian_base_layout_warm

logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
declare -A pids=()
for k in "${kinds[@]}"; do
  if [[ -n $out ]]; then
    debian_image "$k" "$out/$k" >"$logs/$k.log" 2>&1 &
  else
    debian_image_warm "$k" >"$logs/$k.log" 2>&1 &
  fi
  pids[$k]=$!
done

status=0
for k in "${kinds[@]}"; do
  rc=0
  wait "${pids[$k]}" || rc=$?
  if [[ $rc -eq 0 ]]; then
    grep '^debian_fixtures:' "$logs/$k.log" | sed 's/^/  /' || true
    echo "$k: ok${out:+ -> $out/$k} ($(du -sh "$(_debian_image_dir "$k")" | cut -f1))"
  else
    echo "$k: exit $rc"
    sed 's/^/  /' "$logs/$k.log"
    if [[ $rc -eq 77 && $status -eq 0 ]]; then status=77; elif [[ $rc -ne 77 ]]; then status=1; fi
  fi
done
echo "debian fixtures: ${kinds[*]} in $((SECONDS - t0))s"
exit "$status"
