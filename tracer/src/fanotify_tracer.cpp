// The fallback tracer where BPF cannot be loaded: fanotify on the filesystem that holds the
// container's rootfs (the runner gives fanotify runs a rootfs on its own tmpfs, so a filesystem
// mark sees the container's opens even though runc bind-mounts the rootfs in its own mount
// namespace). It sees opens and execs only.
#include <fcntl.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/fanotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <climits>
#include <cstring>
#include <fstream>
#include <sstream>
#include <unordered_map>

#include "slimtrace/fd.hpp"
#include "slimtrace/read_file.hpp"
#include "tracer_backend.hpp"

namespace slimtrace::tracer {
namespace {

std::string read_link(const std::string& path) {
  std::array<char, PATH_MAX> buf{};
  ssize_t n = ::readlink(path.c_str(), buf.data(), buf.size() - 1);
  if (n < 0) return {};
  return std::string(buf.data(), static_cast<size_t>(n));
}

std::string lexically_clean(const std::string& p) {
  auto s = std::filesystem::path(p).lexically_normal().string();
  while (s.size() > 1 && s.back() == '/') s.pop_back();
  return s;
}

class FanotifyTracer final : public TracerBackend {
 public:
  explicit FanotifyTracer(TracerOptions options) : options_(std::move(options)) {}

  Status init() {
    std::error_code ec;
    auto canon = std::filesystem::canonical(options_.rootfs, ec);
    if (ec) return Error{"fanotify tracer: rootfs '" + options_.rootfs.string() + "': " + ec.message(), 0};
    rootfs_ = lexically_clean(canon.string());
    int fd = ::fanotify_init(FAN_CLASS_NOTIF | FAN_CLOEXEC | FAN_NONBLOCK, O_RDONLY | O_LARGEFILE);
    if (fd < 0) return Error::from_errno("fanotify tracer: fanotify_init (needs root / CAP_SYS_ADMIN)");
    fan_.reset(fd);
    self_ = ::getpid();
    return {};
  }

  Status follow(int host_pid) override {
    if (!marked_) {
      uint64_t mask = FAN_OPEN | FAN_OPEN_EXEC | FAN_ONDIR;
      if (::fanotify_mark(fan_.get(), FAN_MARK_ADD | FAN_MARK_FILESYSTEM, mask, AT_FDCWD, rootfs_.c_str()) !=
          0) {
        return Error::from_errno("fanotify tracer: marking the filesystem of '" + rootfs_ + "'");
      }
      marked_ = true;
    }
    roots_.push_back(host_pid);
    accepted_[host_pid] = true;
    root_pidns_ = read_link("/proc/" + std::to_string(host_pid) + "/ns/pid");
    own_pidns_ = read_link("/proc/self/ns/pid");
    ProcessRecord rec;
    rec.pid = host_pid;
    processes_.push_back(rec);
    return {};
  }

  Status poll(int timeout_ms) override {
    if (!fan_.valid()) return {};
    struct pollfd p = {fan_.get(), POLLIN, 0};
    int n = ::poll(&p, 1, timeout_ms);
    if (n < 0 && errno != EINTR) return Error::from_errno("fanotify tracer: poll");
    return drain();
  }

  Status finish(Trace& out) override {
    SLIMTRACE_TRY(drain());
    fan_.reset();
    out.tracer = "fanotify";
    out.files = std::move(rec_.files);
    out.execs.clear();
    out.processes = processes_;
    out.syscalls_recorded = false;
    out.syscalls.clear();
    out.events = events_;
    out.dropped_events = dropped_;
    out.limitations.push_back("fanotify: stat-only lookups, failed lookups and syscalls were not recorded");
    out.limitations.push_back("fanotify: execs (with argv) and the process tree were not recorded");
    if (dropped_ > 0) {
      spdlog::warn("fanotify tracer: the event queue overflowed {} times; the trace is incomplete", dropped_);
    }
    return {};
  }

 private:
  Status drain() {
    alignas(fanotify_event_metadata) std::array<char, 64 * 1024> buf{};
    while (fan_.valid()) {
      ssize_t len = ::read(fan_.get(), buf.data(), buf.size());
      if (len < 0) {
        if (errno == EAGAIN || errno == EINTR) return {};
        return Error::from_errno("fanotify tracer: read");
      }
      if (len == 0) return {};
      size_t off = 0;
      while (off + sizeof(fanotify_event_metadata) <= static_cast<size_t>(len)) {
        fanotify_event_metadata meta{};
        std::memcpy(&meta, buf.data() + off, sizeof meta);
        if (meta.event_len < sizeof meta || off + meta.event_len > static_cast<size_t>(len)) break;
        off += meta.event_len;
        if (meta.vers != FANOTIFY_METADATA_VERSION) {
          return Error{"fanotify tracer: unexpected metadata version " + std::to_string(meta.vers), 0};
        }
        UniqueFd fd(meta.fd);
        if (meta.mask & FAN_Q_OVERFLOW) {
          ++dropped_;
          continue;
        }
        if (!fd.valid() || !wanted(meta.pid)) continue;
        std::string path = container_path(read_link("/proc/self/fd/" + std::to_string(fd.get())));
        if (path.empty()) continue;
        ++events_;
        if (meta.mask & FAN_OPEN_EXEC) rec_.add_access(path, kOpExec, 0);
        if (meta.mask & FAN_OPEN) rec_.add_access(path, kOpOpen, 0);
      }
    }
    return {};
  }

  // Files opened inside the container's mount namespace read back relative to that namespace's
  // root, i.e. already as container paths; those opened through the host path carry the prefix.
  std::string container_path(std::string host) const {
    if (host.empty()) return {};
    constexpr std::string_view kDeleted = " (deleted)";
    if (host.ends_with(kDeleted)) host.resize(host.size() - kDeleted.size());
    if (host.front() != '/') return {};
    if (host == rootfs_) return "/";
    if (host.starts_with(rootfs_ + "/")) return lexically_clean(host.substr(rootfs_.size()));
    return lexically_clean(host);
  }

  int ppid_of(int pid) const {
    std::string stat = read_whole_file("/proc/" + std::to_string(pid) + "/stat").value_or("");
    auto close = stat.rfind(')');
    if (close == std::string::npos) return -1;
    std::istringstream rest(stat.substr(close + 1));
    std::string state;
    int ppid = -1;
    rest >> state >> ppid;
    return ppid;
  }

  // Only the followed process tree counts: never slimtrace itself or another host process.
  bool wanted(int pid) {
    if (pid == self_) return false;
    if (auto it = accepted_.find(pid); it != accepted_.end()) return it->second;
    bool result = false;
    int cur = pid;
    for (int depth = 0; depth < 64; ++depth) {
      if (auto it = accepted_.find(cur); it != accepted_.end()) {
        result = it->second;
        break;
      }
      int parent = ppid_of(cur);
      if (parent < 0) {
        // Gone already: a short-lived process. Trust it when the container has its own pid
        // namespace, since host processes do not work on its private rootfs filesystem.
        result = !root_pidns_.empty() && root_pidns_ != own_pidns_;
        break;
      }
      if (parent <= 1) break;
      cur = parent;
    }
    accepted_[pid] = result;
    return result;
  }

  TracerOptions options_;
  std::string rootfs_;
  UniqueFd fan_;
  bool marked_ = false;
  int self_ = 0;
  std::vector<int> roots_;
  std::string root_pidns_, own_pidns_;
  std::unordered_map<int, bool> accepted_;
  std::vector<ProcessRecord> processes_;
  Trace rec_;
  uint64_t events_ = 0;
  uint64_t dropped_ = 0;
};

}  // namespace

Result<std::unique_ptr<TracerBackend>> make_fanotify_tracer(const TracerOptions& options) {
  auto tracer = std::make_unique<FanotifyTracer>(options);
  SLIMTRACE_TRY(tracer->init());
  return std::unique_ptr<TracerBackend>(std::move(tracer));
}

}  // namespace slimtrace::tracer
