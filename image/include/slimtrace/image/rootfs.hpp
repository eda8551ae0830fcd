// Writing a FileTree out as a directory a runtime can use as a container's rootfs.
#pragma once

#include <filesystem>

#include "slimtrace/image/file_tree.hpp"
#include "slimtrace/result.hpp"

namespace slimtrace::image {

struct MaterializeOptions {
  // Keep ownership (needs root); off: files belong to the caller.
  bool preserve_owner = true;
  // Device nodes need CAP_MKNOD; where it is missing they are skipped with a warning.
  bool skip_devices_on_eperm = true;
};

// Creates `target` (which must not exist) holding exactly the tree. Every path is opened relative
// to the target's fd with openat2(RESOLVE_IN_ROOT), so nothing a layer holds can make it write
// outside. Work happens in a sibling temp directory renamed into place at the end; on error it is
// removed and `target` does not appear.
Status materialize_rootfs(const SourceImage& image, const FileTree& tree, const std::filesystem::path& target,
                          const MaterializeOptions& options = {}, const ProgressFn& progress = {});

}  // namespace slimtrace::image
