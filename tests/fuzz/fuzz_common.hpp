// Shared by the libFuzzer harnesses: one scratch directory per process (made once, not per input,
// so an iteration costs a few small writes), the fixture image the corpus generator wrote, and a
// driver that reads and flattens whatever open_image accepts.
#pragma once

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>

#include "slimtrace/image/digest.hpp"
#include "slimtrace/image/file_tree.hpp"
#include "slimtrace/image/layer_reader.hpp"
#include "slimtrace/image/source.hpp"

namespace slimtrace::fuzz {

namespace fs = std::filesystem;

inline const fs::path& scratch() {
  static const fs::path dir = [] {
    spdlog::set_level(spdlog::level::off);
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/slimtrace-fuzz-XXXXXX";
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    std::atexit([] {
      std::error_code ec;
      fs::remove_all(scratch(), ec);
    });
    return fs::path(tmpl);
  }();
  return dir;
}

inline void write_file(const fs::path& p, std::string_view data) {
  fs::create_directories(p.parent_path());
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(data.data(), static_cast<std::streamsize>(data.size()));
  if (!f) throw std::runtime_error("write failed: " + p.string());
}

inline std::string read_fixture(const std::string& name) {
  std::ifstream f(fs::path(SLIMTRACE_FUZZ_FIXTURE_DIR) / name, std::ios::binary);
  if (!f) throw std::runtime_error("fixture missing: " + name + " (run tests/fuzz/gen_corpus.py)");
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

inline std::string as_string(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// Writes `data` as a blob of the OCI layout at `root` under its real digest, so digest checks pass
// and the parsers behind them are reached. Returns the digest.
inline std::string put_blob(const fs::path& root, std::string_view data) {
  std::string digest = image::sha256_digest(data);
  write_file(root / "blobs" / "sha256" / digest.substr(7), data);
  return digest;
}

// An OCI layout holding the fixture's layer and config blobs (and its manifest).
inline void make_base_layout(const fs::path& root) {
  write_file(root / "oci-layout", R"({"imageLayoutVersion":"1.0.0"})");
  put_blob(root, read_fixture("layer.tar"));
  put_blob(root, read_fixture("config.json"));
  put_blob(root, read_fixture("manifest.json"));
  write_file(root / "index.json", read_fixture("index.json"));
}

// Reads every entry and every byte of a layer and checks its digests, as flatten and writers do.
inline void drain_layer(const image::LayerDescriptor& desc) {
  auto reader = image::LayerReader::open(desc, 0);
  if (!reader) return;
  char buf[4096];
  for (;;) {
    auto entry = reader->next();
    if (!entry || !*entry) break;
    for (;;) {
      auto n = reader->read(std::span<char>(buf, sizeof buf));
      if (!n || *n == 0) break;
    }
  }
  (void)reader->finish();
}

// open_image, then flatten when it opened: the path every subcommand takes.
inline void open_and_flatten(const image::ImageRef& ref, const fs::path& work_dir) {
  // Archive transports unpack under the work dir; start each input from an empty one.
  std::error_code ec;
  fs::remove_all(work_dir, ec);
  fs::create_directories(work_dir);
  image::OpenOptions opts;
  opts.work_dir = work_dir;
  auto img = image::open_image(ref, opts);
  if (!img) return;
  auto tree = image::flatten(*img);
  if (tree) {
    (void)tree->total_bytes();
    (void)tree->resolve("/bin/sh");
  }
}

}  // namespace slimtrace::fuzz
