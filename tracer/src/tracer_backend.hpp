// Internal: the small interface the runner uses to record a container; the only place that knows
// about libbpf is ebpf_tracer.cpp, and fanotify_tracer.cpp is the fallback.
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "slimtrace/result.hpp"
#include "slimtrace/tracer/trace.hpp"

namespace slimtrace::tracer {

struct TracerOptions {
  std::filesystem::path rootfs;   // host path of the container's rootfs (fanotify maps paths back)
  std::string initial_cwd = "/";  // the container process's cwd before its first chdir
};

class TracerBackend {
 public:
  virtual ~TracerBackend() = default;
  // Follow the process tree rooted at `host_pid`: the runtime's create process before it execs
  // when follows_runtime(), else the container's init (created, not started).
  virtual Status follow(int host_pid) = 0;
  // True when the backend must see the runtime from its start: the runtime loads the container's
  // seccomp filter during create (runc without noNewPrivileges) and keeps making syscalls that the
  // container's profile must allow before the init is even known.
  virtual bool follows_runtime() const { return false; }
  // Consume pending events for up to `timeout_ms`.
  virtual Status poll(int timeout_ms) = 0;
  // Drain what is left and write everything recorded into `out` (files, execs, processes,
  // syscalls, counts, limitations).
  virtual Status finish(Trace& out) = 0;
};

Result<std::unique_ptr<TracerBackend>> make_ebpf_tracer(const TracerOptions& options);
Result<std::unique_ptr<TracerBackend>> make_fanotify_tracer(const TracerOptions& options);

}  // namespace slimtrace::tracer
