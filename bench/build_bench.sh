#!/usr/bin/env bash
# `slimtrace build` end to end on the realistic Debian images of the e2e tests (web, pyapp, batch,
# service: tests/e2e/lib/debian_fixtures.bash), REPS runs each with default flags plus each image's
# probe flags. Per image it reports the medians of: input and output sizes, the output's regular
# file bytes against the lower bound plus the pruned package metadata (target: within 1.03x), the
# seconds of each phase, and the seconds outside the probe phases against the floor of reading the
# input once (target: within 2x). The floor is measured in the same run, just before each build:
# every layer blob of the input layout decompressed once (`cat BLOB | gzip -dc >/dev/null`, summed
# over the layers), the page cache warm as the build sees it.
# Builds slimtrace with the release preset (build/release) and rewrites the "build on realistic
# images" section of bench/RESULTS.md (between its markers; appended when they are missing).
# Needs root, runc or crun, BPF, and the Debian image cache (or a Debian mirror to fill it).
# Usage: bench/build_bench.sh [REPS=3]      (about 1.5 minutes per repetition with a warm cache)
# Env: SLIMTRACE=path (use that binary, no build), BENCH_WORK=dir (default build/release/build-bench)
set -euo pipefail
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REPS=${1:-3}
[[ $REPS =~ ^[1-9][0-9]*$ ]] || { echo "build_bench.sh: REPS must be a positive integer, not '$REPS'" >&2; exit 2; }
cd "$SRC"
[[ $(id -u) -eq 0 ]] || { echo "build_bench.sh: needs root (runs containers, loads BPF)" >&2; exit 1; }
for t in jq python3 gzip umoci; do
  command -v "$t" >/dev/null || { echo "build_bench.sh: '$t' is not installed" >&2; exit 1; }
done

if [[ -z ${SLIMTRACE:-} ]]; then
  cmake --preset release >/dev/null
  cmake --build --preset release --target slimtrace >/dev/null
  SLIMTRACE=$SRC/build/release/cli/slimtrace
fi
[[ -x $SLIMTRACE ]] || { echo "build_bench.sh: no slimtrace at '$SLIMTRACE'" >&2; exit 1; }

# shellcheck source=../tests/e2e/lib/debian_fixtures.bash
source "$SRC/tests/e2e/lib/debian_fixtures.bash"

WORK=${BENCH_WORK:-$SRC/build/release/build-bench}
rm -rf --one-file-system "$WORK"
mkdir -p "$WORK"
# A copy, so a rebuild of build/release during the run cannot mix two binaries in one result.
cp "$SLIMTRACE" "$WORK/slimtrace"
SLIMTRACE=$WORK/slimtrace
# What was measured: the commit, and whether the tree had changes outside bench/ (read-only git).
revision=$(git -C "$SRC" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(git -C "$SRC" status --porcelain --untracked-files=no -- . ':!bench' 2>/dev/null) ]]; then
  revision+=" with uncommitted changes outside bench/"
fi
step() { echo "== $*" >&2; }
KINDS=(web pyapp batch service)

step "preparing the images (from the cache in ${SLIMTRACE_CACHE_DIR:-/var/cache/slimtrace})"
for kind in "${KINDS[@]}"; do
  debian_image "$kind" "$WORK/$kind/in"
  debian_image_flags "$kind" >"$WORK/$kind/flags"
done

# Layer blobs of LAYOUT:latest (its only manifest), one "mediaType path" per line.
layer_blobs() {
  local layout=$1 manifest
  manifest=$(jq -r '.manifests[0].digest' "$layout/index.json")
  jq -r '.layers[] | "\(.mediaType) \(.digest)"' "$layout/blobs/${manifest/://}" |
    while read -r type digest; do echo "$type $layout/blobs/${digest/://}"; done
}

# Seconds to decompress every layer blob of LAYOUT once, as one process pipeline per layer.
floor_seconds() {
  local layout=$1 type blob t0 t1
  t0=$EPOCHREALTIME
  # The cat is the read of the blob, a process of its own beside the decompressor: reading the
  # input once, then decompressing it.
  # shellcheck disable=SC2002
  while read -r type blob; do
    case $type in
    *+gzip) cat "$blob" | gzip -dc >/dev/null ;;
    *+zstd) cat "$blob" | zstd -dcq >/dev/null ;;
    *) cat "$blob" >/dev/null ;;
    esac
  done < <(layer_blobs "$layout")
  t1=$EPOCHREALTIME
  python3 -c "print(f'{$t1 - $t0:.6f}')"
}

# Warm the page cache for every input once, so the first run is not the odd one out.
for kind in "${KINDS[@]}"; do floor_seconds "$WORK/$kind/in" >/dev/null; done

load_before=$(cut -d' ' -f1 /proc/loadavg)
started=$SECONDS
for i in $(seq 1 "$REPS"); do
  for kind in "${KINDS[@]}"; do
    step "repetition $i/$REPS: $kind"
    d=$WORK/$kind
    floor_seconds "$d/in" >"$d/floor.$i"
    mapfile -t flags <"$d/flags"
    rm -rf "$d/out" "$d/out.seccomp.json"
    if ! "$SLIMTRACE" build "oci:$d/in:latest" -o "oci:$d/out:latest" --seccomp-out "$d/out.seccomp.json" \
      --report "$d/report.$i.json" "${flags[@]}" >"$d/log.$i" 2>&1; then
      tail -n 20 "$d/log.$i" >&2
      echo "build_bench.sh: slimtrace build of the $kind image failed (log: $d/log.$i)" >&2
      exit 1
    fi
    # Only the reports are needed; the last output stays for a look.
    [[ $i -eq $REPS ]] || rm -rf "$d/out" "$d/out.seccomp.json"
  done
done
load_after=$(cut -d' ' -f1 /proc/loadavg)
step "done in $((SECONDS - started)) s"

python3 - "$WORK" "$SRC/bench/RESULTS.md" "$REPS" "$load_before / $load_after" \
  "bench/build_bench.sh $*" "$("$SLIMTRACE" --version 2>/dev/null || echo unknown), commit $revision" "${KINDS[@]}" <<'PY'
import datetime, json, os, platform, statistics, subprocess, sys

work, results, reps, load, command, version = sys.argv[1:7]
kinds = sys.argv[7:]
reps = int(reps)
BEGIN = "<!-- build_bench.sh: begin -->"
END = "<!-- build_bench.sh: end -->"
PHASES = ["read", "xray", "trace", "select", "seccomp", "pack", "verify", "write"]
BOUND_REASONS = {"traced", "interpreter"}  # what lower_bound_bytes counts


def med(xs):
    return statistics.median(xs)


def mb(n):
    return f"{n / 1e6:.1f} MB"


def exact(n):
    return f"{n:,}"


def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


rows = {}
for kind in kinds:
    reports = [json.load(open(os.path.join(work, kind, f"report.{i}.json"))) for i in range(1, reps + 1)]
    floors = [float(open(os.path.join(work, kind, f"floor.{i}")).read()) for i in range(1, reps + 1)]
    for r in reports:
        if r["outcome"] != "ok" or not r["output"]["verified"]:
            raise SystemExit(f"{kind}: outcome {r['outcome']}: {r['message']}")
    files = [r["files"]["kept"] for r in reports]
    meta = [sum(k["bytes"] for k in f if k["reason"] == "metadata" and k["type"] == "file") for f in files]
    row = {
        "in_c": med([r["input"]["compressed_bytes"] for r in reports]),
        "in_u": med([r["input"]["uncompressed_bytes"] for r in reports]),
        "in_files": med([r["input"]["file_bytes"] for r in reports]),
        "layers": reports[0]["input"]["layers"],
        "out_c": med([r["output"]["compressed_bytes"] for r in reports]),
        "out_u": med([r["output"]["uncompressed_bytes"] for r in reports]),
        "out_files": med([r["output"]["file_bytes"] for r in reports]),
        "bound": med([r["lower_bound_bytes"] for r in reports]),
        "meta": med(meta),
        "ratio": med([r["output"]["file_bytes"] / (r["lower_bound_bytes"] + m) for r, m in zip(reports, meta)]),
        "sizes_vary": len({(r["output"]["file_bytes"], r["lower_bound_bytes"]) for r in reports}) > 1,
        "phases": {p: med([next((x["seconds"] for x in r["phases"] if x["name"] == p), 0.0) for r in reports])
                   for p in PHASES},
        "probing": {x["name"] for x in reports[0]["phases"] if x["probing"]},
        "outside": med([r["seconds_outside_probes"] for r in reports]),
        "outside_all": [r["seconds_outside_probes"] for r in reports],
        "total": med([r["seconds_total"] for r in reports]),
        "floor": med(floors),
        "floor_all": floors,
        "time_ratio": med([r["seconds_outside_probes"] / f for r, f in zip(reports, floors)]),
    }
    # Bytes beyond the bound, by reason, from the last run (sizes are the same in every run).
    last = files[-1]
    extra = {}
    for k in last:
        if k["type"] == "file" and k["reason"] not in BOUND_REASONS | {"metadata"}:
            e = extra.setdefault(k["reason"], {"n": 0, "bytes": 0, "top": []})
            e["n"] += 1
            e["bytes"] += k["bytes"]
            e["top"].append((k["bytes"], k["path"]))
    row["extra"] = extra
    row["kept_by_reason"] = {}
    for k in last:
        if k["type"] == "file":
            c = row["kept_by_reason"].setdefault(k["reason"], [0, 0])
            c[0] += 1
            c[1] += k["bytes"]
    row["unaccounted"] = reports[-1]["output"]["file_bytes"] - sum(c[1] for c in row["kept_by_reason"].values())
    row["top_phase"] = max((p for p in PHASES if p not in row["probing"]), key=lambda p: row["phases"][p])
    row["flags"] = [line for line in open(os.path.join(work, kind, "flags")).read().splitlines() if line]
    rows[kind] = row

size_ok = all(r["ratio"] <= 1.03 for r in rows.values())
time_ok = all(r["time_ratio"] <= 2.0 for r in rows.values())


def verdict(ok):
    return "**met**" if ok else "**not met**"


out = []
w = out.append
w(BEGIN)
w("# Benchmark: `slimtrace build` on realistic images")
w("")
w("Generated by `bench/build_bench.sh`; rerun it to update this section (numbers below are from one run,")
w("on the machine described). The images are the e2e tests' Debian fixtures")
w("(`tests/e2e/lib/debian_fixtures.bash`: `debootstrap --variant=minbase bookworm` as layer 1, Debian")
w("packages and the app as layer 2, gzip): **web** (nginx-light, a static site), **pyapp** (python3")
w("http.server whose routes import lazily, tzdata), **batch** (a shell pipeline with jq, no ports),")
w("**service** (redis-server, probed over RESP). Each is built with `slimtrace build IMAGE -o oci:OUT")
w("--report R.json` plus its probe flags (`debian_image_flags`), verification on (the default);")
w(f"{reps} repetitions, images interleaved; medians reported. Sizes from the report (`docs/report.md`).")
w("")
w("## Sizes")
w("")
w("| image | input compressed | input uncompressed | output compressed | output uncompressed | output regular files | lower bound | pruned metadata | files / (bound + metadata) |")
w("|---|---|---|---|---|---|---|---|---|")
for k, r in rows.items():
    w(f"| {k} | {mb(r['in_c'])} | {mb(r['in_u'])} | {mb(r['out_c'])} ({r['out_c'] / r['in_c']:.1%}) | "
      f"{mb(r['out_u'])} ({r['out_u'] / r['in_u']:.1%}) | {exact(r['out_files'])} B | {exact(r['bound'])} B | "
      f"{exact(r['meta'])} B | **{r['ratio']:.4f}x** |")
w("")
w(f"- Output regular files within 1.03x of the lower bound plus the pruned package metadata: {verdict(size_ok)}"
  + ("." if size_ok else f" for {', '.join(k for k, r in rows.items() if r['ratio'] > 1.03)}."))
w("  The lower bound (`lower_bound_bytes`) is the bytes of the regular files the trace touched plus the `#!`")
w("  and ELF interpreters the kernel loaded; the metadata is the kept entries with reason `metadata`")
w("  (`/etc/os-release`'s target, the pruned `/var/lib/dpkg/status`, the trimmed `info/*.list`).")
if any(r["sizes_vary"] for r in rows.values()):
    w("  Sizes differed between runs for: " + ", ".join(k for k, r in rows.items() if r["sizes_vary"]) + ".")
w("- What the output's regular files are, by the reason each was kept (last run; files only):")
w("")
w("| image | " + " | ".join(["traced", "interpreter", "metadata", "elf-dep", "nss", "hardlink", "include", "other"]) + " |")
w("|---|---|---|---|---|---|---|---|---|")
for k, r in rows.items():
    cells = []
    known = ["traced", "interpreter", "metadata", "elf-dep", "nss", "hardlink", "include"]
    for reason in known:
        c = r["kept_by_reason"].get(reason)
        cells.append(f"{c[0]} / {exact(c[1])} B" if c else "-")
    other = [(n, c) for n, c in r["kept_by_reason"].items() if n not in known]
    cells.append(", ".join(f"{n}: {c[0]} / {exact(c[1])} B" for n, c in other) or "-")
    w(f"| {k} | " + " | ".join(cells) + " |")
w("")
w("  (count / bytes). Bytes beyond the bound and the metadata, largest files first:")
for k, r in rows.items():
    if not r["extra"]:
        w(f"  - {k}: none")
        continue
    parts = []
    for reason, e in sorted(r["extra"].items(), key=lambda x: -x[1]["bytes"]):
        top = ", ".join(f"`{p}` {exact(b)} B" for b, p in sorted(e["top"], reverse=True)[:3])
        parts.append(f"{reason} {exact(e['bytes'])} B ({e['n']} files: {top})")
    w(f"  - {k}: " + "; ".join(parts))
    if r["unaccounted"]:
        w(f"    (output.file_bytes differs from the kept files' bytes by {exact(r['unaccounted'])} B)")
w("")
w("## Time")
w("")
w("Seconds, medians; phases marked * are the probe phases (the app runs under the probes: its own")
w("start-up and the probes' pace, not slimtrace's work). The floor is reading the input once:")
w("every layer blob decompressed once with `cat BLOB | gzip -dc >/dev/null`, summed over the")
w("layers, measured right before each build in the same run (page cache warm).")
w("")
w("| image | " + " | ".join(p + ("*" if p in rows[kinds[0]]["probing"] else "") for p in PHASES)
  + " | total | outside probes | floor | outside / floor |")
w("|---|" + "---|" * (len(PHASES) + 4))
for k, r in rows.items():
    w(f"| {k} | " + " | ".join(f"{r['phases'][p]:.2f}" for p in PHASES)
      + f" | {r['total']:.2f} | {r['outside']:.2f} | {r['floor']:.2f} | **{r['time_ratio']:.2f}x** |")
w("")
w(f"- Time outside the probe phases within 2x of the floor: {verdict(time_ok)}"
  + ("." if time_ok else f" for {', '.join(k for k, r in rows.items() if r['time_ratio'] > 2.0)}."))
for k, r in rows.items():
    top = r["top_phase"]
    w(f"- {k}: outside probes {', '.join(f'{x:.2f}' for x in r['outside_all'])} s; floor "
      f"{', '.join(f'{x:.2f}' for x in r['floor_all'])} s; the largest non-probe phase is `{top}` "
      f"({r['phases'][top]:.2f} s, {r['phases'][top] / r['outside']:.0%} of the time outside probes); "
      f"{r['layers']} layers, {mb(r['in_c'])} compressed.")
w("")
w("## Machine and command")
w("")
w(f"- Date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}")
w(f"- CPU: {cpu_model()}, nproc {os.cpu_count()}; kernel {platform.release()}")
gz = subprocess.run(["gzip", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
w(f"- slimtrace: {version} (release preset, RelWithDebInfo); floor: `{gz}`")
w(f"- Load average (1 min) before/after: {load} (other jobs on this machine make absolute times")
w("  noisy; each build's floor is measured right before it, so the ratio is taken in the same run)")
w(f"- Repetitions: {reps}; per repetition, for each image in turn: the floor, then the build.")
for k, r in rows.items():
    if r["flags"]:
        w(f"- Probe flags for {k}: " + " ".join("`" + f.replace("`", "'") + "`" for f in r["flags"]))
w(f"- Command: `{command}`")
w(END)
section = "\n".join(out) + "\n"

text = open(results).read() if os.path.exists(results) else ""
b, e = text.find(BEGIN), text.find(END)
if b >= 0 and e > b:
    rest = text[e + len(END):].lstrip("\n")
    text = text[:b] + section + ("\n" + rest if rest else "")
else:
    text = text.rstrip("\n") + "\n\n" + section
with open(results, "w") as f:
    f.write(text)
print(section)
PY
