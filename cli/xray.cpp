// `slimtrace xray IMAGE`: a static report on an image, as text or JSON, with a CI gate.
#include "slimtrace/image/xray.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>

#include "common.hpp"
#include "slimtrace/fd.hpp"
#include "slimtrace/workdir.hpp"

namespace slimtrace::cli {
namespace {

struct XrayArgs {
  std::string image;
  bool json = false;
  std::string fail_on;
  size_t top = 10;
  std::string output;
};

int run_xray(const GlobalOptions& g, const XrayArgs& a) {
  std::optional<image::Severity> fail_on;
  if (!a.fail_on.empty()) {
    fail_on = image::parse_severity(a.fail_on);
    if (!fail_on) {
      print_error("--fail-on: unknown severity '" + a.fail_on + "' (info, low, medium, high, critical)");
      return kExitUsage;
    }
  }
  auto progress = make_progress(g);
  auto opened = open_or_report(g, a.image, progress);
  if (!opened) return kExitBadInput;
  image::XrayOptions opts;
  opts.top = a.top;
  auto report = image::xray(opened->image, opened->tree, opts, progress);
  end_progress();
  if (!report) {
    print_error(report.error().message);
    return kExitBadInput;
  }
  std::string text = a.json ? image::to_json(*report).dump(2) + "\n" : image::to_text(*report);
  if (a.output.empty() || a.output == "-") {
    std::fwrite(text.data(), 1, text.size(), stdout);
    if (std::fflush(stdout) != 0) {
      print_error(std::string("write report to stdout: ") + std::strerror(errno));
      return kExitInternal;
    }
  } else if (auto st = write_file_atomically(a.output, text); !st) {
    print_error(st.error().message);
    return kExitBadInput;
  }
  if (fail_on) {
    auto worst = report->max_severity();
    if (worst && *worst >= *fail_on) {
      if (!g.quiet) {
        size_t n = 0;
        for (const auto& f : report->findings) n += f.severity >= *fail_on ? 1 : 0;
        std::fprintf(stderr, "slimtrace: %zu finding(s) at or above '%s'\n", n,
                     std::string(image::severity_name(*fail_on)).c_str());
      }
      return kExitFindings;
    }
  }
  return kExitOk;
}

}  // namespace

void add_xray(CLI::App& app, const GlobalOptions& g, Runner& runner) {
  auto args = std::make_shared<XrayArgs>();
  auto* cmd = app.add_subcommand("xray", "Report an image's layers, sizes, waste and risky contents");
  cmd->footer(
      "Findings and their severities:\n"
      "  critical  secrets: private keys, registry tokens (.npmrc/.pypirc), cloud credentials,\n"
      "            also when a later layer deleted them (they stay in the earlier layer's blob)\n"
      "  high      build tooling (compilers, make/cmake/ninja, Go toolchains, /usr/include,\n"
      "            debuggers), .env files, .git directories\n"
      "  medium    package manager caches and lists (apt, apk, npm, pip, yarn), running as root,\n"
      "            wasted space over 10% of the layers' bytes\n"
      "  low       package managers themselves, no HEALTHCHECK, smaller wasted space\n"
      "  info      notes (e.g. HEALTHCHECK explicitly disabled)\n"
      "\n"
      "Exit status: 0 ok; 1 a finding at or above --fail-on; 2 bad flags; 3 unreadable or corrupt image.\n"
      "Efficiency is dive's score: per path, its smallest size over the sum of all its versions' sizes.");
  cmd->add_option("image", args->image,
                  "Image: oci:DIR[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE[:NAME:TAG], "
                  "docker-daemon:NAME[:TAG], "
                  "docker://REGISTRY/NAME[:TAG|@DIGEST], "
                  "or a path")
      ->required();
  cmd->add_flag("--json", args->json, "Print the report as JSON (schema slimtrace.xray/v1)");
  cmd->add_option("--fail-on", args->fail_on,
                  "Exit 1 when a finding at or above this severity exists: info, low, medium, high, critical")
      ->check(CLI::IsMember({"info", "low", "medium", "high", "critical"}, CLI::ignore_case));
  cmd->add_option("--top", args->top, "How many of the largest files and directories to list")
      ->capture_default_str()
      ->check(CLI::Range(0, 100000));
  cmd->add_option("-o,--output", args->output, "Write the report to FILE instead of stdout");
  cmd->callback([&g, &runner, args] { runner = [&g, args] { return run_xray(g, *args); }; });
}

}  // namespace slimtrace::cli
