// Drives a running container the way its users do while the tracer records: waits until it listens,
// sends HTTP(S) requests from inside its network namespace, crawls, calls API specs, runs exec and
// host command probes, then waits for the chosen moment to stop (--continue-after).
#pragma once

#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "slimtrace/probe/report.hpp"
#include "slimtrace/probe/spec.hpp"
#include "slimtrace/result.hpp"

namespace slimtrace::probe {

struct ExecOutput {
  int exit_code = 0;
  bool timed_out = false;
  std::string out, err;
};

// What the probes need of the running container; the CLI fills it from the runner's RunningContainer.
struct ProbeTarget {
  int pid = 0;                  // host pid of the container's init: /proc/<pid>/net shows its namespace
  std::filesystem::path netns;  // its network namespace file
  std::filesystem::path stdout_log, stderr_log;
  std::function<bool()> exited;
  std::function<Result<ExecOutput>(const std::vector<std::string>& argv, int timeout_ms)> exec;
};

struct ProbeOptions {
  std::vector<int> image_ports;  // tcp ExposedPorts of the image
  std::vector<int> expose;       // --expose
  double ready_timeout = 60;
  double probe_timeout = 600;
  std::vector<HttpProbeSpec> http_probes;  // --http-probe and --http-probe-file
  bool crawl = true;
  int crawl_depth = 3;
  int crawl_max_pages = 50;
  std::vector<nlohmann::json> api_specs;    // --http-probe-apispec, already parsed
  std::vector<std::string> api_spec_paths;  // --http-probe-apispec-path
  std::vector<std::string> exec_probes;
  std::vector<std::string> host_commands;       // --probe-cmd
  std::optional<ContinueAfter> continue_after;  // nullopt: probe with ports, exit without
  // One-line notices for the user ("waiting for ports 80"); may be empty.
  std::function<void(const std::string&)> notice;
  // Verification: send exactly the requests of this earlier report again, in order and once each,
  // instead of detecting, crawling and probing anew. Readiness waits for the ports it found
  // listening; the results keep its probes and expectations, so compare_reports() can pair them.
  // --continue-after is its mode unless `continue_after` is set. Must outlive run_probes().
  const ProbeReport* replay = nullptr;
};

// Never fails: what went wrong is in the report (error, warnings, results that did not meet their
// expectation). Returns when it is time to stop the container.
ProbeReport run_probes(const ProbeTarget& target, const ProbeOptions& options);

// The tcp ports of an image config's ExposedPorts ({"80/tcp": {}, ...}); udp ones are skipped.
std::vector<int> exposed_tcp_ports(const nlohmann::json& image_config);

// The last `lines` lines of the container's stderr and stdout logs, labelled, for error messages.
std::string log_tail(const std::filesystem::path& stdout_log, const std::filesystem::path& stderr_log,
                     int lines = 20);

// Runs `/bin/sh -c command` on the host inside the network namespace `netns`, with `env` added to
// slimtrace's own environment; stdout and stderr are captured (digest of all of stdout).
struct HostCommandResult {
  int exit_code = 0;  // 128+signal when killed
  bool timed_out = false;
  std::string out, err;  // first MiB of each
  std::string stdout_digest;
  double latency_ms = 0;
};
Result<HostCommandResult> run_host_command(const std::filesystem::path& netns, const std::string& command,
                                           const std::vector<std::string>& env, int timeout_ms);

}  // namespace slimtrace::probe
