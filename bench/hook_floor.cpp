// The kernel's own price for the hooks the tracer needs, measured without the tracer: a host loop
// of getppid(2), timed with nothing attached, with an empty BPF program on the sys_exit raw
// tracepoint alone (the tracer's one hook), and for comparison with the hooks of an entry-and-exit
// design: an empty program on the sys_enter raw tracepoint, on one sys_exit_<name> syscall
// tracepoint (openat, which the loop never makes), on both, and on both but with the loop's own
// sys_exit_getppid in place of openat's (what a path syscall pays there: its exit tracepoint runs
// the program). Once any syscall
// tracepoint is in use, every task on the host takes the kernel's slow syscall path and calls the
// tracepoint's probes on each syscall, whatever the program does: that is the floor under the
// tracer's fixed cost per host syscall.
// bench/tracer_overhead.sh runs it next to slimtrace's own programs (tracer_bench attached).
//
// The programs are two instructions (r0 = 0; exit), loaded with bpf(2) directly: nothing outside
// tracer/ uses libbpf. Prints one JSON line: mode -> median ns per syscall, and every repetition.
//
// Usage: hook_floor [--reps N] [--calls N] [--only none] [--seccomp]
//   --only none: only the unhooked loop (to time it while another tracer is attached)
//   --seccomp: first put this process under an allow-all seccomp filter, as the runtime does for a
//     container (and Docker for every container, with its default profile). A filter already sends
//     each syscall's entry down the kernel's slow path, so what the hooks add to a container's
//     syscalls is less than what they add to an unfiltered host process's.
#include <linux/perf_event.h>
#include <seccomp.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "raw_bpf.hpp"

namespace {

using bench::attach_raw_tracepoint;
using bench::fail;
using bench::Fd;
using bench::load_empty_program;
using bench::RawTracepointHook;

RawTracepointHook attach_sys_enter() {
  return attach_raw_tracepoint(load_empty_program(BPF_PROG_TYPE_RAW_TRACEPOINT), "sys_enter");
}

RawTracepointHook attach_raw_sys_exit() {
  return attach_raw_tracepoint(load_empty_program(BPF_PROG_TYPE_RAW_TRACEPOINT), "sys_exit");
}

// The tracepoint's id, from tracefs; a tracefs mounted for it is unmounted at once (perf_event_open
// needs only the id), so an interrupted run leaves no mount behind.
unsigned long long tracepoint_id(const std::string& event) {
  const char* const dirs[] = {"/sys/kernel/tracing", "/sys/kernel/debug/tracing"};
  bool mounted = false;
  std::string dir;
  for (const char* d : dirs) {
    if (access((std::string(d) + "/events").c_str(), F_OK) == 0) dir = d;
    if (!dir.empty()) break;
  }
  if (dir.empty()) {
    if (mount("tracefs", dirs[0], "tracefs", 0, nullptr) != 0) fail("mount tracefs");
    dir = dirs[0];
    mounted = true;
  }
  unsigned long long id = 0;
  bool ok = static_cast<bool>(std::ifstream(dir + "/events/syscalls/" + event + "/id") >> id);
  if (mounted) umount2(dir.c_str(), MNT_DETACH);
  if (!ok) fail("reading the id of syscalls/" + event);
  return id;
}

struct ExitHook {
  Fd prog, event;
};
ExitHook attach_sys_exit(unsigned long long id) {
  ExitHook h{load_empty_program(BPF_PROG_TYPE_TRACEPOINT), Fd()};
  perf_event_attr pa{};
  pa.type = PERF_TYPE_TRACEPOINT;
  pa.size = sizeof(pa);
  pa.config = id;
  pa.sample_period = 1;
  pa.wakeup_events = 1;
  int fd = static_cast<int>(syscall(SYS_perf_event_open, &pa, -1, 0, -1, PERF_FLAG_FD_CLOEXEC));
  if (fd < 0) fail("perf_event_open of a sys_exit tracepoint");
  h.event = Fd(fd);
  if (ioctl(fd, PERF_EVENT_IOC_SET_BPF, h.prog.get()) != 0) fail("PERF_EVENT_IOC_SET_BPF");
  if (ioctl(fd, PERF_EVENT_IOC_ENABLE, 0) != 0) fail("PERF_EVENT_IOC_ENABLE");
  return h;
}

// The filter an OCI runtime installs for {"defaultAction": "SCMP_ACT_ALLOW"}: built by libseccomp
// too, so it runs the same instructions (the architecture check, then allow).
void enter_allow_all_seccomp() {
  scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
  if (ctx == nullptr) throw std::runtime_error("seccomp_init failed");
  int rc = seccomp_load(ctx);  // sets no_new_privs first (SCMP_FLTATR_CTL_NNP is on by default)
  seccomp_release(ctx);
  if (rc != 0) {
    errno = -rc;
    fail("seccomp_load");
  }
}

// Best of three timings of `calls` getppid calls, in ns per call: the best is the least disturbed
// by the other jobs on the machine.
double time_loop(long calls) {
  double best = 1e18;
  for (int k = 0; k < 3; k++) {
    auto t0 = std::chrono::steady_clock::now();
    for (long i = 0; i < calls; i++) syscall(SYS_getppid);
    auto t1 = std::chrono::steady_clock::now();
    best = std::min(best,
                    std::chrono::duration<double, std::nano>(t1 - t0).count() / static_cast<double>(calls));
  }
  return best;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

void measure(std::map<std::string, std::vector<double>>& runs, int reps, long calls, bool only_none) {
  if (only_none) {
    for (int r = 0; r < reps; r++) runs["none"].push_back(time_loop(calls));
  } else {
    unsigned long long exit_id = tracepoint_id("sys_exit_openat");
    unsigned long long hit_id = tracepoint_id("sys_exit_getppid");
    // Interleaved, so that a change in the machine's load touches every mode alike.
    for (int r = 0; r < reps; r++) {
      runs["none"].push_back(time_loop(calls));
      {
        RawTracepointHook e = attach_sys_enter();
        runs["sys_enter"].push_back(time_loop(calls));
      }
      {
        ExitHook x = attach_sys_exit(exit_id);
        runs["sys_exit_openat"].push_back(time_loop(calls));
      }
      {
        // One program on the raw sys_exit tracepoint alone: it sees every syscall's number and
        // result, so it can stand for both hooks.
        RawTracepointHook x = attach_raw_sys_exit();
        runs["sys_exit_raw"].push_back(time_loop(calls));
      }
      {
        RawTracepointHook e = attach_sys_enter();
        ExitHook x = attach_sys_exit(exit_id);
        runs["both"].push_back(time_loop(calls));
      }
      {
        // What a path syscall pays on top: its own exit tracepoint runs the program.
        RawTracepointHook e = attach_sys_enter();
        ExitHook x = attach_sys_exit(hit_id);
        runs["both_exit_hit"].push_back(time_loop(calls));
      }
    }
  }
}

int usage() {
  std::fprintf(stderr, "usage: hook_floor [--reps N] [--calls N] [--only none] [--seccomp]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  int reps = 9;
  long calls = 1000000;
  bool only_none = false;
  bool under_seccomp = false;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    if (a == "--reps" && i + 1 < argc) {
      reps = std::atoi(argv[++i]);
    } else if (a == "--calls" && i + 1 < argc) {
      calls = std::atol(argv[++i]);
    } else if (a == "--only" && i + 1 < argc && std::string(argv[i + 1]) == "none") {
      only_none = true;
      i++;
    } else if (a == "--seccomp") {
      under_seccomp = true;
    } else {
      return usage();
    }
  }
  if (reps < 1 || calls < 1) return usage();

  std::map<std::string, std::vector<double>> runs;
  try {
    if (under_seccomp) enter_allow_all_seccomp();
    measure(runs, reps, calls, only_none);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "hook_floor: %s\n", e.what());
    return 1;
  }
  nlohmann::json out;
  out["calls"] = calls;
  out["reps"] = reps;
  out["seccomp"] = under_seccomp;
  for (auto& [mode, v] : runs) {
    out["median_ns"][mode] = median(v);
    out["runs_ns"][mode] = v;
  }
  std::printf("%s\n", out.dump().c_str());
  return 0;
}
