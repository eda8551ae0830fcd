// Materialising a FileTree as a directory. The tree comes from untrusted layers, so every path is
// created relative to a root fd, parents are opened with openat2(RESOLVE_IN_ROOT|RESOLVE_NO_SYMLINKS)
// and final components with O_EXCL/O_NOFOLLOW-style calls: neither "..", nor a symlink a layer made,
// nor a hardlink target can make a write land outside the temp directory.
#include "slimtrace/image/rootfs.hpp"

#include <fcntl.h>
#include <linux/openat2.h>
#include <spdlog/spdlog.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <string>
#include <string_view>
#include <system_error>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "slimtrace/fd.hpp"
#include "slimtrace/image/layer_reader.hpp"
#include "slimtrace/workdir.hpp"

namespace slimtrace::image {
namespace {

namespace fs = std::filesystem;

constexpr uint64_t kResolve = RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;

int sys_openat2(int dirfd, const char* path, uint64_t flags, uint64_t resolve) {
  struct open_how how {};
  how.flags = flags | O_CLOEXEC;
  how.mode = 0;
  how.resolve = resolve;
  long r;
  do {
    r = ::syscall(SYS_openat2, dirfd, path, &how, sizeof how);
  } while (r < 0 && (errno == EINTR || errno == EAGAIN));
  return static_cast<int>(r);
}

std::string short_digest(const std::string& digest) {
  // "sha256:" plus 12 hex digits is enough to tell layers apart in a message.
  constexpr size_t kKeep = 7 + 12;
  return digest.size() > kKeep ? digest.substr(0, kKeep) : digest;
}

std::string layer_label(const SourceImage& image, int layer) {
  std::string s = "layer " + std::to_string(layer);
  if (layer >= 0 && static_cast<size_t>(layer) < image.layers.size())
    s += " (" + short_digest(image.layers[static_cast<size_t>(layer)].digest) + ")";
  return s;
}

Error entry_error(const SourceImage& image, const FileEntry& e, const std::string& what, int errnum = 0) {
  return Error{layer_label(image, e.layer) + " entry '" + e.path + "': " + what, errnum};
}

Error entry_errno(const SourceImage& image, const FileEntry& e, const std::string& what, int errnum = errno) {
  return entry_error(image, e, what + ": " + std::strerror(errnum), errnum);
}

// A tree path must be "/" or "/c1/c2..." with no empty, "." or ".." component and no NUL. flatten()
// guarantees this; checking again keeps a hand-made or corrupted tree from resolving "..": with
// RESOLVE_IN_ROOT it would be clamped at the root instead of rejected, silently writing elsewhere.
bool valid_tree_path(std::string_view p) {
  if (p == "/") return true;
  if (p.empty() || p.front() != '/' || p.back() == '/') return false;
  if (p.find('\0') != std::string_view::npos) return false;
  size_t pos = 1;
  while (pos <= p.size()) {
    size_t end = p.find('/', pos);
    if (end == std::string_view::npos) end = p.size();
    std::string_view comp = p.substr(pos, end - pos);
    if (comp.empty() || comp == "." || comp == "..") return false;
    pos = end + 1;
  }
  return true;
}

std::string parent_of(const std::string& p) {
  auto slash = p.rfind('/');
  return slash == 0 ? std::string("/") : p.substr(0, slash);
}
std::string name_of(const std::string& p) { return p.substr(p.rfind('/') + 1); }
// Relative form for openat2 against the root fd; "." for the root itself.
std::string rel_of(const std::string& p) { return p == "/" ? std::string(".") : p.substr(1); }

size_t depth_of(const std::string& p) {
  return p == "/" ? 0 : static_cast<size_t>(std::count(p.begin(), p.end(), '/'));
}

Status write_all(int fd, const char* data, size_t len) {
  while (len > 0) {
    ssize_t n = ::write(fd, data, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Error::from_errno("write");
    }
    data += n;
    len -= static_cast<size_t>(n);
  }
  return {};
}

std::string proc_fd_path(int fd) { return "/proc/self/fd/" + std::to_string(fd); }

// Removes a partly built tree, also when the caller is not root and directories lost their
// write or search bits.
void remove_tree(const fs::path& p) {
  std::error_code ec;
  fs::remove_all(p, ec);
  if (!ec) return;
  for (auto it = fs::recursive_directory_iterator(p, fs::directory_options::skip_permission_denied, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (it->is_directory(ec) && !it->is_symlink(ec)) ::chmod(it->path().c_str(), 0700);
  }
  ::chmod(p.c_str(), 0700);
  fs::remove_all(p, ec);
  if (ec) spdlog::warn("could not remove '{}': {}", p.string(), ec.message());
}

class Materializer {
 public:
  Materializer(const SourceImage& image, const FileTree& tree, const MaterializeOptions& options,
               const ProgressFn& progress)
      : image_(image), tree_(tree), options_(options), progress_(progress) {
    can_chown_ = options.preserve_owner;
  }

  Status run(int rootfd) {
    rootfd_ = rootfd;
    SLIMTRACE_TRY(check_tree());
    SLIMTRACE_TRY(create_skeleton());
    SLIMTRACE_TRY(write_contents());
    SLIMTRACE_TRY(create_hardlinks());
    SLIMTRACE_TRY(finish_directories());
    return {};
  }

 private:
  // Every entry's path, type and parent checked before anything is created, so a hostile tree
  // fails before the first write where that is possible.
  Status check_tree() {
    by_layer_.assign(image_.layers.size(), {});
    for (const auto& [path, e] : tree_.entries()) {
      if (!valid_tree_path(path) || path != e.path)
        return entry_error(image_, e, "invalid path (escapes root or not normalised)");
      if (path == "/") {
        if (e.type != EntryType::Directory) return entry_error(image_, e, "root is not a directory");
        continue;
      }
      std::string parent = parent_of(path);
      if (parent != "/") {
        const FileEntry* pe = tree_.find(parent);
        if (!pe) return entry_error(image_, e, "parent directory '" + parent + "' is not in the tree");
        if (pe->type != EntryType::Directory)
          return entry_error(
              image_, e,
              "parent '" + parent + "' is a " + std::string(entry_type_name(pe->type)) + ", not a directory");
      }
      if (e.type == EntryType::Hardlink) {
        if (!valid_tree_path(e.link_target) || e.link_target == "/")
          return entry_error(image_, e, "hardlink target '" + e.link_target + "' escapes root");
        const FileEntry* t = tree_.find(e.link_target);
        if (!t) return entry_error(image_, e, "hardlink target '" + e.link_target + "' does not exist");
        if (t->type == EntryType::Directory)
          return entry_error(image_, e, "hardlink target '" + e.link_target + "' is a directory");
      }
      if (e.type == EntryType::Regular) {
        if (e.layer < 0 || static_cast<size_t>(e.layer) >= image_.layers.size())
          return entry_error(image_, e, "names a layer the image does not have");
        if (e.size < 0) return entry_error(image_, e, "negative size");
        if (!by_layer_[static_cast<size_t>(e.layer)].emplace(e.layer_entry, &e).second)
          return entry_error(image_, e, "shares its content with another entry that is not a hardlink");
      }
    }
    return {};
  }

  // The directory holding `path`, opened without following any symlink and never above the root.
  Result<int> parent_fd(const FileEntry& e) {
    std::string parent = parent_of(e.path);
    if (parent == "/") return rootfd_;
    if (parent == cached_parent_ && cached_fd_.valid()) return cached_fd_.get();
    int fd = sys_openat2(rootfd_, rel_of(parent).c_str(), O_PATH | O_DIRECTORY, kResolve);
    if (fd < 0) {
      int err = errno;
      if (err == ELOOP) return entry_error(image_, e, "parent '" + parent + "' is a symlink", err);
      if (err == ENOTDIR) return entry_error(image_, e, "parent '" + parent + "' is not a directory", err);
      if (err == EXDEV) return entry_error(image_, e, "parent '" + parent + "' escapes root", err);
      return entry_errno(image_, e, "open parent '" + parent + "'", err);
    }
    cached_fd_.reset(fd);
    cached_parent_ = parent;
    return fd;
  }

  Status create_skeleton() {
    for (const auto& [path, e] : tree_.entries()) {
      if (path == "/") continue;
      switch (e.type) {
        case EntryType::Directory: {
          SLIMTRACE_ASSIGN_OR_RETURN(int pfd, parent_fd(e));
          // Owner-only until the end: children still have to be written into it.
          if (::mkdirat(pfd, name_of(path).c_str(), 0700) != 0) return entry_errno(image_, e, "mkdir");
          break;
        }
        case EntryType::Symlink: {
          SLIMTRACE_ASSIGN_OR_RETURN(int pfd, parent_fd(e));
          // The target is stored as is, absolute or not: a symlink is only dangerous when something
          // is written through it, and nothing here ever is.
          if (::symlinkat(e.link_target.c_str(), pfd, name_of(path).c_str()) != 0)
            return entry_errno(image_, e, "symlink");
          SLIMTRACE_TRY(apply_meta_at(pfd, e));
          break;
        }
        case EntryType::Fifo:
        case EntryType::CharDevice:
        case EntryType::BlockDevice: {
          SLIMTRACE_ASSIGN_OR_RETURN(int pfd, parent_fd(e));
          mode_t kind = e.type == EntryType::Fifo         ? S_IFIFO
                        : e.type == EntryType::CharDevice ? S_IFCHR
                                                          : S_IFBLK;
          dev_t dev = e.type == EntryType::Fifo ? 0 : makedev(e.dev_major, e.dev_minor);
          if (::mknodat(pfd, name_of(path).c_str(), kind | 0600, dev) != 0) {
            int err = errno;
            if (err == EPERM && e.type != EntryType::Fifo && options_.skip_devices_on_eperm) {
              spdlog::warn("{} entry '{}': device node skipped (no CAP_MKNOD)", layer_label(image_, e.layer),
                           path);
              skipped_.insert(path);
              break;
            }
            return entry_errno(image_, e, "mknod", err);
          }
          SLIMTRACE_TRY(apply_meta_at(pfd, e));
          break;
        }
        case EntryType::Regular:
        case EntryType::Hardlink:
          break;  // after the skeleton: content streams layer by layer, hardlinks need their targets
      }
    }
    return {};
  }

  // One pass per layer that still provides content, writing each regular file the tree takes from
  // it. Layers that provide nothing were already verified by flatten() and are not read again.
  Status write_contents() {
    int64_t total = tree_.total_bytes();
    int64_t done = 0;
    std::vector<char> buf(size_t{256} * 1024);
    for (size_t li = 0; li < by_layer_.size(); ++li) {
      auto& wanted = by_layer_[li];
      if (wanted.empty()) continue;
      SLIMTRACE_ASSIGN_OR_RETURN(auto reader, LayerReader::open(image_.layers[li], static_cast<int>(li)));
      size_t found = 0;
      while (true) {
        SLIMTRACE_ASSIGN_OR_RETURN(auto next, reader.next());
        if (!next) break;
        auto it = wanted.find(next->index);
        if (it == wanted.end()) continue;
        const FileEntry& e = *it->second;
        // The blob was read once by flatten(); a different kind of entry now means it changed
        // underneath. (The path may differ: a hardlink whose file a later layer removed inherits
        // that file's content.)
        if (next->type != EntryType::Regular || next->size != e.size)
          return entry_error(image_, e,
                             "layer entry #" + std::to_string(next->index) + " is '" + next->raw_path +
                                 "' (" + std::to_string(next->size) + " bytes), not the " +
                                 std::to_string(e.size) +
                                 "-byte file the tree expects (layer changed since it was read?)");
        SLIMTRACE_ASSIGN_OR_RETURN(int pfd, parent_fd(e));
        UniqueFd fd(::openat(pfd, name_of(e.path).c_str(),
                             O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
        if (!fd.valid()) return entry_errno(image_, e, "create");
        int64_t written = 0;
        while (true) {
          auto n = reader.read(buf);
          // The reader's errors already name the layer.
          if (!n) return Error{n.error().message + " (while writing '" + e.path + "')", n.error().errnum};
          if (*n == 0) break;
          if (auto w = write_all(fd.get(), buf.data(), *n); !w)
            return entry_errno(image_, e, "write", w.error().errnum);
          written += static_cast<int64_t>(*n);
          done += static_cast<int64_t>(*n);
          if (progress_) progress_("unpacking", done, total);
        }
        if (written != e.size)
          return entry_error(
              image_, e, "holds " + std::to_string(written) + " bytes, expected " + std::to_string(e.size));
        SLIMTRACE_TRY(apply_meta_fd(fd.get(), e));
        ++found;
      }
      SLIMTRACE_TRY(reader.finish());
      if (found != wanted.size()) {
        for (const auto& [idx, e] : wanted) {
          struct stat st {};
          SLIMTRACE_ASSIGN_OR_RETURN(int pfd, parent_fd(*e));
          if (::fstatat(pfd, name_of(e->path).c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0)
            return entry_error(image_, *e, "content not found in the layer");
        }
      }
    }
    return {};
  }

  Status create_hardlinks() {
    std::vector<const FileEntry*> pending;
    for (const auto& [path, e] : tree_.entries())
      if (e.type == EntryType::Hardlink) pending.push_back(&e);
    // A link may name another link; each round creates those whose target exists by now.
    while (!pending.empty()) {
      std::vector<const FileEntry*> later;
      for (const FileEntry* e : pending) {
        const FileEntry* t = tree_.find(e->link_target);
        if (t && t->type == EntryType::Hardlink && !linked_.count(t->path)) {
          later.push_back(e);
          continue;
        }
        SLIMTRACE_TRY(create_hardlink(*e));
        linked_.insert(e->path);
      }
      if (later.size() == pending.size())
        return entry_error(image_, *later.front(),
                           "hardlink cycle through '" + later.front()->link_target + "'");
      pending = std::move(later);
    }
    return {};
  }

  Status create_hardlink(const FileEntry& e) {
    if (skipped_.count(e.link_target)) {
      spdlog::warn("{} entry '{}': skipped, its target '{}' was skipped", layer_label(image_, e.layer),
                   e.path, e.link_target);
      return {};
    }
    // No symlink anywhere on the way to the target, its last component included: the link is to the
    // entry the tree names, never to something a symlink points at (on the host or elsewhere).
    UniqueFd target(sys_openat2(rootfd_, rel_of(e.link_target).c_str(), O_PATH | O_NOFOLLOW, kResolve));
    if (!target.valid()) {
      int err = errno;
      if (err == ELOOP)
        return entry_error(image_, e, "hardlink target '" + e.link_target + "' goes through a symlink", err);
      if (err == EXDEV)
        return entry_error(image_, e, "hardlink target '" + e.link_target + "' escapes root", err);
      return entry_errno(image_, e, "open hardlink target '" + e.link_target + "'", err);
    }
    struct stat st {};
    if (::fstat(target.get(), &st) != 0) return entry_errno(image_, e, "stat hardlink target");
    if (S_ISDIR(st.st_mode))
      return entry_error(image_, e, "hardlink target '" + e.link_target + "' is a directory");
    SLIMTRACE_ASSIGN_OR_RETURN(int pfd, parent_fd(e));
    std::string name = name_of(e.path);
    if (::linkat(target.get(), "", pfd, name.c_str(), AT_EMPTY_PATH) != 0) {
      int err = errno;
      // AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH; the magic link of the fd does the same without it.
      if (err != ENOENT && err != EPERM) return entry_errno(image_, e, "link", err);
      if (::linkat(AT_FDCWD, proc_fd_path(target.get()).c_str(), pfd, name.c_str(), AT_SYMLINK_FOLLOW) != 0)
        return entry_errno(image_, e, "link");
    }
    return {};
  }

  Status finish_directories() {
    std::vector<const FileEntry*> dirs;
    for (const auto& [path, e] : tree_.entries())
      if (e.type == EntryType::Directory) dirs.push_back(&e);
    // Deepest first: setting a parent's mtime or mode before its children would be undone, or
    // would lock us out (mode 0555 without root).
    std::stable_sort(dirs.begin(), dirs.end(), [](const FileEntry* a, const FileEntry* b) {
      return depth_of(a->path) > depth_of(b->path);
    });
    for (const FileEntry* e : dirs) {
      cached_fd_.reset();  // O_PATH parent fds are not used from here on
      UniqueFd fd(sys_openat2(rootfd_, rel_of(e->path).c_str(), O_RDONLY | O_DIRECTORY, kResolve));
      if (!fd.valid()) return entry_errno(image_, *e, "open directory");
      SLIMTRACE_TRY(apply_meta_fd(fd.get(), *e));
    }
    if (!tree_.find("/")) {
      UniqueFd fd(::openat(rootfd_, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
      if (!fd.valid() || ::fchmod(fd.get(), 0755) != 0) return Error::from_errno("chmod rootfs");
    }
    return {};
  }

  uint32_t mode_for(const FileEntry& e) const {
    // Directories no layer lists come with whatever flatten() filled in; 0 there means "unknown".
    if (!e.explicit_entry && e.mode == 0) return e.type == EntryType::Directory ? 0755 : 0644;
    return e.mode & 07777;
  }

  Status set_xattr(const FileEntry& e, const Xattr& x, int fd, const std::string& path) {
    int r = fd >= 0 ? ::fsetxattr(fd, x.name.c_str(), x.value.data(), x.value.size(), 0)
                    : ::setxattr(path.c_str(), x.name.c_str(), x.value.data(), x.value.size(), 0);
    if (r == 0) return {};
    int err = errno;
    // Without root, privileged namespaces (security.*, trusted.*) cannot be set; a caller that
    // asked not to keep owners asked for a best-effort tree.
    if (!options_.preserve_owner && (err == EPERM || err == ENOTSUP)) {
      spdlog::warn("{} entry '{}': xattr '{}' not kept: {}", layer_label(image_, e.layer), e.path, x.name,
                   std::strerror(err));
      return {};
    }
    return entry_errno(image_, e, "set xattr '" + x.name + "'", err);
  }

  // Regular files and directories, through an fd opened for I/O. Order matters: chown clears
  // setuid/setgid, and both chown and writing clear security.capability.
  Status apply_meta_fd(int fd, const FileEntry& e) {
    if (can_chown_ && ::fchown(fd, e.uid, e.gid) != 0) return entry_errno(image_, e, "chown");
    if (::fchmod(fd, mode_for(e)) != 0) return entry_errno(image_, e, "chmod");
    for (const auto& x : e.xattrs) SLIMTRACE_TRY(set_xattr(e, x, fd, {}));
    struct timespec ts[2] = {{e.mtime, 0}, {e.mtime, 0}};
    if (::futimens(fd, ts) != 0) return entry_errno(image_, e, "set times");
    return {};
  }

  // Symlinks, fifos and devices: never opened for I/O (opening a device or fifo has side effects
  // or blocks), so metadata goes through the parent fd without following the final component.
  Status apply_meta_at(int pfd, const FileEntry& e) {
    std::string name = name_of(e.path);
    if (can_chown_ && ::fchownat(pfd, name.c_str(), e.uid, e.gid, AT_SYMLINK_NOFOLLOW) != 0)
      return entry_errno(image_, e, "chown");
    bool is_link = e.type == EntryType::Symlink;
    if (!is_link || !e.xattrs.empty()) {
      UniqueFd fd(::openat(pfd, name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
      if (!fd.valid()) return entry_errno(image_, e, "open");
      // The fd was opened without following, so its magic link names this very inode.
      if (!is_link && ::chmod(proc_fd_path(fd.get()).c_str(), mode_for(e)) != 0)
        return entry_errno(image_, e, "chmod");
      for (const auto& x : e.xattrs) SLIMTRACE_TRY(set_xattr(e, x, -1, proc_fd_path(fd.get())));
    }
    struct timespec ts[2] = {{e.mtime, 0}, {e.mtime, 0}};
    if (::utimensat(pfd, name.c_str(), ts, AT_SYMLINK_NOFOLLOW) != 0)
      return entry_errno(image_, e, "set times");
    return {};
  }

  const SourceImage& image_;
  const FileTree& tree_;
  const MaterializeOptions& options_;
  const ProgressFn& progress_;
  bool can_chown_ = true;
  int rootfd_ = -1;
  std::string cached_parent_;
  UniqueFd cached_fd_;
  std::vector<std::unordered_map<int64_t, const FileEntry*>> by_layer_;
  std::unordered_set<std::string> skipped_;
  std::unordered_set<std::string> linked_;
};

}  // namespace

Status materialize_rootfs(const SourceImage& image, const FileTree& tree, const fs::path& target,
                          const MaterializeOptions& options, const ProgressFn& progress) {
  if (target.empty()) return Error{"rootfs target: empty path"};
  fs::path clean = target.lexically_normal();
  if (clean.has_filename() == false) clean = clean.parent_path();
  struct stat st {};
  if (::lstat(clean.c_str(), &st) == 0)
    return Error{"rootfs target '" + clean.string() + "': already exists", EEXIST};

  std::string tmpl = clean.string() + ".tmp-" + std::to_string(::getpid()) + "-XXXXXX";
  if (!::mkdtemp(tmpl.data())) return Error::from_errno("create '" + tmpl + "'");
  const fs::path tmp = tmpl;
  register_cleanup_path(tmp);
  ScopeGuard cleanup([&] {
    remove_tree(tmp);
    unregister_cleanup_path(tmp);
  });

  UniqueFd rootfd(::open(tmp.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!rootfd.valid()) return Error::from_errno("open '" + tmp.string() + "'");

  {
    Materializer m(image, tree, options, progress);
    SLIMTRACE_TRY(m.run(rootfd.get()));
  }
  rootfd.reset();

  // RENAME_NOREPLACE: a target that appeared meanwhile is never replaced.
  if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, clean.c_str(), RENAME_NOREPLACE) != 0) {
    int err = errno;
    if (err == EEXIST) return Error{"rootfs target '" + clean.string() + "': already exists", err};
    return Error::from_errno("rename '" + tmp.string() + "' to '" + clean.string() + "'", err);
  }
  cleanup.dismiss();
  unregister_cleanup_path(tmp);
  return {};
}

}  // namespace slimtrace::image
