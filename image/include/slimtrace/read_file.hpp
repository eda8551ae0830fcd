// Reading a whole small file without exceptions, also from /proc, where files report size 0 and a
// process may vanish mid-read (ESRCH): the caller gets nullopt, never a thrown stream error.
#pragma once

#include <cstddef>
#include <filesystem>
#include <optional>
#include <string>

namespace slimtrace {

std::optional<std::string> read_whole_file(const std::filesystem::path& path, size_t limit = 16u << 20);

// At most the first `n` bytes (fewer when the file is shorter).
std::optional<std::string> read_file_prefix(const std::filesystem::path& path, size_t n);

}  // namespace slimtrace
