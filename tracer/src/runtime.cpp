#include "runtime.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>

#include "slimtrace/fd.hpp"
#include "slimtrace/tracer/runner.hpp"
#include "slimtrace/workdir.hpp"

namespace slimtrace::tracer {

std::string CommandResult::last_error_line() const {
  std::string last;
  size_t pos = 0;
  while (pos < err.size()) {
    size_t nl = err.find('\n', pos);
    if (nl == std::string::npos) nl = err.size();
    std::string line = err.substr(pos, nl - pos);
    line.erase(0, line.find_first_not_of(" \t\r"));
    while (!line.empty() && (line.back() == ' ' || line.back() == '\r' || line.back() == '\t'))
      line.pop_back();
    if (!line.empty()) last = line;
    pos = nl + 1;
  }
  // runc logs as logfmt: time="..." level=error msg="runc create failed: ...": keep the message.
  if (auto m = last.find("msg=\""); m != std::string::npos) {
    std::string msg;
    for (size_t i = m + 5; i < last.size() && last[i] != '"'; ++i) {
      if (last[i] == '\\' && i + 1 < last.size()) ++i;
      msg += last[i];
    }
    if (!msg.empty()) last = msg;
  }
  if (last.size() > 400) last = last.substr(0, 400) + "...";
  return last;
}

Result<CommandResult> run_command(const std::vector<std::string>& argv, const CommandOptions& options) {
  if (argv.empty()) return Error{"run_command: empty argv"};
  // Until the child is reaped: an interrupt cleanup waits for it before removing the work dir,
  // into which a runtime writes its state.
  struct ChildSlot {
    bool taken = begin_child_process();
    ChildSlot() = default;
    ChildSlot(const ChildSlot&) = delete;
    ChildSlot& operator=(const ChildSlot&) = delete;
    ~ChildSlot() {
      if (taken) end_child_process();
    }
  } slot;
  if (!slot.taken) return Error{"not starting '" + argv[0] + "': slimtrace is being interrupted", EINTR};
  std::vector<char*> cargv;
  for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);

  int out_pipe[2] = {-1, -1}, err_pipe[2] = {-1, -1};
  if (options.stdout_fd < 0 && ::pipe2(out_pipe, O_CLOEXEC) != 0) return Error::from_errno("pipe");
  UniqueFd out_r(out_pipe[0]), out_w(out_pipe[1]);
  if (options.stderr_fd < 0 && ::pipe2(err_pipe, O_CLOEXEC) != 0) return Error::from_errno("pipe");
  UniqueFd err_r(err_pipe[0]), err_w(err_pipe[1]);
  UniqueFd null_fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (!null_fd.valid()) return Error::from_errno("open '/dev/null'");
  int child_out = options.stdout_fd >= 0 ? options.stdout_fd : out_w.get();
  int child_err = options.stderr_fd >= 0 ? options.stderr_fd : err_w.get();
  // The child blocks on this pipe until before_exec() has run in the parent.
  int gate[2] = {-1, -1};
  if (options.before_exec && ::pipe2(gate, O_CLOEXEC) != 0) return Error::from_errno("pipe");
  UniqueFd gate_r(gate[0]), gate_w(gate[1]);

  pid_t pid = ::fork();
  if (pid < 0) return Error::from_errno("fork for '" + argv[0] + "'");
  if (pid == 0) {
    // Only async-signal-safe calls from here on.
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    for (int s : {SIGINT, SIGTERM, SIGHUP, SIGPIPE, SIGCHLD}) ::signal(s, SIG_DFL);
    ::setsid();
    if (gate_r.valid()) {
      char go = 0;
      ssize_t got;
      do {
        got = ::read(gate_r.get(), &go, 1);
      } while (got < 0 && errno == EINTR);
      if (got != 1) ::_exit(127);  // the parent gave up: never run the command
    }
    if (::dup2(null_fd.get(), 0) < 0 || ::dup2(child_out, 1) < 0 || ::dup2(child_err, 2) < 0) ::_exit(127);
    ::syscall(SYS_close_range, 3U, ~0U, 0U);
    ::execv(cargv[0], cargv.data());
    const char msg[] = "exec failed\n";
    [[maybe_unused]] auto n = ::write(2, msg, sizeof msg - 1);
    ::_exit(127);
  }
  out_w.reset();
  err_w.reset();
  if (options.before_exec) {
    gate_r.reset();
    if (auto st = options.before_exec(pid); !st) {
      gate_w.reset();  // the child reads EOF and exits without exec
      int status = 0;
      while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
      return st.error();
    }
    char go = 1;
    if (::write(gate_w.get(), &go, 1) != 1) return Error::from_errno("release '" + argv[0] + "'");
    gate_w.reset();
  }

  CommandResult r;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(options.timeout_ms);
  bool killed = false;
  while (out_r.valid() || err_r.valid()) {
    pollfd fds[2];
    nfds_t n = 0;
    if (out_r.valid()) fds[n++] = {out_r.get(), POLLIN, 0};
    if (err_r.valid()) fds[n++] = {err_r.get(), POLLIN, 0};
    auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      ::kill(pid, SIGKILL);
      killed = true;
      break;
    }
    int pr = ::poll(fds, n, static_cast<int>(std::min<int64_t>(left.count(), 1000)));
    if (pr < 0 && errno != EINTR) break;
    for (nfds_t i = 0; i < n; ++i) {
      if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      char buf[4096];
      ssize_t got = ::read(fds[i].fd, buf, sizeof buf);
      bool is_out = out_r.valid() && fds[i].fd == out_r.get();
      if (got <= 0) {
        if (got < 0 && errno == EINTR) continue;
        (is_out ? out_r : err_r).reset();
        continue;
      }
      std::string& dst = is_out ? r.out : r.err;
      if (dst.size() < (1u << 20)) dst.append(buf, static_cast<size_t>(got));
    }
  }
  // Output closed (or none captured): wait for the process itself, still bounded by the deadline.
  int status = 0;
  for (;;) {
    pid_t w = ::waitpid(pid, &status, killed ? 0 : WNOHANG);
    if (w == pid) break;
    if (w < 0 && errno != EINTR) return Error::from_errno("waitpid '" + argv[0] + "'");
    if (w == 0) {
      if (std::chrono::steady_clock::now() >= deadline) {
        ::kill(pid, SIGKILL);
        killed = true;
        continue;
      }
      ::usleep(10000);
    }
  }
  r.timed_out = killed;
  r.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

std::filesystem::path find_executable(const std::string& name) {
  if (name.empty()) return {};
  auto usable = [](const std::filesystem::path& p) {
    struct stat st {};
    return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(p.c_str(), X_OK) == 0;
  };
  if (name.find('/') != std::string::npos) {
    std::filesystem::path p = std::filesystem::absolute(name);
    return usable(p) ? p : std::filesystem::path{};
  }
  const char* path_env = std::getenv("PATH");
  std::string path =
      path_env && *path_env ? path_env : "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  size_t pos = 0;
  while (pos <= path.size()) {
    size_t colon = path.find(':', pos);
    if (colon == std::string::npos) colon = path.size();
    std::string dir = path.substr(pos, colon - pos);
    if (!dir.empty()) {
      std::filesystem::path p = std::filesystem::path(dir) / name;
      if (usable(p)) return p;
    }
    pos = colon + 1;
  }
  return {};
}

namespace {

// Really starts a container whose entrypoint does not exist: a runtime "works" here when it gets as
// far as trying to exec it. crun on a hybrid cgroup host, for example, fails before that.
Status try_runtime(const std::filesystem::path& rt, const std::filesystem::path& work_dir) {
  std::error_code ec;
  std::filesystem::create_directories(work_dir, ec);
  std::string tmpl = (work_dir / "rt-check-XXXXXX").string();
  if (!::mkdtemp(tmpl.data())) return Error::from_errno("mkdtemp '" + tmpl + "'");
  std::filesystem::path dir = tmpl;
  auto state = dir / "state";
  auto bundle = dir / "bundle";
  std::string id = "slimtrace-check-" + std::to_string(::getpid());
  ScopeGuard cleanup([&] {
    (void)run_command({rt.string(), "--root", state.string(), "delete", "--force", id},
                      {.timeout_ms = 20000, .before_exec = {}});
    std::error_code ec2;
    std::filesystem::remove_all(dir, ec2);
  });
  std::filesystem::create_directories(bundle / "rootfs", ec);
  std::filesystem::create_directories(state, ec);
  if (ec) return Error{"create '" + bundle.string() + "': " + ec.message()};
  nlohmann::json config = {
      {"ociVersion", "1.0.2"},
      {"process",
       {{"terminal", false},
        {"user", {{"uid", 0}, {"gid", 0}}},
        {"args", {"/slimtrace-runtime-check"}},
        {"env", {"PATH=/"}},
        {"cwd", "/"},
        {"noNewPrivileges", false}}},
      {"root", {{"path", "rootfs"}, {"readonly", false}}},
      {"hostname", "slimtrace-check"},
      // runc needs /proc inside to close inherited fds before the exec.
      {"mounts",
       {{{"destination", "/proc"},
         {"type", "proc"},
         {"source", "proc"},
         {"options", {"nosuid", "noexec", "nodev"}}},
        {{"destination", "/dev"},
         {"type", "tmpfs"},
         {"source", "tmpfs"},
         {"options", {"nosuid", "strictatime", "mode=755", "size=65536k"}}}}},
      {"linux",
       {{"namespaces",
         {{{"type", "pid"}},
          {{"type", "mount"}},
          {{"type", "ipc"}},
          {{"type", "uts"}},
          {{"type", "network"}},
          {{"type", "cgroup"}}}},
        {"resources", {{"devices", nlohmann::json::array({{{"allow", false}, {"access", "rwm"}}})}}},
        {"seccomp",
         {{"defaultAction", "SCMP_ACT_ALLOW"},
          {"architectures", {"SCMP_ARCH_X86_64"}},
          {"syscalls", nlohmann::json::array()}}}}},
  };
  {
    std::ofstream out(bundle / "config.json");
    out << config.dump(2);
    if (!out) return Error{"write '" + (bundle / "config.json").string() + "': failed"};
  }
  SLIMTRACE_ASSIGN_OR_RETURN(
      CommandResult r, run_command({rt.string(), "--root", state.string(), "run", "-b", bundle.string(), id},
                                   {.timeout_ms = 30000, .before_exec = {}}));
  if (r.timed_out) return Error{"test container did not finish within 30 s"};
  std::string all = r.err + r.out;
  for (auto& c : all) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (all.find("slimtrace-runtime-check") != std::string::npos &&
      (all.find("no such file") != std::string::npos || all.find("not found") != std::string::npos))
    return {};
  std::string why = r.last_error_line();
  if (why.empty()) why = "test container exited with status " + std::to_string(r.status) + " and no message";
  return Error{why};
}

std::mutex g_cache_mutex;
std::map<std::string, Result<std::string>>& cache() {
  static std::map<std::string, Result<std::string>> c;
  return c;
}

Result<std::string> find_runtime_uncached(const std::string& requested,
                                          const std::filesystem::path& work_dir) {
  if (!requested.empty()) {
    auto path = find_executable(requested);
    if (path.empty())
      return Error{"OCI runtime '" + requested + "': not found" +
                   (requested.find('/') == std::string::npos ? std::string(" on PATH") : std::string()) +
                   " (install the Debian package runc or crun)"};
    auto st = try_runtime(path, work_dir);
    if (!st)
      return Error{"OCI runtime '" + path.string() + "' does not work on this host: " + st.error().message};
    return path.string();
  }
  std::string reasons;
  for (const char* name : {"runc", "crun"}) {
    auto path = find_executable(name);
    std::string why;
    if (path.empty()) {
      why = "not found on PATH";
    } else {
      auto st = try_runtime(path, work_dir);
      if (st) return path.string();
      why = st.error().message;
    }
    if (!reasons.empty()) reasons += "; ";
    reasons += std::string(name) + ": " + why;
  }
  return Error{"no working OCI runtime: " + reasons + " (install the Debian package runc or crun)"};
}

}  // namespace

Result<std::string> find_runtime(const std::string& requested, const std::filesystem::path& work_dir) {
  std::lock_guard lock(g_cache_mutex);
  auto it = cache().find(requested);
  if (it != cache().end()) return it->second;
  auto r = find_runtime_uncached(requested, work_dir);
  cache().emplace(requested, r);
  return r;
}

}  // namespace slimtrace::tracer
