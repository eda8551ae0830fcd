// The seccomp profile in the Docker/OCI JSON format that docker, podman, runc, crun and Kubernetes
// localhost profiles read, made from the syscalls a Trace recorded.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "slimtrace/result.hpp"
#include "slimtrace/tracer/trace.hpp"

namespace slimtrace::packer {

struct SeccompOptions {
  // What denied syscalls get: "errno:EPERM" (default), "errno:ENOSYS", "kill", "log", "trap".
  std::string default_action = "errno:EPERM";
};

struct SeccompProfile {
  nlohmann::json json;                     // the profile as written
  std::vector<std::string> allowed;        // sorted syscall names
  std::vector<std::string> architectures;  // SCMP_ARCH_* names, as in the JSON
  std::vector<std::string> warnings;       // e.g. names libseccomp does not know, dropped
};

// The names every profile allows whatever the trace caught (sorted): signal return, restarted
// calls, exit, and what the OCI runtime's own threads may call after the filter load by timing.
const std::vector<std::string>& always_allowed_syscalls();

// Refuses traces without recorded syscalls (fanotify) with a clear error. Adds the syscalls any
// process needs whatever the trace caught (rt_sigreturn, restart_syscall, exit, exit_group...),
// resolves every name with libseccomp for the image's architectures, and compiles the filter with
// libseccomp before returning, so a profile libseccomp rejects never leaves the tool.
Result<SeccompProfile> make_seccomp_profile(const tracer::Trace& trace,
                                            const std::vector<std::string>& image_archs,
                                            const SeccompOptions& options = {});

}  // namespace slimtrace::packer
