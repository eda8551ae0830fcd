// The kernel's own price for the hooks the tracer needs, measured without the tracer: a host loop
// of getppid(2), timed with nothing attached, with an empty BPF program on the sys_enter raw
// tracepoint, with an empty program on one sys_exit_<name> syscall tracepoint (openat, which the
// loop never makes), and with both. Once any syscall tracepoint is in use, every task on the host
// takes the kernel's slow syscall path and calls the tracepoint's probes on each syscall, whatever
// the program does: that is the floor under the tracer's fixed cost per host syscall.
// bench/tracer_overhead.sh runs it next to slimtrace's own programs (tracer_bench attached).
//
// The programs are two instructions (r0 = 0; exit), loaded with bpf(2) directly: nothing outside
// tracer/ uses libbpf. Prints one JSON line: mode -> median ns per syscall, and every repetition.
//
// Usage: hook_floor [--reps N] [--calls N] [--only none]
//   --only none: only the unhooked loop (to time it while another tracer is attached)
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/perf_event.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "slimtrace/fd.hpp"

namespace {

// Detaching a program is closing its link or perf event: UniqueFd does it on scope exit.
using Fd = slimtrace::UniqueFd;

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "hook_floor: %s: %s\n", what.c_str(), std::strerror(errno));
  std::exit(1);
}

long sys_bpf(int cmd, union bpf_attr* attr) { return syscall(SYS_bpf, cmd, attr, sizeof(*attr)); }

Fd load_empty_program(bpf_prog_type type) {
  // r0 = 0; exit
  const bpf_insn insns[] = {
      {.code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = 0, .src_reg = 0, .off = 0, .imm = 0},
      {.code = BPF_JMP | BPF_EXIT, .dst_reg = 0, .src_reg = 0, .off = 0, .imm = 0},
  };
  static const char license[] = "GPL";
  union bpf_attr attr {};
  attr.prog_type = type;
  attr.insns = reinterpret_cast<__u64>(insns);
  attr.insn_cnt = 2;
  attr.license = reinterpret_cast<__u64>(license);
  int fd = static_cast<int>(sys_bpf(BPF_PROG_LOAD, &attr));
  if (fd < 0) fail("loading an empty BPF program");
  return Fd(fd);
}

// Holds the program attached to the sys_enter raw tracepoint while alive.
struct EnterHook {
  Fd prog, link;
};
EnterHook attach_sys_enter() {
  EnterHook h{load_empty_program(BPF_PROG_TYPE_RAW_TRACEPOINT), Fd()};
  static const char name[] = "sys_enter";
  union bpf_attr attr {};
  attr.raw_tracepoint.name = reinterpret_cast<__u64>(name);
  attr.raw_tracepoint.prog_fd = static_cast<__u32>(h.prog.get());
  int fd = static_cast<int>(sys_bpf(BPF_RAW_TRACEPOINT_OPEN, &attr));
  if (fd < 0) fail("attaching to raw tracepoint sys_enter");
  h.link = Fd(fd);
  return h;
}

// tracefs, mounted for the tracepoint's id when it is not, and unmounted again by the destructor.
class Tracefs {
 public:
  Tracefs() {
    for (const char* d : {"/sys/kernel/tracing", "/sys/kernel/debug/tracing"}) {
      if (access((std::string(d) + "/events").c_str(), F_OK) == 0) {
        dir_ = d;
        return;
      }
    }
    if (mount("tracefs", "/sys/kernel/tracing", "tracefs", 0, nullptr) != 0) fail("mount tracefs");
    dir_ = "/sys/kernel/tracing";
    mounted_ = true;
  }
  Tracefs(const Tracefs&) = delete;
  Tracefs& operator=(const Tracefs&) = delete;
  ~Tracefs() {
    if (mounted_) umount2(dir_.c_str(), MNT_DETACH);
  }
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
  bool mounted_ = false;
};

struct ExitHook {
  Fd prog, event;
};
ExitHook attach_sys_exit_openat(const Tracefs& tracefs) {
  std::ifstream idf(tracefs.dir() + "/events/syscalls/sys_exit_openat/id");
  unsigned long long id = 0;
  if (!(idf >> id)) fail("reading the id of syscalls/sys_exit_openat");
  ExitHook h{load_empty_program(BPF_PROG_TYPE_TRACEPOINT), Fd()};
  perf_event_attr pa{};
  pa.type = PERF_TYPE_TRACEPOINT;
  pa.size = sizeof(pa);
  pa.config = id;
  pa.sample_period = 1;
  pa.wakeup_events = 1;
  int fd = static_cast<int>(syscall(SYS_perf_event_open, &pa, -1, 0, -1, PERF_FLAG_FD_CLOEXEC));
  if (fd < 0) fail("perf_event_open syscalls/sys_exit_openat");
  h.event = Fd(fd);
  if (ioctl(fd, PERF_EVENT_IOC_SET_BPF, h.prog.get()) != 0) fail("PERF_EVENT_IOC_SET_BPF");
  if (ioctl(fd, PERF_EVENT_IOC_ENABLE, 0) != 0) fail("PERF_EVENT_IOC_ENABLE");
  return h;
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

int usage() {
  std::fprintf(stderr, "usage: hook_floor [--reps N] [--calls N] [--only none]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  int reps = 9;
  long calls = 1000000;
  bool only_none = false;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    if (a == "--reps" && i + 1 < argc) {
      reps = std::atoi(argv[++i]);
    } else if (a == "--calls" && i + 1 < argc) {
      calls = std::atol(argv[++i]);
    } else if (a == "--only" && i + 1 < argc && std::string(argv[i + 1]) == "none") {
      only_none = true;
      i++;
    } else {
      return usage();
    }
  }
  if (reps < 1 || calls < 1) return usage();

  std::map<std::string, std::vector<double>> runs;
  if (only_none) {
    for (int r = 0; r < reps; r++) runs["none"].push_back(time_loop(calls));
  } else {
    Tracefs tracefs;
    // Interleaved, so that a change in the machine's load touches every mode alike.
    for (int r = 0; r < reps; r++) {
      runs["none"].push_back(time_loop(calls));
      {
        EnterHook e = attach_sys_enter();
        runs["sys_enter"].push_back(time_loop(calls));
      }
      {
        ExitHook x = attach_sys_exit_openat(tracefs);
        runs["sys_exit_openat"].push_back(time_loop(calls));
      }
      {
        EnterHook e = attach_sys_enter();
        ExitHook x = attach_sys_exit_openat(tracefs);
        runs["both"].push_back(time_loop(calls));
      }
    }
  }
  nlohmann::json out;
  out["calls"] = calls;
  out["reps"] = reps;
  for (auto& [mode, v] : runs) {
    out["median_ns"][mode] = median(v);
    out["runs_ns"][mode] = v;
  }
  std::printf("%s\n", out.dump().c_str());
  return 0;
}
