#!/usr/bin/env python3
"""Turns the tracer_bench JSON lines written by bench/tracer_overhead.sh into the "tracer overhead"
section of bench/RESULTS.md: everything from its heading to the end of the file is replaced, what
comes before it (the flatten benchmark) is kept."""
import argparse
import datetime
import json
import os
import platform
import re
import statistics
import textwrap

HEADING = "# Benchmark: tracer overhead"


def load(out, name):
    path = os.path.join(out, name + ".jsonl")
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def loop_stats(run):
    m = re.search(r"iterations (\d+) seconds ([0-9.]+) iterations_per_s ([0-9.]+)", run["stdout"])
    if not m:
        raise SystemExit(f"syscall_loop printed no result: {run['stdout']!r} {run['stderr']!r}")
    return int(m.group(1)), float(m.group(2)), float(m.group(3))


def wrk_stats(run):
    m = re.search(r"Requests/sec:\s*([0-9.]+)", run["wrk"])
    if not m:
        raise SystemExit(f"wrk printed no Requests/sec: {run['wrk']!r}")
    errors = re.search(r"Socket errors:[^\n]*", run["wrk"])
    non2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", run["wrk"])
    lat = re.search(r"Latency\s+(\S+)", run["wrk"])
    reqs = re.search(r"(\d+) requests in", run["wrk"])
    return {
        "requests": int(reqs.group(1)) if reqs else 0,
        "rps": float(m.group(1)),
        "errors": (errors.group(0) if errors else "") + (f" non-2xx {non2xx.group(1)}" if non2xx else ""),
        "latency": lat.group(1) if lat else "?",
    }


def fmt_list(xs, f="{:.0f}"):
    return ", ".join(f.format(x) for x in xs)


def cpu_model():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


# The hook the tracer uses: one program on the raw sys_exit tracepoint (hook_floor's mode).
FLOOR_MODE = "sys_exit_raw"


def floor_section(out, traced_stats_run, server_rps):
    """The kernel's price per host syscall for the hooks (bench/hook_floor.cpp), next to slimtrace's
    own programs attached, and what that floor comes to per request."""
    try:
        with open(os.path.join(out, "floor.json")) as f:
            floor = json.load(f)
        with open(os.path.join(out, "floor-slimtrace.json")) as f:
            ours = json.load(f)
    except FileNotFoundError:
        return ""
    m = floor["median_ns"]
    base = m["none"]
    rows = [
        ("nothing attached", base),
        ("an empty program on the `sys_enter` raw tracepoint", m["sys_enter"]),
        ("an empty program on one `sys_exit_<name>` tracepoint (openat, which the loop never makes)",
         m["sys_exit_openat"]),
        ("both: what an entry hook with the path syscalls' exits costs (the tracer's hooks until 2026-12-08)",
         m["both"]),
    ]
    if "both_exit_hit" in m:
        rows.append(("both, with the loop's own `sys_exit_getppid` in place of openat's: what a path syscall "
                     "pays, its exit tracepoint running the program", m["both_exit_hit"]))
    rows.append(("an empty program on the `sys_exit` raw tracepoint alone: the kernel's floor for the hook the "
                 "tracer needs", m[FLOOR_MODE]))
    rows.append(("slimtrace's programs attached (the loop is not followed), timed separately",
                 ours["median_ns"]["none"]))
    try:
        with open(os.path.join(out, "floor-seccomp.json")) as f:
            secc = json.load(f)["median_ns"]
        secc_rows = [("under an allow-all seccomp filter, as a container's processes run: nothing attached",
                      secc["none"])]
        secc_rows.append(("under the filter: both", secc["both"]))
        if FLOOR_MODE in secc:
            secc_rows.append(("under the filter: `sys_exit` alone", secc[FLOOR_MODE]))
    except FileNotFoundError:
        secc, secc_rows = None, []
    table = "\n".join(f"| {label} | {ns:.0f} | {ns - base:+.0f} |" for label, ns in rows)
    if secc:
        table += "\n" + "\n".join(f"| {label} | {ns:.0f} | {ns - secc['none']:+.0f} |" for label, ns in secc_rows)
    floor_ns = m[FLOOR_MODE] - base
    ours_ns = ours["median_ns"]["none"] - base
    # The two are timed a few seconds apart, so a difference within the loop's own noise means
    # nothing; the noise is the spread of the unhooked runs.
    noise = max(floor["runs_ns"]["none"]) - min(floor["runs_ns"]["none"])
    if abs(ours_ns - floor_ns) <= noise:
        ours_vs_floor = (f"With slimtrace's programs attached, a host syscall cost {ours_ns:.0f} ns more, against "
                         f"the floor's {floor_ns:.0f} ns: the same within this loop's noise ({noise:.0f} ns "
                         f"between unhooked runs), so for processes it does not follow the tracer costs what "
                         f"the hooks cost.")
    else:
        ours_vs_floor = (f"slimtrace's programs add {ours_ns - floor_ns:+.0f} ns to the floor's {floor_ns:.0f} ns "
                         f"per host syscall (noise between unhooked runs: {noise:.0f} ns).")
    per_request = ""
    if traced_stats_run and server_rps:
        reqs = wrk_stats(traced_stats_run)["requests"]
        calls = traced_stats_run["wrk_bpf"].get("on_sys_exit", {}).get("runs", 0)
        if reqs and calls:
            spr = calls / reqs
            cpu_us = 1e6 / server_rps
            per_request = textwrap.fill(
                f"- Per request: the BPF statistics above count {spr:.0f} syscalls on the host per request "
                f"(httpd's, wrk's, the runtime's), and the server's saturated CPU spends {cpu_us:.0f} us per "
                f"request untraced (1 / req/s, separate CPUs). At the floor's {floor_ns:.0f} ns per syscall that "
                f"is up to {spr * floor_ns / 1e3:.1f} us, {spr * floor_ns / 1e3 / cpu_us * 100:.1f}% of the "
                f"server's CPU, before the tracer records anything (an upper bound: wrk's share of the syscalls "
                f"runs on the other CPU). A keep-alive server making a handful of syscalls per request in a few "
                f"microseconds pays the same per syscall, a larger share.", width=100, subsequent_indent="  ") + "\n"
    seccomp_note = ""
    if secc:
        seccomp_note = textwrap.fill(
            f"- A seccomp filter already sends a syscall's entry down the slow path, so under the filter the "
            f"hook adds {secc.get(FLOOR_MODE, secc['both']) - secc['none']:.0f} ns rather than {floor_ns:.0f}. The "
            f"side-by-side estimate's fixed cost uses the larger, unfiltered figure, although the servers run "
            f"under a filter.", width=100,
            subsequent_indent="  ") + "\n"
    return ("\n## The floor: what the kernel charges per host syscall for the hooks\n\n" + textwrap.fill(
        f"`bench/hook_floor` times a getppid(2) loop on the host ({floor['calls']:,} calls, best of 3, median "
        f"of {floor['reps']} interleaved repetitions) with nothing attached and with two-instruction BPF "
        f"programs on the syscall tracepoints: as soon as any syscall tracepoint is in use, every task on the "
        f"host takes the kernel's slow syscall path and runs the tracepoint's probes on each syscall, whatever "
        f"the program does. slimtrace hooks `sys_exit` alone: the syscall set needs every syscall, and at the "
        f"exit a syscall's number, arguments and outcome are all known, so no entry hook is needed; no "
        f"cheaper hook is permitted here (fentry and BPF-LSM are refused, kprobes are not configured).",
        width=100) + "\n\n"
        "| attached | ns per syscall (median) | added |\n|---|---|---|\n" + table + "\n\n"
        + textwrap.fill(f"- {ours_vs_floor} Runs (ns): "
                        + "; ".join(f"{k} {fmt_list(v)}" for k, v in floor["runs_ns"].items())
                        + f"; slimtrace attached {fmt_list(ours['runs_ns']['none'])}.", width=100,
                        subsequent_indent="  ") + "\n" + per_request + seccomp_note)


def fixed_ns_per_syscall(out):
    """What one host syscall of a process the tracer does not follow costs with the tracer attached:
    the larger of the kernel's floor and slimtrace's own programs, as hook_floor timed them (the two
    are the same within noise; the larger is the cautious choice). None without hook_floor's files."""
    try:
        with open(os.path.join(out, "floor.json")) as f:
            floor = json.load(f)
        with open(os.path.join(out, "floor-slimtrace.json")) as f:
            ours = json.load(f)
    except FileNotFoundError:
        return None
    base = floor["median_ns"]["none"]
    return max(floor["median_ns"][FLOOR_MODE] - base, ours["median_ns"]["none"] - base)


# A window whose wrk started this late (ms) after its aligned start is not compared.
LATE_MS = 250


def windows(run):
    """(req/s, requests, CPU seconds of the container and of the tracing process, late ms) per window."""
    out = []
    for w in run["wrk_windows"]:
        stats = wrk_stats(w)
        out.append({"rps": stats["rps"], "requests": stats["requests"], "late": w["late_ms"],
                    "cpu": (w["container_cpu_seconds"] or 0) + w["self_cpu_seconds"],
                    "has_cpu": w["container_cpu_seconds"] is not None})
    return out


def window_ratios(pairs, first, second):
    """Per pair, per aligned window: (req/s of `first` / req/s of `second`, CPU per request of
    `second` / of `first`, the two windows), over all pairs of those two modes; and the number of
    windows left out as late."""
    per_pair, late = [], 0
    for pair in pairs:
        ratios = []
        runs = {}
        for r in pair["pair"]:
            runs.setdefault(r["tracer"], []).append(r)
        if first == second:
            if len(runs.get(first, [])) != 2:
                continue
            a, b = runs[first]
        else:
            if first not in runs or second not in runs:
                continue
            a, b = runs[first][0], runs[second][0]
        for x, y in zip(windows(a), windows(b)):
            if x["late"] > LATE_MS or y["late"] > LATE_MS or not x["requests"] or not y["requests"]:
                late += 1
                continue
            cost = ((y["cpu"] / y["requests"]) / (x["cpu"] / x["requests"])
                    if x["has_cpu"] and y["has_cpu"] and x["cpu"] > 0 else None)
            ratios.append((x["rps"] / y["rps"], cost, x, y))
        if ratios:
            per_pair.append(ratios)
    return per_pair, late


def median_interval(xs):
    """A distribution-free ~95% confidence interval for the median of xs: the order statistics
    n/2 -+ 0.98 sqrt(n) (the binomial's normal approximation); the whole range for very few values."""
    v = sorted(xs)
    n = len(v)
    half = 0.98 * n ** 0.5
    lo = max(0, int(n / 2 - half))
    hi = min(n - 1, int(n / 2 + half + 0.999) - 1)
    return v[lo], v[max(lo, hi)]


def quartiles(xs):
    q = statistics.quantiles(xs, n=4, method="inclusive") if len(xs) > 1 else [xs[0]] * 3
    return q[0], statistics.median(xs), q[2]


def same_seconds_section(out, server_cpu, window_seconds, server="busybox httpd"):
    """A traced and an untraced server side by side on one CPU, loaded in the same seconds: the cost of
    recording, steady to about a percent, and with the fixed cost (hook_floor x the syscalls counted
    on the server's CPU) the estimate the HTTP target is judged on. Returns (markdown, estimate) or
    ("", None) when the run has no such pairs."""
    try:
        pairs = load(out, "same")
    except FileNotFoundError:
        return "", None
    control = load(out, "same-control")
    counted = load(out, "same-count")
    # Each container instance runs at a speed of its own (the untraced pairs show it), so a pair's
    # windows are not independent of each other: the pairs are the measurements, each its windows'
    # median.
    traced_pairs, late = window_ratios(pairs, "ebpf", "none")
    ctl_pairs, ctl_late = window_ratios(control, "none", "none")
    traced = [w for p in traced_pairs for w in p]
    ctl = [w for p in ctl_pairs for w in p]
    pair_ratios = [statistics.median(w[0] for w in p) for p in traced_pairs]
    ctl_ratios = [statistics.median(w[0] for w in p) for p in ctl_pairs]
    fixed_ns = fixed_ns_per_syscall(out)
    if not traced or fixed_ns is None:
        return "", None
    # The floor's own uncertainty, from hook_floor's interleaved repetitions (hooked minus unhooked).
    with open(os.path.join(out, "floor.json")) as f:
        floor_runs = json.load(f)["runs_ns"]
    fixed_lo, fixed_hi = median_interval([b - n for b, n in zip(floor_runs[FLOOR_MODE], floor_runs["none"])])
    fixed_hi = max(fixed_hi, fixed_ns)
    tput = [t[0] for t in traced]
    costs = [t[1] for t in traced if t[1] is not None]
    r_q1, _, r_q3 = quartiles(tput)
    r_med = statistics.median(pair_ratios)
    r_lo, r_hi = median_interval(pair_ratios)
    # Syscalls on the server's CPU per request (both servers' requests), from the counting pair.
    count_run = next(r for r in counted[0]["pair"] if r.get("wrk_syscalls_per_cpu"))
    calls = count_run["wrk_syscalls_per_cpu"][server_cpu]
    reqs = sum(w["requests"] for r in counted[0]["pair"] for w in windows(r))
    per_request = calls / reqs
    # CPU per request of the untraced server, from the traced pairs.
    cpu_us = statistics.median(y["cpu"] / y["requests"] * 1e6 for _, _, _, y in traced if y["has_cpu"])
    # One hook for every syscall, path syscalls included: no second tracepoint for any of them.
    fixed_share = per_request * fixed_ns / 1e3 / cpu_us
    share_lo, share_hi = (per_request * x / 1e3 / cpu_us for x in (fixed_lo, fixed_hi))
    estimate = {"untraced_rps": statistics.median(t[3]["rps"] for t in traced),
                "traced_rps": statistics.median(t[2]["rps"] for t in traced),
                "median": (1 - fixed_share) * r_med,
                # Both ends of both intervals at once: a cautious ~95% interval for the estimate.
                "low": (1 - share_hi) * r_lo, "high": (1 - share_lo) * r_hi}
    ctl_dev = max(abs(c - 1) for c in ctl_ratios) if ctl_ratios else None
    # How much of the servers' CPU the two containers used in a window: about all of it when saturated.
    used = statistics.median((x["cpu"] + y["cpu"]) / window_seconds for _, _, x, y in traced)
    n_pairs = sum(1 for p in pairs)
    md = ("\n## In the same seconds: traced and untraced side by side\n\n" + textwrap.fill(
        f"The throughput of the same untraced server changes by tens of percent from one run to the next "
        f"here, and from one second to the next (the machine's own speed does: a plain CPU loop does too), "
        f"which buries a difference of a few percent. So {n_pairs} times a traced and an untraced {server} container "
        f"ran at once, both on CPU {server_cpu} (each in its own cgroup, so the scheduler splits the CPU "
        f"between them), each loaded by its own `wrk -t1 -c8` on the other CPU in {window_seconds} s windows "
        f"aligned on the wall clock (`tracer_bench --wrk-at`), which of the two started first alternating. "
        f"Both see the same second-to-second changes, so their ratio per window is steady. Both also pay "
        f"the fixed cost of the attached programs, which is host-wide: the ratio is the cost of recording "
        f"the traced container's events, and the fixed cost is added from its parts.", width=100) + "\n\n"
        "| measure | windows: low quartile / high quartile | pairs: median (~95% interval) |\n"
        "|---|---|---|\n"
        f"| traced / untraced req/s, same seconds ({len(tput)} windows, {len(pair_ratios)} pairs) | "
        f"{r_q1 * 100:.1f}% / {r_q3 * 100:.1f}% | **{r_med * 100:.1f}%** ({r_lo * 100:.1f}% to "
        f"{r_hi * 100:.1f}%) |\n")
    if costs:
        c_q1, c_med, c_q3 = quartiles(costs)
        cost_pairs = [statistics.median(w[1] for w in p if w[1] is not None) for p in traced_pairs
                      if any(w[1] is not None for w in p)]
        md += (f"| untraced / traced CPU per request (the container's cgroup plus the tracing process) | "
               f"{c_q1 * 100:.1f}% / {c_q3 * 100:.1f}% | {statistics.median(cost_pairs) * 100:.1f}% |\n")
    if ctl:
        q = quartiles([c[0] for c in ctl])
        md += (f"| control: untraced / untraced req/s, same seconds ({len(ctl)} windows, {len(ctl_ratios)} "
               f"pairs) | {q[0] * 100:.1f}% / {q[2] * 100:.1f}% | {statistics.median(ctl_ratios) * 100:.1f}% |\n")
    md += "\n" + textwrap.fill(
        f"- The fixed cost: {per_request:.1f} syscalls per request on the server's CPU (counted in the "
        f"counting pair: {server}'s, the runtime's and the tracing process's, {calls:,} for {reqs:,} requests), "
        f"at {fixed_ns:.0f} ns each (the larger of hook_floor's floor and slimtrace's attached programs), is "
        f"{per_request * fixed_ns / 1e3:.1f} us (one hook, `sys_exit`, for every syscall: path syscalls "
        f"pay no second tracepoint) of the {cpu_us:.0f} us of CPU an untraced request takes: "
        f"{fixed_share * 100:.2f}% of the server's CPU ({share_lo * 100:.2f}% to {share_hi * 100:.2f}% with the "
        f"floor's ~95% interval over hook_floor's repetitions, {fixed_lo:.0f} to {fixed_hi:.0f} ns).", width=100,
        subsequent_indent="  ") + "\n"
    md += textwrap.fill(
        f"- Traced / untraced throughput, both costs: (1 - {fixed_share * 100:.2f}%) x {r_med * 100:.1f}% = "
        f"**{estimate['median'] * 100:.1f}%**; {estimate['low'] * 100:.1f}% to {estimate['high'] * 100:.1f}% "
        f"with both intervals' ends taken together (a cautious ~95% interval).", width=100,
        subsequent_indent="  ") + "\n"
    if ctl_dev is not None:
        md += textwrap.fill(
            f"- The method's own error, from the untraced pairs: their medians were "
            f"{fmt_list((c * 100 for c in ctl_ratios), '{:.1f}%')}, at most {ctl_dev * 100:.1f}% off 100%. "
            f"The two containers used {used * 100:.0f}% of their CPU in a window (median): "
            f"it was saturated. Windows left out because a wrk started over {LATE_MS} ms late: "
            f"{late + ctl_late}.",
            width=100, subsequent_indent="  ") + "\n"
    per_window = " | ".join(", ".join(f"{w[0] * 100:.1f}" for w in p) for p in traced_pairs)
    md += textwrap.fill(f"- Per window (%), traced / untraced req/s, pair by pair: {per_window}.", width=100,
                        subsequent_indent="  ") + "\n"
    if ctl_pairs:
        per_window = " | ".join(", ".join(f"{w[0] * 100:.1f}" for w in p) for p in ctl_pairs)
        md += textwrap.fill(f"- Per window (%), control, pair by pair: {per_window}.", width=100,
                            subsequent_indent="  ") + "\n"
    return md, estimate


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("results")
    ap.add_argument("--reps", type=int)
    ap.add_argument("--loop-iterations", type=int)
    ap.add_argument("--paced-rate", type=int)
    ap.add_argument("--paced-iterations", type=int)
    ap.add_argument("--wrk-seconds", type=int)
    ap.add_argument("--load")
    ap.add_argument("--command")
    ap.add_argument("--window-seconds", type=int)
    ap.add_argument("--server-cpu", type=int, default=(os.cpu_count() or 1) - 1)
    a = ap.parse_args()

    loop = load(a.out, "loop")
    paced = load(a.out, "paced")
    wrk = load(a.out, "wrk")

    by = lambda runs, mode: [r for r in runs if r["tracer"] == mode]
    # Syscall loop, unpaced.
    lu = [loop_stats(r) for r in by(loop, "none")]
    lt_runs = by(loop, "ebpf")
    lt = [loop_stats(r) for r in lt_runs]
    lu_rate = statistics.median(x[2] for x in lu)
    lt_rate = statistics.median(x[2] for x in lt)
    lu_sec = statistics.median(x[1] for x in lu)
    lt_sec = statistics.median(x[1] for x in lt)
    lt_event_rates = [r["events"] / s[1] for r, s in zip(lt_runs, lt)]
    lt_dropped = [r["dropped_events"] for r in lt_runs]
    lt_events = [r["events"] for r in lt_runs]
    # Paced.
    p_stats = [loop_stats(r) for r in paced]
    p_rates = [r["events"] / s[1] for r, s in zip(paced, p_stats)]
    p_dropped = [r["dropped_events"] for r in paced]
    p_events = [r["events"] for r in paced]
    # wrk.
    wu = [wrk_stats(r) for r in by(wrk, "none")]
    wt_runs = by(wrk, "ebpf")
    wt = [wrk_stats(r) for r in wt_runs]
    wu_rps = statistics.median(x["rps"] for x in wu)
    wt_rps = statistics.median(x["rps"] for x in wt)
    w_ratio = wt_rps / wu_rps
    wa = [wrk_stats(r) for r in by(wrk, "attached")]
    wa_rps = statistics.median(x["rps"] for x in wa) if wa else None
    w_event_rates = [r["events"] / r["container_seconds"] for r in wt_runs]
    w_dropped = [r["dropped_events"] for r in wt_runs]
    w_errors = sorted({x["errors"].strip() for x in wu + wt + wa if x["errors"].strip()})

    # Traced/untraced within each repetition (the two ran back to back), then the median: less
    # sensitive to the machine's load drifting between repetitions than the ratio of medians.
    rep_ratios = [t["rps"] / u["rps"] for u, t in zip(wu, wt)]
    rep_ratio = statistics.median(rep_ratios)
    spread = max(x["rps"] for x in wu) / min(x["rps"] for x in wu) - 1
    per_request = [r["events"] / x["requests"] for r, x in zip(wt_runs, wt) if x["requests"]]
    # Lookups the kernel side counted instead of sending (same path, op and outcome as one sent).
    repeats = lambda r: r.get("repeated_lookups", 0)
    lookups_per_request = [(r["events"] + repeats(r)) / x["requests"] for r, x in zip(wt_runs, wt) if x["requests"]]
    cpu = lambda runs: statistics.median(r["wrk_self_cpu_seconds"] / r["wrk_seconds"] for r in runs)
    reader_cpu = cpu(wt_runs) - cpu(by(wrk, "none"))

    # One CPU for wrk, the container and the tracer: the CPU cost alone.
    try:
        wrk1 = load(a.out, "wrk1")
    except FileNotFoundError:
        wrk1 = []
    w1u = [wrk_stats(r) for r in by(wrk1, "none")]
    w1t = [wrk_stats(r) for r in by(wrk1, "ebpf")]
    w1_ratio = (statistics.median(x["rps"] for x in w1t) / statistics.median(x["rps"] for x in w1u)
                if w1u and w1t else None)
    w1_rep_ratios = [t["rps"] / u["rps"] for u, t in zip(w1u, w1t)]

    # The server on one CPU, wrk on another: the configuration the target is judged on.
    try:
        wrk2 = load(a.out, "wrk2")
    except FileNotFoundError:
        wrk2 = []
    w2u_runs, w2t_runs = by(wrk2, "none"), by(wrk2, "ebpf")
    w2u = [wrk_stats(r) for r in w2u_runs]
    w2t = [wrk_stats(r) for r in w2t_runs]
    pinned = bool(w2u and w2t)
    if pinned:
        w2u_rps = statistics.median(x["rps"] for x in w2u)
        w2t_rps = statistics.median(x["rps"] for x in w2t)
        w2_ratio = w2t_rps / w2u_rps
        w2_rep_ratios = [t["rps"] / u["rps"] for u, t in zip(w2u, w2t)]
        w2_rep_ratio = statistics.median(w2_rep_ratios)
        w2_spread = max(x["rps"] for x in w2u) / min(x["rps"] for x in w2u) - 1
        busy = lambda runs: statistics.median(r.get("wrk_host_busy", 0) for r in runs) * os.cpu_count()
        w2_busy = (busy(w2u_runs), busy(w2t_runs))
        w2_dropped = [r["dropped_events"] for r in w2t_runs]

    # Met only if both ways of reading the repetitions agree: the ratio of the medians and the
    # median of the per-repetition ratios.
    judged_ratio, judged_rep_ratio = (w2_ratio, w2_rep_ratio) if pinned else (w_ratio, rep_ratio)
    http_met = judged_ratio >= 0.97 and judged_rep_ratio >= 0.97
    # Where the run has them, the side-by-side windows decide instead: separate runs spread more
    # than the effect, side by side the ratio is steady. Met only if the interval's low end is.
    same_md, same = same_seconds_section(a.out, a.server_cpu, a.window_seconds)
    if same:
        http_met = same["low"] >= 0.97

    # BPF run time per program over wrk's run, traced and attached-only (host-wide invocations:
    # the programs run for every syscall on the machine and return early for untracked ones).
    try:
        diag = {r["tracer"]: r for r in load(a.out, "bpfstats")}
    except FileNotFoundError:
        diag = {}
    diag_md = ""
    if diag:
        rows = []
        for mode, label in (("ebpf", "traced"), ("attached", "attached, following no process")):
            r = diag.get(mode)
            if not r:
                continue
            secs = r["wrk_seconds"]
            reqs = wrk_stats(r)["requests"]
            total = 0
            for name, v in sorted(r["wrk_bpf"].items()):
                total += v["ns"]
                rows.append(f"| {label} | `{name}` | {v['runs'] / secs:,.0f} | "
                            f"{v['ns'] / max(v['runs'], 1):.0f} | {v['ns'] / secs / 1e7:.2f}% |")
            rows.append(f"| {label} | **all** ({wrk_stats(r)['rps']:,.0f} req/s; {total / max(reqs, 1) / 1e3:.1f} us "
                        f"per request) | | | **{total / secs / 1e7:.2f}%** |")
        diag_md = ("\n## Where the time goes: BPF run time while wrk runs\n\n" + textwrap.fill(
                   "One extra traced and one attached-only wrk run (5 s) with the kernel's BPF statistics on "
                   "(`BPF_ENABLE_STATS`, which itself adds a little to every run, so these runs are not in the "
                   "ratios above). Invocations are host-wide: `on_sys_exit` runs for every syscall on the "
                   "machine and returns after one bit test for untraced processes.", width=100) + "\n\n"
                   "| run | program | runs/s | avg ns/run | CPU (% of one CPU) |\n|---|---|---|---|---|\n"
                   + "\n".join(rows) + "\n")
    # The side-by-side section counts the syscalls on the server's CPU itself: the bound from the
    # host-wide BPF statistics is left out then.
    floor_md = floor_section(a.out, diag.get("ebpf"), w2u_rps if pinned and not same else None)
    if wa:
        fixed = 1 - wa_rps / wu_rps
        per_event = (wa_rps - wt_rps) / wu_rps
        if per_event < 0:
            split = (f"With the programs attached but following no process, throughput was {wa_rps / wu_rps * 100:.1f}% "
                     f"of untraced, no better than traced: at this run's noise level the two cannot be told apart. ")
        elif fixed < 0.01:
            split = (f"With the programs attached but following no process, throughput was {wa_rps / wu_rps * 100:.1f}% "
                     f"of untraced (the fixed cost of every syscall on the host taking the tracepoint path), "
                     f"so at this run's noise level nearly all of the loss is the cost of recording the "
                     f"container's events. ")
        else:
            split = (f"Of the {(1 - w_ratio) * 100:.1f} points lost, {fixed * 100:.1f} are the fixed cost of having "
                     f"the sys_exit program attached at all (every syscall on the host, wrk's included, "
                     f"takes the tracepoint path and a program run: the \"attached, following no process\" row) and "
                     f"{per_event * 100:.1f} the cost of recording the container's events. ")
    else:
        split = ""
    spread_note = (f" Run-to-run spread of the untraced runs alone is {spread * 100:.1f}%, so one "
                   f"repetition's ratio says little." if len(wu) > 1 else "")
    why = textwrap.fill(
        f"- What the HTTP overhead is made of: busybox httpd forks a process per request (no keep-alive), "
        f"so each request is a fork, an exit, the failed open of `/etc/localtime` and the open and stat of the "
        f"served file: {statistics.median(lookups_per_request):.1f} tracer events, of which "
        f"{statistics.median(per_request):.1f} reach user space (a repeated identical lookup is only counted "
        f"in the kernel). {split}While wrk ran, the "
        f"ring buffer reader (the tracing process itself) used {reader_cpu * 100:.1f}% of one CPU more than in the "
        f"untraced run, on a {os.cpu_count()}-CPU machine where wrk and httpd already compete for the CPUs."
        f"{spread_note}", width=100, subsequent_indent="  ")
    max_clean_rate = max([rate for rate, d in zip(p_rates + lt_event_rates, p_dropped + lt_dropped) if d == 0],
                         default=0)
    drops_met = all(d == 0 for d in p_dropped) and min(p_rates) >= 100000
    verdict = lambda ok: "**met**" if ok else "**not met**"
    judged_spread = w2_spread if pinned else spread
    noisy = (f" on this run, but the machine's load makes this comparison noisy (untraced runs alone "
             f"spread {judged_spread * 100:.0f}%); the BPF run time below is the steadier measure"
             if judged_spread > 0.05 and not http_met else "")
    same_verdict = ""
    if same:
        noisy = ""
        same_verdict = textwrap.fill(
            f"- HTTP throughput traced, measured in the same seconds as untraced (the section \"In the same "
            f"seconds\" below: recording cost side by side on one CPU, plus the fixed cost from its parts): "
            f"**{same['median'] * 100:.1f}%** of untraced, ~95% interval {same['low'] * 100:.1f}% to "
            f"{same['high'] * 100:.1f}% (target: >= 97%, counted as met only if the whole interval is) — "
            f"{verdict(http_met)}. The separate runs below, each mode in its own seconds, spread "
            f"{judged_spread * 100:.0f}% between untraced runs alone, more than the effect being measured: "
            f"they are kept as a reading, not as the verdict.", width=100, subsequent_indent="  ") + "\n"

    attached_row = (f"| HTTP, diagnostic: eBPF programs attached, following no process | {wu_rps:,.0f} req/s | "
                    f"{wa_rps:,.0f} req/s | {wa_rps / wu_rps * 100:.1f}% |\n" if wa else "")
    if w1_ratio is not None:
        w1u_rps = statistics.median(x["rps"] for x in w1u)
        w1t_rps = statistics.median(x["rps"] for x in w1t)
        attached_row += (f"| HTTP, one CPU: the same, with wrk, the container and the tracer all on one CPU "
                         f"(`taskset`) | {w1u_rps:,.0f} req/s | {w1t_rps:,.0f} req/s | {w1_ratio * 100:.1f}% |\n")
    one_cpu_md = (f"\n  One CPU, per repetition: {fmt_list((x * 100 for x in w1_rep_ratios), '{:.1f}%')}; median "
                  f"{statistics.median(w1_rep_ratios) * 100:.1f}%. Runs (req/s): untraced "
                  f"{fmt_list(x['rps'] for x in w1u)}; traced {fmt_list(x['rps'] for x in w1t)}."
                  if w1_rep_ratios else "")
    if pinned:
        pinned_row = (f"| HTTP: `wrk -t1 -c8 -d{a.wrk_seconds}s` against busybox httpd, through the container's netns; "
                      f"the server (container, runtime, tracer) on one CPU, wrk on another | {w2u_rps:,.0f} req/s | "
                      f"{w2t_rps:,.0f} req/s | {w2_ratio * 100:.1f}% |\n" if same else
                      f"{w2t_rps:,.0f} req/s | **{w2_ratio * 100:.1f}%** |\n")
        shared_label = "HTTP, CPUs shared: the same, unpinned, wrk and the server sharing both CPUs"
        b = "" if same else "**"  # bold only where these runs are the verdict
        verdict_md = textwrap.fill(
            f"- HTTP throughput traced, the server on a CPU of its own: {b}{w2_ratio * 100:.1f}%{b} of untraced by "
            f"the ratio of the medians, {b}{w2_rep_ratio * 100:.1f}%{b} by the median of the per-repetition ratios"
            f"{'' if same else ' (target: >= 97%, counted as met only if both are) — ' + verdict(http_met)}"
            f"{noisy}. "
            f"{'The set-up is' if same else 'This is the set-up the target is judged on,'} "
            f"the usual one for measuring a server: the load generator has a CPU of its "
            f"own, so it neither takes the server's CPU nor limits it (busy CPUs during wrk, of "
            f"{os.cpu_count()}: {w2_busy[0]:.2f} untraced, {w2_busy[1]:.2f} traced: the server's CPU is saturated, "
            f"wrk's is not). Unpinned, wrk shares both CPUs with the server, so the tracer's fixed cost on wrk's "
            f"own syscalls (every syscall on the host pays it) also lands on the CPUs the server runs on: "
            f"{w_ratio * 100:.1f}% by the ratio of the medians, {rep_ratio * 100:.1f}% by the median of the "
            f"per-repetition ratios.", width=100, subsequent_indent="  ")
        verdict_md += (f"\n  Separate CPUs, per repetition: {fmt_list((x * 100 for x in w2_rep_ratios), '{:.1f}%')}. "
                       f"Runs (req/s): untraced {fmt_list(x['rps'] for x in w2u)}; traced "
                       f"{fmt_list(x['rps'] for x in w2t)}; dropped events: {fmt_list(w2_dropped, '{}')}.\n"
                       f"  CPUs shared, per repetition")
    else:
        pinned_row = ""
        shared_label = f"HTTP: `wrk -t1 -c8 -d{a.wrk_seconds}s` against busybox httpd, through the container's netns"
        verdict_md = textwrap.fill(
            f"- HTTP throughput traced: **{w_ratio * 100:.1f}%** of untraced by the ratio of the medians, "
            f"**{rep_ratio * 100:.1f}%** by the median of the per-repetition ratios"
            f"{'' if same else ' (target: >= 97%, counted as met only if both are) — ' + verdict(http_met)}"
            f"{noisy}.", width=100, subsequent_indent="  ")
        verdict_md += "\n  Per repetition"
    if same:
        pinned_row = (f"| HTTP, in the same seconds: a traced and an untraced busybox httpd side by side on one CPU, "
                      f"each under its own wrk on the other CPU; recording cost measured, fixed cost added (see "
                      f"below) | {same['untraced_rps']:,.0f} req/s | {same['traced_rps']:,.0f} req/s | "
                      f"**{same['median'] * 100:.1f}%** |\n" + pinned_row)
    md = f"""{HEADING}

Generated by `bench/tracer_overhead.sh`; rerun it to update this section (numbers below are from
one run, on the machine described). Each workload runs in the same busybox-based container under
the same runtime, bundle and network namespace, once with the eBPF tracer (`run_traced_with` and
`make_ebpf_tracer`, as `slimtrace trace` does) and once with a backend that records nothing (the
untraced baseline), interleaved, {a.reps} repetitions; medians reported. Tracer "events" are what the
trace's `events` field counts: one per path syscall (open, stat, ...), exec, fork and exit of the
container's processes that reached user space; a lookup repeating one already sent (same path, op
and outcome) is counted in the kernel instead (the trace's `repeated_lookups`).

## Result

| workload | untraced (median) | traced, eBPF (median) | traced / untraced |
|---|---|---|---|
{pinned_row}| {shared_label} | {wu_rps:,.0f} req/s | {wt_rps:,.0f} req/s | {w_ratio * 100:.1f}% |
{attached_row}| syscall loop, unpaced: {a.loop_iterations:,} x (open+close, stat, getpid) | {lu_rate:,.0f} it/s ({lu_sec:.2f} s) | {lt_rate:,.0f} it/s ({lt_sec:.2f} s) | {lt_rate / lu_rate * 100:.1f}% |

{same_verdict}{verdict_md} (traced and untraced back to back): {fmt_list((x * 100 for x in rep_ratios), "{:.1f}%")};
  median {rep_ratio * 100:.1f}%.{one_cpu_md}
  Runs (req/s): untraced {fmt_list(x["rps"] for x in wu)}; traced {fmt_list(x["rps"] for x in wt)};
  attached only {fmt_list(x["rps"] for x in wa)}.
  Latency (avg, per run): untraced {", ".join(x["latency"] for x in wu)}; traced {", ".join(x["latency"] for x in wt)}.
  Tracer events during the traced runs: {fmt_list(w_event_rates)} events/s (each request is a
  fork, an exit and the child's path syscalls), dropped: {fmt_list(w_dropped, "{}")}.{(" wrk reported: " + "; ".join(w_errors) + ".") if w_errors else ""}
{why}
- No lost events at >= 100k events/s (target) — {verdict(drops_met)}: the loop paced to
  {a.paced_rate:,} it/s, each iteration an open and a stat of a path not looked up before, so
  every lookup is sent ({2 * a.paced_rate:,} events/s, {a.paced_iterations:,} iterations) ran at
  {fmt_list(p_rates)} events/s with {fmt_list(p_dropped, "{}")} dropped events
  (events recorded: {fmt_list(p_events, "{}")}).
- Unpaced, the traced loop (the same file each time: after the first, lookups are counted in the
  kernel, not sent) made {fmt_list(lt_event_rates)} events/s, dropped events: {fmt_list(lt_dropped, "{}")}
  (events recorded: {fmt_list(lt_events, "{}")}; lookups counted, not sent: {fmt_list((repeats(r) for r in lt_runs), "{}")}).
  Highest event rate measured without a single drop: {max_clean_rate:,.0f} events/s.
- The unpaced loop is the worst case, not a target: nearly every syscall it makes is a path
  syscall, so each pays the BPF program's path copy, hash and map updates, while an HTTP
  server spends most of its time in network syscalls that only hit the cheap "tracked?" check.
  Runs (it/s): untraced {fmt_list(x[2] for x in lu)}; traced {fmt_list(x[2] for x in lt)}.
{same_md}{diag_md}{floor_md}
## Machine and command

- Date: {datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
- CPU: {cpu_model()}, nproc {os.cpu_count()}; kernel {platform.release()}
- Load average (1 min) before/after: {a.load} (other jobs on this machine make absolute numbers
  noisy; the ratios are taken within the same run, traced and untraced interleaved)
- Command: `{a.command.strip()}`
"""
    try:
        with open(a.results) as f:
            old = f.read()
    except FileNotFoundError:
        old = ""
    # Replace only this benchmark's section: from its heading to the next "# Benchmark:" heading
    # or another script's marked section, whichever comes first.
    before, _, rest = old.partition(HEADING)
    after = ""
    if rest:
        ends = [i for i in (rest.find("\n# Benchmark:"), rest.find("\n<!-- ")) if i >= 0]
        after = rest[min(ends) + 1:] if ends else ""
    before = before.rstrip("\n")
    with open(a.results, "w") as f:
        f.write((before + "\n\n" if before else "") + md.rstrip("\n") + "\n" + ("\n" + after if after else ""))
    print(md)


if __name__ == "__main__":
    main()
