// What `build` and `profile` share after their flags are parsed: open and flatten the input, run
// the pipeline, write the report, print the summary, map the outcome to the exit code.
#pragma once

#include <string>
#include <vector>

#include "common.hpp"
#include "run_flags.hpp"
#include "slimtrace/pipeline/build.hpp"

namespace slimtrace::cli {

struct PipelineFlags {
  std::string report = "slimtrace.report.json";
  std::string report_format = "json";  // json, or github: a Markdown summary as well
  std::string summary;                 // where the Markdown goes (default: $GITHUB_STEP_SUMMARY or stdout)
  std::string seccomp_default_action = "errno:EPERM";
  bool no_verify = false;
  bool keep_unverified = false;
  std::vector<std::string> explain;  // build only
};

// --report, --seccomp-default-action, --no-verify (and for build --keep-unverified).
void add_pipeline_flags(CLI::App* sub, PipelineFlags& p, bool building);

// `options` carries what only the command knows (output, tag, rules, seccomp_out); the rest is
// filled here from the flags.
int run_pipeline_command(const GlobalOptions& g, const RunFlags& run, const PipelineFlags& p,
                         pipeline::BuildOptions options);

}  // namespace slimtrace::cli
