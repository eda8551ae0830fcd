// Writing a new single-layer image (FROM scratch) from selected entries of a FileTree.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <string>

#include "slimtrace/image/file_tree.hpp"
#include "slimtrace/image/reference.hpp"
#include "slimtrace/image/source.hpp"
#include "slimtrace/result.hpp"

namespace slimtrace::image {

// Metadata written instead of the tree's for one path; unset fields keep the tree's value.
struct MetadataOverride {
  std::optional<uint32_t> mode;  // permission bits incl. setuid/setgid/sticky (at most 07777)
  std::optional<uint32_t> uid, gid;
};

struct WriteOptions {
  ImageRef output;
  Compression compression = Compression::Gzip;
  std::string created_by = "slimtrace";  // history entry
  // Tag: oci ref.name, or docker-archive RepoTags entry ("name:tag"). Defaults to output.tag.
  std::string tag;
  std::filesystem::path work_dir;  // scratch space for spooling file contents
  // Path -> bytes written instead of the tree's content (e.g. a pruned dpkg status). Each path must
  // be selected and be a regular file or a hardlink; a hardlink member is written as a file of its
  // own, so the rest of its group keeps the original bytes.
  std::map<std::string, std::string> replaced_contents;
  // Path -> metadata to write instead of the tree's. Each path must be selected. Members of a
  // hardlink group share one inode, so an override on one member applies to the whole group
  // (except members whose content is replaced: they are files of their own).
  std::map<std::string, MetadataOverride> overrides;
  // How docker: and docker-daemon: outputs are reached.
  RemoteOptions remote = {};
};

struct WrittenImage {
  std::string manifest_digest;
  std::string config_digest;
  std::string layer_digest;
  std::string diff_id;
  int64_t compressed_size = 0;
  int64_t uncompressed_size = 0;
  int64_t files = 0;
  int64_t file_bytes = 0;
};

// Writes the entries of `tree` whose paths are in `selection` (every path must exist in the tree;
// parents are not added implicitly), with options.replaced_contents and options.overrides applied
// (a path they name that is not selected, or a replaced path that is not a file, is an error naming
// it). Output is deterministic: same input and selection, same bytes.
// Blobs, then config, then manifest, then index, each via a temp file and rename; archive outputs
// appear under their final name only when complete.
Result<WrittenImage> write_image(const SourceImage& source, const FileTree& tree,
                                 const std::set<std::string>& selection, const WriteOptions& options,
                                 const ProgressFn& progress = {});

// Sends the image of the OCI layout `layout` (exactly one manifest) to a docker: or docker-daemon:
// reference: what write_image does for those outputs once the layout is complete. Lets a caller
// that already holds a verified layout hand over exactly those bytes.
Status publish_layout(const std::filesystem::path& layout, const ImageRef& output,
                      const RemoteOptions& remote, const ProgressFn& progress = {});

// Checks before long work that `output` can be written as asked: a docker-daemon: engine answers
// and the compression is one `docker load` reads; a docker:// registry accepts a push with these
// credentials. Local outputs: nothing to check here.
Status check_output(const ImageRef& output, const RemoteOptions& remote, Compression compression);

// Every path of the tree: the selection that writes the flattened image back.
std::set<std::string> select_all(const FileTree& tree);

}  // namespace slimtrace::image
