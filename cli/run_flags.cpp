#include "run_flags.hpp"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "common.hpp"
#include "slimtrace/probe/apispec.hpp"

namespace slimtrace::cli {

void add_run_flags(CLI::App* sub, RunFlags& f) {
  sub->add_option(
         "IMAGE", f.image,
         "Image reference (oci:DIR[:TAG], oci-archive:FILE, docker-archive:FILE, docker-daemon:NAME[:TAG], "
         "docker://REGISTRY/NAME[:TAG|@DIGEST], path)")
      ->required();
  sub->add_option("CMD", f.cmd, "Command replacing the image's Cmd (after --)");
  sub->add_option("--entrypoint", f.entrypoint,
                  "Executable replacing the image's Entrypoint (clears its Cmd)");
  sub->add_option("-e,--env", f.env,
                  "Environment variable KEY=VALUE (or KEY, from this environment); repeatable")
      ->allow_extra_args(false);
  sub->add_option("--mount", f.mounts, "Bind-mount a host path, SRC:DST[:ro]; repeatable")
      ->allow_extra_args(false);
  sub->add_option("--runtime", f.runtime,
                  "OCI runtime name or path (default: the first of runc, crun that works)");
  sub->add_option("--tracer", f.tracer, "ebpf, or fanotify where BPF cannot be loaded (files only)")
      ->capture_default_str();
  sub->add_option("--duration", f.duration, "Stop the container after SECONDS (default: wait for it to exit)")
      ->check(CLI::NonNegativeNumber);
  sub->add_option("--stop-grace", f.stop_grace, "Seconds between the stop signal and SIGKILL")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  sub->add_flag("--show-logs", f.show_logs, "Stream the container's stdout/stderr to stderr");
  sub->add_option("--expose", f.expose,
                  "Port the app listens on, PORT[/tcp]; repeatable (added to ExposedPorts)")
      ->allow_extra_args(false);
  sub->add_option("--ready-timeout", f.ready_timeout, "Seconds to wait for the expected ports to listen")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  sub->add_option("--probe-timeout", f.probe_timeout, "Overall limit in seconds for probing and waiting")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  sub->add_option("--http-probe", f.http_probes,
                  "HTTP probe 'METHOD /path' or 'METHOD :PORT/path'; repeatable")
      ->allow_extra_args(false);
  sub->add_option("--http-probe-file", f.http_probe_files,
                  "JSON file of HTTP probes (docs/probes.md); repeatable")
      ->allow_extra_args(false);
  sub->add_option("--crawl-depth", f.crawl_depth, "How many links deep to crawl from /")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  sub->add_option("--crawl-max-pages", f.crawl_max_pages, "Most pages crawled per port")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  sub->add_flag("--no-crawl", f.no_crawl, "Do not follow links found in HTML and CSS");
  sub->add_option("--http-probe-apispec", f.apispec_files,
                  "OpenAPI 3 / Swagger 2 JSON file: call every GET operation; repeatable")
      ->allow_extra_args(false);
  sub->add_option("--http-probe-apispec-path", f.apispec_paths,
                  "Path where the app serves its OpenAPI/Swagger JSON, e.g. /openapi.json; repeatable")
      ->allow_extra_args(false);
  sub->add_option("--exec-probe", f.exec_probes, "Command run inside the container (sh -c); repeatable")
      ->allow_extra_args(false);
  sub->add_option("--probe-cmd", f.probe_cmds,
                  "Command run on the host in the container's network namespace (sh -c), with "
                  "SLIMTRACE_TARGET_HOST and SLIMTRACE_PORTS set; repeatable")
      ->allow_extra_args(false);
  sub->add_option("--continue-after", f.continue_after,
                  "When to stop: probe, exit, timeout:SECONDS, signal (SIGUSR1) or enter (default: probe "
                  "when the app listens on ports, exit when it does not)");
}

void finish_run_flags(CLI::App* sub, RunFlags& f) {
  f.entrypoint_given = sub->count("--entrypoint") > 0;
  f.duration_given = sub->count("--duration") > 0;
  if (f.continue_after == "signal") {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
  }
}

Result<tracer::RunSpec> run_spec_from(const RunFlags& f) {
  tracer::RunSpec spec;
  for (const auto& m : f.mounts) {
    SLIMTRACE_ASSIGN_OR_RETURN(auto hm, tracer::HostMount::parse(m));
    spec.mounts.push_back(hm);
  }
  if (f.tracer == "fanotify")
    spec.tracer = tracer::TracerKind::Fanotify;
  else if (f.tracer != "ebpf")
    return Error{"--tracer '" + f.tracer + "': expected ebpf or fanotify"};
  if (f.entrypoint_given) spec.entrypoint = std::vector<std::string>{f.entrypoint};
  spec.cmd = f.cmd;
  spec.env = f.env;
  spec.runtime = f.runtime;
  if (f.duration_given) spec.duration = f.duration;
  spec.stop_grace_seconds = f.stop_grace;
  spec.show_logs = f.show_logs;
  return spec;
}

// Everything the probe flags say, checked before the container starts.
Result<probe::ProbeOptions> probe_options_from(const RunFlags& a) {
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

int exit_code_for_run_error(const Error& e) {
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

}  // namespace slimtrace::cli
