#include "slimtrace/tracer/runner.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <thread>

#include "bundle.hpp"
#include "netns.hpp"
#include "runner_internal.hpp"
#include "runtime.hpp"
#include "slimtrace/fd.hpp"
#include "slimtrace/image/rootfs.hpp"
#include "slimtrace/workdir.hpp"
#include "tracer_backend.hpp"

namespace slimtrace::tracer {

Result<HostMount> HostMount::parse(const std::string& text) {
  HostMount m;
  auto first = text.find(':');
  if (first == std::string::npos || first == 0)
    return Error{"mount '" + text + "': expected SRC:DST[:ro|rw]"};
  m.source = text.substr(0, first);
  std::string rest = text.substr(first + 1);
  auto second = rest.find(':');
  m.destination = rest.substr(0, second);
  if (second != std::string::npos) {
    std::string mode = rest.substr(second + 1);
    if (mode == "ro")
      m.read_only = true;
    else if (mode != "rw")
      return Error{"mount '" + text + "': unknown option '" + mode + "' (ro or rw)"};
  }
  if (m.destination.empty() || m.destination[0] != '/')
    return Error{"mount '" + text + "': destination must be an absolute container path"};
  std::error_code ec;
  auto abs = std::filesystem::absolute(m.source, ec);
  if (ec || !std::filesystem::exists(abs, ec))
    return Error{"mount '" + text + "': source '" + m.source + "' does not exist"};
  m.source = abs.lexically_normal().string();
  return m;
}

namespace {

constexpr const char* kImagePrefix = "image: ";
constexpr const char* kTracerPrefix = "tracer: ";
constexpr const char* kContainerPrefix = "container: ";

using Clock = std::chrono::steady_clock;

// Test hook: SLIMTRACE_TEST_PAUSE=<phase> stops the run there so a test can interrupt it.
void maybe_pause(const char* phase) {
  const char* want = std::getenv("SLIMTRACE_TEST_PAUSE");
  if (!want || std::string(want) != phase) return;
  std::fprintf(stderr, "paused at %s\n", phase);
  std::fflush(stderr);
  for (;;) ::sleep(3600);
}

std::string random_hex(size_t bytes) {
  std::string out;
  unsigned char buf[32] = {};
  UniqueFd f(::open("/dev/urandom", O_RDONLY | O_CLOEXEC));
  if (f.valid() && ::read(f.get(), buf, std::min(bytes, sizeof buf)) < 0) buf[0] = 0;
  static const char* digits = "0123456789abcdef";
  for (size_t i = 0; i < bytes && i < sizeof buf; ++i) {
    out += digits[buf[i] >> 4];
    out += digits[buf[i] & 15];
  }
  return out;
}

std::string read_tail(const std::filesystem::path& p, size_t max = 4096) {
  std::ifstream in(p, std::ios::binary);
  if (!in) return {};
  in.seekg(0, std::ios::end);
  auto size = static_cast<size_t>(in.tellg());
  size_t start = size > max ? size - max : 0;
  in.seekg(static_cast<std::streamoff>(start));
  std::string s(size - start, '\0');
  in.read(s.data(), static_cast<std::streamsize>(s.size()));
  return s;
}

std::string last_line(const std::string& text) {
  CommandResult r;
  r.err = text;
  return r.last_error_line();
}

// Streams the container's log files to our stderr while it runs (--show-logs).
class LogTail {
 public:
  LogTail(std::vector<std::filesystem::path> files) : files_(std::move(files)) {
    thread_ = std::thread([this] { loop(); });
  }
  ~LogTail() {
    stop_ = true;
    thread_.join();
  }

 private:
  void loop() {
    std::vector<UniqueFd> fds;
    for (const auto& f : files_) fds.emplace_back(::open(f.c_str(), O_RDONLY | O_CLOEXEC));
    for (;;) {
      bool last = stop_.load();
      for (auto& fd : fds) {
        if (!fd.valid()) continue;
        char buf[8192];
        ssize_t n;
        while ((n = ::read(fd.get(), buf, sizeof buf)) > 0) {
          [[maybe_unused]] auto w = ::write(STDERR_FILENO, buf, static_cast<size_t>(n));
        }
      }
      if (last) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  std::vector<std::filesystem::path> files_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// The container init is our child (we are its subreaper); waits for it without blocking.
struct InitWatcher {
  int pid = 0;
  std::atomic<int>* shared_pid = nullptr;  // cleared once reaped, so teardown never kills a reused pid
  bool exited = false;
  std::optional<int> code;

  bool check() {
    if (exited) return true;
    int status = 0;
    pid_t w = ::waitpid(pid, &status, WNOHANG);
    if (w == pid) {
      exited = true;
      code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    } else if (w < 0 && errno == ECHILD) {
      // Not our child after all (a runtime that keeps a parent process): watch /proc instead.
      if (::kill(pid, 0) != 0 && errno == ESRCH) exited = true;
    }
    if (exited && shared_pid) shared_pid->store(0);
    return exited;
  }
};

struct RuntimeCli {
  std::string binary;
  std::filesystem::path root;
  std::string id;
  Result<CommandResult> run(std::vector<std::string> args, int timeout_ms = 30000, int out_fd = -1,
                            int err_fd = -1, std::function<Status(int)> before_exec = {}) const {
    std::vector<std::string> argv = {binary, "--root", root.string()};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_command(argv, {.stdout_fd = out_fd,
                              .stderr_fd = err_fd,
                              .timeout_ms = timeout_ms,
                              .before_exec = std::move(before_exec)});
  }
};

// Kills the container and removes it from the runtime: safe to run more than once, and from the
// interrupt thread (only syscalls and child processes, no shared state).
void destroy_container(const RuntimeCli& rt, int pid) {
  if (pid > 0) ::kill(pid, SIGKILL);  // the init of a pid namespace: everything in it dies
  (void)rt.run({"kill", rt.id, "KILL"}, 10000);
  if (pid > 0) {
    for (int i = 0; i < 500; ++i) {
      int status = 0;
      pid_t w = ::waitpid(pid, &status, WNOHANG);
      if (w == pid || (w < 0 && errno == ECHILD && ::kill(pid, 0) != 0)) break;
      ::usleep(10000);
    }
  }
  (void)rt.run({"delete", "--force", rt.id}, 30000);
  // Should the runtime have lost its state (its directory removed under it), its empty cgroups
  // would stay: rmdir only ever removes empty ones, so this never touches anything in use.
  std::error_code ec;
  for (const auto& ctl : std::filesystem::directory_iterator("/sys/fs/cgroup", ec)) {
    ::rmdir((ctl.path() / rt.id).c_str());
  }
  ::rmdir((std::filesystem::path("/sys/fs/cgroup") / rt.id).c_str());
}

std::string stop_signal_name(const std::string& image_signal) {
  if (image_signal.empty()) return "SIGTERM";
  return image_signal;
}

}  // namespace

RunFailure classify_run_error(const Error& error) {
  const auto& m = error.message;
  if (m.rfind(kImagePrefix, 0) == 0) return RunFailure::BadImage;
  if (m.rfind(kTracerPrefix, 0) == 0) return RunFailure::TracerUnavailable;
  if (m.rfind(kContainerPrefix, 0) == 0) return RunFailure::ContainerFailed;
  if (m.rfind("no working OCI runtime", 0) == 0 || m.rfind("OCI runtime '", 0) == 0)
    return RunFailure::RuntimeUnavailable;
  return RunFailure::Other;
}

Result<RunResult> run_traced_with(const RunSpec& spec, const WhileRunning& while_running,
                                  const TracerFactory& make_tracer) {
  if (!spec.image || !spec.tree) return Error{"run: no image given"};
  if (spec.work_dir.empty()) return Error{"run: no work directory given"};
  const auto work = std::filesystem::absolute(spec.work_dir);
  std::error_code ec;
  std::filesystem::create_directories(work, ec);
  if (ec) return Error{"create '" + work.string() + "': " + ec.message(), ec.value()};

  SLIMTRACE_ASSIGN_OR_RETURN(std::string runtime, find_runtime(spec.runtime, work));

  const std::string short_id = random_hex(6);
  RuntimeCli rt{runtime, work / "runtime-state", "slimtrace-" + short_id};
  const auto bundle_dir = work / "bundle";
  std::filesystem::create_directories(bundle_dir, ec);
  if (ec) return Error{"create '" + bundle_dir.string() + "': " + ec.message(), ec.value()};
  // The bundle (with the rootfs) goes on every path; the logs stay for the caller.
  ScopeGuard remove_bundle([bundle_dir, state = rt.root] {
    std::error_code e;
    std::filesystem::remove_all(bundle_dir, e);
    std::filesystem::remove_all(state, e);
  });

  // --- rootfs ---
  std::filesystem::path rootfs = bundle_dir / "rootfs";
  std::filesystem::path tmpfs_mount;
  int tmpfs_action = 0;
  ScopeGuard umount_tmpfs([&] {
    if (!tmpfs_mount.empty()) ::umount2(tmpfs_mount.c_str(), MNT_DETACH);
    if (tmpfs_action) unregister_cleanup_action(tmpfs_action);
  });
  if (spec.tracer == TracerKind::Fanotify) {
    // A filesystem of its own, so a fanotify filesystem mark sees exactly the container's files.
    auto mnt = bundle_dir / "rootfs-mnt";
    std::filesystem::create_directories(mnt, ec);
    if (ec) return Error{"create '" + mnt.string() + "': " + ec.message(), ec.value()};
    tmpfs_action = register_cleanup_action([mnt] { ::umount2(mnt.c_str(), MNT_DETACH); });
    if (::mount("tmpfs", mnt.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755") != 0)
      return Error::from_errno("mount tmpfs on '" + mnt.string() + "'");
    tmpfs_mount = mnt;
    rootfs = mnt / "rootfs";
  }
  image::MaterializeOptions mo;
  mo.preserve_owner = ::geteuid() == 0;
  if (auto st = image::materialize_rootfs(*spec.image, *spec.tree, rootfs, mo, spec.progress); !st)
    return st.error().context("image");
  maybe_pause("materialized");

  // --- network namespace and bundle ---
  SLIMTRACE_ASSIGN_OR_RETURN(NetNamespace netns, NetNamespace::create(work / "netns"));
  auto prepared = prepare_bundle(spec, bundle_dir, rootfs, short_id, netns.path());
  // Its errors are about the image's config (an unknown USER, no command).
  if (!prepared) return prepared.error().context("image");
  PreparedBundle bundle = std::move(prepared).value();

  RunResult result;
  result.stdout_log = work / "stdout.log";
  result.stderr_log = work / "stderr.log";
  UniqueFd out_fd(::open(result.stdout_log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!out_fd.valid()) return Error::from_errno("create '" + result.stdout_log.string() + "'");
  UniqueFd err_fd(::open(result.stderr_log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!err_fd.valid()) return Error::from_errno("create '" + result.stderr_log.string() + "'");

  // The container init is re-parented to us when the runtime's create exits, so we can wait for
  // it and learn its exit code.
  int old_subreaper = 0;
  ::prctl(PR_GET_CHILD_SUBREAPER, &old_subreaper, 0, 0, 0);
  if (::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0)
    return Error::from_errno("prctl(PR_SET_CHILD_SUBREAPER)");
  ScopeGuard restore_subreaper([old_subreaper] { ::prctl(PR_SET_CHILD_SUBREAPER, old_subreaper, 0, 0, 0); });

  // --- create ---
  std::atomic<int> init_pid{0};
  bool container_made = false;
  const int container_action =
      register_cleanup_action([rt, &init_pid] { destroy_container(rt, init_pid.load()); });
  ScopeGuard remove_container([&] {
    if (container_made) destroy_container(rt, init_pid.load());
    unregister_cleanup_action(container_action);
  });
  std::filesystem::create_directories(rt.root, ec);
  const auto pid_file = work / "container.pid";

  // The tracer exists before create: a backend that follows_runtime() sees the runtime from its
  // exec on, because the runtime loads the container's seccomp filter during create and makes
  // syscalls under it (setgroups, capset, the exec fifo...) that the profile must allow.
  TracerOptions topts;
  topts.rootfs = rootfs;
  topts.initial_cwd = bundle.config.cwd;
  auto tracer_r = make_tracer(spec.tracer, topts);
  if (!tracer_r) return Error{kTracerPrefix + tracer_r.error().message, tracer_r.error().errnum};
  std::unique_ptr<TracerBackend> tracer = std::move(tracer_r).value();
  std::function<Status(int)> follow_create;
  if (tracer->follows_runtime()) {
    follow_create = [&tracer](int pid) -> Status {
      if (auto st = tracer->follow(pid); !st)
        return Error{kTracerPrefix + st.error().message, st.error().errnum};
      return {};
    };
  }

  container_made = true;  // a failed create may still leave state behind: delete it in any case
  SLIMTRACE_ASSIGN_OR_RETURN(
      CommandResult created,
      rt.run({"create", "--bundle", bundle.dir.string(), "--pid-file", pid_file.string(), rt.id}, 120000,
             out_fd.get(), err_fd.get(), follow_create));
  if (created.status != 0 || created.timed_out) {
    std::string why = created.timed_out ? "timed out" : last_line(read_tail(result.stderr_log));
    return Error{kContainerPrefix + runtime + " create " + rt.id + ": " + (why.empty() ? "failed" : why)};
  }
  {
    std::ifstream in(pid_file);
    int pid = 0;
    in >> pid;
    if (pid <= 0) return Error{kContainerPrefix + runtime + " create: no pid in '" + pid_file.string() + "'"};
    init_pid = pid;
  }
  maybe_pause("created");

  // --- start: the other backends follow the init before the entrypoint's exec ---
  if (!tracer->follows_runtime()) {
    if (auto st = tracer->follow(init_pid); !st)
      return Error{kTracerPrefix + st.error().message, st.error().errnum};
  }

  const auto started_at = Clock::now();
  {
    SLIMTRACE_ASSIGN_OR_RETURN(CommandResult started, rt.run({"start", rt.id}, 60000));
    if (started.status != 0 || started.timed_out)
      return Error{kContainerPrefix + runtime + " start " + rt.id + ": " +
                   (started.timed_out ? std::string("timed out") : started.last_error_line())};
  }
  std::optional<LogTail> tail;
  if (spec.show_logs) tail.emplace(std::vector<std::filesystem::path>{result.stdout_log, result.stderr_log});
  maybe_pause("started");

  // --- wait: for the container, for while_running, or for the duration ---
  InitWatcher init;
  init.pid = init_pid.load();
  init.shared_pid = &init_pid;
  std::optional<Error> failure;
  auto poll_tracer = [&](int ms) {
    if (auto st = tracer->poll(ms); !st && !failure) failure = Error{kTracerPrefix + st.error().message};
  };

  std::atomic<bool> probe_done{false};
  Status probe_status;
  std::thread probe_thread;
  std::atomic<bool> init_exited{false};
  RunningContainer running;
  running.id = rt.id;
  running.pid = init.pid;
  running.netns = netns.path();
  running.rootfs = rootfs;
  running.runtime = runtime;
  running.stdout_log = result.stdout_log;
  running.stderr_log = result.stderr_log;
  running.exited = [&init_exited] { return init_exited.load(); };
  running.exec = [&rt, &tracer](const std::vector<std::string>& argv, int timeout_ms) -> Result<ExecResult> {
    // runc and crun stop reading their own flags at the container id; a "--" there would be taken
    // for the command.
    std::vector<std::string> args = {"exec", rt.id};
    args.insert(args.end(), argv.begin(), argv.end());
    std::function<Status(int)> follow_exec;
    if (tracer->follows_runtime()) follow_exec = [&tracer](int pid) { return tracer->follow(pid); };
    SLIMTRACE_ASSIGN_OR_RETURN(CommandResult r, rt.run(args, timeout_ms, -1, -1, follow_exec));
    return ExecResult{r.status, r.timed_out, std::move(r.out), std::move(r.err)};
  };
  if (while_running) {
    probe_thread = std::thread([&] {
      probe_status = while_running(running);
      probe_done = true;
    });
  }
  ScopeGuard join_probe([&] {
    if (probe_thread.joinable()) probe_thread.join();
  });

  std::optional<Clock::time_point> deadline;
  if (spec.duration)
    deadline = started_at + std::chrono::milliseconds(static_cast<int64_t>(*spec.duration * 1000));
  while (!init.check() && !failure) {
    if (while_running && probe_done) break;
    if (deadline && Clock::now() >= *deadline) break;
    poll_tracer(100);
  }
  if (init.exited) init_exited = true;

  // --- stop: the image's StopSignal, then SIGKILL after the grace period ---
  Trace& trace = result.trace;
  if (!init.exited) {
    maybe_pause("stopping");
    trace.stopped_by_slimtrace = true;
    (void)rt.run({"kill", rt.id, stop_signal_name(bundle.image.stop_signal)}, 10000);
    auto grace_end =
        Clock::now() + std::chrono::milliseconds(static_cast<int64_t>(spec.stop_grace_seconds * 1000));
    while (!init.check() && Clock::now() < grace_end) poll_tracer(100);
    if (!init.exited) {
      ::kill(init.pid, SIGKILL);
      (void)rt.run({"kill", rt.id, "KILL"}, 10000);
      auto kill_end = Clock::now() + std::chrono::seconds(30);
      while (!init.check() && Clock::now() < kill_end) poll_tracer(100);
    }
  } else {
    trace.exit_code = init.code;
  }
  init_exited = true;  // a probe still running sees the container gone and returns
  const auto stopped_at = Clock::now();
  if (probe_thread.joinable()) probe_thread.join();
  poll_tracer(0);

  // The runtime's own teardown (cgroup, state) before the tracer collects, then the trace.
  destroy_container(rt, init.exited ? 0 : init.pid);
  container_made = false;
  tail.reset();

  if (auto st = tracer->finish(trace); !st && !failure) failure = Error{kTracerPrefix + st.error().message};
  if (failure) return *failure;
  if (!probe_status) return probe_status.error();

  trace.image = spec.image->ref.to_string();
  trace.manifest_digest =
      spec.image->manifest_digest.empty() ? spec.image->config_digest : spec.image->manifest_digest;
  trace.tracer = spec.tracer == TracerKind::Ebpf ? "ebpf" : "fanotify";
  trace.runtime = runtime;
  trace.command = bundle.config.args;
  trace.duration_seconds = std::chrono::duration<double>(stopped_at - started_at).count();
  return result;
}

Result<RunResult> run_traced(const RunSpec& spec, const WhileRunning& while_running) {
  return run_traced_with(spec, while_running, [](TracerKind kind, const TracerOptions& options) {
    return kind == TracerKind::Ebpf ? make_ebpf_tracer(options) : make_fanotify_tracer(options);
  });
}

}  // namespace slimtrace::tracer
