// One traced run of an image with the probes driving it: what `trace`, `build`, `profile` and the
// verification run share.
#pragma once

#include <filesystem>
#include <string>

#include "slimtrace/probe/probe.hpp"
#include "slimtrace/probe/report.hpp"
#include "slimtrace/result.hpp"
#include "slimtrace/tracer/runner.hpp"
#include "slimtrace/tracer/trace.hpp"

namespace slimtrace::pipeline {

struct ProbedRun {
  tracer::Trace trace;
  probe::ProbeReport probes;                     // for a batch image also its exit code and stdout digest
  std::filesystem::path stdout_log, stderr_log;  // inside spec.work_dir
  double seconds = 0;                            // container start to stop
};

// Runs `spec` traced while `probes` drive it. Errors are the runner's (classify them with
// tracer::classify_run_error); probe failures are not errors, they are in `probes`.
Result<ProbedRun> run_probed(const tracer::RunSpec& spec, const probe::ProbeOptions& probes);

// One line per probe that did not meet its expectation, after the probing error if there was one,
// followed by the container's last log lines: what a user needs to see why the run failed.
std::string probe_failure_message(const probe::ProbeReport& report);

}  // namespace slimtrace::pipeline
