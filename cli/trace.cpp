// `slimtrace trace IMAGE [-- CMD...] -o trace.json`: runs the image as a container under an OCI
// runtime and records every file, exec and syscall it uses.
#include "slimtrace/tracer/trace.hpp"

#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

#include "common.hpp"
#include "run_flags.hpp"
#include "slimtrace/pipeline/probed_run.hpp"

namespace slimtrace::cli {
namespace {

struct TraceArgs {
  RunFlags run;
  std::string output;
};

std::filesystem::path probes_path_for(const std::filesystem::path& trace) {
  std::string s = trace.string();
  if (s.size() > 5 && s.compare(s.size() - 5, 5, ".json") == 0) s.resize(s.size() - 5);
  return s + ".probes.json";
}

int run_trace(const GlobalOptions& g, const TraceArgs& a) {
  auto spec = run_spec_from(a.run);
  if (!spec) {
    print_error(spec.error().message);
    return kExitUsage;
  }
  auto popts = probe_options_from(a.run);
  if (!popts) {
    print_error(popts.error().message);
    return kExitUsage;
  }

  auto progress = make_progress(g);
  auto opened = open_or_report(g, a.run.image, progress);
  if (!opened) return kExitBadInput;

  spec->image = &opened->image;
  spec->tree = &opened->tree;
  spec->work_dir = opened->work.path() / "run";
  spec->progress = progress;
  popts->image_ports = probe::exposed_tcp_ports(opened->image.config);
  if (!g.quiet)
    popts->notice = [](const std::string& line) {
      end_progress();
      std::fprintf(stderr, "slimtrace: %s\n", line.c_str());
    };

  auto run = pipeline::run_probed(*spec, *popts);
  end_progress();
  if (!run) {
    print_error(run.error().message);
    return exit_code_for_run_error(run.error());
  }
  tracer::Trace& trace = run->trace;
  trace.image = a.run.image;
  const probe::ProbeReport& report = run->probes;

  std::filesystem::path out = a.output;
  if (auto st = write_file_atomically(out, tracer::to_json(trace).dump(2) + "\n"); !st) {
    print_error(st.error().message);
    return kExitInternal;
  }
  // The container's own output, kept next to the trace: it explains what the trace shows.
  for (const auto& [log, suffix] :
       {std::pair{run->stdout_log, ".stdout.log"}, std::pair{run->stderr_log, ".stderr.log"}}) {
    std::error_code ec;
    std::filesystem::copy_file(log, out.string() + suffix, std::filesystem::copy_options::overwrite_existing,
                               ec);
    if (ec) {
      print_error("copy container log to '" + out.string() + suffix + "': " + ec.message());
      return kExitInternal;
    }
  }
  std::filesystem::path probes_out = probes_path_for(out);
  if (auto st = write_file_atomically(
          probes_out,
          probe::to_json(report).dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
      !st) {
    print_error(st.error().message);
    return kExitInternal;
  }

  if (!g.quiet) {
    size_t failed = 0;
    for (const auto& [path, f] : trace.files)
      if (f.failed_ops != 0 && !f.found) ++failed;
    std::string ended = trace.exit_code ? "exit code " + std::to_string(*trace.exit_code)
                                        : std::string("stopped by slimtrace");
    std::string syscalls =
        trace.syscalls_recorded ? std::to_string(trace.syscalls.size()) : std::string("no");
    std::fprintf(stderr,
                 "slimtrace: traced %s with %s: %zu files (%zu failed lookups), %zu execs, %s syscalls, %llu "
                 "dropped events, %s -> %s\n",
                 a.run.image.c_str(), trace.tracer.c_str(), trace.files.size(), failed, trace.execs.size(),
                 syscalls.c_str(), static_cast<unsigned long long>(trace.dropped_events), ended.c_str(),
                 out.c_str());
    if (trace.dropped_events > 0)
      std::fprintf(stderr, "slimtrace: warning: %llu events were dropped; the trace is incomplete\n",
                   static_cast<unsigned long long>(trace.dropped_events));
    std::fprintf(stderr, "slimtrace: probes: %s -> %s\n", probe::summary(report).c_str(), probes_out.c_str());
    for (const auto& w : report.warnings) std::fprintf(stderr, "slimtrace: warning: %s\n", w.c_str());
  }
  if (!report.error.empty() || report.failed() > 0) {
    print_error(pipeline::probe_failure_message(report));
    return kExitProbeFailed;
  }
  return kExitOk;
}

}  // namespace

void add_trace(CLI::App& app, const GlobalOptions& g, Runner& runner) {
  auto a = std::make_shared<TraceArgs>();
  auto* sub = app.add_subcommand(
      "trace", "Run an image as a container and record the files, execs and syscalls it uses");
  add_run_flags(sub, a->run);
  sub->add_option("-o,--output", a->output,
                  "Trace JSON to write; probe results go next to it as <name>.probes.json")
      ->required();
  sub->callback([&runner, &g, a, sub] {
    finish_run_flags(sub, a->run);
    runner = [&g, a] { return run_trace(g, *a); };
  });
}

}  // namespace slimtrace::cli
