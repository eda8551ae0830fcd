// Test driver for tests/e2e/seccomp_profile.sh: turns a trace into a seccomp profile with
// packer::make_seccomp_profile, without the CLI.
// Usage: profile_from_trace TRACE.json [--arch ARCH]... [--default-action ACTION] > profile.json
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "slimtrace/packer/seccomp_profile.hpp"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: profile_from_trace TRACE.json [--arch ARCH]... [--default-action ACTION]\n";
    return 2;
  }
  std::vector<std::string> archs;
  slimtrace::packer::SeccompOptions options;
  for (int i = 2; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--arch") {
      archs.emplace_back(argv[i + 1]);
    } else if (flag == "--default-action") {
      options.default_action = argv[i + 1];
    } else {
      std::cerr << "profile_from_trace: unknown flag '" << flag << "'\n";
      return 2;
    }
  }
  std::ifstream in(argv[1]);
  if (!in) {
    std::cerr << "profile_from_trace: cannot open '" << argv[1] << "'\n";
    return 1;
  }
  nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
  if (j.is_discarded()) {
    std::cerr << "profile_from_trace: '" << argv[1] << "' is not JSON\n";
    return 1;
  }
  auto trace = slimtrace::tracer::trace_from_json(j);
  if (!trace) {
    std::cerr << "profile_from_trace: " << trace.error().message << "\n";
    return 1;
  }
  auto profile = slimtrace::packer::make_seccomp_profile(*trace, archs, options);
  if (!profile) {
    std::cerr << profile.error().message << "\n";
    return 1;
  }
  for (const auto& w : profile->warnings) std::cerr << "warning: " << w << "\n";
  std::cout << profile->json.dump(2) << "\n";
  return 0;
}
