// The Trace: what a container's processes touched. Plain data with a documented, versioned JSON
// form (docs/trace-schema.md) so later stages can load it without the runner or the BPF loader.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "slimtrace/result.hpp"

namespace slimtrace::tracer {

inline constexpr int kTraceSchemaVersion = 1;
inline constexpr std::string_view kTraceSchema = "slimtrace.trace/v1";

// How a path was used; a path may be used several ways.
enum FileOp : uint32_t {
  kOpOpen = 1u << 0,      // open/openat/openat2/creat
  kOpExec = 1u << 1,      // execve/execveat
  kOpStat = 1u << 2,      // stat/lstat/newfstatat/statx
  kOpAccess = 1u << 3,    // access/faccessat/faccessat2
  kOpReadlink = 1u << 4,  // readlink/readlinkat
  kOpList = 1u << 5,      // getdents on a directory
  kOpChdir = 1u << 6,     // chdir/fchdir
  kOpMmap = 1u << 7,      // mmap of a file
  kOpConnect = 1u << 8,   // connect to a unix socket
  kOpCreate = 1u << 9,    // mkdir/mknod/symlink/bind of a unix socket: the path was made
  kOpModify = 1u << 10,   // unlink/rmdir/rename/link (the source)/chmod/chown/truncate/utimensat
};
std::vector<std::string> op_names(uint32_t ops);
uint32_t op_from_name(std::string_view name);

struct FileAccess {
  std::string path;         // absolute, as the container sees it
  uint32_t ops = 0;         // FileOp bits of successful uses
  uint32_t failed_ops = 0;  // FileOp bits of failed lookups
  int error = 0;            // errno of the first failed lookup (0: none failed)
  bool found = false;       // at least one lookup succeeded
  uint64_t count = 0;       // number of accesses seen
};

struct ExecRecord {
  int pid = 0;
  int ppid = 0;
  std::string path;  // as passed to execve, made absolute
  std::vector<std::string> argv;
  int error = 0;  // 0: the exec succeeded
};

struct ProcessRecord {
  int pid = 0;  // host pid
  int ppid = 0;
  std::string comm;
  std::optional<int> exit_code;
};

struct Trace {
  std::string image;                 // reference as given
  std::string manifest_digest;       // or config digest for docker-archive sources
  std::string tracer;                // "ebpf" or "fanotify"
  std::string runtime;               // runtime binary used
  std::vector<std::string> command;  // the container's argv
  std::map<std::string, FileAccess> files;
  std::vector<ExecRecord> execs;
  std::vector<ProcessRecord> processes;
  bool syscalls_recorded = false;
  std::string seccomp_arch = "SCMP_ARCH_X86_64";
  std::vector<std::string> syscalls;  // sorted names, from the seccomp filter install to the end
  uint64_t events = 0;
  // Lookups the kernel side did not send because one with the same path, op and outcome had been
  // (eBPF); they are in the files' counts all the same.
  uint64_t repeated_lookups = 0;
  uint64_t dropped_events = 0;
  std::vector<std::string> limitations;  // what this trace could not record, e.g. with fanotify
  std::optional<int> exit_code;          // when the container ended by itself
  bool stopped_by_slimtrace = false;
  double duration_seconds = 0;

  // Records one access (merging with earlier ones of the same path).
  void add_access(const std::string& path, uint32_t op, int error);
};

nlohmann::json to_json(const Trace& trace);
Result<Trace> trace_from_json(const nlohmann::json& j);

}  // namespace slimtrace::tracer
