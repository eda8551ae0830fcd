#include "archive_util.hpp"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <system_error>
#include <vector>

#include "path_util.hpp"
#include "slimtrace/fd.hpp"
#include "slimtrace/image/layer_reader.hpp"

namespace slimtrace::image::detail {
namespace fs = std::filesystem;

namespace {
struct ArchiveReadDeleter {
  void operator()(archive* a) const { archive_read_free(a); }
};
using ArchiveReadPtr = std::unique_ptr<archive, ArchiveReadDeleter>;

std::string archive_err(archive* a) {
  const char* s = archive_error_string(a);
  return s ? s : "unknown archive error";
}

// The loop shared by the file and stream forms; `name` is what errors call the archive.
Status extract_entries(archive* ar, const std::string& name, const fs::path& dest) {
  std::vector<char> buf(1 << 20);
  archive_entry* e = nullptr;
  for (;;) {
    int r = archive_read_next_header(ar, &e);
    if (r == ARCHIVE_EOF) break;
    if (r != ARCHIVE_OK && r != ARCHIVE_WARN) return Error{"read archive '" + name + "': " + archive_err(ar)};
    const char* raw = archive_entry_pathname(e);
    auto norm = normalize_entry_path(raw ? raw : "");
    if (!norm) return Error{"archive '" + name + "': " + norm.error().message};
    if (*norm == "/") continue;
    fs::path out = dest / norm->substr(1);
    std::error_code ec;
    fs::create_directories(out.parent_path(), ec);
    if (ec) return Error{"create '" + out.parent_path().string() + "': " + ec.message()};
    switch (archive_entry_filetype(e)) {
      case AE_IFDIR:
        fs::create_directories(out, ec);
        if (ec) return Error{"create '" + out.string() + "': " + ec.message()};
        break;
      case AE_IFLNK: {
        // Kept as a link; resolve_within() follows it without leaving dest.
        const char* target = archive_entry_symlink(e);
        if (::symlink(target ? target : "", out.c_str()) != 0 && errno != EEXIST)
          return Error::from_errno("symlink '" + out.string() + "'");
        break;
      }
      case AE_IFREG: {
        UniqueFd fd(::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644));
        if (!fd.valid()) return Error::from_errno("create '" + out.string() + "'");
        for (;;) {
          la_ssize_t n = archive_read_data(ar, buf.data(), buf.size());
          if (n < 0) return Error{"read archive member '" + std::string(raw) + "': " + archive_err(ar)};
          if (n == 0) break;
          const char* p = buf.data();
          auto left = static_cast<size_t>(n);
          while (left) {
            ssize_t w = ::write(fd.get(), p, left);
            if (w < 0 && errno == EINTR) continue;
            if (w < 0) return Error::from_errno("write '" + out.string() + "'");
            p += w;
            left -= static_cast<size_t>(w);
          }
        }
        break;
      }
      default:
        break;  // devices, fifos and hardlinks have no place in an image archive's outer tar
    }
  }
  return {};
}
}  // namespace

Status extract_archive(const fs::path& file, const fs::path& dest) {
  ArchiveReadPtr a(archive_read_new());
  archive_read_support_format_tar(a.get());
  archive_read_support_filter_all(a.get());
  if (archive_read_open_filename(a.get(), file.c_str(), 1 << 20) != ARCHIVE_OK)
    return Error{"open archive '" + file.string() + "': " + archive_err(a.get())};
  return extract_entries(a.get(), file.string(), dest);
}

Status extract_archive_fd(int fd, const std::string& name, const fs::path& dest) {
  ArchiveReadPtr a(archive_read_new());
  archive_read_support_format_tar(a.get());
  archive_read_support_filter_all(a.get());
  if (archive_read_open_fd(a.get(), fd, 1 << 20) != ARCHIVE_OK)
    return Error{"open archive '" + name + "': " + archive_err(a.get())};
  return extract_entries(a.get(), name, dest);
}

Result<fs::path> resolve_within(const fs::path& root, const std::string& rel) {
  SLIMTRACE_ASSIGN_OR_RETURN(std::string cur, normalize_entry_path(rel));
  for (int hops = 0; hops < 40; ++hops) {
    // Walk components; on the first symlink, splice its target in and start over.
    std::string built;
    size_t pos = 1;
    bool restarted = false;
    while (pos <= cur.size()) {
      size_t next = cur.find('/', pos);
      if (next == std::string::npos) next = cur.size();
      std::string comp = cur.substr(pos, next - pos);
      pos = next + 1;
      if (comp.empty()) continue;
      std::string candidate = built + "/" + comp;
      fs::path host = root / candidate.substr(1);
      struct stat st {};
      if (::lstat(host.c_str(), &st) == 0 && S_ISLNK(st.st_mode)) {
        std::error_code ec;
        auto target = fs::read_symlink(host, ec).string();
        if (ec) return Error{"readlink '" + host.string() + "': " + ec.message()};
        std::string rest = next < cur.size() ? cur.substr(next) : "";
        std::string joined = (!target.empty() && target[0] == '/') ? target : built + "/" + target;
        // ".." can climb back to the archive's root but never above it.
        cur = clean_path(joined + rest);
        restarted = true;
        break;
      }
      built = candidate;
    }
    if (!restarted) return root / (cur.size() > 1 ? cur.substr(1) : "");
  }
  return Error{"archive member '" + rel + "': too many levels of symbolic links"};
}

}  // namespace slimtrace::image::detail
