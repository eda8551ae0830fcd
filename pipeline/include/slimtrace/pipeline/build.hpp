// `slimtrace build` and `slimtrace profile` as one pipeline: run + trace under probes, select, make
// the seccomp profile, pack, verify by running the minified image again under that profile with the
// same probes, and a report of all of it.
#pragma once

#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "slimtrace/image/file_tree.hpp"
#include "slimtrace/image/reference.hpp"
#include "slimtrace/image/source.hpp"
#include "slimtrace/image/writer.hpp"
#include "slimtrace/packer/seccomp_profile.hpp"
#include "slimtrace/packer/selection.hpp"
#include "slimtrace/probe/probe.hpp"
#include "slimtrace/probe/verify.hpp"
#include "slimtrace/result.hpp"
#include "slimtrace/tracer/runner.hpp"

namespace slimtrace::pipeline {

inline constexpr const char* kReportSchema = "slimtrace.report/v1";

struct Phase {
  std::string name;  // read, xray, trace, select, seccomp, pack, verify, write
  double seconds = 0;
  bool probing = false;  // the time is the app's and the probes', not slimtrace's
};

struct BuildOptions {
  std::string input_ref;                  // as the user wrote it
  std::optional<image::ImageRef> output;  // unset: `profile` (no image is written)
  std::string tag;                        // output tag (default: the output ref's)
  std::filesystem::path seccomp_out;      // empty: the profile is only in the report
  tracer::RunSpec run;                    // image, tree, work_dir and seccomp are set by build()
  probe::ProbeOptions probes;
  packer::SelectionRules rules;
  packer::SeccompOptions seccomp;
  bool verify = true;
  bool keep_unverified = false;
  image::Compression compression = image::Compression::Gzip;
  image::RemoteOptions remote = {};                // docker:// and docker-daemon: outputs
  std::filesystem::path work_dir;                  // scratch; removed by its owner
  std::vector<Phase> phases;                       // done before build() (reading the input), for the report
  std::function<void(const std::string&)> notice;  // one line per phase, for people
  image::ProgressFn progress;
};

// WriteFailed: verified, but the image could not be written (a registry refused the push, the
// engine went away, a full disk); the profile and the report are still written.
enum class BuildOutcome { Ok, ProbeFailed, VerifyFailed, WriteFailed };
std::string_view outcome_name(BuildOutcome o);

struct Verification {
  bool ran = false;
  bool passed = false;
  std::string error;  // the minified image did not run at all, or probing it failed outright
  std::vector<probe::ProbeDifference> differences;
  std::vector<std::string> missing_paths;  // found by the original run, not found by the minified one
  probe::ProbeReport probes;
  uint64_t dropped_events = 0;
};

struct BuildResult {
  BuildOutcome outcome = BuildOutcome::Ok;
  std::string message;  // why the outcome is not Ok: multi-line, for stderr
  packer::Selection selection;
  std::optional<packer::SeccompProfile> profile;
  std::optional<image::WrittenImage> written;  // the output, when it was written
  bool seccomp_written = false;
  std::vector<std::string> warnings;
  nlohmann::json report;  // schema slimtrace.report/v1, docs/report.md
};

// Errors are for things that stopped the pipeline before an outcome: the runner's (classify them
// with tracer::classify_run_error), unreadable layers, a profile libseccomp rejects, a failed write.
Result<BuildResult> build(const image::SourceImage& input, const image::FileTree& tree, BuildOptions options);

// The lines a person reads on stderr after a build: sizes, kept files, syscalls, verification.
std::string summary_text(const nlohmann::json& report);

// The same report as GitHub-flavoured Markdown for a CI job summary: the outcome first, then
// sizes, seccomp, verification (with the differences when it failed) and removed xray findings.
std::string summary_markdown(const nlohmann::json& report);

// Default output for an input: an OCI layout beside it, named after it with ".slim"
// (oci:/x/app:v1 -> oci:/x/app.slim:v1; docker-archive:/x/app.tar -> oci:/x/app.slim:latest).
image::ImageRef default_output_for(const image::ImageRef& input);

// Where the profile goes when --seccomp-out is not given: beside the output.
std::filesystem::path default_seccomp_path_for(const image::ImageRef& output);

}  // namespace slimtrace::pipeline
