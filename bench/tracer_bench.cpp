// One run of the tracer-overhead benchmark: runs IMAGE as a container through run_traced_with with
// one of three backends: the eBPF tracer ("ebpf"), one that records nothing ("none", the untraced
// baseline: same bundle, same runtime, same netns), or the eBPF programs attached but following
// nothing ("attached", a diagnostic). Optionally runs wrk inside the container's network namespace
// while it runs (on CPU N with --wrk-cpu N), and prints one JSON line: tracer, wall time, trace
// events and drops, exit code, the host's CPU use during wrk, the container's stdout and wrk's
// output. bench/tracer_overhead.sh runs it repeatedly and writes RESULTS.md.
//
// Usage: tracer_bench IMAGE ebpf|none|attached [--wrk "WRK ARGS..." --wait-port PORT [--wrk-cpu N]]
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
// them) but following no process, which separates the fixed cost of attached sys_enter/sys_exit
// programs from the cost of recording the container's events.
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

std::vector<std::string> split_words(const std::string& s) {
  std::istringstream in(s);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

// Runs wrk in the container's network namespace once PORT accepts connections on 127.0.0.1
// there; returns its stdout (and stderr).
st::Result<std::string> run_wrk_in_netns(const std::filesystem::path& netns, int port,
                                         const std::vector<std::string>& wrk_args, int pin_cpu) {
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
    ::execvp("wrk", argv.data());
    _exit(127);
  }
  wr.reset();
  std::string out;
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
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    std::string why = code == 120   ? "setns failed"
                      : code == 121 ? "nothing listens on 127.0.0.1:" + std::to_string(port)
                      : code == 122 ? "cannot run on CPU " + std::to_string(pin_cpu)
                      : code == 127 ? "wrk not found"
                                    : "exit code " + std::to_string(code);
    return st::Error{"wrk in the container's netns: " + why + ": " + out};
  }
  return out;
}

int usage() {
  std::fprintf(stderr,
               "usage: tracer_bench IMAGE ebpf|none|attached [--wrk \"WRK ARGS\" --wait-port PORT "
               "[--wrk-cpu N]] "
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
  std::vector<std::string> cmd;
  for (int i = 3; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--wrk" && i + 1 < argc) {
      wrk_args = split_words(argv[++i]);
    } else if (a == "--wrk-cpu" && i + 1 < argc) {
      wrk_pin_cpu = std::atoi(argv[++i]);
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
  double wrk_wall = 0, wrk_cpu = 0, wrk_host_busy = 0;
  nlohmann::json wrk_bpf = nlohmann::json::object();  // --bpf-stats: per program, over wrk's run
  tr::WhileRunning while_running;
  if (!wrk_args.empty()) {
    while_running = [&](const tr::RunningContainer& c) -> st::Status {
      auto b0 = own_bpf_stats();
      double c0 = cpu_seconds();
      HostCpu h0 = host_cpu();
      auto w0 = std::chrono::steady_clock::now();
      SLIMTRACE_ASSIGN_OR_RETURN(wrk_out, run_wrk_in_netns(c.netns, port, wrk_args, wrk_pin_cpu));
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
