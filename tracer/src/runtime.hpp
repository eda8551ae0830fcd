// Internal: running helper commands (the OCI runtime's CLI) and choosing a runtime that works here.
#pragma once

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "slimtrace/result.hpp"

namespace slimtrace::tracer {

struct CommandOptions {
  int stdout_fd = -1;      // -1: captured into CommandResult::out
  int stderr_fd = -1;      // -1: captured into CommandResult::err
  int timeout_ms = 60000;  // then SIGKILL
  // Called with the child's pid after fork and before its exec, while the child waits: lets a
  // tracer follow the command from its first instruction. An error kills the child.
  std::function<Status(int pid)> before_exec;
};

struct CommandResult {
  int status = 0;  // exit code, or 128+signal
  bool timed_out = false;
  std::string out, err;
  // The last non-empty line of err (what runtimes print as their error), trimmed.
  std::string last_error_line() const;
};

// Runs argv[0] (a path) with stdin from /dev/null, in a session of its own (so a terminal's ^C
// reaches only us, and we decide how the container stops), with default signal dispositions and
// mask. Waits for that pid only, so it never reaps a container init we adopted as subreaper.
Result<CommandResult> run_command(const std::vector<std::string>& argv, const CommandOptions& options = {});

// `name` looked up on PATH (or taken as a path when it has a '/'); empty when not found.
std::filesystem::path find_executable(const std::string& name);

}  // namespace slimtrace::tracer
