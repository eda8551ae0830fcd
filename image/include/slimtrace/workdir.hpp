// Scratch directories owned by one run, removed on every exit path, also on SIGINT/SIGTERM.
#pragma once

#include <filesystem>
#include <functional>
#include <string>

#include "slimtrace/result.hpp"

namespace slimtrace {

class WorkDir {
 public:
  // Makes a fresh "slimtrace-XXXXXX" directory under `base` (default: $TMPDIR or /tmp).
  static Result<WorkDir> create(const std::filesystem::path& base = {});
  WorkDir() = default;
  WorkDir(WorkDir&& o) noexcept;
  WorkDir& operator=(WorkDir&& o) noexcept;
  WorkDir(const WorkDir&) = delete;
  WorkDir& operator=(const WorkDir&) = delete;
  ~WorkDir();

  const std::filesystem::path& path() const { return path_; }
  // A fresh subdirectory name (not created) under this work dir.
  std::filesystem::path unique(const std::string& stem);

 private:
  std::filesystem::path path_;
  int counter_ = 0;
};

// Paths removed if the process is interrupted before they are unregistered: temp outputs and work
// directories. Thread-safe.
void register_cleanup_path(const std::filesystem::path& p);
void unregister_cleanup_path(const std::filesystem::path& p);

// Teardown steps run on interruption before registered paths are removed, newest first (stop the
// container, then unmount, then remove). Returns a handle for unregister_cleanup_action().
int register_cleanup_action(std::function<void()> action);
void unregister_cleanup_action(int handle);

// A child process that another thread starts may write into a registered path after the cleanup
// removed it (a runtime CLI recreates its state directory), so starting one is bracketed by these.
// Once the interrupt cleanup has begun, begin_child_process() refuses (returns false) in every
// thread but the cleanup's own, and the cleanup waits for the children started before that until
// they end, before it removes the registered paths.
bool begin_child_process();
void end_child_process();

// Blocks SIGINT/SIGTERM/SIGHUP in the calling (main) thread and every thread made after, and starts
// a thread that, on such a signal, runs every registered action, removes every registered path and
// exits with 128+signo.
void install_interrupt_cleanup();

}  // namespace slimtrace
