// The static report behind `slimtrace xray`. Everything is derived from the flattened tree and the
// image's metadata, except the content checks for secrets, which stream only the layers holding a
// small candidate file (and stop as soon as all of that layer's candidates were read).
#include "slimtrace/image/xray.hpp"

#include <algorithm>
#include <array>
#include <cinttypes>
#include <cstdio>
#include <filesystem>
#include <map>
#include <set>
#include <string_view>
#include <tuple>
#include <unordered_map>

#include "slimtrace/image/layer_reader.hpp"

namespace slimtrace::image {

std::string_view severity_name(Severity s) {
  switch (s) {
    case Severity::Info:
      return "info";
    case Severity::Low:
      return "low";
    case Severity::Medium:
      return "medium";
    case Severity::High:
      return "high";
    case Severity::Critical:
      return "critical";
  }
  return "info";
}

std::optional<Severity> parse_severity(std::string_view text) {
  std::string lower;
  for (char c : text) lower += static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  for (Severity s : {Severity::Info, Severity::Low, Severity::Medium, Severity::High, Severity::Critical}) {
    if (lower == severity_name(s)) return s;
  }
  return std::nullopt;
}

std::optional<Severity> XrayReport::max_severity() const {
  std::optional<Severity> best;
  for (const auto& f : findings) {
    if (!best || f.severity > *best) best = f.severity;
  }
  return best;
}

namespace {

constexpr size_t kMaxPaths = 20;
// Secrets worth finding are small; reading bigger files would make the scan cost a full read.
constexpr int64_t kMaxContentCheck = int64_t{64} * 1024;
// A few headers ship with runtime packages (e.g. linux-libc-dev bits); a full set means -dev packages.
constexpr int64_t kIncludeHeaderThreshold = 50;
constexpr int64_t kLargeTmpFile = int64_t{1024} * 1024;

bool starts_with(std::string_view s, std::string_view prefix) { return s.substr(0, prefix.size()) == prefix; }
bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}
// `path` is `dir` or lies under it.
bool under(std::string_view path, std::string_view dir) {
  return starts_with(path, dir) && (path.size() == dir.size() || path[dir.size()] == '/');
}
std::string_view base_of(std::string_view p) { return p.substr(p.rfind('/') + 1); }
std::string_view dir_of(std::string_view p) {
  auto s = p.rfind('/');
  return s == 0 || s == std::string_view::npos ? std::string_view("/") : p.substr(0, s);
}
// The first `n` components of `path`: first_components("/usr/lib/go-1.19/bin/go", 3) == "/usr/lib/go-1.19".
std::string_view first_components(std::string_view path, int n) {
  size_t pos = 0;
  for (int i = 0; i < n; ++i) {
    pos = path.find('/', pos + 1);
    if (pos == std::string_view::npos) return path;
  }
  return path.substr(0, pos);
}

std::string human_bytes(int64_t n) {
  static constexpr std::array<const char*, 5> kUnits = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(n);
  size_t u = 0;
  while (v >= 1024.0 && u + 1 < kUnits.size()) {
    v /= 1024.0;
    ++u;
  }
  char buf[32];
  if (u == 0) {
    std::snprintf(buf, sizeof buf, "%" PRId64 " B", n);
  } else {
    std::snprintf(buf, sizeof buf, "%.1f %s", v, kUnits[u]);
  }
  return buf;
}

std::string short_digest(const std::string& d) {
  auto colon = d.find(':');
  if (colon == std::string::npos) return d.substr(0, 12);
  return d.substr(0, colon + 1 + 12);
}

// The paths behind one finding, with their bytes; turned into a Finding with the biggest first.
struct PathSet {
  std::map<std::string, int64_t> bytes;
  void add(std::string_view path, int64_t b) { bytes[std::string(path)] += b; }
  bool empty() const { return bytes.empty(); }

  Finding make(std::string id, Severity severity, std::string title, std::string advice) const {
    Finding f;
    f.id = std::move(id);
    f.severity = severity;
    f.title = std::move(title);
    f.advice = std::move(advice);
    std::vector<std::pair<std::string, int64_t>> sorted(bytes.begin(), bytes.end());
    std::stable_sort(sorted.begin(), sorted.end(),
                     [](const auto& a, const auto& b) { return a.second > b.second; });
    for (const auto& [p, b] : sorted) {
      f.bytes += b;
      if (f.paths.size() < kMaxPaths) {
        f.paths.push_back(p);
        f.path_bytes.push_back(b);
      }
    }
    f.paths_total = static_cast<int64_t>(sorted.size());
    return f;
  }
};

bool in_bin_dir(std::string_view dir) {
  static constexpr std::array<std::string_view, 6> kBinDirs = {
      "/bin", "/sbin", "/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin"};
  return std::find(kBinDirs.begin(), kBinDirs.end(), dir) != kBinDirs.end();
}

// "x86_64-linux-gnu-gcc-12" -> "gcc", "pip3.11" -> "pip", "clang++-14" -> "clang++".
std::string_view tool_name(std::string_view base) {
  auto linux_pos = base.find("-linux-");
  if (linux_pos != std::string_view::npos) {
    auto dash = base.find('-', linux_pos + 7);
    if (dash != std::string_view::npos) base = base.substr(dash + 1);
  }
  while (!base.empty() && ((base.back() >= '0' && base.back() <= '9') || base.back() == '.'))
    base.remove_suffix(1);
  if (!base.empty() && base.back() == '-') base.remove_suffix(1);
  return base;
}

bool is_one_of(std::string_view name, std::initializer_list<std::string_view> names) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

bool is_build_tool(std::string_view base) {
  auto one = [](std::string_view n) {
    return is_one_of(n,
                     {"gcc",   "g++",    "c++",     "cc",     "cpp",       "clang",  "clang++",  "clang-cpp",
                      "ld",    "ld.bfd", "ld.gold", "ld.lld", "lld",       "as",     "collect2", "make",
                      "gmake", "cmake",  "ninja",   "gdb",    "gdbserver", "strace", "ltrace",   "tcc",
                      "go",    "gofmt",  "rustc",   "cargo",  "javac"});
  };
  if (one(base) || one(tool_name(base))) return true;
  // Cross and multilib compilers: "i386-tcc", "x86_64-w64-mingw32-gcc".
  std::string_view name = tool_name(base);
  auto dash = name.rfind('-');
  return dash != std::string_view::npos &&
         is_one_of(name.substr(dash + 1), {"gcc", "g++", "tcc", "cpp", "clang", "clang++", "ld", "as"});
}

bool is_package_manager(std::string_view base) {
  auto one = [](std::string_view n) {
    return is_one_of(n, {"apt", "apt-get", "apt-cache", "dpkg", "dpkg-deb", "apk", "pip", "npm", "npx",
                         "yarn", "pnpm", "yum", "dnf", "microdnf", "rpm", "gem"});
  };
  return one(base) || one(tool_name(base));
}

// The toolchain directory holding `path`, or empty: Go's and the package managers' own trees are
// reported as one path each rather than as thousands of files.
std::string_view go_toolchain_root(std::string_view path) {
  if (under(path, "/usr/local/go")) return "/usr/local/go";
  if (under(path, "/usr/lib/go")) return "/usr/lib/go";
  if (starts_with(path, "/usr/lib/go-") || starts_with(path, "/usr/share/go-"))
    return first_components(path, 3);
  return {};
}

std::string_view package_manager_root(std::string_view path) {
  for (std::string_view tool : {"/node_modules/npm", "/node_modules/yarn", "/node_modules/corepack",
                                "/site-packages/pip", "/dist-packages/pip"}) {
    auto pos = path.find(tool);
    if (pos == std::string_view::npos) continue;
    auto end = pos + tool.size();
    if (end == path.size() || path[end] == '/') return path.substr(0, end);
  }
  return {};
}

// The cache directory holding `path`, or empty.
std::string_view package_cache_root(std::string_view path) {
  for (std::string_view dir : {"/var/lib/apt/lists", "/var/cache/apt", "/var/cache/apk", "/var/cache/yum",
                               "/var/cache/dnf", "/usr/local/share/.cache/yarn", "/go/pkg/mod"}) {
    if (under(path, dir)) return dir;
  }
  std::string_view home;
  if (under(path, "/root")) {
    home = "/root";
  } else if (starts_with(path, "/home/")) {
    home = first_components(path, 2);
  }
  if (home.empty() || home.size() == path.size()) return {};
  std::string_view rel = path.substr(home.size() + 1);
  for (std::string_view dir : {".npm", ".cache/pip", ".cache/yarn", ".cache/go-build", "go/pkg/mod",
                               ".cargo/registry", ".m2/repository", ".gradle/caches"}) {
    if (under(rel, dir)) return path.substr(0, home.size() + 1 + dir.size());
  }
  return {};
}

enum class SecretKind { None, EnvFile, PrivateKey, GitDir, RegistryToken, CloudCredentials };
enum class Check { None, PrivateKey, Password, DockerAuths };

struct SecretMatch {
  SecretKind kind = SecretKind::None;
  Check check = Check::None;
};

Severity secret_severity(SecretKind k) {
  return k == SecretKind::EnvFile || k == SecretKind::GitDir ? Severity::High : Severity::Critical;
}

std::string_view secret_label(SecretKind k) {
  switch (k) {
    case SecretKind::EnvFile:
      return ".env file";
    case SecretKind::PrivateKey:
      return "private key";
    case SecretKind::GitDir:
      return ".git directory";
    case SecretKind::RegistryToken:
      return "package registry credentials";
    case SecretKind::CloudCredentials:
      return "cloud or registry credentials";
    case SecretKind::None:
      break;
  }
  return "secret";
}

// What a regular file's name says it may be; content checks confirm the ambiguous ones.
SecretMatch classify_secret_file(std::string_view path) {
  std::string_view base = base_of(path);
  if (base == ".env" ||
      (starts_with(base, ".env.") && !ends_with(base, ".example") && !ends_with(base, ".sample") &&
       !ends_with(base, ".template") && !ends_with(base, ".dist"))) {
    return {SecretKind::EnvFile, Check::None};
  }
  if (is_one_of(base, {"id_rsa", "id_dsa", "id_ecdsa", "id_ed25519"}) || ends_with(base, ".pem") ||
      ends_with(base, ".key")) {
    return {SecretKind::PrivateKey, Check::PrivateKey};
  }
  if (base == ".npmrc" || base == ".pypirc" || base == ".netrc")
    return {SecretKind::RegistryToken, Check::Password};
  if (base == ".git-credentials") return {SecretKind::RegistryToken, Check::None};
  if (ends_with(path, "/.aws/credentials") || ends_with(path, "/.kube/config")) {
    return {SecretKind::CloudCredentials, Check::None};
  }
  if (ends_with(path, "/.docker/config.json")) return {SecretKind::CloudCredentials, Check::DockerAuths};
  if (path.find("/.config/gcloud/") != std::string_view::npos &&
      (is_one_of(base, {"credentials.db", "access_tokens.db", "application_default_credentials.json"}) ||
       path.find("/legacy_credentials/") != std::string_view::npos)) {
    return {SecretKind::CloudCredentials, Check::None};
  }
  return {};
}

bool content_confirms(Check check, const std::string& data) {
  switch (check) {
    case Check::None:
      return true;
    case Check::PrivateKey: {
      auto start = data.find_first_not_of(" \t\r\n");
      if (start == std::string::npos || data.compare(start, 11, "-----BEGIN ") != 0) return false;
      auto eol = data.find('\n', start);
      std::string_view first =
          std::string_view(data).substr(start, eol == std::string::npos ? eol : eol - start);
      return first.find("PRIVATE KEY-----") != std::string_view::npos;
    }
    case Check::Password:
      return data.find("_auth") != std::string::npos || data.find("password") != std::string::npos;
    case Check::DockerAuths: {
      auto j = nlohmann::json::parse(data, nullptr, false);
      if (j.is_discarded() || !j.is_object() || !j.contains("auths") || !j["auths"].is_object()) return false;
      for (const auto& [registry, entry] : j["auths"].items()) {
        (void)registry;
        if (!entry.is_object()) continue;
        for (const char* key : {"auth", "identitytoken", "password"}) {
          if (entry.contains(key) && entry[key].is_string() && !entry[key].get<std::string>().empty())
            return true;
        }
      }
      return false;
    }
  }
  return false;
}

// A secret candidate: in the flattened view (entry known), or a version a later layer hid.
struct Candidate {
  std::string path;
  int layer = 0;
  int64_t entry = -1;  // TarEntry.index; -1: match by path (shadowed versions)
  int64_t size = 0;
  SecretMatch match;
  const ShadowedFile* shadowed = nullptr;
  bool confirmed = false;
  bool read = false;
};

// Reads the small candidates that need a content check, one layer at a time.
Status check_contents(const SourceImage& image, std::vector<Candidate>& candidates,
                      const ProgressFn& progress) {
  std::map<int, std::vector<Candidate*>> by_layer;
  for (auto& c : candidates) {
    if (c.match.check == Check::None) {
      c.confirmed = true;
    } else if (c.size > 0 && c.size < kMaxContentCheck && c.layer >= 0 &&
               c.layer < static_cast<int>(image.layers.size())) {
      by_layer[c.layer].push_back(&c);
    }
  }
  int64_t total = 0, done = 0;
  for (const auto& [layer, list] : by_layer) {
    (void)list;
    total += std::max<int64_t>(image.layers[static_cast<size_t>(layer)].size, 0);
  }
  for (auto& [layer, pending] : by_layer) {
    const auto& desc = image.layers[static_cast<size_t>(layer)];
    SLIMTRACE_ASSIGN_OR_RETURN(LayerReader reader, LayerReader::open(desc, layer));
    size_t left = pending.size();
    while (left > 0) {
      SLIMTRACE_ASSIGN_OR_RETURN(std::optional<TarEntry> te, reader.next());
      if (!te) break;
      if (progress) progress("checking files for secrets", done + reader.compressed_bytes(), total);
      if (te->type != EntryType::Regular) continue;
      for (Candidate* c : pending) {
        if (c->read || (c->entry >= 0 ? c->entry != te->index : c->path != te->path)) continue;
        std::string data;
        std::array<char, 8192> buf;
        while (static_cast<int64_t>(data.size()) < kMaxContentCheck) {
          SLIMTRACE_ASSIGN_OR_RETURN(size_t n, reader.read(buf));
          if (n == 0) break;
          data.append(buf.data(), n);
        }
        c->confirmed = content_confirms(c->match.check, data);
        c->read = true;
        --left;
        break;
      }
    }
    done += std::max<int64_t>(desc.size, 0);
  }
  return {};
}

std::string layer_word(int layer) { return "layer " + std::to_string(layer); }

}  // namespace

Result<XrayReport> xray(const SourceImage& image, const FileTree& tree, const XrayOptions& options,
                        const ProgressFn& progress) {
  XrayReport r;
  r.reference = image.ref.to_string();
  r.manifest_digest = image.manifest_digest;
  r.config_digest = image.config_digest;
  r.platform = image.platform.to_string();

  // Layers.
  const auto& stats = tree.layer_stats();
  for (size_t i = 0; i < image.layers.size(); ++i) {
    const auto& d = image.layers[i];
    XrayLayer l;
    l.digest = d.digest;
    l.diff_id = d.diff_id;
    l.created_by = d.created_by;
    if (i < stats.size()) l.stats = stats[i];
    l.compressed_size = d.size;
    if (l.compressed_size < 0) l.compressed_size = l.stats.compressed_size;
    if (l.compressed_size <= 0) {
      std::error_code ec;
      auto sz = std::filesystem::file_size(d.blob_path, ec);
      l.compressed_size = ec ? 0 : static_cast<int64_t>(sz);
    }
    l.uncompressed_size = l.stats.uncompressed_size;
    r.layer_bytes += l.uncompressed_size;
    r.compressed_bytes += l.compressed_size;
    r.layers.push_back(std::move(l));
  }

  // Totals, largest files, and directory sizes in one pass. Directory sums are keyed by views into
  // the tree's own keys: prefixes of a file's path, so no string is built per ancestor.
  r.files = static_cast<int64_t>(tree.size());
  std::unordered_map<std::string_view, int64_t> dir_bytes;
  std::unordered_map<std::string_view, int64_t> dir_files;
  std::vector<const FileEntry*> regular;
  for (const auto& [path, e] : tree.entries()) {
    if (e.type != EntryType::Regular) continue;
    regular.push_back(&e);
    r.total_bytes += e.size;
    std::string_view p = path;
    for (auto pos = p.rfind('/'); pos != std::string_view::npos && pos > 0; pos = p.rfind('/', pos - 1)) {
      dir_bytes[p.substr(0, pos)] += e.size;
      dir_files[p.substr(0, pos)] += 1;
    }
  }
  auto by_size = [](const SizedPath& a, const SizedPath& b) {
    return a.bytes != b.bytes ? a.bytes > b.bytes : a.path < b.path;
  };
  {
    std::vector<SizedPath> files;
    files.reserve(regular.size());
    for (const auto* e : regular) files.push_back({e->path, e->size});
    size_t n = std::min(options.top, files.size());
    std::partial_sort(files.begin(), files.begin() + static_cast<std::ptrdiff_t>(n), files.end(), by_size);
    files.resize(n);
    r.largest_files = std::move(files);

    // A directory whose bytes all sit in one subdirectory (/var/lib/apt -> /var/lib/apt/lists) would
    // fill the list with one chain; only the deepest link of such a chain is listed.
    std::unordered_map<std::string_view, bool> chained;
    for (const auto& [p, b] : dir_bytes) {
      std::string_view parent = dir_of(p);
      if (parent == "/") continue;
      auto it = dir_bytes.find(parent);
      if (it != dir_bytes.end() && it->second == b) chained[parent] = true;
    }
    std::vector<SizedPath> dirs;
    dirs.reserve(dir_bytes.size());
    for (const auto& [p, b] : dir_bytes) {
      if (!chained.count(p)) dirs.push_back({std::string(p), b});
    }
    n = std::min(options.top, dirs.size());
    std::partial_sort(dirs.begin(), dirs.begin() + static_cast<std::ptrdiff_t>(n), dirs.end(), by_size);
    dirs.resize(n);
    r.largest_dirs = std::move(dirs);
  }
  auto dir_total = [&](std::string_view d) {
    auto it = dir_bytes.find(d);
    return it == dir_bytes.end() ? int64_t{0} : it->second;
  };

  for (const auto& s : tree.shadowed()) r.wasted_bytes += s.size;
  r.efficiency = tree.efficiency();

  // Build tooling, package managers, caches and secret candidates, from one walk of the tree.
  PathSet tooling, managers, caches;
  std::vector<Candidate> candidates;
  int64_t headers = 0;
  for (const auto& [path, e] : tree.entries()) {
    std::string_view p = path;
    std::string_view base = base_of(p);
    if (e.type == EntryType::Directory) {
      // A .git inside another .git (submodules) is part of the outer one.
      if (base == ".git" && p.find("/.git/") == std::string_view::npos) {
        Candidate c;
        c.path = path;
        c.layer = e.layer;
        c.size = dir_total(p);
        c.match = {SecretKind::GitDir, Check::None};
        candidates.push_back(std::move(c));
      }
      continue;
    }
    bool regular_file = e.type == EntryType::Regular;
    bool linkish = e.type == EntryType::Symlink || e.type == EntryType::Hardlink;
    if (!regular_file && !linkish) continue;
    int64_t size = regular_file ? e.size : 0;
    // busybox's applet links (dpkg, rpm, ...) name tools the image does not really carry.
    bool busybox_applet = e.type == EntryType::Symlink && base_of(e.link_target) == "busybox";

    if (auto root = go_toolchain_root(p); !root.empty()) {
      tooling.add(root, size);
    } else if (auto pm = package_manager_root(p); !pm.empty()) {
      managers.add(pm, size);
    } else if (auto cache = package_cache_root(p); !cache.empty()) {
      // apt keeps an empty "lock" file and "partial/" dir even when its lists are cleaned.
      if (regular_file && size > 0) caches.add(cache, size);
    } else if (busybox_applet) {
      // nothing: see above
    } else if ((in_bin_dir(dir_of(p)) && is_build_tool(base)) ||
               (is_one_of(base, {"cc1", "cc1plus", "cc1obj", "collect2", "lto1", "lto-wrapper"}) &&
                p.find("/gcc") != std::string_view::npos)) {
      tooling.add(p, size);
    } else if (in_bin_dir(dir_of(p)) && is_package_manager(base)) {
      managers.add(p, size);
    } else if (regular_file && (under(p, "/tmp") || under(p, "/var/tmp")) && size >= kLargeTmpFile) {
      caches.add(p, size);
    }
    if (regular_file && (under(p, "/usr/include") || under(p, "/usr/local/include"))) ++headers;

    if (regular_file && p.find("/.git/") == std::string_view::npos) {
      if (auto m = classify_secret_file(p); m.kind != SecretKind::None && size > 0) {
        candidates.push_back(Candidate{path, e.layer, e.layer_entry, size, m, nullptr, false, false});
      }
    }
  }
  if (headers > kIncludeHeaderThreshold) {
    if (dir_files.count("/usr/include")) tooling.add("/usr/include", dir_total("/usr/include"));
    if (dir_files.count("/usr/local/include"))
      tooling.add("/usr/local/include", dir_total("/usr/local/include"));
  }

  // Versions that later layers hid are still in the blobs anyone pulling the image receives.
  for (const auto& s : tree.shadowed()) {
    SecretMatch m;
    std::string path = s.path;
    auto git = path.find("/.git/");
    if (git != std::string::npos || ends_with(path, "/.git")) {
      if (git != std::string::npos) path.resize(git + 5);
      m = {SecretKind::GitDir, Check::None};
    } else {
      m = classify_secret_file(path);
      if (m.kind == SecretKind::None || s.size <= 0) continue;
    }
    candidates.push_back(Candidate{path, s.layer, -1, s.size, m, &s, false, false});
  }
  SLIMTRACE_TRY(check_contents(image, candidates, progress));

  std::vector<Finding>& out = r.findings;
  if (!tooling.empty()) {
    out.push_back(tooling.make(
        "build-tooling", Severity::High,
        "build tooling shipped in the image (compilers, build systems, toolchains, headers, debuggers)",
        "build in a separate stage and COPY --from it only the artifacts the app runs (multi-stage build); "
        "every compiler and debugger left in is attack surface"));
  }
  if (!managers.empty()) {
    out.push_back(managers.make("package-manager", Severity::Low, "package managers shipped in the image",
                                "use a distroless or scratch base for the final stage; a package manager is "
                                "only needed while building"));
  }
  if (!caches.empty()) {
    out.push_back(caches.make(
        "package-cache", Severity::Medium, "package manager caches, lists and large temporary files",
        "clean them in the same RUN step that makes them (rm -rf /var/lib/apt/lists/*, npm cache clean "
        "--force, pip --no-cache-dir) or use a cache mount (RUN --mount=type=cache)"));
  }

  // Secrets in the flattened view, one finding per kind.
  std::map<SecretKind, PathSet> live;
  // (layer holding the secret, layer hiding it, deleted rather than overwritten)
  using HiddenKey = std::tuple<int, int, bool>;
  std::map<HiddenKey, std::pair<PathSet, std::set<SecretKind>>> hidden;
  for (const auto& c : candidates) {
    if (!c.confirmed) continue;
    if (c.shadowed) {
      auto& h = hidden[HiddenKey{c.shadowed->layer, c.shadowed->by_layer, c.shadowed->deleted}];
      h.first.add(c.path, c.size);
      h.second.insert(c.match.kind);
    } else {
      live[c.match.kind].add(c.path, c.size);
    }
  }
  for (const auto& [kind, set] : live) {
    std::string title, advice;
    switch (kind) {
      case SecretKind::EnvFile:
        title = ".env files in the image";
        advice = "add .env* to .dockerignore; pass configuration at run time (environment, secret stores)";
        break;
      case SecretKind::PrivateKey:
        title = "private keys in the image";
        advice =
            "never COPY keys into an image: use build secrets (RUN --mount=type=secret) or mount them at "
            "run time; rotate these keys";
        break;
      case SecretKind::GitDir:
        title = ".git directories in the image";
        advice = "add .git to .dockerignore: history can hold remotes with credentials and deleted secrets";
        break;
      case SecretKind::RegistryToken:
        title =
            "package registry credentials (.npmrc/.pypirc/.netrc/.git-credentials with tokens or passwords)";
        advice =
            "use build secrets (RUN --mount=type=secret,id=npmrc) instead of copying credential files; "
            "revoke these tokens";
        break;
      case SecretKind::CloudCredentials:
        title = "cloud or registry credential files";
        advice =
            "never bake credentials into an image: use workload identity or mount them at run time; revoke "
            "these credentials";
        break;
      case SecretKind::None:
        break;
    }
    out.push_back(set.make("secret", secret_severity(kind), title, advice));
  }
  for (const auto& [key, value] : hidden) {
    const auto& [layer, by_layer, deleted] = key;
    Severity sev = Severity::High;
    std::string kinds;
    for (SecretKind k : value.second) {
      sev = std::max(sev, secret_severity(k));
      if (!kinds.empty()) kinds += ", ";
      kinds += secret_label(k);
    }
    std::string title = "secret still present in " + layer_word(layer) + " though " +
                        (deleted ? "deleted" : "overwritten") + " in " + layer_word(by_layer) + " (" + kinds +
                        ")";
    out.push_back(value.first.make(
        "secret", sev, std::move(title),
        "a later layer hiding a file does not remove it from the image: anyone can extract it from the "
        "earlier "
        "layer's blob. Remove it in the same step that creates it (or use RUN --mount=type=secret), rebuild, "
        "and rotate the secret"));
  }

  // Config checks.
  const nlohmann::json* cfg = nullptr;
  if (image.config.is_object() && image.config.contains("config") && image.config["config"].is_object()) {
    cfg = &image.config["config"];
  }
  std::string user;
  if (cfg && cfg->contains("User") && (*cfg)["User"].is_string()) user = (*cfg)["User"].get<std::string>();
  std::string user_part = user.substr(0, user.find(':'));
  if (user_part.empty() || user_part == "root" || user_part == "0") {
    Finding f;
    f.id = "root-user";
    f.severity = Severity::Medium;
    f.title = user.empty() ? "no USER set: the container runs as root" : "USER is root ('" + user + "')";
    f.advice = "add a non-root USER (e.g. USER 65532:65532) that owns only the files the app must write";
    out.push_back(std::move(f));
  }
  const nlohmann::json* hc = nullptr;
  if (cfg && cfg->contains("Healthcheck") && (*cfg)["Healthcheck"].is_object()) hc = &(*cfg)["Healthcheck"];
  bool has_test = hc && hc->contains("Test") && (*hc)["Test"].is_array() && !(*hc)["Test"].empty();
  if (!has_test) {
    Finding f;
    f.id = "no-healthcheck";
    f.severity = Severity::Low;
    f.title = "no HEALTHCHECK";
    f.advice =
        "add a HEALTHCHECK so the engine can tell a hung container from a healthy one (orchestrators "
        "with their own probes, like Kubernetes, ignore it)";
    out.push_back(std::move(f));
  } else if ((*hc)["Test"][0] == "NONE") {
    Finding f;
    f.id = "no-healthcheck";
    f.severity = Severity::Info;
    f.title = "HEALTHCHECK explicitly disabled (NONE)";
    f.advice = "fine if an orchestrator probes the container; otherwise add a HEALTHCHECK";
    out.push_back(std::move(f));
  }

  if (r.wasted_bytes > 0) {
    PathSet wasted;
    for (const auto& s : tree.shadowed()) {
      if (s.size > 0) wasted.add(s.path, s.size);
    }
    double share =
        r.layer_bytes > 0 ? static_cast<double>(r.wasted_bytes) / static_cast<double>(r.layer_bytes) : 0;
    char pct[32];
    std::snprintf(pct, sizeof pct, "%.1f%%", share * 100.0);
    out.push_back(wasted.make("wasted-space", share >= 0.10 ? Severity::Medium : Severity::Low,
                              human_bytes(r.wasted_bytes) +
                                  " in files that later layers overwrite or delete (" + pct +
                                  " of the layers' bytes)",
                              "delete files in the same RUN step that creates them, or COPY only the final "
                              "files into a fresh stage"));
  }

  std::stable_sort(out.begin(), out.end(), [](const Finding& a, const Finding& b) {
    if (a.severity != b.severity) return a.severity > b.severity;
    return a.id < b.id;
  });
  return r;
}

nlohmann::json to_json(const XrayReport& r) {
  using nlohmann::json;
  auto sized = [](const std::vector<SizedPath>& v) {
    json a = json::array();
    for (const auto& s : v) a.push_back({{"path", s.path}, {"bytes", s.bytes}});
    return a;
  };
  json layers = json::array();
  for (size_t i = 0; i < r.layers.size(); ++i) {
    const auto& l = r.layers[i];
    layers.push_back({{"index", i},
                      {"digest", l.digest},
                      {"diff_id", l.diff_id},
                      {"compressed_size", l.compressed_size},
                      {"uncompressed_size", l.uncompressed_size},
                      {"created_by", l.created_by},
                      {"files_added", l.stats.files_added},
                      {"bytes_added", l.stats.bytes_added},
                      {"whiteouts", l.stats.whiteouts},
                      {"bytes_removed", l.stats.bytes_removed}});
  }
  json findings = json::array();
  for (const auto& f : r.findings) {
    findings.push_back({{"id", f.id},
                        {"severity", severity_name(f.severity)},
                        {"title", f.title},
                        {"paths", f.paths},
                        {"path_bytes", f.path_bytes},
                        {"paths_total", f.paths_total},
                        {"bytes", f.bytes},
                        {"advice", f.advice}});
  }
  auto max = r.max_severity();
  return json{{"schema", "slimtrace.xray/v1"},
              {"reference", r.reference},
              {"manifest_digest", r.manifest_digest},
              {"config_digest", r.config_digest},
              {"platform", r.platform},
              {"layers", std::move(layers)},
              {"totals",
               {{"files", r.files},
                {"bytes", r.total_bytes},
                {"layer_bytes", r.layer_bytes},
                {"compressed_bytes", r.compressed_bytes},
                {"wasted_bytes", r.wasted_bytes},
                {"efficiency", r.efficiency}}},
              {"largest_files", sized(r.largest_files)},
              {"largest_dirs", sized(r.largest_dirs)},
              {"findings", std::move(findings)},
              {"max_severity", max ? json(severity_name(*max)) : json(nullptr)}};
}

std::string to_text(const XrayReport& r) {
  std::string out;
  auto line = [&out](const std::string& s) {
    out += s;
    out += '\n';
  };
  auto pad = [](std::string s, size_t w) {
    if (s.size() < w) s.append(w - s.size(), ' ');
    return s;
  };
  auto lpad = [](std::string s, size_t w) {
    if (s.size() < w) s.insert(0, w - s.size(), ' ');
    return s;
  };

  line("Image:     " + r.reference);
  line("Manifest:  " + r.manifest_digest);
  line("Config:    " + r.config_digest);
  line("Platform:  " + r.platform);
  line("");
  line("Layers");
  line("  " + pad("#", 4) + lpad("COMPRESSED", 11) + lpad("SIZE", 11) + lpad("FILES", 8) + "  " +
       pad("DIGEST", 20) + "  CREATED BY");
  for (size_t i = 0; i < r.layers.size(); ++i) {
    const auto& l = r.layers[i];
    std::string created = l.created_by;
    for (char& c : created) {
      if (c == '\n' || c == '\t') c = ' ';
    }
    if (created.size() > 80) created = created.substr(0, 77) + "...";
    line("  " + pad(std::to_string(i), 4) + lpad(human_bytes(l.compressed_size), 11) +
         lpad(human_bytes(l.uncompressed_size), 11) + lpad(std::to_string(l.stats.files_added), 8) + "  " +
         pad(short_digest(l.digest), 20) + "  " + created);
  }
  line("");
  char eff[32];
  std::snprintf(eff, sizeof eff, "%.1f%%", r.efficiency * 100.0);
  line("Totals");
  line("  files:       " + std::to_string(r.files) + " entries, " + human_bytes(r.total_bytes) +
       " of file content in the flattened view");
  line("  layers:      " + human_bytes(r.layer_bytes) + " uncompressed, " + human_bytes(r.compressed_bytes) +
       " compressed");
  line("  wasted:      " + human_bytes(r.wasted_bytes) + " in files that later layers overwrite or delete");
  line("  efficiency:  " + std::string(eff));
  if (!r.largest_files.empty()) {
    line("");
    line("Largest files");
    for (const auto& s : r.largest_files) line("  " + lpad(human_bytes(s.bytes), 10) + "  " + s.path);
  }
  if (!r.largest_dirs.empty()) {
    line("");
    line("Largest directories");
    for (const auto& s : r.largest_dirs) line("  " + lpad(human_bytes(s.bytes), 10) + "  " + s.path);
  }
  line("");
  if (r.findings.empty()) {
    line("Findings: none");
    return out;
  }
  line("Findings (" + std::to_string(r.findings.size()) + ")");
  std::optional<Severity> group;
  for (const auto& f : r.findings) {
    if (group != f.severity) {
      group = f.severity;
      std::string name(severity_name(f.severity));
      for (char& c : name) c = static_cast<char>(c - 'a' + 'A');
      line("");
      line("  " + name);
    }
    std::string head = "  - [" + f.id + "] " + f.title;
    if (f.paths_total > 0) {
      head += " (" + std::to_string(f.paths_total) + (f.paths_total == 1 ? " path, " : " paths, ") +
              human_bytes(f.bytes) + ")";
    }
    line(head);
    for (size_t i = 0; i < f.paths.size(); ++i) {
      std::string bytes = i < f.path_bytes.size() ? human_bytes(f.path_bytes[i]) : "";
      line("      " + lpad(bytes, 10) + "  " + f.paths[i]);
    }
    if (f.paths_total > static_cast<int64_t>(f.paths.size())) {
      line("      ... and " + std::to_string(f.paths_total - static_cast<int64_t>(f.paths.size())) + " more");
    }
    if (!f.advice.empty()) line("      advice: " + f.advice);
  }
  return out;
}

}  // namespace slimtrace::image
