// Internal: reading the small metadata files of an image (index.json, manifests, configs).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include "slimtrace/result.hpp"

namespace slimtrace::image::detail {

// Manifests and configs are small: refuse absurd ones rather than read them into memory.
inline constexpr int64_t kMaxJsonBlob = 16 << 20;

// The whole content of regular file `p`, at most `limit` bytes; `what` names it in errors
// ("index.json is missing ('/x/index.json')").
Result<std::string> read_small_file(const std::filesystem::path& p, const std::string& what,
                                    int64_t limit = kMaxJsonBlob);

}  // namespace slimtrace::image::detail
