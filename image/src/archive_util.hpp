// Internal: unpacking the outer tar of oci-archive/docker-archive transports into a work directory.
#pragma once

#include <filesystem>

#include "slimtrace/result.hpp"

namespace slimtrace::image::detail {

// Extracts regular files, directories and symlinks (left as they are: docker save links duplicate
// layers) into `dest`, refusing names with "..". Nothing is written outside `dest`.
Status extract_archive(const std::filesystem::path& file, const std::filesystem::path& dest);

// Resolves `rel` under `root`, following symlinks lexically and refusing to leave `root`.
Result<std::filesystem::path> resolve_within(const std::filesystem::path& root, const std::string& rel);

}  // namespace slimtrace::image::detail
