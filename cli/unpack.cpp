// `slimtrace unpack IMAGE DIR`: the flattened image as a rootfs directory a runtime can use.
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <memory>

#include "common.hpp"
#include "slimtrace/image/rootfs.hpp"

namespace slimtrace::cli {
namespace {

struct UnpackOptions {
  std::string image;
  std::string dir;
  bool no_owner = false;
};

int run_unpack(const GlobalOptions& g, const UnpackOptions& o) {
  auto progress = make_progress(g);
  auto opened = open_or_report(g, o.image, progress);
  if (!opened) return kExitBadInput;
  image::MaterializeOptions mo;
  // Owners can only be kept by root; an unprivileged user gets a tree of their own files.
  mo.preserve_owner = !o.no_owner && ::geteuid() == 0;
  auto st = image::materialize_rootfs(opened->image, opened->tree, o.dir, mo, progress);
  end_progress();
  if (!st) {
    print_error(st.error().message);
    return kExitBadInput;
  }
  spdlog::info("unpacked {} entries ({} bytes) of {} into '{}'", opened->tree.size(),
               opened->tree.total_bytes(), opened->image.ref.to_string(), o.dir);
  return kExitOk;
}

}  // namespace

void add_unpack(CLI::App& app, const GlobalOptions& g, Runner& runner) {
  auto o = std::make_shared<UnpackOptions>();
  auto* sub =
      app.add_subcommand("unpack", "Write the flattened image as a rootfs directory (DIR must not exist)");
  sub->add_option(
         "IMAGE", o->image,
         "Image reference (oci:DIR[:TAG], oci-archive:FILE, docker-archive:FILE, docker-daemon:NAME[:TAG], "
         "docker://REGISTRY/NAME[:TAG|@DIGEST], path)")
      ->required();
  sub->add_option("DIR", o->dir, "Directory to create")->required();
  sub->add_flag("--no-owner", o->no_owner, "Do not keep file owners (the default when not root)");
  sub->callback([&runner, &g, o] { runner = [&g, o] { return run_unpack(g, *o); }; });
}

}  // namespace slimtrace::cli
