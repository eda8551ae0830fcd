// `slimtrace squash IMAGE -o OUTPUT`: the flattened image written back as one layer FROM scratch.
#include <spdlog/spdlog.h>

#include <cstdio>
#include <memory>

#include "common.hpp"
#include "slimtrace/image/reference.hpp"
#include "slimtrace/image/writer.hpp"

namespace slimtrace::cli {
namespace {

struct SquashArgs {
  std::string image;
  std::string output;
  std::string tag;
  std::string compression = "gzip";
};

int run_squash(const GlobalOptions& g, const SquashArgs& a) {
  image::WriteOptions wo;
  if (a.compression == "gzip") {
    wo.compression = image::Compression::Gzip;
  } else if (a.compression == "zstd") {
    wo.compression = image::Compression::Zstd;
  } else if (a.compression == "none") {
    wo.compression = image::Compression::None;
  } else {
    print_error("unknown compression '" + a.compression + "' (gzip, zstd or none)");
    return kExitUsage;
  }
  auto out = image::parse_reference(a.output, /*must_exist=*/false);
  if (!out) {
    print_error(out.error().message);
    return kExitBadInput;
  }
  // A registry or engine names the image by its reference: --tag changes that reference.
  if (out->is_remote() && !a.tag.empty()) {
    if (out->transport == image::Transport::DockerDaemon && out->repository.empty()) {
      print_error("--tag needs a docker-daemon:NAME output, not an image ID");
      return kExitUsage;
    }
    out->tag = a.tag;
    out->digest.clear();
  }
  if (auto st = image::check_output(*out, remote_options(g), wo.compression); !st) {
    print_error(st.error().message);
    return kExitOutputFailed;
  }
  auto progress = make_progress(g);
  auto opened = open_or_report(g, a.image, progress);
  if (!opened) return kExitBadInput;
  wo.output = *out;
  wo.remote = remote_options(g);
  wo.tag = a.tag;
  wo.created_by = "slimtrace squash";
  wo.work_dir = opened->work.path();
  auto written =
      image::write_image(opened->image, opened->tree, image::select_all(opened->tree), wo, progress);
  end_progress();
  if (!written) {
    print_error(written.error().message);
    return kExitBadInput;
  }
  spdlog::info("wrote {} files ({} bytes) to {}: layer {} bytes compressed, {} uncompressed", written->files,
               written->file_bytes, out->to_string(), written->compressed_size, written->uncompressed_size);
  // What users then name the image by: docker shows the config digest as the image ID.
  bool engine = out->transport == image::Transport::DockerDaemon;
  std::printf("%s\n", (engine ? written->config_digest : written->manifest_digest).c_str());
  return kExitOk;
}

}  // namespace

void add_squash(CLI::App& app, const GlobalOptions& g, Runner& runner) {
  auto a = std::make_shared<SquashArgs>();
  auto* sub = app.add_subcommand("squash", "Write the flattened image as a single-layer image FROM scratch");
  sub->add_option(
         "IMAGE", a->image,
         "Image reference (oci:DIR[:TAG], oci-archive:FILE, docker-archive:FILE, docker-daemon:NAME[:TAG], "
         "docker://REGISTRY/NAME[:TAG|@DIGEST], path)")
      ->required();
  sub->add_option("-o,--output", a->output,
                  "Output reference (oci:DIR[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE[:NAME:TAG], "
                  "docker-daemon:NAME[:TAG], docker://REGISTRY/NAME[:TAG])")
      ->required();
  sub->add_option("--tag", a->tag, "Tag for the output (default: the one in the output reference)");
  sub->add_option("--compression", a->compression, "Layer compression: gzip, zstd or none")
      ->check(CLI::IsMember({"gzip", "zstd", "none"}))
      ->capture_default_str();
  sub->callback([&runner, &g, a] { runner = [&g, a] { return run_squash(g, *a); }; });
}

}  // namespace slimtrace::cli
