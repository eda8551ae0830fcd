#!/usr/bin/env bash
# Two `slimtrace trace` runs at the same time, with each tracer: each trace holds its own
# container's marker file and none of the other's, and nothing the host did meanwhile (this script
# reading a file of its own in a loop) shows up in either.
# The containers wait for each other through a shared host directory, so they really overlap.
# Usage: trace_concurrent.sh PATH-TO-SLIMTRACE
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib/common.bash"

slimtrace=$(realpath "$1")
require_root
require_tools umoci runc jq
[[ -x /bin/busybox ]] || skip "/bin/busybox (busybox-static) is missing"

tmp=$(mktemp -d /tmp/slimtrace-e2e-concurrent.XXXXXX)
host_pid=
cleanup() {
  [[ -n $host_pid ]] && kill "$host_pid" 2>/dev/null && wait "$host_pid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT

# build_image NAME: busybox with /NAME-only; the command reads it, waits for the other container
# (or gives up after 30 s), sleeps, reads it again, and says whether it saw the other one.
build_image() {
  local name=$1 other=$2
  local layout="$tmp/img-$name"
  add_marker() {
    mkdir -p "$1/sync"
    echo "marker of $name" >"$1/$name-only"
  }
  busybox_image "$layout" "sh sleep cat touch echo" add_marker
  umoci config --image "$layout:latest" --config.entrypoint /bin/sh --config.cmd=-c \
    --config.cmd="cat /$name-only; touch /sync/up-$name; i=0
      while [ ! -e /sync/up-$other ] && [ \$i -lt 300 ]; do sleep 0.1; i=\$((i+1)); done
      [ -e /sync/up-$other ] && echo overlapped || echo alone
      sleep 2; cat /$name-only" >/dev/null
}

step "building two busybox images"
build_image a b
build_image b a

# A host file this script keeps reading while the containers run: it must be in neither trace.
host_file="$tmp/host-activity-$RANDOM.txt"
echo 'host side' >"$host_file"

for tracer in ebpf fanotify; do
  step "two traces at the same time, --tracer $tracer"
  rm -rf "$tmp/sync"
  mkdir -p "$tmp/sync"
  (while :; do cat "$host_file" >/dev/null; stat "$host_file" >/dev/null; sleep 0.05; done) &
  host_pid=$!
  pids=()
  for n in a b; do
    "$slimtrace" -q trace "oci:$tmp/img-$n:latest" --tracer "$tracer" --mount "$tmp/sync:/sync" \
      -o "$tmp/$n.json" 2>"$tmp/$n.err" &
    pids+=($!)
  done
  rcs=()
  for p in "${pids[@]}"; do
    set +e
    wait "$p"
    rcs+=($?)
    set -e
  done
  kill "$host_pid" 2>/dev/null || true
  wait "$host_pid" 2>/dev/null || true
  host_pid=
  if [[ ${rcs[0]} -eq 4 || ${rcs[1]} -eq 4 ]]; then
    # The tracer cannot run here (no BPF, no fanotify): say why, once per tracer.
    [[ $tracer == ebpf ]] && skip "$(cat "$tmp/a.err" "$tmp/b.err" | head -n 1)"
    echo "note: --tracer $tracer unavailable: $(cat "$tmp/a.err" "$tmp/b.err" | head -n 1)"
    continue
  fi
  for i in 0 1; do
    n=$([[ $i -eq 0 ]] && echo a || echo b)
    [[ ${rcs[$i]} -eq 0 ]] || { cat "$tmp/$n.err" >&2; fail "trace of $n ($tracer) exited ${rcs[$i]}"; }
  done

  for n in a b; do
    o=$([[ $n == a ]] && echo b || echo a)
    t="$tmp/$n.json"
    [[ $(jq .exit_code "$t") == 0 ]] || fail "$tracer: container $n exited $(jq .exit_code "$t")"
    [[ $(head -n 2 "$t.stdout.log" | tail -n 1) == overlapped ]] ||
      fail "$tracer: container $n did not run at the same time as the other: $(cat "$t.stdout.log")"
    [[ $(jq --arg p "/$n-only" '[.files[] | select(.path == $p and .found)] | length' "$t") == 1 ]] ||
      fail "$tracer: trace of $n lacks its own marker /$n-only"
    [[ $(jq --arg p "/$o-only" '[.files[] | select(.path == $p)] | length' "$t") == 0 ]] ||
      fail "$tracer: trace of $n has the other container's marker /$o-only"
    # Nothing of the other container anywhere: paths, exec argv, processes' command lines.
    ! grep -q -- "$o-only" "$t" || fail "$tracer: trace of $n mentions $o-only: $(grep -- "$o-only" "$t" | head -n 3)"
    # The host file, under either its host path or its name alone.
    ! grep -q -- "$(basename "$host_file")" "$t" || fail "$tracer: trace of $n has host activity ($host_file)"
    ! grep -q -- "\"$tmp" "$t" || fail "$tracer: trace of $n has host paths under $tmp: $(grep -- "\"$tmp" "$t" | head -n 3)"
  done

  # Each process appears in one trace only.
  common=$(comm -12 <(jq -r '.processes[].pid' "$tmp/a.json" | sort -u) <(jq -r '.processes[].pid' "$tmp/b.json" | sort -u))
  [[ -z $common ]] || fail "$tracer: processes in both traces: $common"
  [[ $(jq '.dropped_events' "$tmp/a.json") == 0 && $(jq '.dropped_events' "$tmp/b.json") == 0 ]] ||
    fail "$tracer: events were dropped"
done
echo OK
