// The flattened view of an image: what a container's root filesystem holds after all layers are
// applied with their whiteouts. Each entry remembers where its content lives so writers can stream
// it from the original blob.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "slimtrace/image/source.hpp"
#include "slimtrace/result.hpp"

namespace slimtrace::image {

enum class EntryType { Regular, Directory, Symlink, Hardlink, CharDevice, BlockDevice, Fifo };
std::string_view entry_type_name(EntryType t);

struct Xattr {
  std::string name;
  std::string value;  // raw bytes
  bool operator==(const Xattr&) const = default;
};

struct FileEntry {
  std::string path;  // "/a/b"; "/" for the root directory
  EntryType type = EntryType::Regular;
  uint32_t mode = 0;  // permission bits incl. setuid/setgid/sticky (no file-type bits)
  uint32_t uid = 0, gid = 0;
  int64_t mtime = 0;
  int64_t size = 0;         // content bytes (regular files only)
  std::string link_target;  // symlink: as stored; hardlink: normalised path of the target
  uint32_t dev_major = 0, dev_minor = 0;
  std::vector<Xattr> xattrs;
  // Where the content lives: layer index in the image, and the entry's ordinal in that layer.
  int layer = 0;
  int64_t layer_entry = 0;
  // False for directories that no layer lists but that are implied by their children.
  bool explicit_entry = true;
};

struct LayerStats {
  int64_t files_added = 0;  // entries (not whiteouts) in the layer
  int64_t bytes_added = 0;  // regular file bytes in the layer
  int64_t whiteouts = 0;
  int64_t bytes_removed = 0;  // bytes of earlier files this layer deleted or overwrote
  int64_t compressed_size = 0;
  int64_t uncompressed_size = 0;
};

// A path whose earlier version was overwritten or deleted by a later layer (dive's "inefficiency").
struct ShadowedFile {
  std::string path;
  int layer = 0;     // layer that held the shadowed version
  int by_layer = 0;  // layer that overwrote or deleted it
  int64_t size = 0;
  bool deleted = false;  // true: whiteout; false: overwritten
};

class FileTree {
 public:
  using Map = std::map<std::string, FileEntry>;

  const FileEntry* find(const std::string& path) const;
  const Map& entries() const { return entries_; }
  size_t size() const { return entries_.size(); }
  int64_t total_bytes() const;  // sum of regular file sizes

  // Directory entries directly under `dir` (a directory path).
  std::vector<const FileEntry*> children(const std::string& dir) const;

  // Resolves `path` inside the tree (never on the host): symlinks in every component, absolute
  // targets relative to the tree's root, at most 40 links. Appends each symlink met to `via`.
  // Returns the resolved path, which may not exist in the tree.
  Result<std::string> resolve(const std::string& path, std::vector<std::string>* via = nullptr) const;

  const std::vector<LayerStats>& layer_stats() const { return layer_stats_; }
  const std::vector<ShadowedFile>& shadowed() const { return shadowed_; }
  // dive's efficiency score: sum of each path's smallest size / sum of all its sizes.
  double efficiency() const { return efficiency_; }

  // Mutation used by flatten() and by tests.
  Map& mutable_entries() { return entries_; }

 private:
  friend class TreeBuilder;
  Map entries_;
  std::vector<LayerStats> layer_stats_;
  std::vector<ShadowedFile> shadowed_;
  double efficiency_ = 1.0;
};

// Called during long work: bytes done and total (total may be 0 when unknown).
using ProgressFn = std::function<void(std::string_view what, int64_t done, int64_t total)>;

// Applies all layers in order. Whiteouts (.wh.NAME, .wh..wh..opq) remove what earlier layers made;
// entries under a path that is not a directory (e.g. under a symlink an earlier layer made),
// duplicate entries within one layer, whiteouts of missing paths and hardlinks to missing or
// non-regular targets are errors naming the entry and the layer.
Result<FileTree> flatten(const SourceImage& image, const ProgressFn& progress = {});

}  // namespace slimtrace::image
