// The config blob of an OCI image: diff_ids, history, platform and container config.
#include <set>

#include "fuzz_common.hpp"

using namespace slimtrace;

namespace {
struct Base {
  fuzz::fs::path root;
  nlohmann::json manifest;
  std::set<std::string> keep;  // blobs of the base layout
};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const Base base = [] {
    Base b;
    b.root = fuzz::scratch() / "layout";
    fuzz::make_base_layout(b.root);
    b.manifest = nlohmann::json::parse(fuzz::read_fixture("manifest.json"));
    for (const char* f : {"manifest.json", "config.json", "layer.tar"})
      b.keep.insert(image::sha256_digest(fuzz::read_fixture(f)));
    return b;
  }();
  std::string config_digest = fuzz::put_blob(base.root, fuzz::as_string(data, size));
  nlohmann::json manifest = base.manifest;
  manifest["config"]["digest"] = config_digest;
  manifest["config"]["size"] = size;
  std::string manifest_digest = fuzz::put_blob(base.root, manifest.dump());
  nlohmann::json index = {{"schemaVersion", 2},
                          {"manifests",
                           {{{"mediaType", image::kOciManifest},
                             {"digest", manifest_digest},
                             {"size", manifest.dump().size()}}}}};
  fuzz::write_file(base.root / "index.json", index.dump());
  image::ImageRef ref;
  ref.path = base.root;
  fuzz::open_and_flatten(ref, fuzz::scratch() / "work");
  std::error_code ec;
  for (const auto& d : {config_digest, manifest_digest})
    if (!base.keep.count(d)) fuzz::fs::remove(base.root / "blobs" / "sha256" / d.substr(7), ec);
  return 0;
}
