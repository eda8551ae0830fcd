// manifest.json of a docker-archive (`docker save` output) holding the fixture's config and layer
// under both the classic names (<hex>.json, layer.tar) and the newer blobs/sha256/<hex> ones.
#include <algorithm>
#include <cstdio>
#include <cstring>

#include "fuzz_common.hpp"

using namespace slimtrace;

namespace {

// Appends one ustar entry for a regular file; enough for the archive reader under test.
void tar_add(std::string& out, const std::string& name, const std::string& data) {
  char h[512] = {};
  std::memcpy(h, name.data(), std::min<size_t>(name.size(), 100));
  std::snprintf(h + 100, 8, "%07o", 0644);
  std::snprintf(h + 108, 8, "%07o", 0);
  std::snprintf(h + 116, 8, "%07o", 0);
  std::snprintf(h + 124, 12, "%011lo", static_cast<unsigned long>(data.size()));
  std::snprintf(h + 136, 12, "%011o", 0);
  h[156] = '0';
  std::memcpy(h + 257, "ustar", 6);
  std::memcpy(h + 263, "00", 2);
  std::memset(h + 148, ' ', 8);
  unsigned sum = 0;
  for (unsigned char c : h) sum += c;
  std::snprintf(h + 148, 8, "%06o", sum);
  out.append(h, sizeof h);
  out += data;
  out.append((512 - data.size() % 512) % 512, '\0');
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string members = [] {
    std::string config = fuzz::read_fixture("config.json");
    std::string layer = fuzz::read_fixture("layer.tar");
    std::string cfg_hex = image::sha256_digest(config).substr(7);
    std::string out;
    tar_add(out, cfg_hex + ".json", config);
    tar_add(out, "layer.tar", layer);
    tar_add(out, "blobs/sha256/" + cfg_hex, config);
    tar_add(out, "blobs/sha256/" + image::sha256_digest(layer).substr(7), layer);
    return out;
  }();
  std::string archive = members;
  tar_add(archive, "manifest.json", fuzz::as_string(data, size));
  archive.append(1024, '\0');
  auto file = fuzz::scratch() / "image.tar";
  fuzz::write_file(file, archive);
  image::ImageRef ref;
  ref.transport = image::Transport::DockerArchive;
  ref.path = file;
  fuzz::open_and_flatten(ref, fuzz::scratch() / "work");
  ref.tag = "seed:latest";
  fuzz::open_and_flatten(ref, fuzz::scratch() / "work");
  ref.tag.clear();
  ref.index = 1;
  fuzz::open_and_flatten(ref, fuzz::scratch() / "work");
  return 0;
}
