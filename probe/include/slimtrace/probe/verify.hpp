// Verification: does the minified image behave like the original under the same probes? The
// minified run replays the original's probes (ProbeOptions::replay); this compares the two reports.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "slimtrace/probe/report.hpp"

namespace slimtrace::probe {

struct ProbeDifference {
  std::string probe;     // "http GET :80/index.html", "tcp :6379", "exec 'ls /'", "container exit code"
  std::string original;  // the outcome in the original run, e.g. "status 200"
  std::string minified;  // the outcome in the minified run, e.g. "status 404"
};

// Empty when the minified run behaved the same. Compared: readiness; each result with the one at
// the same index (same kind and target, else the probe lists differ); HTTP status, and the body
// digest where the original was stable across two identical requests; a response that did not
// come at all; a TCP connection that was accepted before but not now; exec and host command exit
// codes; a probe that met its expectation before but not now; for images that ran to completion,
// the container's exit code and stdout digest.
std::vector<ProbeDifference> compare_reports(const ProbeReport& original, const ProbeReport& minified);

// One line: "http GET :80/x: status 200 originally, 404 in the minified image".
std::string describe(const ProbeDifference& d);

nlohmann::json to_json(const ProbeDifference& d);

// How a probe is named in differences: "http GET :80/x", "tcp :6379", "exec 'ls /'".
std::string probe_label(const ProbeResult& r);

}  // namespace slimtrace::probe
