// `slimtrace trace IMAGE [-- CMD...] -o trace.json`: runs the image as a container under an OCI
// runtime and records every file, exec and syscall it uses.
#include "slimtrace/tracer/trace.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "common.hpp"
#include "slimtrace/fd.hpp"
#include "slimtrace/image/digest.hpp"
#include "slimtrace/probe/apispec.hpp"
#include "slimtrace/probe/probe.hpp"
#include "slimtrace/tracer/runner.hpp"
#include "slimtrace/workdir.hpp"

namespace slimtrace::cli {
namespace {

struct TraceArgs {
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
  std::string output;
  // Probes (docs/probes.md).
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

// Everything the probe flags say, checked before the container starts.
Result<probe::ProbeOptions> probe_options(const TraceArgs& a) {
  probe::ProbeOptions o;
  for (const auto& e : a.expose) {
    // "80", "80/tcp", or a comma list of them.
    size_t pos = 0;
    while (pos <= e.size()) {
      size_t comma = e.find(',', pos);
      std::string one = e.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
      SLIMTRACE_ASSIGN_OR_RETURN(int port, probe::parse_port(one));
      o.expose.push_back(port);
      if (comma == std::string::npos) break;
      pos = comma + 1;
    }
  }
  o.ready_timeout = a.ready_timeout;
  o.probe_timeout = a.probe_timeout;
  for (const auto& h : a.http_probes) {
    SLIMTRACE_ASSIGN_OR_RETURN(auto spec, probe::parse_http_probe(h));
    o.http_probes.push_back(std::move(spec));
  }
  for (const auto& f : a.http_probe_files) {
    SLIMTRACE_ASSIGN_OR_RETURN(auto specs, probe::load_probe_file(f));
    o.http_probes.insert(o.http_probes.end(), specs.begin(), specs.end());
  }
  o.crawl = !a.no_crawl;
  o.crawl_depth = a.crawl_depth;
  o.crawl_max_pages = a.crawl_max_pages;
  for (const auto& f : a.apispec_files) {
    std::ifstream in(f, std::ios::binary);
    if (!in) return Error::from_errno("--http-probe-apispec '" + f + "'");
    std::stringstream ss;
    ss << in.rdbuf();
    SLIMTRACE_ASSIGN_OR_RETURN(auto doc, probe::parse_api_spec(ss.str(), f));
    // Checked now, so a wrong file is a usage error rather than a warning after the run.
    if (auto ops = probe::api_get_operations(doc); !ops)
      return ops.error().context("--http-probe-apispec '" + f + "'");
    o.api_specs.push_back(std::move(doc));
  }
  for (const auto& p : a.apispec_paths) {
    if (p.empty() || p[0] != '/')
      return Error{"--http-probe-apispec-path '" + p + "': expected a path starting with '/'"};
    o.api_spec_paths.push_back(p);
  }
  o.exec_probes = a.exec_probes;
  o.host_commands = a.probe_cmds;
  if (!a.continue_after.empty()) {
    SLIMTRACE_ASSIGN_OR_RETURN(auto c, probe::parse_continue_after(a.continue_after));
    if (c.mode == probe::ContinueMode::Enter && !::isatty(0))
      return Error{"--continue-after enter: stdin is not a terminal; use signal or timeout:N instead"};
    o.continue_after = c;
  }
  return o;
}

std::filesystem::path probes_path_for(const std::filesystem::path& trace) {
  std::string s = trace.string();
  if (s.size() > 5 && s.compare(s.size() - 5, 5, ".json") == 0) s.resize(s.size() - 5);
  return s + ".probes.json";
}

int exit_code_for(const Error& e) {
  switch (tracer::classify_run_error(e)) {
    case tracer::RunFailure::BadImage:
    case tracer::RunFailure::ContainerFailed:
      return kExitBadInput;
    case tracer::RunFailure::RuntimeUnavailable:
    case tracer::RunFailure::TracerUnavailable:
      return kExitRuntimeUnavailable;
    case tracer::RunFailure::Other:
      break;
  }
  return kExitInternal;
}

int run_trace(const GlobalOptions& g, const TraceArgs& a) {
  tracer::RunSpec spec;
  for (const auto& m : a.mounts) {
    auto hm = tracer::HostMount::parse(m);
    if (!hm) {
      print_error(hm.error().message);
      return kExitUsage;
    }
    spec.mounts.push_back(*hm);
  }
  if (a.tracer == "fanotify")
    spec.tracer = tracer::TracerKind::Fanotify;
  else if (a.tracer != "ebpf") {
    print_error("--tracer '" + a.tracer + "': expected ebpf or fanotify");
    return kExitUsage;
  }

  auto popts = probe_options(a);
  if (!popts) {
    print_error(popts.error().message);
    return kExitUsage;
  }

  auto opened = open_or_report(g, a.image);
  if (!opened) return kExitBadInput;
  auto progress = make_progress(g);
  auto tree = image::flatten(opened->image, progress);
  end_progress();
  if (!tree) {
    print_error(tree.error().message);
    return kExitBadInput;
  }

  spec.image = &opened->image;
  spec.tree = &*tree;
  if (a.entrypoint_given) spec.entrypoint = std::vector<std::string>{a.entrypoint};
  spec.cmd = a.cmd;
  spec.env = a.env;
  spec.runtime = a.runtime;
  if (a.duration_given) spec.duration = a.duration;
  spec.stop_grace_seconds = a.stop_grace;
  spec.show_logs = a.show_logs;
  spec.work_dir = opened->work.path() / "run";
  spec.progress = progress;

  popts->image_ports = probe::exposed_tcp_ports(opened->image.config);
  if (!g.quiet)
    popts->notice = [](const std::string& line) { std::fprintf(stderr, "slimtrace: %s\n", line.c_str()); };
  probe::ProbeReport report;
  auto while_running = [&](const tracer::RunningContainer& rc) -> Status {
    end_progress();
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
    report = probe::run_probes(target, *popts);
    return {};
  };

  auto run = tracer::run_traced(spec, while_running);
  end_progress();
  if (!run) {
    print_error(run.error().message);
    return exit_code_for(run.error());
  }
  tracer::Trace& trace = run->trace;
  trace.image = a.image;

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

  // Probe results next to the trace; what a batch image printed is part of its behaviour.
  if (trace.exit_code && !trace.stopped_by_slimtrace) {
    report.container_exit_code = *trace.exit_code;
    if (auto d = image::sha256_file(run->stdout_log.string())) report.container_stdout_digest = *d;
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
                 a.image.c_str(), trace.tracer.c_str(), trace.files.size(), failed, trace.execs.size(),
                 syscalls.c_str(), static_cast<unsigned long long>(trace.dropped_events), ended.c_str(),
                 out.c_str());
    if (trace.dropped_events > 0)
      std::fprintf(stderr, "slimtrace: warning: %llu events were dropped; the trace is incomplete\n",
                   static_cast<unsigned long long>(trace.dropped_events));
    std::fprintf(stderr, "slimtrace: probes: %s -> %s\n", probe::summary(report).c_str(), probes_out.c_str());
    for (const auto& w : report.warnings) std::fprintf(stderr, "slimtrace: warning: %s\n", w.c_str());
  }
  if (!report.error.empty() || report.failed() > 0) {
    std::string msg =
        !report.error.empty() ? report.error : std::to_string(report.failed()) + " probe(s) failed:";
    if (report.error.empty())
      for (const auto& r : report.results)
        if (!r.met)
          msg += "\n  " + r.kind + " " + (r.method.empty() ? "" : r.method + " ") + r.target + ": expected " +
                 r.expected + (r.error.empty() ? "" : ", got " + r.error);
    print_error(msg + "\n" + report.log_tail);
    return kExitProbeFailed;
  }
  return kExitOk;
}

}  // namespace

void add_trace(CLI::App& app, const GlobalOptions& g, Runner& runner) {
  auto a = std::make_shared<TraceArgs>();
  auto* sub = app.add_subcommand(
      "trace", "Run an image as a container and record the files, execs and syscalls it uses");
  sub->add_option("IMAGE", a->image,
                  "Image reference (oci:DIR[:TAG], oci-archive:FILE, docker-archive:FILE, path)")
      ->required();
  sub->add_option("CMD", a->cmd, "Command replacing the image's Cmd (after --)");
  sub->add_option("--entrypoint", a->entrypoint,
                  "Executable replacing the image's Entrypoint (clears its Cmd)");
  sub->add_option("-e,--env", a->env,
                  "Environment variable KEY=VALUE (or KEY, from this environment); repeatable")
      ->allow_extra_args(false);
  sub->add_option("--mount", a->mounts, "Bind-mount a host path, SRC:DST[:ro]; repeatable")
      ->allow_extra_args(false);
  sub->add_option("--runtime", a->runtime,
                  "OCI runtime name or path (default: the first of runc, crun that works)");
  sub->add_option("--tracer", a->tracer, "ebpf, or fanotify where BPF cannot be loaded (files only)")
      ->capture_default_str();
  sub->add_option("--duration", a->duration,
                  "Stop the container after SECONDS (default: wait for it to exit)")
      ->check(CLI::NonNegativeNumber);
  sub->add_option("--stop-grace", a->stop_grace, "Seconds between the stop signal and SIGKILL")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  sub->add_flag("--show-logs", a->show_logs, "Stream the container's stdout/stderr to stderr");
  sub->add_option("-o,--output", a->output,
                  "Trace JSON to write; probe results go next to it as <name>.probes.json")
      ->required();
  sub->add_option("--expose", a->expose,
                  "Port the app listens on, PORT[/tcp]; repeatable (added to ExposedPorts)")
      ->allow_extra_args(false);
  sub->add_option("--ready-timeout", a->ready_timeout, "Seconds to wait for the expected ports to listen")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  sub->add_option("--probe-timeout", a->probe_timeout, "Overall limit in seconds for probing and waiting")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  sub->add_option("--http-probe", a->http_probes,
                  "HTTP probe 'METHOD /path' or 'METHOD :PORT/path'; repeatable")
      ->allow_extra_args(false);
  sub->add_option("--http-probe-file", a->http_probe_files,
                  "JSON file of HTTP probes (docs/probes.md); repeatable")
      ->allow_extra_args(false);
  sub->add_option("--crawl-depth", a->crawl_depth, "How many links deep to crawl from /")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  sub->add_option("--crawl-max-pages", a->crawl_max_pages, "Most pages crawled per port")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  sub->add_flag("--no-crawl", a->no_crawl, "Do not follow links found in HTML and CSS");
  sub->add_option("--http-probe-apispec", a->apispec_files,
                  "OpenAPI 3 / Swagger 2 JSON file: call every GET operation; repeatable")
      ->allow_extra_args(false);
  sub->add_option("--http-probe-apispec-path", a->apispec_paths,
                  "Path where the app serves its OpenAPI/Swagger JSON, e.g. /openapi.json; repeatable")
      ->allow_extra_args(false);
  sub->add_option("--exec-probe", a->exec_probes, "Command run inside the container (sh -c); repeatable")
      ->allow_extra_args(false);
  sub->add_option("--probe-cmd", a->probe_cmds,
                  "Command run on the host in the container's network namespace (sh -c), with "
                  "SLIMTRACE_TARGET_HOST and SLIMTRACE_PORTS set; repeatable")
      ->allow_extra_args(false);
  sub->add_option("--continue-after", a->continue_after,
                  "When to stop: probe, exit, timeout:SECONDS, signal (SIGUSR1) or enter (default: probe "
                  "when the app listens on ports, exit when it does not)");
  sub->callback([&runner, &g, a, sub] {
    a->entrypoint_given = sub->count("--entrypoint") > 0;
    a->duration_given = sub->count("--duration") > 0;
    // SIGUSR1 must be blocked before any thread starts, so that only the probe thread's sigtimedwait
    // ever takes it (threads inherit the mask they were created with).
    if (a->continue_after == "signal") {
      sigset_t set;
      sigemptyset(&set);
      sigaddset(&set, SIGUSR1);
      pthread_sigmask(SIG_BLOCK, &set, nullptr);
    }
    runner = [&g, a] { return run_trace(g, *a); };
  });
}

}  // namespace slimtrace::cli
