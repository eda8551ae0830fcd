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
# 3. The kernel's floor under the fixed cost (same_seconds.bash).
IMG=$img SERVER_CPU=$ONE_CPU WRK_CPU=0 PORT=8080 URL=http://127.0.0.1:8080/file
SERVER_CMD=(/bin/httpd -f -p 127.0.0.1:8080 -h /www)
# shellcheck source=bench/same_seconds.bash
source bench/same_seconds.bash
step "hook floor"
hook_floor_runs
# 4. In the same seconds, side by side on the server's CPU.
side_by_side "$PAIRS"
load_after=$(cut -d' ' -f1 /proc/loadavg)
step "done in $(($(date +%s) - started)) s"

python3 bench/tracer_report.py "$OUT" "$RESULTS" \
  --reps "$REPS" --loop-iterations "$LOOP_ITERATIONS" --paced-rate "$PACED_RATE" \
  --paced-iterations "$PACED_ITERATIONS" --wrk-seconds "$WRK_SECONDS" \
  --load "$load_before / $load_after" --command "bench/tracer_overhead.sh $*" \
  --window-seconds "$WINDOW_SECONDS"
