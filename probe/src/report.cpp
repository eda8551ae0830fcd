#include "slimtrace/probe/report.hpp"

#include <map>

namespace slimtrace::probe {

using nlohmann::json;

size_t ProbeReport::failed() const {
  size_t n = 0;
  for (const auto& r : results)
    if (!r.met) ++n;
  return n;
}

json to_json(const ProbeResult& r) {
  json j = {{"kind", r.kind},         {"origin", r.origin},
            {"target", r.target},     {"latency_ms", r.latency_ms},
            {"expected", r.expected}, {"met", r.met}};
  if (!r.method.empty()) j["method"] = r.method;
  if (r.port) j["port"] = *r.port;
  if (!r.path.empty()) j["path"] = r.path;
  if (!r.request_headers.empty()) j["request_headers"] = r.request_headers;
  if (!r.request_body.empty()) j["request_body"] = r.request_body;
  if (r.status) j["status"] = *r.status;
  if (r.exit_code) j["exit_code"] = *r.exit_code;
  if (!r.body_digest.empty()) j["body_digest"] = r.body_digest;
  if (!r.stdout_digest.empty()) j["stdout_digest"] = r.stdout_digest;
  if (r.stable) j["stable"] = *r.stable;
  if (!r.error.empty()) j["error"] = r.error;
  return j;
}

json to_json(const ProbeReport& r) {
  json results = json::array();
  for (const auto& x : r.results) results.push_back(to_json(x));
  json j = {{"schema", r.schema},
            {"schema_version", r.schema_version},
            {"expected_ports", r.expected_ports},
            {"ports", r.ports},
            {"continue_after", r.continue_after},
            {"continue_after_default", r.continue_after_default},
            {"ready", r.ready},
            {"ready_seconds", r.ready_seconds},
            {"timed_out", r.timed_out},
            {"warnings", r.warnings},
            {"results", results}};
  if (r.container_exit_code) j["container_exit_code"] = *r.container_exit_code;
  if (!r.container_stdout_digest.empty()) j["container_stdout_digest"] = r.container_stdout_digest;
  if (!r.error.empty()) j["error"] = r.error;
  if (!r.log_tail.empty()) j["log_tail"] = r.log_tail;
  return j;
}

Result<ProbeReport> probe_report_from_json(const json& j) {
  try {
    ProbeReport r;
    if (!j.is_object()) return Error{"probe results: not a JSON object"};
    r.schema = j.at("schema").get<std::string>();
    if (r.schema != kProbeSchema)
      return Error{"probe results: schema '" + r.schema + "', expected '" + kProbeSchema + "'"};
    r.schema_version = j.at("schema_version").get<int>();
    if (r.schema_version > kProbeSchemaVersion)
      return Error{"probe results: schema_version " + std::to_string(r.schema_version) +
                   " is newer than this slimtrace (" + std::to_string(kProbeSchemaVersion) + ")"};
    r.expected_ports = j.value("expected_ports", std::vector<int>{});
    r.ports = j.value("ports", std::vector<int>{});
    r.continue_after = j.value("continue_after", std::string());
    r.continue_after_default = j.value("continue_after_default", true);
    r.ready = j.value("ready", false);
    r.ready_seconds = j.value("ready_seconds", 0.0);
    r.timed_out = j.value("timed_out", false);
    if (j.contains("container_exit_code")) r.container_exit_code = j["container_exit_code"].get<int>();
    r.container_stdout_digest = j.value("container_stdout_digest", std::string());
    r.warnings = j.value("warnings", std::vector<std::string>{});
    r.error = j.value("error", std::string());
    r.log_tail = j.value("log_tail", std::string());
    for (const auto& x : j.value("results", json::array())) {
      ProbeResult p;
      p.kind = x.at("kind").get<std::string>();
      p.origin = x.value("origin", std::string());
      p.target = x.at("target").get<std::string>();
      p.method = x.value("method", std::string());
      if (x.contains("port")) p.port = x["port"].get<int>();
      p.path = x.value("path", std::string());
      p.request_headers = x.value("request_headers", std::vector<std::string>{});
      p.request_body = x.value("request_body", std::string());
      if (x.contains("status")) p.status = x["status"].get<int>();
      if (x.contains("exit_code")) p.exit_code = x["exit_code"].get<int>();
      p.latency_ms = x.value("latency_ms", 0.0);
      p.body_digest = x.value("body_digest", std::string());
      p.stdout_digest = x.value("stdout_digest", std::string());
      if (x.contains("stable")) p.stable = x["stable"].get<bool>();
      p.expected = x.value("expected", std::string());
      p.met = x.at("met").get<bool>();
      p.error = x.value("error", std::string());
      r.results.push_back(std::move(p));
    }
    return r;
  } catch (const json::exception& e) {
    return Error{std::string("probe results: ") + e.what()};
  }
}

std::string summary(const ProbeReport& r) {
  std::map<std::string, size_t> kinds;
  for (const auto& x : r.results) ++kinds[x.kind];
  std::string s = std::to_string(r.results.size()) + " probes";
  if (!kinds.empty()) {
    s += " (";
    bool first = true;
    for (const auto& [k, n] : kinds) {
      s += (first ? "" : ", ") + std::to_string(n) + " " + k;
      first = false;
    }
    s += ")";
  }
  s += ", " + std::to_string(r.results.size() - r.failed()) + " met";
  if (r.failed() > 0) s += ", " + std::to_string(r.failed()) + " failed";
  s += ", ports ";
  if (r.ports.empty()) {
    s += "none";
  } else {
    for (size_t i = 0; i < r.ports.size(); ++i) s += (i ? "," : "") + std::to_string(r.ports[i]);
  }
  s += ", continue-after " + r.continue_after;
  if (r.timed_out) s += ", timed out";
  return s;
}

}  // namespace slimtrace::probe
