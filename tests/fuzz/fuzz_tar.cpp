// A layer blob (tar, gzip or zstd, detected from the bytes): the streaming reader entry by entry,
// then flatten() of a one-layer image, which applies whiteouts, hardlinks and path checks.
#include "fuzz_common.hpp"

using namespace slimtrace;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const fuzz::fs::path blob = fuzz::scratch() / "layer.blob";
  fuzz::write_file(blob, fuzz::as_string(data, size));
  image::LayerDescriptor desc;
  desc.media_type = image::kOciLayerTar;
  desc.blob_path = blob;  // no digest, size or diff_id: nothing to check them against
  fuzz::drain_layer(desc);

  image::SourceImage img;
  img.layers.push_back(desc);
  auto tree = image::flatten(img);
  if (tree) {
    for (const auto& [path, e] : tree->entries()) (void)tree->resolve(path);
  }
  return 0;
}
