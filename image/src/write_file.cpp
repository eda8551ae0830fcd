#include "slimtrace/write_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

#include "slimtrace/fd.hpp"
#include "slimtrace/workdir.hpp"

namespace slimtrace {

Status write_file_atomically(const std::filesystem::path& target, const std::string& data) {
  std::filesystem::path dir =
      target.parent_path().empty() ? std::filesystem::path(".") : target.parent_path();
  std::string tmpl = (dir / ("." + target.filename().string() + ".tmp-XXXXXX")).string();
  int raw = ::mkstemp(tmpl.data());
  if (raw < 0) return Error::from_errno("create temp file for '" + target.string() + "'");
  UniqueFd fd(raw);
  std::filesystem::path tmp = tmpl;
  register_cleanup_path(tmp);
  auto fail = [&](const std::string& what) {
    Error e = Error::from_errno(what);
    ::unlink(tmp.c_str());
    unregister_cleanup_path(tmp);
    return e;
  };
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd.get(), data.data() + off, data.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail("write '" + tmp.string() + "'");
    }
    off += static_cast<size_t>(n);
  }
  // Reports are for people and CI, so the usual file mode rather than mkstemp's 0600.
  mode_t mask = ::umask(0);
  ::umask(mask);
  if (::fchmod(fd.get(), 0666 & ~mask) != 0) return fail("chmod '" + tmp.string() + "'");
  if (::fsync(fd.get()) != 0) return fail("fsync '" + tmp.string() + "'");
  if (::rename(tmp.c_str(), target.c_str()) != 0) return fail("rename to '" + target.string() + "'");
  unregister_cleanup_path(tmp);
  return {};
}

}  // namespace slimtrace
