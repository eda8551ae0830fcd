// One run of the tracer-overhead benchmark: runs IMAGE as a container through run_traced_with with
// one of three backends: the eBPF tracer ("ebpf"), one that records nothing ("none", the untraced
// baseline: same bundle, same runtime, same netns), or the eBPF programs attached but following
// nothing ("attached", a diagnostic). Optionally runs wrk inside the container's network namespace
// while it runs (on CPU N with --wrk-cpu N), and prints one JSON line: tracer, wall time, trace
// events and drops, exit code, the host's CPU use during wrk, the container's stdout and wrk's
// output. bench/tracer_overhead.sh runs it repeatedly and writes RESULTS.md.
//
// --wrk-repeat N runs wrk N times (windows); with --wrk-at, window k starts at EPOCH_MS + k * MS
// of wall-clock time, so that two of these processes started together load their two containers in
// the same seconds (on a machine whose speed changes from second to second, a traced and an
// untraced server sharing a CPU see the same changes). --count-syscalls counts the syscalls made on
// each CPU, host-wide, during the windows (a counting program on sys_enter: not for timed runs).
//
// Usage: tracer_bench IMAGE ebpf|none|attached [--wrk "WRK ARGS..." --wait-port PORT [--wrk-cpu N]
//                     [--wrk-repeat N [--wrk-at EPOCH_MS --wrk-period MS]] [--count-syscalls]]
//                     [--trace-out FILE] [--bpf-stats] [-- CMD...]
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "raw_bpf.hpp"
#include "runner_internal.hpp"
#include "slimtrace/fd.hpp"
#include "slimtrace/image/file_tree.hpp"
#include "slimtrace/image/reference.hpp"
#include "slimtrace/image/source.hpp"
#include "slimtrace/tracer/runner.hpp"
#include "slimtrace/workdir.hpp"
#include "tracer_backend.hpp"

namespace st = slimtrace;
namespace tr = slimtrace::tracer;

namespace {

// The untraced baseline: follows nothing, records nothing, only waits when asked to poll.
class NoTracer final : public tr::TracerBackend {
 public:
  st::Status follow(int) override { return {}; }
  st::Status poll(int timeout_ms) override {
    if (timeout_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(timeout_ms));
    return {};
  }
  st::Status finish(tr::Trace& out) override {
    out.limitations.push_back("benchmark baseline: not traced");
    return {};
  }
};

// Diagnostic: the eBPF programs loaded and attached (so every syscall on the host passes through
// them) but following no process, which separates the fixed cost of the attached sys_exit program
// from the cost of recording the container's events.
class AttachedOnly final : public tr::TracerBackend {
 public:
  explicit AttachedOnly(std::unique_ptr<tr::TracerBackend> inner) : inner_(std::move(inner)) {}
  st::Status follow(int) override { return {}; }
  st::Status poll(int timeout_ms) override { return inner_->poll(timeout_ms); }
  st::Status finish(tr::Trace& out) override { return inner_->finish(out); }

 private:
  std::unique_ptr<tr::TracerBackend> inner_;
};

// --bpf-stats: the kernel's per-program run counts and times (BPF_ENABLE_STATS, host-wide while
// the returned fd is open, so only for diagnostic runs: it slows every BPF program down a little).
// Raw bpf(2) with the uapi header: nothing outside tracer/ uses libbpf.
st::Result<st::UniqueFd> enable_bpf_stats() {
  bpf_attr attr{};
  attr.enable_stats.type = BPF_STATS_RUN_TIME;
  long fd = ::syscall(SYS_bpf, BPF_ENABLE_STATS, &attr, sizeof attr);
  if (fd < 0) return st::Error::from_errno("bpf(BPF_ENABLE_STATS)");
  return st::UniqueFd(static_cast<int>(fd));
}

struct ProgStats {
  uint64_t runs = 0, ns = 0;
};

// Our own BPF programs (the tracer's, held open by this process), by name.
std::map<std::string, ProgStats> own_bpf_stats() {
  std::map<std::string, ProgStats> out;
  DIR* d = ::opendir("/proc/self/fd");
  if (!d) return out;
  while (dirent* e = ::readdir(d)) {
    std::string link = "/proc/self/fd/" + std::string(e->d_name);
    char target[64] = {};
    if (::readlink(link.c_str(), target, sizeof target - 1) <= 0) continue;
    if (std::string(target) != "anon_inode:bpf-prog") continue;
    bpf_prog_info info{};
    bpf_attr attr{};
    attr.info.bpf_fd = static_cast<uint32_t>(std::atoi(e->d_name));
    attr.info.info_len = sizeof info;
    attr.info.info = reinterpret_cast<uintptr_t>(&info);
    if (::syscall(SYS_bpf, BPF_OBJ_GET_INFO_BY_FD, &attr, sizeof attr) != 0) continue;
    auto& s = out[std::string(info.name, strnlen(info.name, sizeof info.name))];
    s.runs += info.run_cnt;
    s.ns += info.run_time_ns;
  }
  ::closedir(d);
  return out;
}

std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Host-wide CPU time from /proc/stat's "cpu" line, in clock ticks: busy and idle (idle + iowait).
struct HostCpu {
  uint64_t busy = 0, idle = 0;
};
HostCpu host_cpu() {
  std::ifstream in("/proc/stat");
  std::string label;
  in >> label;
  HostCpu c;
  for (int i = 0; i < 8; ++i) {
    uint64_t v = 0;
    if (!(in >> v)) break;
    (i == 3 || i == 4 ? c.idle : c.busy) += v;
  }
  return c;
}

// CPU time used so far by the cgroup of process `pid` (the container's, which its processes' syscalls
// and the BPF programs they run are charged to), in seconds; -1 when it cannot be read. cgroup2's
// cpu.stat has it with or without the cpu controller: on a hybrid host under /sys/fs/cgroup/unified.
double cgroup_cpu_seconds(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/cgroup");
  std::string path;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("0::", 0) == 0) path = line.substr(3);
  }
  if (path.empty()) return -1;
  for (const char* root : {"/sys/fs/cgroup/unified", "/sys/fs/cgroup"}) {
    std::ifstream stat(std::string(root) + path + "/cpu.stat");
    std::string key;
    unsigned long long value = 0;
    while (stat >> key >> value) {
      if (key == "usage_usec") return static_cast<double>(value) / 1e6;
    }
  }
  return -1;
}

std::vector<std::string> split_words(const std::string& s) {
  std::istringstream in(s);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

struct WrkRun {
  std::string output;  // wrk's stdout and stderr
  double late_ms = 0;  // how long after `start_at_ms` wrk started (0 without a start time)
};

// Runs wrk in the container's network namespace once PORT accepts connections on 127.0.0.1
// there; with `start_at_ms` (the window's start, wall-clock ms since the epoch), it also reports how
// late after it wrk started.
st::Result<WrkRun> run_wrk_in_netns(const std::filesystem::path& netns, int port,
                                    const std::vector<std::string>& wrk_args, int pin_cpu,
                                    long long start_at_ms) {
  st::UniqueFd ns(::open(netns.c_str(), O_RDONLY | O_CLOEXEC));
  if (!ns.valid()) return st::Error::from_errno("open netns '" + netns.string() + "'");
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return st::Error::from_errno("pipe");
  st::UniqueFd rd(fds[0]), wr(fds[1]);
  std::vector<std::string> argv_s = {"wrk"};
  argv_s.insert(argv_s.end(), wrk_args.begin(), wrk_args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);

  pid_t pid = ::fork();
  if (pid < 0) return st::Error::from_errno("fork");
  if (pid == 0) {
    // Only async-signal-safe calls from here on: the parent has threads.
    if (::setns(ns.get(), CLONE_NEWNET) != 0) _exit(120);
    if (pin_cpu >= 0) {
      cpu_set_t set;
      CPU_ZERO(&set);
      CPU_SET(pin_cpu, &set);
      if (::sched_setaffinity(0, sizeof set, &set) != 0) _exit(122);
    }
    ::dup2(wr.get(), STDOUT_FILENO);
    ::dup2(wr.get(), STDERR_FILENO);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bool up = false;
    for (int i = 0; i < 200 && !up; ++i) {  // up to 10 s for the server to listen
      int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      up = s >= 0 && ::connect(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
      if (s >= 0) ::close(s);
      if (!up) {
        timespec ts{0, 50'000'000};
        ::nanosleep(&ts, nullptr);
      }
    }
    if (!up) _exit(121);
    if (start_at_ms > 0) {
      // How late after its start time wrk starts (the server may have been slow to listen), as the
      // first line of the output, formatted by hand: only async-signal-safe calls here.
      timespec now{};
      ::clock_gettime(CLOCK_REALTIME, &now);
      long long late = (static_cast<long long>(now.tv_sec) * 1000 + now.tv_nsec / 1'000'000) - start_at_ms;
      char line[32] = "late_ms ";
      size_t n = 8;
      if (late < 0) late = 0;
      char digits[20];
      size_t d = 0;
      do digits[d++] = static_cast<char>('0' + late % 10);
      while ((late /= 10) > 0 && d < sizeof digits);
      while (d > 0 && n < sizeof line - 1) line[n++] = digits[--d];
      line[n++] = '\n';
      if (::write(STDOUT_FILENO, line, n) < 0) _exit(123);
    }
    ::execvp("wrk", argv.data());
    _exit(127);
  }
  wr.reset();
  WrkRun run;
  std::string& out = run.output;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(rd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (out.rfind("late_ms ", 0) == 0) {
    size_t eol = out.find('\n');
    run.late_ms = std::atof(out.c_str() + 8);
    out.erase(0, eol == std::string::npos ? out.size() : eol + 1);
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    std::string why = code == 120   ? "setns failed"
                      : code == 121 ? "nothing listens on 127.0.0.1:" + std::to_string(port)
                      : code == 122 ? "cannot run on CPU " + std::to_string(pin_cpu)
                      : code == 127 ? "wrk not found"
                                    : "exit code " + std::to_string(code);
    return st::Error{"wrk in the container's netns: " + why + ": " + out};
  }
  return run;
}

int usage() {
  std::fprintf(stderr,
               "usage: tracer_bench IMAGE ebpf|none|attached [--wrk \"WRK ARGS\" --wait-port PORT "
               "[--wrk-cpu N] [--wrk-repeat N [--wrk-at EPOCH_MS --wrk-period MS]] [--count-syscalls]] "
               "[--trace-out FILE] [--bpf-stats] [-- CMD...]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) return usage();
  std::string image_text = argv[1];
  std::string mode = argv[2];
  if (mode != "ebpf" && mode != "none" && mode != "attached") return usage();
  std::vector<std::string> wrk_args;
  int port = 0;
  std::string trace_out;
  bool bpf_stats = false;
  int wrk_pin_cpu = -1;
  int wrk_repeat = 1;
  long long wrk_at_ms = 0, wrk_period_ms = 0;
  bool count_syscalls = false;
  std::vector<std::string> cmd;
  for (int i = 3; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--wrk" && i + 1 < argc) {
      wrk_args = split_words(argv[++i]);
    } else if (a == "--wrk-cpu" && i + 1 < argc) {
      wrk_pin_cpu = std::atoi(argv[++i]);
    } else if (a == "--wrk-repeat" && i + 1 < argc) {
      wrk_repeat = std::atoi(argv[++i]);
    } else if (a == "--wrk-at" && i + 1 < argc) {
      wrk_at_ms = std::atoll(argv[++i]);
    } else if (a == "--wrk-period" && i + 1 < argc) {
      wrk_period_ms = std::atoll(argv[++i]);
    } else if (a == "--count-syscalls") {
      count_syscalls = true;
    } else if (a == "--bpf-stats") {
      bpf_stats = true;
    } else if (a == "--trace-out" && i + 1 < argc) {
      trace_out = argv[++i];
    } else if (a == "--wait-port" && i + 1 < argc) {
      port = std::atoi(argv[++i]);
    } else if (a == "--") {
      cmd.assign(argv + i + 1, argv + argc);
      break;
    } else {
      return usage();
    }
  }
  if (!wrk_args.empty() && port <= 0) return usage();
  if (wrk_repeat < 1 || (wrk_repeat > 1 && wrk_at_ms > 0 && wrk_period_ms <= 0)) return usage();

  st::install_interrupt_cleanup();
  st::UniqueFd stats_fd;
  if (bpf_stats) {
    auto fd = enable_bpf_stats();
    if (!fd) {
      std::fprintf(stderr, "tracer_bench: %s\n", fd.error().message.c_str());
      return 1;
    }
    stats_fd = std::move(fd).value();
  }
  auto work = st::WorkDir::create();
  if (!work) {
    std::fprintf(stderr, "tracer_bench: %s\n", work.error().message.c_str());
    return 1;
  }
  auto ref = st::image::parse_reference(image_text);
  if (!ref) {
    std::fprintf(stderr, "tracer_bench: %s\n", ref.error().message.c_str());
    return 1;
  }
  auto img = st::image::open_image(*ref, {st::image::Platform{}, work->path() / "open", {}});
  if (!img) {
    std::fprintf(stderr, "tracer_bench: %s\n", img.error().message.c_str());
    return 1;
  }
  auto tree = st::image::flatten(*img);
  if (!tree) {
    std::fprintf(stderr, "tracer_bench: %s\n", tree.error().message.c_str());
    return 1;
  }

  tr::RunSpec spec;
  spec.image = &*img;
  spec.tree = &*tree;
  spec.cmd = cmd;
  spec.work_dir = work->path() / "run";
  spec.stop_grace_seconds = 2;

  // CPU time of this process (all its threads: the tracer's ring buffer reader included, the
  // runtime and wrk excluded, they are children), over the whole run and over wrk alone; the latter
  // leaves out image set-up and BPF loading, so it is the reader's cost while the server is busy.
  auto cpu_seconds = [] {
    rusage ru{};
    ::getrusage(RUSAGE_SELF, &ru);
    auto sec = [](const timeval& tv) {
      return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6;
    };
    return sec(ru.ru_utime) + sec(ru.ru_stime);
  };
  std::string wrk_out;
  nlohmann::json wrk_windows = nlohmann::json::array();
  nlohmann::json wrk_syscalls = nlohmann::json::array();  // --count-syscalls: per CPU, over wrk's run
  double wrk_wall = 0, wrk_cpu = 0, wrk_host_busy = 0;
  nlohmann::json wrk_bpf = nlohmann::json::object();  // --bpf-stats: per program, over wrk's run
  tr::WhileRunning while_running;
  if (!wrk_args.empty()) {
    while_running = [&](const tr::RunningContainer& c) -> st::Status {
      auto b0 = own_bpf_stats();
      double c0 = cpu_seconds();
      HostCpu h0 = host_cpu();
      auto w0 = std::chrono::steady_clock::now();
      std::unique_ptr<bench::SyscallCounter> counter;
      auto counts = [&]() -> st::Result<std::vector<unsigned long long>> {
        try {
          if (!counter && count_syscalls) counter = std::make_unique<bench::SyscallCounter>();
          return counter ? counter->per_cpu() : std::vector<unsigned long long>{};
        } catch (const std::exception& e) {
          return st::Error{e.what()};
        }
      };
      // Counted over the windows only, not the waits before and between them.
      std::vector<unsigned long long> counted;
      for (int k = 0; k < wrk_repeat; ++k) {
        long long at = wrk_at_ms > 0 ? wrk_at_ms + k * wrk_period_ms : 0;
        if (at > 0) {
          timespec ts{static_cast<time_t>(at / 1000), static_cast<long>(at % 1000) * 1'000'000};
          while (::clock_nanosleep(CLOCK_REALTIME, TIMER_ABSTIME, &ts, nullptr) == EINTR) {
          }
        }
        SLIMTRACE_ASSIGN_OR_RETURN(auto before, counts());
        double container0 = cgroup_cpu_seconds(c.pid), self0 = cpu_seconds();
        SLIMTRACE_ASSIGN_OR_RETURN(WrkRun one, run_wrk_in_netns(c.netns, port, wrk_args, wrk_pin_cpu, at));
        double container1 = cgroup_cpu_seconds(c.pid), self1 = cpu_seconds();
        SLIMTRACE_ASSIGN_OR_RETURN(auto after, counts());
        counted.resize(after.size());
        for (size_t i = 0; i < after.size(); ++i) counted[i] += after[i] - before[i];
        if (k == 0) wrk_out = one.output;
        // CPU used by the container (its cgroup) and by this process (the tracer's reader) in the
        // window: with two servers on one CPU, each one's CPU time per request.
        wrk_windows.push_back({{"late_ms", one.late_ms},
                               {"wrk", one.output},
                               {"container_cpu_seconds", container0 < 0 || container1 < 0
                                                             ? nlohmann::json(nullptr)
                                                             : nlohmann::json(container1 - container0)},
                               {"self_cpu_seconds", self1 - self0}});
      }
      wrk_syscalls = counted;
      wrk_wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - w0).count();
      wrk_cpu = cpu_seconds() - c0;
      HostCpu h1 = host_cpu();
      uint64_t busy = h1.busy - h0.busy, all = busy + (h1.idle - h0.idle);
      wrk_host_busy = all ? static_cast<double>(busy) / static_cast<double>(all) : 0;
      if (bpf_stats) {
        for (const auto& [name, after] : own_bpf_stats()) {
          const ProgStats& before = b0[name];
          wrk_bpf[name] = {{"runs", after.runs - before.runs}, {"ns", after.ns - before.ns}};
        }
      }
      return {};
    };
  }
  tr::TracerFactory factory =
      [&mode](tr::TracerKind, const tr::TracerOptions& o) -> st::Result<std::unique_ptr<tr::TracerBackend>> {
    if (mode == "ebpf") return tr::make_ebpf_tracer(o);
    if (mode == "attached") {
      SLIMTRACE_ASSIGN_OR_RETURN(auto inner, tr::make_ebpf_tracer(o));
      return std::unique_ptr<tr::TracerBackend>(std::make_unique<AttachedOnly>(std::move(inner)));
    }
    return std::unique_ptr<tr::TracerBackend>(std::make_unique<NoTracer>());
  };

  double cpu0 = cpu_seconds();
  auto t0 = std::chrono::steady_clock::now();
  auto run = tr::run_traced_with(spec, while_running, factory);
  double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  double cpu = cpu_seconds() - cpu0;
  if (!run) {
    std::fprintf(stderr, "tracer_bench: %s\n", run.error().message.c_str());
    return 1;
  }
  const tr::Trace& t = run->trace;
  nlohmann::json j = {
      {"tracer", mode},
      {"wall_seconds", wall},
      {"container_seconds", t.duration_seconds},
      {"self_cpu_seconds", cpu},
      {"wrk_seconds", wrk_wall},
      {"wrk_self_cpu_seconds", wrk_cpu},
      {"wrk_host_busy", wrk_host_busy},
      {"wrk_bpf", wrk_bpf},
      {"wrk_windows", wrk_windows},
      {"wrk_syscalls_per_cpu", wrk_syscalls},
      {"events", t.events},
      {"repeated_lookups", t.repeated_lookups},
      {"dropped_events", t.dropped_events},
      {"files", t.files.size()},
      {"processes", t.processes.size()},
      {"exit_code", t.exit_code ? nlohmann::json(*t.exit_code) : nlohmann::json(nullptr)},
      {"stdout", slurp(run->stdout_log)},
      {"stderr", slurp(run->stderr_log)},
      {"wrk", wrk_out},
  };
  if (!trace_out.empty()) std::ofstream(trace_out) << tr::to_json(t).dump(2) << "\n";
  std::cout << j.dump() << "\n";
  return 0;
}
