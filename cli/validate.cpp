// `slimtrace validate IMAGE`: checks an image the way a registry and a runtime would.
#include "slimtrace/image/validate.hpp"

#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>

#include "common.hpp"
#include "slimtrace/image/reference.hpp"

namespace slimtrace::cli {
namespace {

struct ValidateArgs {
  std::string image;
  bool json = false;
};

int run_validate(const GlobalOptions& g, const ValidateArgs& a) {
  auto ref = image::parse_reference(a.image);
  if (!ref) {
    print_error(ref.error().message);
    return kExitBadInput;
  }
  auto platform = image::Platform::parse(g.platform);
  if (!platform) {
    print_error(platform.error().message);
    return kExitBadInput;
  }
  auto work = WorkDir::create(g.work_dir);
  if (!work) {
    print_error(work.error().message);
    return kExitBadInput;
  }
  image::ValidationReport r =
      image::validate_image(*ref, image::OpenOptions{*platform, work->path(), remote_options(g)});
  end_progress();
  // Like every other command: an image that cannot be read is bad input (3), not findings (1).
  if (r.fetch_failed) {
    print_error(r.problems.front());
    return kExitBadInput;
  }
  if (a.json) {
    nlohmann::json j = {{"image", ref->to_string()},
                        {"valid", r.ok()},
                        {"manifests", r.manifests},
                        {"layers", r.layers},
                        {"problems", r.problems}};
    std::printf("%s\n", j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  } else if (r.ok()) {
    std::printf("valid: %d manifests, %d layers\n", r.manifests, r.layers);
  } else {
    std::printf("invalid: %zu problem%s in %s\n", r.problems.size(), r.problems.size() == 1 ? "" : "s",
                ref->to_string().c_str());
    for (const auto& p : r.problems) std::printf("  %s\n", p.c_str());
  }
  return r.ok() ? kExitOk : kExitFindings;
}

}  // namespace

void add_validate(CLI::App& app, const GlobalOptions& g, Runner& runner) {
  auto a = std::make_shared<ValidateArgs>();
  auto* sub = app.add_subcommand(
      "validate", "Check digests, sizes, media types, configs and layers of an image (exit 1 when invalid)");
  sub->add_option(
         "IMAGE", a->image,
         "Image reference (oci:DIR[:TAG], oci-archive:FILE, docker-archive:FILE, docker-daemon:NAME[:TAG], "
         "docker://REGISTRY/NAME[:TAG|@DIGEST], path)")
      ->required();
  sub->add_flag("--json", a->json, "Print the result as JSON");
  sub->callback([&runner, &g, a] { runner = [&g, a] { return run_validate(g, *a); }; });
}

}  // namespace slimtrace::cli
