// The manifest blob (or a nested image index) of an OCI layout, stored under its real digest.
#include "fuzz_common.hpp"

using namespace slimtrace;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const fuzz::fs::path root = [] {
    auto r = fuzz::scratch() / "layout";
    fuzz::make_base_layout(r);
    return r;
  }();
  static const std::string fixture_manifest = image::sha256_digest(fuzz::read_fixture("manifest.json"));
  std::string input = fuzz::as_string(data, size);
  std::string digest = fuzz::put_blob(root, input);
  // The input decides whether it is a manifest or an index; try it under both media types.
  for (const char* mt :
       {"application/vnd.oci.image.manifest.v1+json", "application/vnd.oci.image.index.v1+json"}) {
    nlohmann::json index = {{"schemaVersion", 2},
                            {"manifests", {{{"mediaType", mt}, {"digest", digest}, {"size", size}}}}};
    fuzz::write_file(root / "index.json", index.dump());
    image::ImageRef ref;
    ref.path = root;
    fuzz::open_and_flatten(ref, fuzz::scratch() / "work");
  }
  // Keep the base blobs; drop the input's so the layout does not grow.
  if (digest != fixture_manifest && digest != image::sha256_digest(fuzz::read_fixture("config.json")) &&
      digest != image::sha256_digest(fuzz::read_fixture("layer.tar"))) {
    std::error_code ec;
    fuzz::fs::remove(root / "blobs" / "sha256" / digest.substr(7), ec);
  }
  return 0;
}
