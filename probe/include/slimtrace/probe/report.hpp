// Probe results: what was sent to the running container and what came back, versioned so the verify
// step can replay the probes against the slim image and compare.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "slimtrace/result.hpp"

namespace slimtrace::probe {

inline constexpr const char* kProbeSchema = "slimtrace.probes/v1";
inline constexpr int kProbeSchemaVersion = 1;

struct ProbeResult {
  std::string kind;    // http | https | tcp | exec | host-cmd
  std::string origin;  // default | crawl | user | apispec  (why the probe was sent)
  std::string target;  // URL, "127.0.0.1:PORT", or the command
  std::string method;  // HTTP method; empty for other kinds
  std::optional<int> port;
  std::string path;  // HTTP path and query
  std::vector<std::string> request_headers;
  std::string request_body;
  std::optional<int> status;     // HTTP status
  std::optional<int> exit_code;  // exec and host-cmd (128+signal when killed)
  double latency_ms = 0;
  std::string body_digest;     // http(s): sha256 of the response body
  std::string stdout_digest;   // exec, host-cmd
  std::optional<bool> stable;  // sent twice: same status and digest both times
  std::string expected;        // what was expected, in words: "status 200", "any response", "exit 0"
  bool met = false;
  std::string error;  // transport error, or output tail when an expectation failed
};

struct ProbeReport {
  std::string schema = kProbeSchema;
  int schema_version = kProbeSchemaVersion;
  std::vector<int> expected_ports;  // ExposedPorts and --expose
  std::vector<int> ports;           // listening when the probes ran
  std::string continue_after;       // the mode used: probe, exit, timeout:N, signal, enter
  bool continue_after_default = true;
  bool ready = false;
  double ready_seconds = 0;
  bool timed_out = false;  // the overall --probe-timeout fired
  std::optional<int> container_exit_code;
  std::string container_stdout_digest;  // for images that ran to completion
  std::vector<std::string> warnings;
  std::string error;     // why probing failed (readiness), empty when it did not
  std::string log_tail;  // the container's last log lines, when something failed
  std::vector<ProbeResult> results;

  // Probes that did not meet their expectation.
  size_t failed() const;
};

nlohmann::json to_json(const ProbeResult& r);
nlohmann::json to_json(const ProbeReport& r);
Result<ProbeReport> probe_report_from_json(const nlohmann::json& j);

// "5 probes (4 http, 1 tcp), 5 met, ports 80,6379, continue-after probe"
std::string summary(const ProbeReport& r);

}  // namespace slimtrace::probe
