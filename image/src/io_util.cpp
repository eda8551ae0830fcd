#include "io_util.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "slimtrace/fd.hpp"

namespace slimtrace::image::detail {
namespace fs = std::filesystem;

Result<std::string> read_small_file(const fs::path& p, const std::string& what, int64_t limit) {
  UniqueFd fd(::open(p.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    if (errno == ENOENT) return Error{what + " is missing ('" + p.string() + "')", ENOENT};
    return Error::from_errno("open " + what + " '" + p.string() + "'");
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return Error::from_errno("stat '" + p.string() + "'");
  if (!S_ISREG(st.st_mode)) return Error{what + " '" + p.string() + "' is not a regular file"};
  if (st.st_size > limit)
    return Error{what + " '" + p.string() + "' is implausibly large (" + std::to_string(st.st_size) +
                 " bytes)"};
  std::string data(static_cast<size_t>(st.st_size), '\0');
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::read(fd.get(), data.data() + off, data.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Error::from_errno("read '" + p.string() + "'");
    if (n == 0) break;
    off += static_cast<size_t>(n);
  }
  data.resize(off);
  return data;
}

}  // namespace slimtrace::image::detail
