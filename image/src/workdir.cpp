#include "slimtrace/workdir.hpp"

#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <map>
#include <mutex>
#include <set>
#include <system_error>
#include <thread>

namespace slimtrace {
namespace {

std::mutex& registry_mutex() {
  static std::mutex m;
  return m;
}
std::set<std::filesystem::path>& registry() {
  static std::set<std::filesystem::path> paths;
  return paths;
}
std::map<int, std::function<void()>>& actions() {
  static std::map<int, std::function<void()>> a;
  return a;
}
int g_next_action = 0;

std::atomic<bool> g_interrupted{false};
std::atomic<int> g_children{0};
thread_local bool t_cleanup_thread = false;

}  // namespace

bool begin_child_process() {
  // Counted before the flag is read: the cleanup sets the flag before it reads the count, so either
  // it waits for this child or this thread sees the flag (both sequentially consistent).
  g_children.fetch_add(1);
  if (g_interrupted.load() && !t_cleanup_thread) {
    g_children.fetch_sub(1);
    return false;
  }
  return true;
}

void end_child_process() { g_children.fetch_sub(1); }

void register_cleanup_path(const std::filesystem::path& p) {
  std::lock_guard lock(registry_mutex());
  registry().insert(p);
}

void unregister_cleanup_path(const std::filesystem::path& p) {
  std::lock_guard lock(registry_mutex());
  registry().erase(p);
}

int register_cleanup_action(std::function<void()> action) {
  std::lock_guard lock(registry_mutex());
  int h = ++g_next_action;
  actions()[h] = std::move(action);
  return h;
}

void unregister_cleanup_action(int handle) {
  std::lock_guard lock(registry_mutex());
  actions().erase(handle);
}

void install_interrupt_cleanup() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::thread([set] {
    int signo = 0;
    if (sigwait(&set, &signo) != 0) return;
    t_cleanup_thread = true;
    g_interrupted.store(true);
    {
      // Held until exit so no new path is registered and then left behind.
      registry_mutex().lock();
      for (auto it = actions().rbegin(); it != actions().rend(); ++it) it->second();
      // Children other threads started before the flag (their runtime commands time out by 30 s).
      for (int i = 0; i < 3000 && g_children.load() > 0; ++i) ::usleep(10000);
      for (const auto& p : registry()) {
        // The other threads run on until _exit and may still be writing into the directory (a
        // run that just saw its container killed moves on to its next stage): remove it until
        // it stays gone.
        std::error_code ec;
        for (int attempt = 0; attempt < 25; ++attempt) {
          std::filesystem::remove_all(p, ec);
          ::usleep(20000);
          if (!std::filesystem::exists(p, ec)) break;
        }
      }
    }
    const char msg[] = "slimtrace: interrupted, cleaned up\n";
    [[maybe_unused]] auto n = ::write(2, msg, sizeof msg - 1);
    _exit(128 + signo);
  }).detach();
}

Result<WorkDir> WorkDir::create(const std::filesystem::path& base) {
  std::filesystem::path dir = base;
  if (dir.empty()) {
    const char* tmp = std::getenv("TMPDIR");
    dir = (tmp && *tmp) ? tmp : "/tmp";
  }
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Error{"create work directory '" + dir.string() + "': " + ec.message(), ec.value()};
  std::string tmpl = (dir / "slimtrace-XXXXXX").string();
  if (!::mkdtemp(tmpl.data())) return Error::from_errno("mkdtemp '" + tmpl + "'");
  WorkDir w;
  w.path_ = tmpl;
  register_cleanup_path(w.path_);
  return w;
}

WorkDir::WorkDir(WorkDir&& o) noexcept : path_(std::move(o.path_)), counter_(o.counter_) { o.path_.clear(); }

WorkDir& WorkDir::operator=(WorkDir&& o) noexcept {
  if (this != &o) {
    this->~WorkDir();
    path_ = std::move(o.path_);
    counter_ = o.counter_;
    o.path_.clear();
  }
  return *this;
}

WorkDir::~WorkDir() {
  if (path_.empty()) return;
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
  unregister_cleanup_path(path_);
  path_.clear();
}

std::filesystem::path WorkDir::unique(const std::string& stem) {
  return path_ / (stem + "-" + std::to_string(++counter_));
}

}  // namespace slimtrace
