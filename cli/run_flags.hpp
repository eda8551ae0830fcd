// The flags of every command that runs the image (trace, build, profile): how to run it, and the
// probes that drive it (docs/probes.md). One definition, so the three commands cannot drift apart.
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "slimtrace/probe/probe.hpp"
#include "slimtrace/result.hpp"
#include "slimtrace/tracer/runner.hpp"

namespace slimtrace::cli {

struct RunFlags {
  std::string image;
  std::vector<std::string> cmd;
  std::string entrypoint;
  bool entrypoint_given = false;
  std::vector<std::string> env;
  std::vector<std::string> mounts;
  std::string runtime;
  std::string tracer = "ebpf";
  double duration = 0;
  bool duration_given = false;
  double stop_grace = 10;
  bool show_logs = false;
  std::vector<std::string> expose;
  double ready_timeout = 60;
  double probe_timeout = 600;
  std::vector<std::string> http_probes;
  std::vector<std::string> http_probe_files;
  int crawl_depth = 3;
  int crawl_max_pages = 50;
  bool no_crawl = false;
  std::vector<std::string> apispec_files;
  std::vector<std::string> apispec_paths;
  std::vector<std::string> exec_probes;
  std::vector<std::string> probe_cmds;
  std::string continue_after;
};

// IMAGE, [CMD...] and every run and probe flag.
void add_run_flags(CLI::App* sub, RunFlags& f);

// To call from the subcommand's callback, before any thread starts: records which optional flags
// were given and blocks SIGUSR1 for --continue-after signal (threads inherit the mask).
void finish_run_flags(CLI::App* sub, RunFlags& f);

// The run as the flags describe it (no image, tree or work dir yet); errors are usage errors.
Result<tracer::RunSpec> run_spec_from(const RunFlags& f);

// Everything the probe flags say, checked before the container starts; errors are usage errors.
Result<probe::ProbeOptions> probe_options_from(const RunFlags& f);

// The exit code for an error of the runner: bad image, runtime or tracer unavailable, or internal.
int exit_code_for_run_error(const Error& e);

}  // namespace slimtrace::cli
