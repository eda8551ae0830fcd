#include "netns.hpp"

#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>
#include <thread>
#include <utility>

#include "slimtrace/fd.hpp"
#include "slimtrace/workdir.hpp"

namespace slimtrace::tracer {
namespace {

Status loopback_up() {
  UniqueFd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!s.valid()) return Error::from_errno("socket in the new network namespace");
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
  if (::ioctl(s.get(), SIOCGIFFLAGS, &ifr) != 0) return Error::from_errno("get flags of 'lo'");
  ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP);
  if (::ioctl(s.get(), SIOCSIFFLAGS, &ifr) != 0) return Error::from_errno("bring 'lo' up");
  return {};
}

// Runs on a thread of its own: unshare(CLONE_NEWNET) changes only the calling thread, and the thread
// ends afterwards so no other code of ours runs in the new namespace by accident.
Status make_namespace(const std::filesystem::path& path) {
  if (::unshare(CLONE_NEWNET) != 0) return Error::from_errno("unshare(CLONE_NEWNET)");
  SLIMTRACE_TRY(loopback_up());
  std::string self = "/proc/self/task/" + std::to_string(::syscall(SYS_gettid)) + "/ns/net";
  if (::mount(self.c_str(), path.c_str(), nullptr, MS_BIND, nullptr) != 0)
    return Error::from_errno("bind-mount network namespace on '" + path.string() + "'");
  return {};
}

}  // namespace

void remove_netns_file(const std::filesystem::path& path) {
  if (path.empty()) return;
  // Several mounts may be stacked if something went wrong half-way; take them all off.
  for (int i = 0; i < 8 && ::umount2(path.c_str(), MNT_DETACH) == 0; ++i) {
  }
  ::unlink(path.c_str());
}

Result<NetNamespace> NetNamespace::create(const std::filesystem::path& path) {
  UniqueFd f(::open(path.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600));
  if (!f.valid()) return Error::from_errno("create network namespace file '" + path.string() + "'");
  f.reset();
  NetNamespace ns;
  ns.path_ = path;
  ns.cleanup_handle_ = register_cleanup_action([path] { remove_netns_file(path); });
  Status st;
  std::thread([&st, &path] { st = make_namespace(path); }).join();
  if (!st) return st.error();  // ns's destructor removes the file
  return ns;
}

NetNamespace::NetNamespace(NetNamespace&& o) noexcept
    : path_(std::exchange(o.path_, {})), cleanup_handle_(std::exchange(o.cleanup_handle_, 0)) {}

NetNamespace& NetNamespace::operator=(NetNamespace&& o) noexcept {
  if (this != &o) {
    release();
    path_ = std::exchange(o.path_, {});
    cleanup_handle_ = std::exchange(o.cleanup_handle_, 0);
  }
  return *this;
}

NetNamespace::~NetNamespace() { release(); }

void NetNamespace::release() {
  if (path_.empty()) return;
  remove_netns_file(path_);
  if (cleanup_handle_ != 0) unregister_cleanup_action(cleanup_handle_);
  cleanup_handle_ = 0;
  path_.clear();
}

}  // namespace slimtrace::tracer
