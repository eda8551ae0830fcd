# Sourced by bench/tracer_overhead*.sh: what the HTTP verdict is judged on.
#
# hook_floor_runs: the kernel's floor under the tracer's fixed cost, a host getppid loop with empty
# programs on the syscall tracepoints (hook_floor), and the same loop while slimtrace's own programs
# are attached (floor.json and floor-slimtrace.json in OUT; floor-seccomp.json under a seccomp
# filter). Needs FLOOR, BENCH, IMG (with /bin/sleep).
#
# side_by_side PAIRS: a traced and an untraced server side by side on one CPU,
# each loaded by its own wrk on another CPU in windows aligned on the wall clock (tracer_bench
# --wrk-at). The machine's speed changes from second to second; two servers sharing a CPU in the
# same window see the same changes, so their ratio is steady where separate runs spread tens of
# percent. Needs: BENCH, IMG, OUT, SERVER_CPU, WRK_CPU, PORT, URL and the array SERVER_CMD; writes
# OUT/same.jsonl, same-control.jsonl and same-count.jsonl, one pair per JSON line:
# {"pair": [first started, second started]}.
WINDOWS=5
WINDOW_SECONDS=3
PERIOD_MS=3500
CONTROL_PAIRS=4
# Room for both containers to start and the BPF programs to load before window 1 (a larger image
# takes longer: the caller may set it).
LEAD_MS=${LEAD_MS:-8000}

hook_floor_runs() {
  "$FLOOR" --reps 21 >"$OUT/floor.json"
  # The same under an allow-all seccomp filter, as the containers' processes run (a reading).
  "$FLOOR" --reps 9 --seccomp >"$OUT/floor-seccomp.json"
  # The container only sleeps: long enough for the loop, then it ends by itself (a clean teardown).
  "$BENCH" "$IMG" attached -- /bin/sleep 45 >"$OUT/floor-attached.jsonl" 2>"$OUT/floor-attached.err" &
  local attached_pid=$!
  for _ in $(seq 1 100); do
    bpftool prog show name on_sys_exit >/dev/null 2>&1 && break
    sleep 0.3
  done
  bpftool prog show name on_sys_exit >/dev/null 2>&1 ||
    { cat "$OUT/floor-attached.err" >&2; echo "hook floor: the programs were never loaded" >&2; exit 1; }
  sleep 2 # loaded comes before attached, and the container's start before its sleep
  "$FLOOR" --reps 21 --only none >"$OUT/floor-slimtrace.json"
  wait "$attached_pid" || { cat "$OUT/floor-attached.err" >&2; exit 1; }
}

# An interrupted run stops the pair in flight too (each tracer_bench tears its container down on TERM).
trap 'kill $(jobs -p) 2>/dev/null; exit 130' INT TERM

together() { # NAME MODE1 MODE2 [EXTRA ARGS FOR THE FIRST]
  local name=$1 modes=("$2" "$3") extra=${4:-} pids=() slot
  local at=$(($(date +%s%3N) + LEAD_MS))
  for slot in 0 1; do
    local x=
    [[ $slot == 0 ]] && x=$extra
    # shellcheck disable=SC2086 # $x is zero or more flags
    taskset -c "$SERVER_CPU" "$BENCH" "$IMG" "${modes[$slot]}" --wait-port "$PORT" --wrk-cpu "$WRK_CPU" \
      --wrk-repeat "$WINDOWS" --wrk-at "$at" --wrk-period "$PERIOD_MS" $x \
      --wrk "-t1 -c8 -d${WINDOW_SECONDS}s $URL" \
      -- "${SERVER_CMD[@]}" >"$OUT/$name.$slot.json" 2>>"$OUT/$name.err" &
    pids+=($!)
  done
  for slot in 0 1; do
    wait "${pids[$slot]}" || { cat "$OUT/$name.err" >&2; echo "side by side: $name (${modes[$slot]}) failed" >&2; exit 1; }
  done
  jq -c -s '{pair: .}' "$OUT/$name.0.json" "$OUT/$name.1.json" >>"$OUT/$name.jsonl"
  rm -f "$OUT/$name.0.json" "$OUT/$name.1.json"
}

side_by_side() { # PAIRS
  local i
  for i in $(seq 1 "$1"); do
    echo "== same seconds: pair $i/$1" >&2
    # Which one starts first alternates.
    if ((i % 2)); then together same ebpf none; else together same none ebpf; fi
  done
  # Untraced pairs: how far apart two identical containers come out (each container instance has a
  # speed of its own, so the pairs, not the windows, are the independent measurements).
  for i in $(seq 1 "$CONTROL_PAIRS"); do
    echo "== same seconds: untraced pair $i/$CONTROL_PAIRS (the method's own error)" >&2
    together same-control none none
  done
  echo "== same seconds: syscall count" >&2
  # The traced one counts the syscalls on the server's CPU (and its BPF statistics the programs' runs).
  together same-count ebpf none "--count-syscalls --bpf-stats"
}
