#include "slimtrace/probe/verify.hpp"

#include <sstream>

namespace slimtrace::probe {
namespace {

// Commands may span lines; a difference is one line.
std::string one_line(const std::string& s, size_t max = 80) {
  std::string out;
  for (char c : s) out += c == '\n' || c == '\r' || c == '\t' ? ' ' : c;
  if (out.size() > max) out = out.substr(0, max - 3) + "...";
  return out;
}

std::string status_text(const ProbeResult& r) {
  if (r.status) return "status " + std::to_string(*r.status);
  return "no response" + (r.error.empty() ? std::string() : " (" + one_line(r.error, 120) + ")");
}

std::string exit_text(const ProbeResult& r) {
  if (r.exit_code) return "exit code " + std::to_string(*r.exit_code);
  return "no exit code" + (r.error.empty() ? std::string() : " (" + one_line(r.error, 120) + ")");
}

bool is_http(const std::string& kind) { return kind == "http" || kind == "https"; }

void compare_result(const ProbeResult& o, const ProbeResult& m, std::vector<ProbeDifference>& out) {
  const std::string label = probe_label(o);
  const size_t before = out.size();
  if (is_http(o.kind)) {
    // A probe that got no response originally has nothing to compare against: the minified image
    // answering (or not) is no regression, and a failed original probe was reported then.
    if (o.status) {
      if (!m.status || *m.status != *o.status)
        out.push_back({label, status_text(o), status_text(m)});
      else if (o.stable == true && m.body_digest != o.body_digest)
        // Only a body that was the same for two identical requests is expected to stay the same;
        // pages with timestamps, counters or tokens change anyway.
        out.push_back({label, "body " + o.body_digest, "body " + m.body_digest});
    }
  } else if (o.kind == "exec" || o.kind == "host-cmd") {
    if (o.exit_code) {
      if (!m.exit_code || *m.exit_code != *o.exit_code)
        out.push_back({label, exit_text(o), exit_text(m)});
      else if (o.stable == true && m.stdout_digest != o.stdout_digest)
        // Commands run once (they may have side effects: a test suite writing records), so `stable`
        // is not recorded for them and their stdout is not compared: their exit code is the verdict,
        // and their output often holds timings, pids or dates. Should a later version run them twice
        // and record `stable`, their output is compared like an HTTP body.
        out.push_back({label, "stdout " + o.stdout_digest, "stdout " + m.stdout_digest});
    }
  }
  // Whatever the kind (a TCP connection, a command that now times out): what met its expectation
  // originally must meet it again.
  if (out.size() == before && o.met && !m.met)
    out.push_back({label, o.expected.empty() ? "met" : o.expected,
                   m.error.empty() ? "not met" : "not met: " + one_line(m.error, 120)});
}

bool is_digest(const std::string& word) { return word.rfind("sha256:", 0) == 0 && word.size() > 19; }

// Digests shortened for reading: "sha256:0123456789ab".
std::string shorten_digests(const std::string& s) {
  std::istringstream in(s);
  std::string word, out;
  bool first = true;
  // Only rewrite texts made of words; anything else (errors with several spaces) is kept as is.
  if (s.find("sha256:") == std::string::npos) return s;
  while (in >> word) {
    out += (first ? "" : " ") + (is_digest(word) ? word.substr(0, 19) : word);
    first = false;
  }
  return out;
}

}  // namespace

std::string probe_label(const ProbeResult& r) {
  if (is_http(r.kind)) {
    std::string method = r.method.empty() ? "GET" : r.method;
    std::string path = r.path.empty() ? "/" : r.path;
    if (r.port) return r.kind + " " + method + " :" + std::to_string(*r.port) + one_line(path);
    return r.kind + " " + method + " " + one_line(path);
  }
  if (r.kind == "tcp" && r.port) return "tcp :" + std::to_string(*r.port);
  return r.kind + " '" + one_line(r.target) + "'";
}

std::vector<ProbeDifference> compare_reports(const ProbeReport& original, const ProbeReport& minified) {
  std::vector<ProbeDifference> out;
  const bool not_ready =
      (original.ready && !minified.ready) || (original.error.empty() && !minified.error.empty());
  if (not_ready) {
    std::string was = "ready";
    if (!original.ports.empty()) {
      was += ", listening on port(s) ";
      for (size_t i = 0; i < original.ports.size(); ++i)
        was += (i ? "," : "") + std::to_string(original.ports[i]);
    }
    out.push_back({"readiness", was, minified.error.empty() ? "not ready" : one_line(minified.error, 200)});
  }

  for (size_t i = 0; i < original.results.size(); ++i) {
    const ProbeResult& o = original.results[i];
    if (i >= minified.results.size()) {
      // When the minified image never became ready, no probe ran: the readiness difference says it.
      if (not_ready && minified.results.empty()) break;
      out.push_back({probe_label(o), o.met ? "run" : "run (expectation not met)", "not run"});
      continue;
    }
    const ProbeResult& m = minified.results[i];
    if (m.kind != o.kind || m.target != o.target) {
      // The replay sends the same list in the same order; a mismatch means the reports do not pair.
      out.push_back({probe_label(o), "this probe", "a different probe in its place: " + probe_label(m)});
      continue;
    }
    compare_result(o, m, out);
  }
  if (minified.results.size() > original.results.size())
    out.push_back({"probes", std::to_string(original.results.size()) + " probes",
                   std::to_string(minified.results.size()) + " probes"});

  if (original.container_exit_code) {
    if (!minified.container_exit_code)
      out.push_back({"container exit code", std::to_string(*original.container_exit_code),
                     "none (the container did not exit by itself)"});
    else if (*minified.container_exit_code != *original.container_exit_code)
      out.push_back({"container exit code", std::to_string(*original.container_exit_code),
                     std::to_string(*minified.container_exit_code)});
  }
  if (!original.container_stdout_digest.empty() &&
      minified.container_stdout_digest != original.container_stdout_digest)
    out.push_back({"container stdout", original.container_stdout_digest,
                   minified.container_stdout_digest.empty() ? "none" : minified.container_stdout_digest});
  return out;
}

std::string describe(const ProbeDifference& d) {
  const std::string was = shorten_digests(d.original), now = shorten_digests(d.minified);
  // "status 200 originally, 404 in the minified image": the words both outcomes start with are
  // said once.
  size_t common = 0;
  for (size_t i = 0; i < was.size() && i < now.size() && was[i] == now[i]; ++i)
    if (was[i] == ' ') common = i + 1;
  std::string rest = now.substr(common);
  if (rest.empty()) rest = now;
  return d.probe + ": " + was + " originally, " + rest + " in the minified image";
}

nlohmann::json to_json(const ProbeDifference& d) {
  return {{"probe", d.probe}, {"original", d.original}, {"minified", d.minified}};
}

}  // namespace slimtrace::probe
