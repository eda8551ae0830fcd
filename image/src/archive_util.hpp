// Internal: unpacking the outer tar of oci-archive/docker-archive transports into a work directory.
#pragma once

#include <filesystem>
#include <string>

#include "slimtrace/result.hpp"

namespace slimtrace::image::detail {

// Extracts regular files, directories and symlinks (left as they are: docker save links duplicate
// layers) into `dest`, refusing names with "..". Nothing is written outside `dest`.
Status extract_archive(const std::filesystem::path& file, const std::filesystem::path& dest);

// The same for a tar read from `fd` (a pipe or socket: read sequentially, never seeked) until its
// end-of-archive marker; `name` is what errors call it. The caller owns and closes `fd`.
Status extract_archive_fd(int fd, const std::string& name, const std::filesystem::path& dest);

// Resolves `rel` under `root`, following symlinks lexically and refusing to leave `root`.
Result<std::filesystem::path> resolve_within(const std::filesystem::path& root, const std::string& rel);

}  // namespace slimtrace::image::detail
