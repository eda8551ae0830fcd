// The build report, schema slimtrace.report/v1 (docs/report.md): what went in, what came out, why
// each file is there, what the two runs did, and where the time went.
#include "slimtrace/probe/report.hpp"

#include <algorithm>
#include <cstdio>
#include <set>
#include <sstream>

#include "report_internal.hpp"

namespace slimtrace::pipeline {
namespace {

nlohmann::json dump_safe(const nlohmann::json& j) {
  // Probe bodies and command output may hold invalid UTF-8; the report must still serialise.
  return nlohmann::json::parse(j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

nlohmann::json finding_json(const image::Finding& f, const std::vector<std::string>& paths) {
  return {{"id", f.id},
          {"severity", std::string(image::severity_name(f.severity))},
          {"title", f.title},
          {"paths", paths}};
}

// A byte count from the report for people: "31.6 MB".
std::string mb(const nlohmann::json& v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MB", v.is_number() ? v.get<double>() / 1e6 : 0.0);
  return std::string(buf);
}

}  // namespace

ReportBuilder::ReportBuilder(const BuildOptions& o, const image::SourceImage& input) : o_(o) {
  j_["schema"] = kReportSchema;
  j_["command"] = o.output ? "build" : "profile";
  j_["input"] = {{"ref", o.input_ref},
                 {"manifest_digest", input.manifest_digest},
                 {"config_digest", input.config_digest},
                 {"platform", input.platform.to_string()}};
  j_["output"] = nullptr;
  j_["seccomp"] = nullptr;
  j_["verification"] = {{"ran", false}, {"passed", false}};
  j_["probes"] = {{"original", nullptr}, {"minified", nullptr}};
}

void ReportBuilder::set_input(const image::XrayReport& xr) {
  j_["input"]["compressed_bytes"] = xr.compressed_bytes;
  j_["input"]["uncompressed_bytes"] = xr.layer_bytes;
  j_["input"]["layers"] = xr.layers.size();
  j_["input"]["files"] = xr.files;
  j_["input"]["file_bytes"] = xr.total_bytes;
  findings_ = xr.findings;
}

void ReportBuilder::set_original(const ProbedRun& run) {
  const auto& t = run.trace;
  size_t failed = 0;
  for (const auto& [p, f] : t.files)
    if (!f.found) ++failed;
  j_["trace"] = {{"tracer", t.tracer},
                 {"runtime", t.runtime},
                 {"command", t.command},
                 {"events", t.events},
                 {"dropped_events", t.dropped_events},
                 {"paths", t.files.size()},
                 {"failed_lookups", failed},
                 {"execs", t.execs.size()},
                 {"syscalls_recorded", t.syscalls_recorded},
                 {"syscalls", t.syscalls.size()},
                 {"exit_code", t.exit_code ? nlohmann::json(*t.exit_code) : nlohmann::json(nullptr)},
                 {"stopped_by_slimtrace", t.stopped_by_slimtrace},
                 {"limitations", t.limitations}};
  j_["probes"]["original"] = dump_safe(probe::to_json(run.probes));
  traced_.clear();
  for (const auto& [p, f] : t.files)
    if (f.found) traced_.insert(p);
}

void ReportBuilder::set_selection(const image::FileTree& tree, const packer::Selection& sel,
                                  const std::optional<packer::SeccompProfile>& profile) {
  nlohmann::json kept = nlohmann::json::array(), removed = nlohmann::json::array();
  int64_t removed_bytes = 0, kept_bytes = 0;
  for (const auto& [path, e] : tree.entries()) {
    int64_t bytes = e.type == image::EntryType::Regular ? e.size : 0;
    auto it = sel.kept.find(path);
    if (it != sel.kept.end()) {
      nlohmann::json k = {{"path", path},
                          {"type", std::string(image::entry_type_name(e.type))},
                          {"bytes", bytes},
                          {"reason", std::string(packer::reason_name(it->second.reason))}};
      if (!it->second.because_of.empty()) k["because_of"] = it->second.because_of;
      if (auto r = sel.replaced_files.find(path); r != sel.replaced_files.end()) {
        k["replaced"] = true;
        k["bytes"] = static_cast<int64_t>(r->second.size());
      }
      kept_bytes += k["bytes"].get<int64_t>();
      kept.push_back(std::move(k));
    } else {
      removed_bytes += bytes;
      removed.push_back({{"path", path},
                         {"type", std::string(image::entry_type_name(e.type))},
                         {"bytes", bytes},
                         // A path the app used yet is not kept was excluded by a rule.
                         {"reason", traced_.count(path) ? "excluded" : "unused"}});
    }
  }
  j_["files"] = {{"kept_count", kept.size()},       {"kept_bytes", kept_bytes},
                 {"removed_count", removed.size()}, {"removed_bytes", removed_bytes},
                 {"kept", std::move(kept)},         {"removed", std::move(removed)}};
  j_["lower_bound_bytes"] = sel.traced_bytes;

  // Findings of the input: gone when none of their paths is kept, otherwise still there.
  nlohmann::json gone = nlohmann::json::array(), remaining = nlohmann::json::array();
  for (const auto& f : findings_) {
    if (f.paths.empty()) continue;  // image-wide findings (e.g. root user) are not about files
    std::vector<std::string> still;
    for (const auto& p : f.paths)
      if (sel.kept.count(p)) still.push_back(p);
    if (still.empty())
      gone.push_back(finding_json(f, f.paths));
    else
      remaining.push_back(finding_json(f, still));
  }
  j_["xray"] = {{"findings_removed", std::move(gone)}, {"findings_remaining", std::move(remaining)}};

  if (profile) {
    j_["seccomp"] = {
        {"path", o_.seccomp_out.empty() ? nlohmann::json(nullptr) : nlohmann::json(o_.seccomp_out.string())},
        {"written", false},
        {"default_action", o_.seccomp.default_action},
        {"architectures", profile->architectures},
        {"allowed", profile->allowed},
        {"allowed_count", profile->allowed.size()},
        {"warnings", profile->warnings}};
  }
}

void ReportBuilder::set_verification(const Verification& v) {
  nlohmann::json diffs = nlohmann::json::array();
  for (const auto& d : v.differences) diffs.push_back(probe::to_json(d));
  j_["verification"] = {{"ran", v.ran},
                        {"passed", v.passed},
                        {"error", v.error},
                        {"differences", std::move(diffs)},
                        {"missing_paths", v.missing_paths},
                        {"dropped_events", v.dropped_events},
                        {"under_seccomp_profile", !j_["seccomp"].is_null()}};
  j_["probes"]["minified"] = dump_safe(probe::to_json(v.probes));
}

nlohmann::json ReportBuilder::finish(const BuildResult& res, const std::vector<Phase>& phases) {
  j_["outcome"] = std::string(outcome_name(res.outcome));
  j_["message"] = res.message;
  if (o_.output) {
    nlohmann::json out = {{"ref", o_.output->to_string()}, {"written", res.written.has_value()}};
    if (res.written) {
      const auto& w = *res.written;
      out["manifest_digest"] = w.manifest_digest;
      out["config_digest"] = w.config_digest;
      out["layer_digest"] = w.layer_digest;
      out["diff_id"] = w.diff_id;
      out["compressed_bytes"] = w.compressed_size;
      out["uncompressed_bytes"] = w.uncompressed_size;
      out["files"] = w.files;
      out["file_bytes"] = w.file_bytes;
      auto ratio = [](int64_t a, const nlohmann::json& b) {
        return b.is_number() && b.get<int64_t>() > 0 ? static_cast<double>(a) / b.get<double>() : 0.0;
      };
      j_["reduction"] = {
          {"compressed_ratio", ratio(w.compressed_size, j_["input"]["compressed_bytes"])},
          {"uncompressed_ratio", ratio(w.uncompressed_size, j_["input"]["uncompressed_bytes"])}};
    }
    out["verified"] = j_["verification"]["passed"];
    j_["output"] = std::move(out);
  }
  if (!j_["seccomp"].is_null()) j_["seccomp"]["written"] = res.seccomp_written;
  nlohmann::json ph = nlohmann::json::array();
  double total = 0, outside = 0;
  for (const auto& p : phases) {
    ph.push_back({{"name", p.name}, {"seconds", p.seconds}, {"probing", p.probing}});
    total += p.seconds;
    if (!p.probing) outside += p.seconds;
  }
  j_["phases"] = std::move(ph);
  j_["seconds_total"] = total;
  j_["seconds_outside_probes"] = outside;
  j_["warnings"] = res.warnings;
  return j_;
}

std::string summary_text(const nlohmann::json& r) {
  std::ostringstream s;
  const auto& in = r["input"];
  if (r.contains("files")) {
    s << "kept " << r["files"]["kept_count"].get<size_t>() << " of "
      << r["files"]["kept_count"].get<size_t>() + r["files"]["removed_count"].get<size_t>() << " entries ("
      << mb(r["files"]["kept_bytes"]) << " of " << mb(in.value("file_bytes", nlohmann::json(0)))
      << "; the traced files alone: " << mb(r.value("lower_bound_bytes", nlohmann::json(0))) << ")\n";
  }
  if (r["output"].is_object() && r["output"].value("written", false)) {
    const auto& out = r["output"];
    s << "image: " << mb(in.value("uncompressed_bytes", nlohmann::json(0))) << " -> "
      << mb(out["uncompressed_bytes"]) << " uncompressed, "
      << mb(in.value("compressed_bytes", nlohmann::json(0))) << " -> " << mb(out["compressed_bytes"])
      << " compressed: " << out["ref"].get<std::string>() << "\n";
  }
  if (r["seccomp"].is_object()) {
    s << "seccomp: " << r["seccomp"]["allowed_count"].get<size_t>() << " syscalls allowed";
    if (r["seccomp"].value("written", false) && r["seccomp"]["path"].is_string())
      s << ": " << r["seccomp"]["path"].get<std::string>();
    s << "\n";
  }
  if (r.contains("xray") && !r["xray"]["findings_removed"].empty()) {
    s << "removed:";
    for (const auto& f : r["xray"]["findings_removed"]) s << " " << f["id"].get<std::string>();
    s << "\n";
  }
  const auto& v = r["verification"];
  if (v.value("ran", false))
    s << "verification: " << (v.value("passed", false) ? "passed" : "FAILED") << " (same probes"
      << (v.value("under_seccomp_profile", false) ? ", under the seccomp profile" : "") << ")\n";
  else if (r["command"] == "build" && r["outcome"] == "ok")
    s << "verification: skipped (--no-verify)\n";
  s << "time: " << static_cast<int>(r.value("seconds_total", 0.0) * 10) / 10.0 << " s (outside the probes "
    << static_cast<int>(r.value("seconds_outside_probes", 0.0) * 10) / 10.0 << " s)";
  return s.str();
}

std::string summary_markdown(const nlohmann::json& r) {
  // Paths and messages come from the image; keep them from breaking the table or the markup.
  auto cell = [](std::string text) {
    std::string out;
    for (char c : text) {
      if (c == '|')
        out += "\\|";
      else if (c == '\n')
        out += "<br>";
      else if (c == '`')
        out += "'";
      else
        out += c;
    }
    return out;
  };
  auto str = [](const nlohmann::json& j, const char* key) {
    return j.is_object() && j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : std::string();
  };
  std::ostringstream s;
  std::string outcome = str(r, "outcome");
  std::string command = str(r, "command");
  const auto& in = r["input"];
  const char* mark = outcome == "ok" ? "✅" : "❌";
  s << "### " << mark << " slimtrace " << command << ": `" << cell(str(in, "ref")) << "`\n\n";
  if (outcome == "probe-failed")
    s << "**The original image failed its probes** (exit 5): nothing to compare a minified image with.\n\n";
  else if (outcome == "write-failed")
    s << "**The image could not be written** (exit 7); it was verified, and the profile is kept.\n\n";
  else if (outcome == "verify-failed")
    s << "**Verification failed** (exit 6): the minified image did not behave like the original.\n\n";
  if (!str(r, "message").empty()) s << "```\n" << str(r, "message") << "\n```\n\n";

  s << "| | input | output |\n|---|---:|---:|\n";
  const auto& out = r["output"];
  bool written = out.is_object() && out.value("written", false);
  auto row = [&](const char* what, const char* key) {
    s << "| " << what << " | " << mb(in.value(key, nlohmann::json(0))) << " | "
      << (written ? mb(out.value(key, nlohmann::json(0))) : std::string("-")) << " |\n";
  };
  row("compressed", "compressed_bytes");
  row("uncompressed", "uncompressed_bytes");
  if (r.contains("files") && r["files"].is_object()) {
    const auto& f = r["files"];
    s << "| files | " << f.value("kept_count", 0) + f.value("removed_count", 0) << " | "
      << f.value("kept_count", 0) << " |\n";
  }
  s << "\n";
  if (out.is_object())
    s << "- **image:** `" << cell(str(out, "ref")) << "`"
      << (written ? " (" + str(out, "manifest_digest") + ")" : std::string(" (not written)")) << "\n";
  if (r["seccomp"].is_object()) {
    const auto& sc = r["seccomp"];
    s << "- **seccomp:** " << sc.value("allowed_count", 0) << " syscalls allowed, default action `"
      << str(sc, "default_action") << "`";
    if (sc.value("written", false)) s << ", profile `" << cell(str(sc, "path")) << "`";
    s << "\n";
  }
  const auto& v = r["verification"];
  if (v.is_object() && v.value("ran", false)) {
    s << "- **verification:** " << (v.value("passed", false) ? "passed" : "failed") << ", same probes"
      << (v.value("under_seccomp_profile", false) ? " under the seccomp profile" : "") << "\n";
  } else if (command == "build" && outcome == "ok") {
    s << "- **verification:** skipped (`--no-verify`)\n";
  }
  s << "- **time:** " << static_cast<int>(r.value("seconds_total", 0.0) * 10) / 10.0 << " s\n";
  if (v.is_object() && v.contains("differences") && !v["differences"].empty()) {
    s << "\n| probe | original | minified |\n|---|---|---|\n";
    for (const auto& d : v["differences"])
      s << "| " << cell(str(d, "probe")) << " | " << cell(str(d, "original")) << " | "
        << cell(str(d, "minified")) << " |\n";
  }
  if (v.is_object() && v.contains("missing_paths") && !v["missing_paths"].empty()) {
    s << "\nPaths the minified image lacked:\n\n";
    for (const auto& p : v["missing_paths"]) s << "- `" << cell(p.get<std::string>()) << "`\n";
  }
  if (r.contains("xray") && r["xray"].is_object()) {
    const auto& x = r["xray"];
    if (x.contains("findings_removed") && !x["findings_removed"].empty()) {
      s << "\n<details><summary>xray findings removed with the unused files</summary>\n\n";
      for (const auto& f : x["findings_removed"])
        s << "- " << cell(str(f, "severity")) << " `" << cell(str(f, "id")) << "`: " << cell(str(f, "title"))
          << "\n";
      s << "\n</details>\n";
    }
    if (x.contains("findings_remaining") && !x["findings_remaining"].empty()) {
      s << "\n**xray findings still in the output:**\n\n";
      for (const auto& f : x["findings_remaining"])
        s << "- " << cell(str(f, "severity")) << " `" << cell(str(f, "id")) << "`: " << cell(str(f, "title"))
          << "\n";
    }
  }
  if (r.contains("warnings") && !r["warnings"].empty()) {
    s << "\n**Warnings:**\n\n";
    for (const auto& w : r["warnings"]) s << "- " << cell(w.get<std::string>()) << "\n";
  }
  return s.str();
}

}  // namespace slimtrace::pipeline
