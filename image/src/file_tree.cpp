#include "slimtrace/image/file_tree.hpp"

#include <unordered_map>
#include <unordered_set>

#include "path_util.hpp"
#include "slimtrace/image/layer_reader.hpp"

namespace slimtrace::image {

using detail::basename_of;
using detail::join_path;
using detail::parent_of;

std::string_view entry_type_name(EntryType t) {
  switch (t) {
    case EntryType::Regular:
      return "file";
    case EntryType::Directory:
      return "directory";
    case EntryType::Symlink:
      return "symlink";
    case EntryType::Hardlink:
      return "hardlink";
    case EntryType::CharDevice:
      return "char-device";
    case EntryType::BlockDevice:
      return "block-device";
    case EntryType::Fifo:
      return "fifo";
  }
  return "?";
}

const FileEntry* FileTree::find(const std::string& path) const {
  auto it = entries_.find(path);
  return it == entries_.end() ? nullptr : &it->second;
}

int64_t FileTree::total_bytes() const {
  int64_t n = 0;
  for (const auto& [p, e] : entries_)
    if (e.type == EntryType::Regular) n += e.size;
  return n;
}

std::vector<const FileEntry*> FileTree::children(const std::string& dir) const {
  std::vector<const FileEntry*> out;
  std::string prefix = dir == "/" ? "/" : dir + "/";
  for (auto it = entries_.lower_bound(prefix); it != entries_.end(); ++it) {
    if (it->first.compare(0, prefix.size(), prefix) != 0) break;
    if (it->first.size() == prefix.size()) continue;
    if (it->first.find('/', prefix.size()) == std::string::npos) out.push_back(&it->second);
  }
  return out;
}

Result<std::string> FileTree::resolve(const std::string& path, std::vector<std::string>* via) const {
  std::string cur = detail::clean_path(path);
  int links = 0;
  for (;;) {
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
      const FileEntry* e = find(candidate);
      if (e && e->type == EntryType::Symlink) {
        if (++links > 40) return Error{"'" + path + "': too many levels of symbolic links"};
        if (via) via->push_back(candidate);
        std::string rest = next < cur.size() ? cur.substr(next) : "";
        const std::string& t = e->link_target;
        std::string joined = (!t.empty() && t[0] == '/') ? t : (built.empty() ? "/" : built) + "/" + t;
        cur = detail::clean_path(joined + rest);
        restarted = true;
        break;
      }
      built = candidate;
    }
    if (!restarted) return built.empty() ? std::string("/") : built;
  }
}

// Applies layers one by one; owns the bookkeeping that the final tree does not need.
class TreeBuilder {
 public:
  explicit TreeBuilder(FileTree& tree) : tree_(tree) {}

  Result<FileTree> run(const SourceImage& image, const ProgressFn& progress) {
    auto& entries = tree_.entries_;
    FileEntry root;
    root.path = "/";
    root.type = EntryType::Directory;
    root.mode = 0755;
    root.explicit_entry = false;
    entries["/"] = root;
    int64_t total = 0, done_before = 0;
    for (const auto& l : image.layers) total += l.size > 0 ? l.size : 0;
    for (size_t i = 0; i < image.layers.size(); ++i) {
      layer_ = static_cast<int>(i);
      SLIMTRACE_ASSIGN_OR_RETURN(LayerReader reader, LayerReader::open(image.layers[i], layer_));
      where_ = "layer " + std::to_string(i) + " (" +
               (image.layers[i].digest.empty() ? image.layers[i].blob_path.filename().string()
                                               : image.layers[i].digest.substr(0, 19)) +
               ")";
      LayerStats stats;
      seen_.clear();
      for (;;) {
        SLIMTRACE_ASSIGN_OR_RETURN(auto next, reader.next());
        if (!next) break;
        SLIMTRACE_TRY(apply(*next, stats));
        if (progress && (next->index & 255) == 0)
          progress("reading layers", done_before + reader.compressed_bytes(), total);
      }
      SLIMTRACE_TRY(reader.finish());
      stats.compressed_size = reader.compressed_bytes();
      stats.uncompressed_size = reader.uncompressed_bytes();
      done_before += reader.compressed_bytes();
      tree_.layer_stats_.push_back(stats);
    }
    if (progress) progress("reading layers", total, total);
    int64_t min_sum = 0, cum_sum = 0;
    for (const auto& [p, s] : sizes_) {
      min_sum += s.min;
      cum_sum += s.cumulative;
    }
    tree_.efficiency_ = cum_sum == 0 ? 1.0 : static_cast<double>(min_sum) / static_cast<double>(cum_sum);
    return std::move(tree_);
  }

 private:
  struct PathSizes {
    int64_t cumulative = 0;
    int64_t min = -1;
  };

  Error fail(const TarEntry& e, const std::string& msg) const {
    return Error{where_ + " entry '" + e.raw_path + "': " + msg};
  }

  void account(const std::string& path, int64_t size) {
    auto& s = sizes_[path];
    s.cumulative += size;
    if (s.min < 0 || size < s.min) s.min = size;
  }

  // Removes `path` and everything under it, recording what was shadowed. Hardlinks into the
  // removed set that survive outside it take over the content (a link keeps the inode alive).
  int64_t remove_subtree(const std::string& path, bool deleted) {
    auto& entries = tree_.entries_;
    int64_t bytes = 0;
    std::string prefix = path == "/" ? "/" : path + "/";
    std::vector<std::string> doomed;
    doomed.push_back(path);
    for (auto it = entries.lower_bound(prefix);
         it != entries.end() && it->first.compare(0, prefix.size(), prefix) == 0; ++it)
      doomed.push_back(it->first);
    for (const auto& p : doomed) {
      auto it = entries.find(p);
      if (it == entries.end()) continue;
      const FileEntry& e = it->second;
      if (e.type == EntryType::Regular) {
        bytes += e.size;
        tree_.shadowed_.push_back(ShadowedFile{e.path, e.layer, layer_, e.size, deleted});
        promote_links(e, prefix, path);
      } else if (e.type == EntryType::Hardlink) {
        unlink_link(e);
      }
    }
    for (const auto& p : doomed) entries.erase(p);
    return bytes;
  }

  bool inside(const std::string& p, const std::string& prefix, const std::string& path) const {
    return p == path || p.compare(0, prefix.size(), prefix) == 0;
  }

  void unlink_link(const FileEntry& link) {
    auto it = links_.find(link.link_target);
    if (it == links_.end()) return;
    std::erase(it->second, link.path);
  }

  // The regular file `target` is going away; its first surviving hardlink becomes the file.
  void promote_links(const FileEntry& target, const std::string& prefix, const std::string& path) {
    auto it = links_.find(target.path);
    if (it == links_.end()) return;
    std::vector<std::string> group = std::move(it->second);
    links_.erase(it);
    std::string heir;
    for (const auto& lp : group) {
      if (inside(lp, prefix, path)) continue;
      auto le = tree_.entries_.find(lp);
      if (le == tree_.entries_.end()) continue;
      if (heir.empty()) {
        heir = lp;
        FileEntry& h = le->second;
        h.type = EntryType::Regular;
        h.size = target.size;
        h.layer = target.layer;
        h.layer_entry = target.layer_entry;
        h.link_target.clear();
        // The content now lives here; account it under this path.
      } else {
        le->second.link_target = heir;
        links_[heir].push_back(lp);
      }
    }
  }

  Status ensure_parents(const TarEntry& e, const std::string& path) {
    auto& entries = tree_.entries_;
    std::string parent = parent_of(path);
    if (parent == last_parent_ok_) return {};
    // Walk down from the root so an implied directory is made for each missing component.
    std::string built;
    size_t pos = 1;
    while (pos < parent.size()) {
      size_t next = parent.find('/', pos);
      if (next == std::string::npos) next = parent.size();
      built += "/" + parent.substr(pos, next - pos);
      pos = next + 1;
      auto it = entries.find(built);
      if (it == entries.end()) {
        FileEntry d;
        d.path = built;
        d.type = EntryType::Directory;
        d.mode = 0755;
        d.layer = layer_;
        d.layer_entry = e.index;
        d.mtime = e.mtime;
        d.explicit_entry = false;
        entries.emplace(built, std::move(d));
      } else if (it->second.type != EntryType::Directory) {
        return fail(
            e, "parent '" + built + "' is a " + std::string(entry_type_name(it->second.type)) +
                   ", not a directory (an entry under a " +
                   (it->second.type == EntryType::Symlink ? "symlink would be written through it" : "file") +
                   ")");
      }
    }
    last_parent_ok_ = parent;
    return {};
  }

  Status apply(const TarEntry& e, LayerStats& stats) {
    auto& entries = tree_.entries_;
    const std::string& path = e.path;
    std::string base = basename_of(path);
    if (path != "/" && base.rfind(".wh.", 0) == 0) {
      ++stats.whiteouts;
      std::string parent = parent_of(path);
      SLIMTRACE_TRY(ensure_parents(e, path));
      if (base == ".wh..wh..opq") {
        // Opaque: hide what lower layers put in the directory; keep what this layer adds.
        std::string prefix = parent == "/" ? "/" : parent + "/";
        std::vector<std::string> lower;
        for (auto it = entries.lower_bound(prefix);
             it != entries.end() && it->first.compare(0, prefix.size(), prefix) == 0; ++it) {
          if (it->second.layer < layer_ && it->first.find('/', prefix.size()) == std::string::npos)
            lower.push_back(it->first);
        }
        for (const auto& p : lower) stats.bytes_removed += remove_subtree(p, true);
        last_parent_ok_.clear();
        return {};
      }
      if (base.rfind(".wh..wh.", 0) == 0) return {};  // other AUFS metadata (.wh..wh.plnk etc.)
      std::string victim = join_path(parent, base.substr(4));
      auto it = entries.find(victim);
      if (it == entries.end()) return fail(e, "whiteout of '" + victim + "', which no earlier layer has");
      bool was_dir = it->second.type == EntryType::Directory;
      int64_t removed = remove_subtree(victim, true);
      last_parent_ok_.clear();
      stats.bytes_removed += removed;
      // dive counts a deleted directory's contents against the whiteout, a deleted file as 0.
      account(victim, was_dir ? removed : 0);
      return {};
    }
    if (!seen_.insert(path).second) return fail(e, "duplicate entry in the same layer");
    if (path != "/") SLIMTRACE_TRY(ensure_parents(e, path));

    FileEntry f;
    f.path = path;
    f.type = e.type;
    f.mode = e.mode;
    f.uid = e.uid;
    f.gid = e.gid;
    f.mtime = e.mtime;
    f.size = e.type == EntryType::Regular ? e.size : 0;
    f.dev_major = e.dev_major;
    f.dev_minor = e.dev_minor;
    f.xattrs = e.xattrs;
    f.layer = layer_;
    f.layer_entry = e.index;

    if (e.type == EntryType::Hardlink) {
      if (e.link_target == path) return fail(e, "hardlink to itself");
      auto t = entries.find(e.link_target);
      if (t == entries.end()) return fail(e, "hardlink to '" + e.link_target + "', which does not exist");
      if (t->second.type == EntryType::Hardlink) {
        f.link_target = t->second.link_target;  // point every link at the file holding the content
      } else if (t->second.type == EntryType::Regular) {
        f.link_target = e.link_target;
      } else {
        return fail(e, "hardlink to '" + e.link_target + "', which is a " +
                           std::string(entry_type_name(t->second.type)) + ", not a file");
      }
    } else if (e.type == EntryType::Symlink) {
      f.link_target = e.link_target;
    }

    auto it = entries.find(path);
    if (it != entries.end()) {
      if (it->second.type == EntryType::Directory && e.type == EntryType::Directory) {
        it->second = std::move(f);  // metadata of the later layer wins; children stay
        account(path, 0);
        ++stats.files_added;
        return {};
      }
      stats.bytes_removed += remove_subtree(path, false);
    }
    if (f.type == EntryType::Hardlink) links_[f.link_target].push_back(path);
    ++stats.files_added;
    stats.bytes_added += f.size;
    account(path, f.size);
    entries[path] = std::move(f);
    if (e.type != EntryType::Directory) last_parent_ok_.clear();
    return {};
  }

  FileTree& tree_;
  int layer_ = 0;
  std::string where_;
  std::string last_parent_ok_;
  std::unordered_map<std::string, std::vector<std::string>> links_;  // target -> hardlinks to it
  std::unordered_map<std::string, PathSizes> sizes_;
  std::unordered_set<std::string> seen_;
};

Result<FileTree> flatten(const SourceImage& image, const ProgressFn& progress) {
  FileTree tree;
  TreeBuilder b(tree);
  return b.run(image, progress);
}

}  // namespace slimtrace::image
