// Writing the minified image a Selection describes: the kept entries, the pruned package databases
// in place of the image's, and the --include-path metadata.
#pragma once

#include "slimtrace/image/file_tree.hpp"
#include "slimtrace/image/source.hpp"
#include "slimtrace/image/writer.hpp"
#include "slimtrace/packer/selection.hpp"
#include "slimtrace/result.hpp"

namespace slimtrace::packer {

// Writes the kept entries of `tree` (aliases are not entries and are skipped) as a single-layer
// image with the source's config. selection.replaced_files and selection.overrides are added to
// options.replaced_contents and options.overrides, where the caller has not set the same path;
// replaced files and overrides whose path the selection no longer keeps (an --exclude-pattern won)
// are left out, and an override without mode, uid or gid is ignored.
Result<image::WrittenImage> pack(const image::SourceImage& source, const image::FileTree& tree,
                                 const Selection& selection, image::WriteOptions options,
                                 const image::ProgressFn& progress = {});

}  // namespace slimtrace::packer
