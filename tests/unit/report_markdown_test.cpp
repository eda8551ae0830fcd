// The job-summary Markdown (`--report-format github`) of a build report: what a reviewer of a CI
// run needs to see first, and image-controlled text that cannot break the table.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "slimtrace/pipeline/build.hpp"

namespace slimtrace::pipeline {
namespace {

nlohmann::json report(const std::string& outcome) {
  return {
      {"schema", "slimtrace.report/v1"},
      {"command", "build"},
      {"outcome", outcome},
      {"message", outcome == "ok" ? "" : "probe GET / differs"},
      {"input",
       {{"ref", "docker-daemon:app:1"}, {"compressed_bytes", 31600000}, {"uncompressed_bytes", 54900000}}},
      {"output",
       {{"ref", "docker-daemon:app.slim:1"},
        {"written", outcome == "ok"},
        {"manifest_digest", "sha256:abc"},
        {"compressed_bytes", 1100000},
        {"uncompressed_bytes", 2000000}}},
      {"files", {{"kept_count", 14}, {"removed_count", 447}}},
      {"seccomp",
       {{"allowed_count", 52}, {"default_action", "errno:EPERM"}, {"written", true}, {"path", "p.json"}}},
      {"verification",
       {{"ran", true},
        {"passed", outcome == "ok"},
        {"under_seccomp_profile", true},
        {"differences",
         outcome == "ok"
             ? nlohmann::json::array()
             : nlohmann::json::array({{{"probe", "GET /a|b"}, {"original", "200"}, {"minified", "404"}}})},
        {"missing_paths",
         outcome == "ok" ? nlohmann::json::array() : nlohmann::json::array({"/www/a|b.html"})}}},
      {"xray",
       {{"findings_removed", nlohmann::json::array()}, {"findings_remaining", nlohmann::json::array()}}},
      {"seconds_total", 9.94},
      {"warnings", nlohmann::json::array()},
  };
}

TEST(ReportMarkdownTest, AGoodBuildShowsSizesProfileAndVerification) {
  std::string md = summary_markdown(report("ok"));
  EXPECT_EQ(md.rfind("### ✅ slimtrace build: `docker-daemon:app:1`", 0), 0u) << md;
  EXPECT_NE(md.find("| compressed | 31.6 MB | 1.1 MB |"), std::string::npos) << md;
  EXPECT_NE(md.find("| files | 461 | 14 |"), std::string::npos) << md;
  EXPECT_NE(md.find("`docker-daemon:app.slim:1` (sha256:abc)"), std::string::npos) << md;
  EXPECT_NE(md.find("52 syscalls allowed"), std::string::npos) << md;
  EXPECT_NE(md.find("**verification:** passed"), std::string::npos) << md;
}

TEST(ReportMarkdownTest, AFailedVerificationSaysSoAndListsWhatDiffered) {
  std::string md = summary_markdown(report("verify-failed"));
  EXPECT_EQ(md.rfind("### ❌", 0), 0u) << md;
  EXPECT_NE(md.find("**Verification failed** (exit 6)"), std::string::npos) << md;
  EXPECT_NE(md.find("(not written)"), std::string::npos) << md;
  EXPECT_NE(md.find("| compressed | 31.6 MB | - |"), std::string::npos) << md;
  // A '|' from the image must not open a new table cell.
  EXPECT_NE(md.find("| GET /a\\|b | 200 | 404 |"), std::string::npos) << md;
  EXPECT_NE(md.find("- `/www/a\\|b.html`"), std::string::npos) << md;
}

}  // namespace
}  // namespace slimtrace::pipeline
