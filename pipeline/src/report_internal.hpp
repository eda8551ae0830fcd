// Assembles the build report as the pipeline goes; report.cpp documents the fields (docs/report.md).
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "slimtrace/image/xray.hpp"
#include "slimtrace/pipeline/build.hpp"
#include "slimtrace/pipeline/probed_run.hpp"

namespace slimtrace::pipeline {

class ReportBuilder {
 public:
  ReportBuilder(const BuildOptions& o, const image::SourceImage& input);
  void set_input(const image::XrayReport& xr);
  void set_original(const ProbedRun& run);
  void set_selection(const image::FileTree& tree, const packer::Selection& sel,
                     const std::optional<packer::SeccompProfile>& profile);
  void set_verification(const Verification& v);
  nlohmann::json finish(const BuildResult& res, const std::vector<Phase>& phases);

 private:
  const BuildOptions& o_;
  nlohmann::json j_;
  std::vector<image::Finding> findings_;
  std::set<std::string> traced_;  // paths the original run found
};

}  // namespace slimtrace::pipeline
