#!/usr/bin/env bash
# Interrupts `slimtrace trace` in each phase of a run (SIGINT, and SIGTERM once) and checks that
# nothing is left on the host: no runtime container, no container process, no mount or netns file,
# no cgroup, no work directory, no BPF program of ours.
# Usage: trace_teardown.sh PATH-TO-SLIMTRACE
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib/common.bash"

slimtrace=$(realpath "$1")
require_root
require_tools umoci runc bpftool jq pgrep
[[ -x /bin/busybox ]] || skip "/bin/busybox (busybox-static) is missing"
src=${SLIMTRACE_SOURCE_DIR:-$(cd "$here/../.." && pwd)}

tmp=$(mktemp -d /tmp/slimtrace-e2e-teardown.XXXXXX)

step "building a busybox image"
layout="$tmp/img"
busybox_image "$layout" "sh sleep true echo cat"
umoci config --image "$layout:latest" --config.cmd /bin/sh >/dev/null

step "checking that a trace can run here"
set +e
"$slimtrace" trace "oci:$layout:latest" -o "$tmp/probe.json" -- true 2>"$tmp/probe.err"
rc=$?
set -e
if [[ $rc -eq 4 ]]; then skip "$(cat "$tmp/probe.err")"; fi
[[ $rc -eq 0 ]] || { cat "$tmp/probe.err" >&2; fail "a plain trace failed with exit code $rc"; }

# Names of our BPF programs, as bpftool shows them (truncated to 15 characters by the kernel).
mapfile -t prog_names < <(grep -A1 -E '^SEC\("(raw_tp|tp_btf|tp|tracepoint)/' "$src/bpf/trace.bpf.c" |
  grep -oE '^int (BPF_PROG\()?[A-Za-z0-9_]+' | sed -E 's/^int (BPF_PROG\()?//' | cut -c1-15)
[[ ${#prog_names[@]} -gt 0 ]] || fail "found no BPF program names in bpf/trace.bpf.c"

# Ids of the BPF programs named like ours that process $1 holds (from its fds' fdinfo; this
# bpftool may not report owning pids, and other traces may run on the host at the same time).
our_prog_ids() {
  local id name
  for id in $(cat /proc/"$1"/fdinfo/* 2>/dev/null | awk '/^prog_id:/ { print $2 }' | sort -u); do
    name=$(bpftool -j prog show id "$id" 2>/dev/null | jq -r '.name // ""')
    printf '%s\n' "${prog_names[@]}" | grep -qxF "$name" && echo "$id"
  done
  return 0
}

bg_pid=""
cleanup() {
  if [[ -n $bg_pid ]] && kill -0 "$bg_pid" 2>/dev/null; then
    kill -INT "$bg_pid"
    wait "$bg_pid" || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

interrupt_in() {
  local phase=$1 sig=$2
  step "interrupting with SIG$sig at '$phase'"
  local wd="$tmp/work-$phase-$sig" marker="slimtrace-teardown-$RANDOM$RANDOM"
  mkdir -p "$wd"
  SLIMTRACE_TEST_PAUSE=$phase "$slimtrace" --work-dir "$wd" trace "oci:$layout:latest" -o "$tmp/out.json" \
    --duration 1 --stop-grace 30 -- sh -c "echo running; sleep 1000; : $marker" 2>"$tmp/err" &
  local pid=$!
  bg_pid=$pid
  local i
  for i in $(seq 1 600); do
    grep -q "paused at $phase" "$tmp/err" && break
    kill -0 "$pid" 2>/dev/null || { cat "$tmp/err" >&2; fail "slimtrace ended before pausing at '$phase'"; }
    sleep 0.1
  done
  grep -q "paused at $phase" "$tmp/err" || fail "slimtrace did not pause at '$phase'"

  local run_dir state id=""
  run_dir=$(find "$wd" -mindepth 1 -maxdepth 1 -name 'slimtrace-*' | head -n1)
  [[ -n $run_dir ]] || fail "no work directory under $wd"
  state="$run_dir/run/runtime-state"
  if [[ $phase != materialized ]]; then
    id=$(runc --root "$state" list -q | head -n1)
    [[ -n $id ]] || fail "no container listed at '$phase'"
    [[ -e "$run_dir/run/netns" ]] || fail "no netns file at '$phase'"
  fi
  local prog_ids=""
  if [[ $phase == started || $phase == stopping ]]; then
    pgrep -f "$marker" >/dev/null || fail "the container's process is not running at '$phase'"
    prog_ids=$(our_prog_ids "$pid")
    [[ -n $prog_ids ]] || fail "no BPF program of ours loaded at '$phase'"
  fi

  kill "-$sig" "$pid"
  local rc=0
  wait "$pid" || rc=$?
  bg_pid=""
  local want=$((128 + $(kill -l "$sig")))
  [[ $rc -eq $want ]] || { cat "$tmp/err" >&2; fail "exit code $rc after SIG$sig at '$phase', expected $want"; }

  # What must be gone.
  if [[ -n $id ]]; then
    # (runc list would create its root directory: only ask when it is still there)
    if [[ -d $state ]]; then
      [[ -z $(runc --root "$state" list -q 2>/dev/null) ]] || fail "runc still lists a container after '$phase'"
      rm -rf "$state"
      fail "the runtime state directory is left after '$phase'"
    fi
    [[ -z $(find /sys/fs/cgroup -maxdepth 4 -name "*$id*" 2>/dev/null) ]] || fail "a cgroup of $id is left after '$phase'"
    ! pgrep -f "$id" >/dev/null || fail "a process naming $id is left after '$phase'"
  fi
  ! pgrep -f "$marker" >/dev/null || fail "the container's process is left after '$phase'"
  ! grep -qF "$wd" /proc/self/mountinfo || fail "a mount under the work dir is left after '$phase'"
  [[ -z $(find "$wd" -mindepth 1 2>/dev/null) ]] || { find "$wd" >&2; fail "the work dir is left after '$phase'"; }
  # The kernel frees programs shortly after their last fd closes (deferred work): allow a moment.
  local id
  for id in $prog_ids; do
    for i in $(seq 1 50); do
      bpftool prog show id "$id" >/dev/null 2>&1 || break
      sleep 0.1
    done
    ! bpftool prog show id "$id" >/dev/null 2>&1 || fail "BPF program $id of slimtrace is left after '$phase'"
  done
  [[ ! -e "$tmp/out.json" ]] || fail "a trace was written although the run was interrupted at '$phase'"
}

for phase in materialized created started stopping; do interrupt_in "$phase" INT; done
interrupt_in started TERM

step "a run that is not interrupted leaves nothing either"
wd="$tmp/work-plain"
mkdir -p "$wd"
"$slimtrace" --work-dir "$wd" trace "oci:$layout:latest" -o "$tmp/plain.json" -- sh -c 'echo hello; exit 5' 2>"$tmp/err" ||
  { cat "$tmp/err" >&2; fail "plain run failed"; }
[[ $(jq .exit_code "$tmp/plain.json") == 5 ]] || fail "exit code 5 not recorded"
[[ $(cat "$tmp/plain.json.stdout.log") == hello ]] || fail "stdout log not next to the trace"
[[ -z $(find "$wd" -mindepth 1) ]] || fail "the work dir is left after a plain run"
! grep -qF "$wd" /proc/self/mountinfo || fail "a mount is left after a plain run"
echo "OK"
