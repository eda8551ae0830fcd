// Streams the entries of one layer blob: decompression (detected from the bytes, not the media
// type), the blob digest and the diff_id are all computed in the same single pass. Memory use is
// a few fixed buffers, whatever the layer's size.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "slimtrace/image/file_tree.hpp"
#include "slimtrace/image/source.hpp"
#include "slimtrace/result.hpp"

namespace slimtrace::image {

// One tar header as found in a layer, with its path normalised to "/a/b" form.
struct TarEntry {
  std::string path;      // normalised absolute path; "/" for the root
  std::string raw_path;  // as stored in the tar, for error messages
  EntryType type = EntryType::Regular;
  uint32_t mode = 0;  // permission bits incl. setuid/setgid/sticky
  uint32_t uid = 0, gid = 0;
  int64_t mtime = 0;
  int64_t size = 0;
  std::string link_target;  // symlink target as stored; hardlink target normalised
  uint32_t dev_major = 0, dev_minor = 0;
  std::vector<Xattr> xattrs;
  int64_t index = 0;  // ordinal of the entry within the layer
};

class LayerReader {
 public:
  ~LayerReader();
  LayerReader(LayerReader&&) noexcept;
  LayerReader& operator=(LayerReader&&) noexcept;

  // `layer_index` is used in error messages ("layer 2 (sha256:...)").
  static Result<LayerReader> open(const LayerDescriptor& layer, int layer_index);

  // The next entry, or nullopt at the end of the layer. Paths are checked: ".." components and
  // empty names are errors naming the entry and the layer.
  Result<std::optional<TarEntry>> next();
  // Reads the current entry's data; returns bytes read, 0 at the end of the entry.
  Result<size_t> read(std::span<char> buf);
  // Drains the blob and checks its digest, size and diff_id. Must be called to trust the layer.
  Status finish();

  Compression compression() const;
  int64_t compressed_bytes() const;
  int64_t uncompressed_bytes() const;

 private:
  struct Impl;
  explicit LayerReader(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Normalises a tar path to "/a/b"; error for "..", NUL or an empty name.
Result<std::string> normalize_entry_path(std::string_view raw);

}  // namespace slimtrace::image
