#include "slimtrace/pipeline/probed_run.hpp"

#include <chrono>

#include "slimtrace/image/digest.hpp"

namespace slimtrace::pipeline {

Result<ProbedRun> run_probed(const tracer::RunSpec& spec, const probe::ProbeOptions& probes) {
  ProbedRun out;
  auto t0 = std::chrono::steady_clock::now();
  auto while_running = [&](const tracer::RunningContainer& rc) -> Status {
    probe::ProbeTarget target;
    target.pid = rc.pid;
    target.netns = rc.netns;
    target.stdout_log = rc.stdout_log;
    target.stderr_log = rc.stderr_log;
    target.exited = rc.exited;
    target.exec = [&rc](const std::vector<std::string>& argv, int timeout_ms) -> Result<probe::ExecOutput> {
      SLIMTRACE_ASSIGN_OR_RETURN(tracer::ExecResult r, rc.exec(argv, timeout_ms));
      return probe::ExecOutput{r.exit_code, r.timed_out, std::move(r.out), std::move(r.err)};
    };
    out.probes = probe::run_probes(target, probes);
    return {};
  };
  SLIMTRACE_ASSIGN_OR_RETURN(tracer::RunResult run, tracer::run_traced(spec, while_running));
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  out.trace = std::move(run.trace);
  out.stdout_log = run.stdout_log;
  out.stderr_log = run.stderr_log;
  // What a batch image printed and how it ended is its behaviour, compared by the verification.
  if (out.trace.exit_code && !out.trace.stopped_by_slimtrace) {
    out.probes.container_exit_code = *out.trace.exit_code;
    if (auto d = image::sha256_file(out.stdout_log.string())) out.probes.container_stdout_digest = *d;
  }
  return out;
}

std::string probe_failure_message(const probe::ProbeReport& report) {
  std::string msg =
      !report.error.empty() ? report.error : std::to_string(report.failed()) + " probe(s) failed:";
  if (report.error.empty())
    for (const auto& r : report.results)
      if (!r.met)
        msg += "\n  " + r.kind + " " + (r.method.empty() ? "" : r.method + " ") + r.target + ": expected " +
               r.expected + (r.error.empty() ? "" : ", got " + r.error);
  if (!report.log_tail.empty()) msg += "\n" + report.log_tail;
  while (!msg.empty() && msg.back() == '\n') msg.pop_back();
  return msg;
}

}  // namespace slimtrace::pipeline
