// What every subcommand shares: global flags, exit codes, logging and progress on a terminal.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <string>

#include "slimtrace/image/file_tree.hpp"
#include "slimtrace/image/source.hpp"
#include "slimtrace/workdir.hpp"
#include "slimtrace/write_file.hpp"

namespace slimtrace::cli {

// Exit codes, documented in the README.
enum ExitCode : int {
  kExitOk = 0,
  kExitFindings = 1,  // xray --fail-on matched; validate found problems
  kExitUsage = 2,     // bad flags
  kExitBadInput = 3,  // unreadable, corrupt or hostile image; unknown reference
  kExitRuntimeUnavailable = 4,
  kExitProbeFailed = 5,
  kExitVerifyFailed = 6,
  kExitOutputFailed = 7,  // the output could not be written: registry refused, engine unreachable, disk
  kExitInternal = 70,
};

struct GlobalOptions {
  std::string work_dir;
  std::string platform = "linux/amd64";
  bool quiet = false;
  int verbose = 0;
  // How docker:// registries and docker-daemon: engines are reached.
  std::string creds;
  bool tls_verify = true;
  std::string auth_file;
  int64_t upload_chunk_size = 0;
};

image::RemoteOptions remote_options(const GlobalOptions& g);

using Runner = std::function<int()>;

// Each subcommand lives in its own file and registers itself here.
void add_xray(CLI::App& app, const GlobalOptions& g, Runner& runner);
void add_validate(CLI::App& app, const GlobalOptions& g, Runner& runner);
void add_squash(CLI::App& app, const GlobalOptions& g, Runner& runner);
void add_unpack(CLI::App& app, const GlobalOptions& g, Runner& runner);
void add_trace(CLI::App& app, const GlobalOptions& g, Runner& runner);
void add_build(CLI::App& app, const GlobalOptions& g, Runner& runner);
void add_profile(CLI::App& app, const GlobalOptions& g, Runner& runner);

// Prints "slimtrace: <message>" on stderr: the one line a user sees for an expected failure.
void print_error(const std::string& message);

// A progress line on stderr, redrawn in place, only when stderr is a terminal and not --quiet.
image::ProgressFn make_progress(const GlobalOptions& g);
void end_progress();

// Opens an image reference with the global --platform and a work dir and flattens it (what every
// command reading an image starts with); prints the error and returns nullopt on failure.
struct OpenedImage {
  WorkDir work;
  image::SourceImage image;
  image::FileTree tree;
};
std::optional<OpenedImage> open_or_report(const GlobalOptions& g, const std::string& ref,
                                          const image::ProgressFn& progress);

}  // namespace slimtrace::cli
