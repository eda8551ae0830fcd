// index.json of an OCI layout whose blobs are valid: the index parser and platform/tag selection.
#include "fuzz_common.hpp"

using namespace slimtrace;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const fuzz::fs::path root = [] {
    auto r = fuzz::scratch() / "layout";
    fuzz::make_base_layout(r);
    return r;
  }();
  fuzz::write_file(root / "index.json", fuzz::as_string(data, size));
  image::ImageRef ref;
  ref.transport = image::Transport::OciLayout;
  ref.path = root;
  fuzz::open_and_flatten(ref, fuzz::scratch() / "work");
  ref.tag = "latest";
  fuzz::open_and_flatten(ref, fuzz::scratch() / "work");
  return 0;
}
