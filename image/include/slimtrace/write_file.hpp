// Writing a small output file (a report, a profile) so that readers never see it half-written.
#pragma once

#include <filesystem>
#include <string>

#include "slimtrace/result.hpp"

namespace slimtrace {

// Through a temp file in the target's directory, renamed into place; the temp file is removed on
// error and on interruption. The mode is the usual 0666 & ~umask, not mkstemp's 0600.
Status write_file_atomically(const std::filesystem::path& target, const std::string& data);

}  // namespace slimtrace
