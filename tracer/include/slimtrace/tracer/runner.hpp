// Running an image as a container under an OCI runtime (runc, crun) without any Docker engine, with
// its own network namespace, while a tracer records what it touches.
#pragma once

#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "slimtrace/image/file_tree.hpp"
#include "slimtrace/image/source.hpp"
#include "slimtrace/result.hpp"
#include "slimtrace/tracer/trace.hpp"

namespace slimtrace::tracer {

struct HostMount {
  std::string source;       // host path
  std::string destination;  // container path
  bool read_only = false;
  // Parses "SRC:DST[:ro|rw]".
  static Result<HostMount> parse(const std::string& text);
};

enum class TracerKind { Ebpf, Fanotify };

struct RunSpec {
  const image::SourceImage* image = nullptr;
  const image::FileTree* tree = nullptr;
  std::optional<std::vector<std::string>> entrypoint;  // --entrypoint (replaces the image's)
  std::vector<std::string> cmd;                        // -- CMD... (replaces the image's Cmd)
  std::vector<std::string> env;                        // KEY=VALUE, added to / overriding the image's
  std::vector<HostMount> mounts;
  std::string runtime;  // name or path; empty: first that works
  TracerKind tracer = TracerKind::Ebpf;
  std::optional<double> duration;  // stop after N seconds; nullopt: wait for exit
  double stop_grace_seconds = 10;
  bool show_logs = false;          // stream the container's output to stderr
  std::filesystem::path work_dir;  // bundle, rootfs, logs, netns live under it
  image::ProgressFn progress;
  // The container's linux.seccomp (Docker/OCI profile JSON). Unset: allow-all, which the runtime
  // still installs, so the tracer knows where the app's own syscalls start.
  std::optional<nlohmann::json> seccomp;
};

struct ExecResult {
  int exit_code = 0;  // or 128+signal
  bool timed_out = false;
  std::string out, err;
};

// What probes get while the container runs.
struct RunningContainer {
  std::string id;
  int pid = 0;                  // host pid of the container's init
  std::filesystem::path netns;  // bind-mounted network namespace file
  std::filesystem::path rootfs;
  std::string runtime;
  std::filesystem::path stdout_log, stderr_log;
  // True once the container's init has exited by itself (or was stopped).
  std::function<bool()> exited;
  // Runs a command inside the running container through the runtime's exec; what it touches is
  // traced like the rest of the container.
  std::function<Result<ExecResult>(const std::vector<std::string>& argv, int timeout_ms)> exec;
};

// Called after the container started and tracing is on; the container is stopped when it returns
// (unless it exits by itself earlier). Returning an error stops the run with that error.
using WhileRunning = std::function<Status(const RunningContainer&)>;

struct RunResult {
  Trace trace;
  std::filesystem::path stdout_log, stderr_log;  // inside work_dir; copy them out before it goes
};

// The runtime to use: `requested` as a name on PATH or a path, or (empty) the first of runc, crun
// that really starts a container on this host. The error names the packages when none works.
Result<std::string> find_runtime(const std::string& requested, const std::filesystem::path& work_dir);

// Create, attach the tracer, start, wait (or run `while_running`, or sleep `duration`), stop with the
// image's StopSignal then SIGKILL after the grace period, delete. Teardown runs on every path and is
// registered for SIGINT/SIGTERM: no process, mount, netns, cgroup, bundle or BPF program is left.
Result<RunResult> run_traced(const RunSpec& spec, const WhileRunning& while_running = {});

// What kind of failure an error of run_traced() is, so a CLI can choose its exit code.
// ContainerFailed: the runtime could not create or start it (e.g. the command does not exist).
enum class RunFailure { Other, BadImage, RuntimeUnavailable, TracerUnavailable, ContainerFailed };
RunFailure classify_run_error(const Error& error);

}  // namespace slimtrace::tracer
