#include "slimtrace/packer/selection.hpp"

#include <algorithm>
#include <array>
#include <cerrno>
#include <functional>
#include <set>
#include <sstream>

#include "dpkg.hpp"
#include "elf.hpp"
#include "slimtrace/image/layer_reader.hpp"

namespace slimtrace::packer {

using image::EntryType;
using image::FileEntry;
using image::FileTree;

std::string_view reason_name(KeepReason r) {
  switch (r) {
    case KeepReason::Traced:
      return "traced";
    case KeepReason::Symlink:
      return "symlink";
    case KeepReason::Parent:
      return "parent";
    case KeepReason::Hardlink:
      return "hardlink";
    case KeepReason::ElfDep:
      return "elf-dep";
    case KeepReason::Interpreter:
      return "interpreter";
    case KeepReason::Nss:
      return "nss";
    case KeepReason::Include:
      return "include";
    case KeepReason::Metadata:
      return "metadata";
  }
  return "unknown";
}

namespace {

bool glob_at(std::string_view p, size_t pi, std::string_view s, size_t si) {
  while (pi < p.size()) {
    if (p[pi] == '*') {
      bool dbl = pi + 1 < p.size() && p[pi + 1] == '*';
      if (dbl) {
        size_t next = pi + 2;
        // "/**/" also matches a single "/".
        if (next < p.size() && p[next] == '/' && glob_at(p, next + 1, s, si)) return true;
        for (size_t k = si; k <= s.size(); ++k)
          if (glob_at(p, next, s, k)) return true;
        return false;
      }
      for (size_t k = si; k <= s.size(); ++k) {
        if (glob_at(p, pi + 1, s, k)) return true;
        if (k < s.size() && s[k] == '/') break;
      }
      return false;
    }
    if (si >= s.size()) return false;
    if (p[pi] == '?') {
      if (s[si] == '/') return false;
    } else if (p[pi] == '[') {
      size_t close = p.find(']', pi + 1);
      if (close == std::string_view::npos) {
        if (s[si] != '[') return false;
      } else {
        std::string_view set = p.substr(pi + 1, close - pi - 1);
        bool neg = !set.empty() && (set[0] == '!' || set[0] == '^');
        if (neg) set.remove_prefix(1);
        bool hit = false;
        for (size_t k = 0; k < set.size(); ++k) {
          if (k + 2 < set.size() && set[k + 1] == '-') {
            if (s[si] >= set[k] && s[si] <= set[k + 2]) hit = true;
            k += 2;
          } else if (set[k] == s[si]) {
            hit = true;
          }
        }
        if (hit == neg || s[si] == '/') return false;
        pi = close + 1;
        ++si;
        continue;
      }
    } else if (p[pi] != s[si]) {
      return false;
    }
    ++pi;
    ++si;
  }
  return si == s.size();
}

// Lexical clean-up ("a/./b", "a/../b", "//"), as the loader builds candidate names.
std::string absolute(const std::string& p0) {
  std::vector<std::string> parts;
  size_t pos = 0;
  while (pos <= p0.size()) {
    size_t s = p0.find('/', pos);
    if (s == std::string::npos) s = p0.size();
    std::string c = p0.substr(pos, s - pos);
    pos = s + 1;
    if (c.empty() || c == ".") continue;
    if (c == "..") {
      if (!parts.empty()) parts.pop_back();
      continue;
    }
    parts.push_back(c);
  }
  std::string out;
  for (const auto& c : parts) out += "/" + c;
  return out.empty() ? "/" : out;
}

bool has_glob(const std::string& p) { return p.find_first_of("*?[") != std::string::npos; }

bool under(const std::string& path, const std::string& dir) {
  if (dir == "/") return true;
  return path == dir ||
         (path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 && path[dir.size()] == '/');
}

bool virtual_fs(const std::string& p) { return under(p, "/proc") || under(p, "/sys") || under(p, "/dev"); }

std::string dirname(const std::string& p) {
  size_t s = p.rfind('/');
  if (s == std::string::npos || s == 0) return "/";
  return p.substr(0, s);
}

std::string basename(const std::string& p) {
  size_t s = p.rfind('/');
  return s == std::string::npos ? p : p.substr(s + 1);
}

std::vector<std::string> lines_of(std::string_view text) {
  std::vector<std::string> out;
  std::istringstream in{std::string(text)};
  std::string l;
  while (std::getline(in, l)) {
    size_t hash = l.find('#');
    if (hash != std::string::npos) l.erase(hash);
    size_t a = l.find_first_not_of(" \t\r");
    if (a == std::string::npos) continue;
    size_t b = l.find_last_not_of(" \t\r");
    out.push_back(l.substr(a, b - a + 1));
  }
  return out;
}

std::vector<std::string> words(const std::string& s) {
  std::istringstream in(s);
  std::vector<std::string> out;
  std::string w;
  while (in >> w) out.push_back(w);
  return out;
}

constexpr int64_t kTextMax = 1 << 20;
constexpr int64_t kDbMax = 64 << 20;

class Selector {
 public:
  Selector(const image::SourceImage& img, const FileTree& tree, const tracer::Trace& trace,
           const SelectionRules& rules)
      : img_(img), tree_(tree), trace_(trace), rules_(rules) {}

  Result<Selection> run();

 private:
  struct Job {
    std::string path;  // the path the result is filed under
    bool text = false;
    int64_t cap = 0;
  };

  const FileEntry* content_entry(const FileEntry* e) const {
    if (e && e->type == EntryType::Hardlink) return tree_.find(e->link_target);
    return e;
  }
  int64_t content_size(const std::string& p) const {
    const FileEntry* c = content_entry(tree_.find(p));
    return c && c->type == EntryType::Regular ? c->size : 0;
  }

  void keep(const std::string& path, KeepReason r, const std::string& because) {
    auto [it, inserted] = sel_.kept.try_emplace(path, KeptEntry{r, because});
    if (!inserted && it->second.reason == KeepReason::Parent && r != KeepReason::Parent)
      it->second = KeptEntry{r, because};
    if (inserted) on_new_kept(path);
  }

  void on_new_kept(const std::string& path) {
    const FileEntry* e = tree_.find(path);
    if (!e) return;
    if (e->type == EntryType::Hardlink) keep(e->link_target, KeepReason::Hardlink, path);
    const FileEntry* c = content_entry(e);
    if (c && c->type == EntryType::Regular && scanned_.insert(path).second) pending_scan_.push_back(path);
  }

  // Keeps `p` the way the kernel and the loader reach it: every symlink met, then the target.
  // Returns the resolved path when it exists in the image.
  std::optional<std::string> request(const std::string& p0, KeepReason r, const std::string& because) {
    std::string p = absolute(p0);
    if (virtual_fs(p)) return std::nullopt;
    std::vector<std::string> via;
    auto res = tree_.resolve(p, &via);
    if (!res) {
      warn(res.error().message);
      return std::nullopt;
    }
    for (const auto& v : via) {
      if (v == p)
        keep(v, r, because);
      else
        keep(v, KeepReason::Symlink, p);
    }
    const std::string& t = *res;
    if (virtual_fs(t) || tree_.find(t) == nullptr) return std::nullopt;
    if (t == p) {
      keep(t, r, because);
    } else {
      if (!tree_.find(p)) sel_.aliases.try_emplace(p, KeptEntry{r, because});
      keep(t, r, p);
    }
    return t;
  }

  bool tree_has(const std::string& p0) const {
    std::string p = absolute(p0);
    if (virtual_fs(p)) return false;
    auto r = tree_.resolve(p);
    return r && tree_.find(*r) != nullptr;
  }

  // The closest ancestor of `p` that exists in the image as a directory.
  void keep_nearest_directory(const std::string& p0) {
    std::string p = absolute(p0);
    if (virtual_fs(p)) return;
    while (p.size() > 1) {
      auto slash = p.rfind('/');
      std::string parent = slash == 0 ? "/" : p.substr(0, slash);
      if (virtual_fs(parent)) return;
      auto r = tree_.resolve(parent);
      if (r) {
        const FileEntry* e = tree_.find(*r);
        if (e && e->type == EntryType::Directory) {
          request(parent, KeepReason::Parent, absolute(p0));
          return;
        }
        if (e) return;  // a file in the way: the lookup fails the same without it
      }
      p = parent;
    }
  }

  void include_subtree(const std::string& root, const std::string& because) {
    auto it = tree_.entries().lower_bound(root + "/");
    for (; it != tree_.entries().end() && under(it->first, root); ++it) {
      if (it->second.type == EntryType::Symlink)
        request(it->first, KeepReason::Include, because);
      else
        keep(it->first, KeepReason::Include, because);
    }
  }

  // An include rule: exact path (resolved) or glob over the tree; directories bring their subtree.
  void include_rule(const std::string& pattern0, KeepReason r = KeepReason::Include) {
    std::string pattern = absolute(pattern0);
    std::vector<std::string> roots;
    if (has_glob(pattern)) {
      for (const auto& [p, e] : tree_.entries())
        if (glob_at(pattern, 0, p, 0)) roots.push_back(p);
    } else {
      roots.push_back(pattern);
    }
    for (const auto& p : roots) {
      auto t = request(p, r, "");
      if (!t) continue;
      const FileEntry* e = tree_.find(*t);
      if (e && e->type == EntryType::Directory) include_subtree(*t, *t);
    }
  }

  void warn(std::string w) {
    if (warned_.insert(w).second) sel_.warnings.push_back(std::move(w));
  }

  Status read_contents(const std::vector<Job>& jobs);
  void process_scan(const std::string& path, const elf::FileInfo& info);
  std::optional<std::string> find_library(const std::string& name,
                                          const std::vector<std::string>& first_dirs);
  std::optional<std::string> find_in_path(const std::string& name);
  Status read_ld_so_conf();
  std::vector<std::string> config_env(const std::string& key) const;
  void apply_excludes();
  void add_parents();
  void package_metadata();
  std::optional<std::string> text_of(const std::string& p) const {
    auto it = texts_.find(p);
    if (it == texts_.end()) return std::nullopt;
    return it->second;
  }
  // Text jobs for a path as the image resolves it.
  void want_text(std::vector<Job>& jobs, const std::string& p, int64_t cap) {
    auto t = tree_.resolve(p);
    if (!t) return;
    const FileEntry* c = content_entry(tree_.find(*t));
    if (!c || c->type != EntryType::Regular) return;
    if (c->size > cap) {
      warn("'" + p + "' is larger than " + std::to_string(cap) + " bytes: not read");
      return;
    }
    jobs.push_back(Job{p, true, cap});
  }

  const image::SourceImage& img_;
  const FileTree& tree_;
  const tracer::Trace& trace_;
  const SelectionRules& rules_;
  Selection sel_;
  std::set<std::string> warned_;
  std::set<std::string> scanned_;
  std::vector<std::string> pending_scan_;
  std::map<std::string, elf::FileInfo> scans_;
  std::map<std::string, std::string> texts_;
  std::vector<std::string> ld_conf_dirs_;
  std::set<std::string> lower_bound_;  // resolved paths counted in traced_bytes
};

Status Selector::read_contents(const std::vector<Job>& jobs) {
  // layer -> entry ordinal -> jobs on it
  std::map<int, std::map<int64_t, std::vector<const Job*>>> by_layer;
  for (const auto& j : jobs) {
    auto t = tree_.resolve(j.path);
    if (!t) continue;
    const FileEntry* c = content_entry(tree_.find(*t));
    if (!c || c->type != EntryType::Regular) continue;
    by_layer[c->layer][c->layer_entry].push_back(&j);
  }
  std::array<char, 65536> buf{};
  for (auto& [layer, wanted] : by_layer) {
    if (layer < 0 || static_cast<size_t>(layer) >= img_.layers.size()) continue;
    SLIMTRACE_ASSIGN_OR_RETURN(image::LayerReader reader,
                               image::LayerReader::open(img_.layers[static_cast<size_t>(layer)], layer));
    size_t left = wanted.size();
    while (left > 0) {
      SLIMTRACE_ASSIGN_OR_RETURN(auto entry, reader.next());
      if (!entry) break;
      auto it = wanted.find(entry->index);
      if (it == wanted.end()) continue;
      --left;
      bool any_text = false;
      int64_t cap = 0;
      for (const Job* j : it->second)
        if (j->text) any_text = true, cap = std::max(cap, j->cap);
      if (any_text) {
        std::string content;
        for (;;) {
          SLIMTRACE_ASSIGN_OR_RETURN(size_t n, reader.read(buf));
          if (n == 0) break;
          content.append(buf.data(), n);
          if (static_cast<int64_t>(content.size()) > cap) break;
        }
        for (const Job* j : it->second) {
          if (j->text)
            texts_[j->path] = content;
          else
            scans_[j->path] = elf::scan(content, entry->size);
        }
        continue;
      }
      elf::HeaderScanner sc(entry->size);
      while (!sc.done()) {
        SLIMTRACE_ASSIGN_OR_RETURN(size_t n, reader.read(buf));
        if (n == 0) break;
        sc.feed(buf.data(), n);
      }
      auto info = sc.finish();
      for (const Job* j : it->second) scans_[j->path] = info;
    }
    if (left > 0)
      warn("layer " + std::to_string(layer) + ": " + std::to_string(left) +
           " entries not found while reading");
  }
  return {};
}

std::vector<std::string> Selector::config_env(const std::string& key) const {
  std::vector<std::string> out;
  const auto& cfg = img_.config;
  if (!cfg.is_object() || !cfg.contains("config") || !cfg["config"].is_object()) return out;
  const auto& c = cfg["config"];
  if (!c.contains("Env") || !c["Env"].is_array()) return out;
  for (const auto& e : c["Env"]) {
    if (!e.is_string()) continue;
    std::string s = e.get<std::string>();
    if (s.rfind(key + "=", 0) != 0) continue;
    std::string v = s.substr(key.size() + 1);
    size_t start = 0;
    for (;;) {
      size_t colon = v.find(':', start);
      std::string part = v.substr(start, colon == std::string::npos ? std::string::npos : colon - start);
      if (!part.empty()) out.push_back(part);
      if (colon == std::string::npos) break;
      start = colon + 1;
    }
  }
  return out;
}

Status Selector::read_ld_so_conf() {
  // ld.so.conf may include further files by glob; follow includes a few levels deep.
  std::vector<std::string> queue{"/etc/ld.so.conf"};
  std::set<std::string> seen;
  for (int depth = 0; depth < 8 && !queue.empty(); ++depth) {
    std::vector<Job> jobs;
    for (const auto& q : queue)
      if (!texts_.count(q)) want_text(jobs, q, kTextMax);
    SLIMTRACE_TRY(read_contents(jobs));
    std::vector<std::string> next;
    for (const auto& q : queue) {
      if (!seen.insert(q).second) continue;
      auto text = text_of(q);
      if (!text) continue;
      for (const auto& line : lines_of(*text)) {
        auto w = words(line);
        if (w.empty()) continue;
        if (w[0] == "include") {
          for (size_t i = 1; i < w.size(); ++i) {
            std::string pat = w[i][0] == '/' ? w[i] : dirname(q) + "/" + w[i];
            // Globs match files as the image sees them, through a symlinked directory too.
            auto dir = tree_.resolve(dirname(pat));
            if (!dir) continue;
            std::string file_pat = *dir + "/" + basename(pat);
            for (const auto* c : tree_.children(*dir))
              if (glob_at(file_pat, 0, c->path, 0)) next.push_back(c->path);
          }
        } else if (w[0] == "hwcap") {
          continue;
        } else {
          for (const auto& d : w) ld_conf_dirs_.push_back(d);
        }
      }
    }
    std::sort(next.begin(), next.end());  // glibc reads included files in glob (sorted) order
    queue = std::move(next);
  }
  return {};
}

std::optional<std::string> Selector::find_library(const std::string& name,
                                                  const std::vector<std::string>& first_dirs) {
  if (name.find('/') != std::string::npos) {
    if (name[0] == '/' && tree_.find(tree_.resolve(name).ok() ? *tree_.resolve(name) : "")) return name;
    return std::nullopt;
  }
  static const std::array<const char*, 6> kDefaults = {
      "/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib"};
  std::vector<std::string> dirs = first_dirs;
  for (auto& d : config_env("LD_LIBRARY_PATH")) dirs.push_back(d);
  for (auto& d : ld_conf_dirs_) dirs.push_back(d);
  for (const char* d : kDefaults) dirs.emplace_back(d);
  for (const auto& d : dirs) {
    std::string cand = absolute(d) + "/" + name;
    auto t = tree_.resolve(cand);
    if (!t) continue;
    const FileEntry* c = content_entry(tree_.find(*t));
    if (c && c->type == EntryType::Regular) return cand;
  }
  return std::nullopt;
}

std::optional<std::string> Selector::find_in_path(const std::string& name) {
  auto dirs = config_env("PATH");
  if (dirs.empty()) dirs = {"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"};
  for (const auto& d : dirs) {
    std::string cand = absolute(d) + "/" + name;
    auto t = tree_.resolve(cand);
    if (!t) continue;
    const FileEntry* c = content_entry(tree_.find(*t));
    if (c && c->type == EntryType::Regular) return cand;
  }
  return std::nullopt;
}

void Selector::process_scan(const std::string& path, const elf::FileInfo& info) {
  bool lb = lower_bound_.count(path) > 0;
  auto interpreter = [&](const std::string& p) {
    auto t = request(p, KeepReason::Interpreter, path);
    if (!t)
      warn("interpreter '" + p + "' of '" + path + "' is not in the image");
    else if (lb)
      lower_bound_.insert(*t);
  };
  if (info.is_script) {
    if (info.script_interp.empty() || info.script_interp[0] != '/') return;
    interpreter(info.script_interp);
    // "#!/usr/bin/env python3": env finds the real interpreter in PATH.
    if (basename(info.script_interp) == "env" && !info.script_arg.empty() && info.script_arg[0] != '-') {
      std::string prog = words(info.script_arg).front();
      if (auto found = find_in_path(prog)) interpreter(*found);
    }
    return;
  }
  if (!info.is_elf) return;
  if (!info.problem.empty()) warn("'" + path + "': " + info.problem);
  if (!info.interp.empty()) interpreter(info.interp);
  std::vector<std::string> first;
  std::vector<std::string> origins{dirname(path)};
  for (const auto& o : origins) {
    auto rp = elf::expand_search_path(info.runpath.empty() ? info.rpath : info.runpath, o);
    first.insert(first.end(), rp.begin(), rp.end());
  }
  for (const auto& n : info.needed) {
    auto lib = find_library(n, first);
    if (!lib) {
      warn("'" + n + "' needed by '" + path + "' is not in the image");
      continue;
    }
    request(*lib, KeepReason::ElfDep, path);
  }
}

void Selector::apply_excludes() {
  if (rules_.exclude_patterns.empty()) return;
  std::vector<std::string> pats;
  for (const auto& p : rules_.exclude_patterns) pats.push_back(absolute(p));
  auto excluded = [&](const std::string& path) {
    for (const auto& pr : rules_.preserve_paths)
      if (under(path, absolute(pr))) return false;
    // A pattern naming a directory excludes what is under it too.
    for (std::string a = path;; a = dirname(a)) {
      for (const auto& p : pats)
        if (glob_at(p, 0, a, 0)) return true;
      if (a == "/") break;
    }
    return false;
  };
  for (auto it = sel_.kept.begin(); it != sel_.kept.end();) {
    if (it->first != "/" && excluded(it->first))
      it = sel_.kept.erase(it);
    else
      ++it;
  }
}

void Selector::package_metadata() {
  // Whether `p` exists in the output: kept itself, or reached through kept symlinks (a package
  // lists /lib/x/libc.so.6 where /lib -> usr/lib). An entry of the image that is not kept (the
  // /sbin symlink when only /usr/sbin is) does not exist there, whatever it points to.
  auto kept_any = [&](const std::string& p) {
    if (sel_.kept.count(p)) return true;
    if (tree_.find(p)) return false;
    std::vector<std::string> via;
    auto t = tree_.resolve(p, &via);
    if (!t || !sel_.kept.count(*t)) return false;
    return std::all_of(via.begin(), via.end(), [&](const std::string& v) { return sel_.kept.count(v) > 0; });
  };
  // A package is still there when a file of it (not merely a directory) is.
  auto kept_nondir = [&](const std::string& p) {
    if (!kept_any(p)) return false;
    // A symlink counts unless it stands for a directory (merged /usr: /lib is listed as a
    // directory by many packages but is base-files' symlink).
    const FileEntry* e = tree_.find(p);
    auto t = tree_.resolve(p);
    const FileEntry* te = t ? tree_.find(*t) : nullptr;
    if (e && e->type == EntryType::Symlink) return !te || te->type != EntryType::Directory;
    return te && te->type != EntryType::Directory;
  };
  const std::string status_path = "/var/lib/dpkg/status";
  if (auto status = text_of(status_path)) {
    std::map<std::string, std::string> lists;
    for (const auto& [p, c] : texts_)
      if (under(p, "/var/lib/dpkg/info") && p.size() > 5 && p.compare(p.size() - 5, 5, ".list") == 0)
        lists[p] = c;
    // dpkg lists "/." for the root directory.
    auto pruned = pkgdb::prune_dpkg(*status, lists, kept_nondir,
                                    [&](const std::string& p) { return p == "/." || kept_any(p); });
    sel_.replaced_files[status_path] = pruned.status;
    request(status_path, KeepReason::Metadata, "");
    for (const auto& [lp, content] : pruned.kept_lists) {
      sel_.replaced_files[lp] = content;
      request(lp, KeepReason::Metadata, status_path);
    }
  }
  const std::string apk_path = "/lib/apk/db/installed";
  if (auto inst = text_of(apk_path)) {
    auto pruned = pkgdb::prune_apk(*inst, kept_nondir);
    sel_.replaced_files[apk_path] = pruned.installed;
    request(apk_path, KeepReason::Metadata, "");
  }
}

Result<Selection> Selector::run() {
  // Roots: what the trace found; also paths whose use failed because they exist (a mkdir that met
  // EEXIST, an open refused with EACCES): the app met them, so it must again. A path that was not
  // there when the app ran (ENOENT, ENOTDIR) stays out even if the image has it (a volume hid it).
  for (const auto& [path, fa] : trace_.files) {
    bool met_existing = !fa.found && fa.error != 0 && fa.error != ENOENT && fa.error != ENOTDIR;
    if (fa.found || (met_existing && tree_has(path))) {
      auto t = request(path, KeepReason::Traced, "");
      if (t) lower_bound_.insert(*t);
    }
    // A path missing from the image (a failed lookup, or one the app made: a cache directory, a
    // socket, a temp file) still needs the directory it was looked up or made in, or the minified
    // run gets a different errno or cannot create it.
    if (!tree_has(path)) keep_nearest_directory(path);
  }
  for (const auto& ex : trace_.execs) {
    if (ex.error != 0 || ex.path.empty()) continue;
    auto t = request(ex.path, KeepReason::Traced, "");
    if (t) lower_bound_.insert(*t);
  }
  // Files the C library reads lazily, and what the runtime reads before the app starts.
  for (const char* p : {"/etc/passwd", "/etc/group", "/etc/nsswitch.conf", "/etc/hosts"})
    if (tree_.find(p) || tree_.resolve(p).ok()) request(p, KeepReason::Nss, "");
  request("/etc/os-release", KeepReason::Metadata, "");

  // User rules.
  for (const auto& ip : rules_.include_paths) {
    include_rule(ip.path);
    if (ip.mode || ip.uid || ip.gid) {
      auto t = tree_.resolve(absolute(ip.path));
      if (t && !has_glob(ip.path)) sel_.overrides[*t] = ip;
    }
  }
  for (const auto& b : rules_.include_bins) {
    std::string p = b;
    if (p.find('/') == std::string::npos) {
      auto found = find_in_path(p);
      if (!found) {
        warn("--include-bin '" + b + "' is not in the image's PATH");
        continue;
      }
      p = *found;
    }
    if (!request(p, KeepReason::Include, "")) warn("--include-bin '" + b + "' is not in the image");
  }
  if (rules_.include_shell && !request("/bin/sh", KeepReason::Include, ""))
    warn("--include-shell: /bin/sh is not in the image");
  if (rules_.include_workdir && img_.config.is_object() && img_.config.contains("config") &&
      img_.config["config"].is_object() && img_.config["config"].contains("WorkingDir") &&
      img_.config["config"]["WorkingDir"].is_string()) {
    std::string wd = img_.config["config"]["WorkingDir"].get<std::string>();
    if (!wd.empty() && wd != "/") include_rule(wd);
  }
  if (rules_.include_certs)
    for (const char* p :
         {"/etc/ssl/certs", "/usr/share/ca-certificates", "/etc/ca-certificates.conf", "/etc/pki"})
      if (tree_.resolve(p).ok() && tree_.find(*tree_.resolve(p))) include_rule(p);
  if (rules_.include_zoneinfo && tree_.find("/usr/share/zoneinfo")) include_rule("/usr/share/zoneinfo");
  for (const auto& p : rules_.preserve_paths) include_rule(p);

  // Configuration the closure depends on, read before the first scan round is processed.
  SLIMTRACE_TRY(read_ld_so_conf());
  std::vector<Job> jobs;
  want_text(jobs, "/etc/nsswitch.conf", kTextMax);
  want_text(jobs, "/var/lib/dpkg/status", kDbMax);
  if (tree_.find("/var/lib/dpkg/status"))
    for (const auto* c : tree_.children("/var/lib/dpkg/info"))
      if (c->path.size() > 5 && c->path.compare(c->path.size() - 5, 5, ".list") == 0)
        want_text(jobs, c->path, kDbMax);
  want_text(jobs, "/lib/apk/db/installed", kDbMax);

  bool nss_done = false;
  for (int round = 0; round < 256; ++round) {
    std::vector<std::string> batch;
    batch.swap(pending_scan_);
    for (const auto& p : batch) jobs.push_back(Job{p, false, 0});
    if (jobs.empty()) break;
    SLIMTRACE_TRY(read_contents(jobs));
    jobs.clear();
    if (!nss_done) {
      nss_done = true;
      if (auto ns = text_of("/etc/nsswitch.conf")) {
        std::set<std::string> services;
        for (const auto& line : lines_of(*ns)) {
          size_t colon = line.find(':');
          if (colon == std::string::npos) continue;
          for (const auto& w : words(line.substr(colon + 1)))
            if (w[0] != '[') services.insert(w);
        }
        for (const auto& s : services) {
          auto lib = find_library("libnss_" + s + ".so.2", {});
          if (lib) request(*lib, KeepReason::Nss, "/etc/nsswitch.conf");
        }
      }
    }
    for (const auto& p : batch) {
      auto it = scans_.find(p);
      if (it != scans_.end()) process_scan(p, it->second);
    }
  }

  apply_excludes();
  add_parents();  // before pruning: package lists keep the directories that stay
  package_metadata();
  apply_excludes();  // metadata the user excluded stays out
  add_parents();

  for (const auto& p : lower_bound_) sel_.traced_bytes += content_size(p);
  for (const auto& [p, e] : sel_.kept) {
    const FileEntry* f = tree_.find(p);
    if (f && f->type == EntryType::Regular) sel_.kept_bytes += f->size;
  }
  return std::move(sel_);
}

// Parents, with the tree's metadata (the writer reads it from the tree).
void Selector::add_parents() {
  std::vector<std::string> paths;
  for (const auto& [p, e] : sel_.kept) paths.push_back(p);
  for (const auto& p : paths)
    for (std::string d = dirname(p), child = p;; child = d, d = dirname(d)) {
      if (p == "/") break;
      if (sel_.kept.count(d)) {
        if (d == "/") break;
        continue;
      }
      sel_.kept.emplace(d, KeptEntry{KeepReason::Parent, child});
      if (d == "/") break;
    }
}

}  // namespace

std::vector<std::string> Selection::explain(const std::string& path) const {
  std::vector<std::string> out;
  std::set<std::string> seen;
  std::string cur = path;
  while (!cur.empty() && seen.insert(cur).second) {
    const KeptEntry* k = nullptr;
    auto it = kept.find(cur);
    if (it != kept.end())
      k = &it->second;
    else if (auto a = aliases.find(cur); a != aliases.end())
      k = &a->second;
    if (!k) {
      if (out.empty()) out.push_back(cur + ": not kept");
      break;
    }
    std::string line = cur + ": " + std::string(reason_name(k->reason));
    if (!k->because_of.empty()) line += " of " + k->because_of;
    out.push_back(std::move(line));
    cur = k->because_of;
  }
  return out;
}

Result<Selection> select(const image::SourceImage& image, const image::FileTree& tree,
                         const tracer::Trace& trace, const SelectionRules& rules) {
  Selector s(image, tree, trace, rules);
  return s.run();
}

}  // namespace slimtrace::packer
