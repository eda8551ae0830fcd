// Internal: a network namespace owned by slimtrace, with loopback up and nothing else, kept alive by
// a bind mount on a file so the runtime joins it by path and probes can setns() into it later.
#pragma once

#include <filesystem>

#include "slimtrace/result.hpp"

namespace slimtrace::tracer {

class NetNamespace {
 public:
  // Creates the namespace and bind-mounts it on `path` (a new file). Registers its teardown for
  // SIGINT/SIGTERM.
  static Result<NetNamespace> create(const std::filesystem::path& path);

  NetNamespace() = default;
  NetNamespace(NetNamespace&& o) noexcept;
  NetNamespace& operator=(NetNamespace&& o) noexcept;
  NetNamespace(const NetNamespace&) = delete;
  NetNamespace& operator=(const NetNamespace&) = delete;
  ~NetNamespace();

  const std::filesystem::path& path() const { return path_; }
  // Unmounts (lazily) and removes the file; safe to call twice.
  void release();

 private:
  std::filesystem::path path_;
  int cleanup_handle_ = 0;
};

// Unmounts (MNT_DETACH) and unlinks a namespace file; never fails loudly (teardown).
void remove_netns_file(const std::filesystem::path& path);

}  // namespace slimtrace::tracer
