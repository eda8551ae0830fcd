#!/usr/bin/env bash
# Tracer overhead: the same workloads in the same container, traced with the eBPF tracer and
# untraced (a backend that records nothing, same runtime/bundle/netns), interleaved, in one run:
#   1. a syscall-heavy loop (bench/syscall_loop.c, static): open+close, stat, getpid per iteration;
#      unpaced (overhead), and paced to ~120k tracer events/s (dropped events at >= 100k events/s);
#   2. wrk against busybox httpd in the container, through the container's netns (127.0.0.1 only):
#      the server (the container, with the runtime and the tracer) on one CPU and wrk on another, the
#      usual set-up for measuring a server, where the load generator neither shares the server's
#      CPU nor limits it; then unpinned, wrk and the server sharing both CPUs, also with the BPF
#      programs attached but following nothing, to tell fixed from per-event cost; and everything
#      on one CPU (taskset), where the ratio is the CPU cost alone.
#   3. the kernel's floor per host syscall for the hooks (bench/hook_floor.cpp), next to the same
#      loop with slimtrace's programs attached;
#   4. in the same seconds: a traced and an untraced server side by side on one CPU, each loaded by
#      its own wrk (on the other CPU) in aligned windows. The machine's speed changes from second to
#      second (the runs above spread tens of percent); two servers sharing a CPU in the same window
#      see the same changes, so their ratio is steady to about a percent. Both pay the fixed cost of
#      the attached programs (it is host-wide), so this measures the cost of recording; the fixed
#      cost comes from 3 and the syscalls counted on the server's CPU. Also an untraced pair (the
#      method's own error) and a counting pair.
# Builds tracer_bench with the release preset, builds the image, and rewrites the "Tracer overhead"
# part of bench/RESULTS.md (the flatten part above it is kept). Needs root, runc or crun, and BPF.
# Usage: bench/tracer_overhead.sh [REPS=5] [WRK_SECONDS=6] [PAIRS=6]   (about 13 minutes with the
# defaults: more, shorter wrk runs, because on a shared machine the load drifts over tens of seconds)
set -euo pipefail
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REPS=${1:-5}
WRK_SECONDS=${2:-6}
PAIRS=${3:-6}
cd "$SRC"
[[ $(id -u) -eq 0 ]] || { echo "tracer_overhead.sh: needs root (runs containers, loads BPF)" >&2; exit 1; }
for t in umoci gcc wrk jq python3 taskset bpftool; do
  command -v "$t" >/dev/null || { echo "tracer_overhead.sh: '$t' is not installed" >&2; exit 1; }
done
[[ $(nproc) -ge 2 ]] || { echo "tracer_overhead.sh: needs two CPUs (server and wrk on CPUs of their own)" >&2; exit 1; }
[[ -x /bin/busybox ]] || { echo "tracer_overhead.sh: /bin/busybox (busybox-static) is missing" >&2; exit 1; }

# The release preset's settings in a build dir of its own, so a concurrent build/release is untouched.
BUILD=${BENCH_BUILD_DIR:-$SRC/build/bench-release}
# BENCH_RESULTS=FILE writes the section there instead (a trial run that leaves RESULTS.md alone).
RESULTS=${BENCH_RESULTS:-$SRC/bench/RESULTS.md}
# An already configured dir (e.g. BENCH_BUILD_DIR=build/<yours>) is built as it is.
[[ -f $BUILD/CMakeCache.txt ]] || cmake --preset release -B "$BUILD" >/dev/null
cmake --build "$BUILD" --target tracer_bench hook_floor >/dev/null
BENCH=$BUILD/bench/tracer_bench
FLOOR=$BUILD/bench/hook_floor

OUT=$BUILD/tracer-bench
rm -rf "$OUT"
mkdir -p "$OUT"
step() { echo "== $*" >&2; }

step "building the benchmark image"
gcc -static -O2 -o "$OUT/syscall_loop" bench/syscall_loop.c
layout=$OUT/img
umoci init --layout "$layout"
umoci new --image "$layout:latest"
umoci unpack --image "$layout:latest" "$OUT/bundle" >/dev/null
r=$OUT/bundle/rootfs
mkdir -p "$r/bin" "$r/etc" "$r/tmp" "$r/data" "$r/www"
cp /bin/busybox "$r/bin/busybox"
for a in sh httpd sleep cat; do ln -s busybox "$r/bin/$a"; done
cp "$OUT/syscall_loop" "$r/bin/syscall_loop"
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$r/etc/passwd"
printf 'root:x:0:\n' >"$r/etc/group"
echo 'the file the loop opens' >"$r/data/file"
head -c 1024 /dev/zero | tr '\0' 'x' >"$r/www/file"
umoci repack --image "$layout:latest" "$OUT/bundle" >/dev/null
umoci config --image "$layout:latest" --config.cmd /bin/sh >/dev/null
rm -rf "$OUT/bundle"
img="oci:$layout:latest"

LOOP_ITERATIONS=500000
# Two events (path syscalls) per iteration: 60k iterations/s is 120k events/s, for 3 s.
PACED_RATE=60000
PACED_ITERATIONS=180000
run() { # NAME MODE ARGS...: one tracer_bench run, its JSON line appended to $OUT/NAME.jsonl
  local name=$1 mode=$2
  shift 2
  $PIN "$BENCH" "$img" "$mode" "$@" >>"$OUT/$name.jsonl" 2>>"$OUT/$name.err" ||
    { cat "$OUT/$name.err" >&2; echo "tracer_overhead.sh: $name ($mode) failed" >&2; exit 1; }
}
PIN=
ONE_CPU=$(($(nproc) - 1))
load_before=$(cut -d' ' -f1 /proc/loadavg)
started=$(date +%s)
for i in $(seq 1 "$REPS"); do
  step "repetition $i/$REPS"
  for mode in none ebpf; do
    run loop "$mode" -- /bin/syscall_loop "$LOOP_ITERATIONS" 0 /data/file
  done
  # Distinct missing paths: repeats of one lookup would be counted in the kernel, not sent.
  run paced ebpf -- /bin/syscall_loop "$PACED_ITERATIONS" "$PACED_RATE" /data/missing distinct
  # The order rotates between repetitions, so drift in the machine's load favours no mode.
  wrk_modes=(none ebpf attached)
  for k in 0 1 2; do
    mode=${wrk_modes[$(((k + i - 1) % 3))]}
    run wrk "$mode" --wait-port 8080 --wrk "-t1 -c8 -d${WRK_SECONDS}s http://127.0.0.1:8080/file" \
      -- /bin/httpd -f -p 127.0.0.1:8080 -h /www
  done
  # The server on its own CPU (the runtime and the container inherit the affinity), wrk on another.
  pair_modes=(none ebpf)
  for k in 0 1; do
    mode=${pair_modes[$(((k + i - 1) % 2))]}
    PIN="taskset -c $ONE_CPU" run wrk2 "$mode" --wait-port 8080 --wrk-cpu 0 \
      --wrk "-t1 -c8 -d${WRK_SECONDS}s http://127.0.0.1:8080/file" -- /bin/httpd -f -p 127.0.0.1:8080 -h /www
  done
  # One CPU: the runtime and the container inherit the affinity.
  one_cpu_modes=(none ebpf)
  for k in 0 1; do
    mode=${one_cpu_modes[$(((k + i - 1) % 2))]}
    PIN="taskset -c $ONE_CPU" run wrk1 "$mode" --wait-port 8080 \
      --wrk "-t1 -c8 -d${WRK_SECONDS}s http://127.0.0.1:8080/file" -- /bin/httpd -f -p 127.0.0.1:8080 -h /www
  done
done
# Diagnostic runs, not part of the ratios: the kernel's per-program BPF run time while wrk runs
# (BPF_ENABLE_STATS costs a little on every program run, so it stays off in the runs above).
step "BPF run-time diagnostic"
for mode in ebpf attached; do
  run bpfstats "$mode" --bpf-stats --wait-port 8080 --wrk "-t1 -c8 -d5s http://127.0.0.1:8080/file" \
    -- /bin/httpd -f -p 127.0.0.1:8080 -h /www
done
# The kernel's floor under the fixed cost: a host getppid loop with empty programs on the syscall
# tracepoints (hook_floor), and the same loop while slimtrace's own programs are attached.
step "hook floor"
"$FLOOR" --reps 21 >"$OUT/floor.json"
# The container only sleeps: long enough for the loop, then it ends by itself (a clean teardown).
"$BENCH" "$img" attached -- /bin/sleep 45 >"$OUT/floor-attached.jsonl" 2>"$OUT/floor-attached.err" &
attached_pid=$!
for _ in $(seq 1 100); do
  bpftool prog show name on_sys_enter >/dev/null 2>&1 && break
  sleep 0.3
done
bpftool prog show name on_sys_enter >/dev/null 2>&1 ||
  { cat "$OUT/floor-attached.err" >&2; echo "tracer_overhead.sh: the programs were never loaded" >&2; exit 1; }
sleep 2 # loaded comes before attached, and the container's start before its sleep
"$FLOOR" --reps 21 --only none >"$OUT/floor-slimtrace.json"
wait "$attached_pid" || { cat "$OUT/floor-attached.err" >&2; exit 1; }

# Two servers on one CPU at once, windows aligned on the wall clock (tracer_bench --wrk-at). Every
# JSON line of NAME.jsonl is one pair: {"pair": [first started, second started]}.
WINDOWS=5
WINDOW_SECONDS=3
PERIOD_MS=3500
CONTROL_PAIRS=4
LEAD_MS=8000 # room for both containers to start and the BPF programs to load before window 1
# An interrupted run stops the pair in flight too (each tracer_bench tears its container down on TERM).
trap 'kill $(jobs -p) 2>/dev/null; exit 130' INT TERM
together() { # NAME MODE1 MODE2 [EXTRA ARGS FOR THE FIRST]
  local name=$1 modes=("$2" "$3") extra=${4:-} pids=() slot
  local at=$(($(date +%s%3N) + LEAD_MS))
  for slot in 0 1; do
    local x=
    [[ $slot == 0 ]] && x=$extra
    # shellcheck disable=SC2086 # $x is zero or more flags
    taskset -c "$ONE_CPU" "$BENCH" "$img" "${modes[$slot]}" --wait-port 8080 --wrk-cpu 0 \
      --wrk-repeat "$WINDOWS" --wrk-at "$at" --wrk-period "$PERIOD_MS" $x \
      --wrk "-t1 -c8 -d${WINDOW_SECONDS}s http://127.0.0.1:8080/file" \
      -- /bin/httpd -f -p 127.0.0.1:8080 -h /www >"$OUT/$name.$slot.json" 2>>"$OUT/$name.err" &
    pids+=($!)
  done
  for slot in 0 1; do
    wait "${pids[$slot]}" || { cat "$OUT/$name.err" >&2; echo "tracer_overhead.sh: $name (${modes[$slot]}) failed" >&2; exit 1; }
  done
  jq -c -s '{pair: .}' "$OUT/$name.0.json" "$OUT/$name.1.json" >>"$OUT/$name.jsonl"
  rm -f "$OUT/$name.0.json" "$OUT/$name.1.json"
}
for i in $(seq 1 "$PAIRS"); do
  step "same seconds: pair $i/$PAIRS"
  # Which one starts first alternates.
  if ((i % 2)); then together same ebpf none; else together same none ebpf; fi
done
# Untraced pairs: how far apart two identical containers come out (each container instance has a
# speed of its own, so the pairs, not the windows, are the independent measurements).
for i in $(seq 1 "$CONTROL_PAIRS"); do
  step "same seconds: untraced pair $i/$CONTROL_PAIRS (the method's own error)"
  together same-control none none
done
step "same seconds: syscall count"
together same-count none ebpf --count-syscalls
load_after=$(cut -d' ' -f1 /proc/loadavg)
step "done in $(($(date +%s) - started)) s"

python3 bench/tracer_report.py "$OUT" "$RESULTS" \
  --reps "$REPS" --loop-iterations "$LOOP_ITERATIONS" --paced-rate "$PACED_RATE" \
  --paced-iterations "$PACED_ITERATIONS" --wrk-seconds "$WRK_SECONDS" \
  --load "$load_before / $load_after" --command "bench/tracer_overhead.sh $*" \
  --window-seconds "$WINDOW_SECONDS"
