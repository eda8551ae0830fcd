#include "dpkg.hpp"

namespace slimtrace::packer::pkgdb {
namespace {

// Splits text into stanzas separated by blank lines, without the separators.
std::vector<std::string> stanzas(std::string_view text) {
  std::vector<std::string> out;
  std::string cur;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    std::string_view line =
        text.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
    pos = nl == std::string_view::npos ? text.size() : nl + 1;
    bool blank = line.find_first_not_of(" \t\r") == std::string_view::npos;
    if (blank) {
      if (!cur.empty()) out.push_back(std::move(cur));
      cur.clear();
      continue;
    }
    cur.append(line);
    cur.push_back('\n');
  }
  if (!cur.empty()) out.push_back(std::move(cur));
  return out;
}

std::string field(const std::string& stanza, std::string_view name) {
  size_t pos = 0;
  while (pos < stanza.size()) {
    size_t nl = stanza.find('\n', pos);
    std::string_view line(stanza.data() + pos, (nl == std::string::npos ? stanza.size() : nl) - pos);
    pos = nl == std::string::npos ? stanza.size() : nl + 1;
    if (line.size() > name.size() && line.substr(0, name.size()) == name && line[name.size()] == ':') {
      std::string_view v = line.substr(name.size() + 1);
      size_t a = v.find_first_not_of(" \t");
      size_t b = v.find_last_not_of(" \t\r");
      return a == std::string_view::npos ? "" : std::string(v.substr(a, b - a + 1));
    }
  }
  return "";
}

}  // namespace

std::vector<DpkgPackage> parse_dpkg_status(std::string_view status) {
  std::vector<DpkgPackage> out;
  for (auto& s : stanzas(status)) {
    DpkgPackage p;
    p.name = field(s, "Package");
    p.arch = field(s, "Architecture");
    p.multi_arch = field(s, "Multi-Arch");
    p.paragraph = std::move(s);
    if (!p.name.empty()) out.push_back(std::move(p));
  }
  return out;
}

std::vector<std::string> dpkg_list_names(const DpkgPackage& p) {
  std::vector<std::string> names;
  if (!p.arch.empty()) names.push_back("/var/lib/dpkg/info/" + p.name + ":" + p.arch + ".list");
  names.push_back("/var/lib/dpkg/info/" + p.name + ".list");
  return names;
}

std::vector<std::string> parse_list(std::string_view list) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < list.size()) {
    size_t nl = list.find('\n', pos);
    std::string_view line =
        list.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
    pos = nl == std::string_view::npos ? list.size() : nl + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (!line.empty()) out.emplace_back(line);
  }
  return out;
}

PrunedDpkg prune_dpkg(std::string_view status, const std::map<std::string, std::string>& lists,
                      const std::function<bool(const std::string&)>& file_kept,
                      const std::function<bool(const std::string&)>& line_kept) {
  PrunedDpkg out;
  for (const auto& p : parse_dpkg_status(status)) {
    const std::string* list_path = nullptr;
    const std::string* content = nullptr;
    for (const auto& n : dpkg_list_names(p)) {
      auto it = lists.find(n);
      if (it != lists.end()) {
        list_path = &it->first;
        content = &it->second;
        break;
      }
    }
    if (content == nullptr) continue;  // no files: nothing of it can be in the image
    bool any = false;
    std::string trimmed;
    for (const auto& path : parse_list(*content)) {
      if (file_kept(path)) any = true;
      if (line_kept(path)) trimmed += path + "\n";
    }
    if (!any) continue;
    if (!out.status.empty()) out.status += "\n";
    out.status += p.paragraph;
    out.kept_packages.push_back(p.name);
    out.kept_lists[*list_path] = std::move(trimmed);
  }
  return out;
}

PrunedApk prune_apk(std::string_view installed, const std::function<bool(const std::string&)>& file_kept) {
  PrunedApk out;
  for (const auto& s : stanzas(installed)) {
    bool any = false;
    std::string dir, name;
    size_t pos = 0;
    while (pos < s.size()) {
      size_t nl = s.find('\n', pos);
      std::string line = s.substr(pos, nl - pos);
      pos = nl + 1;
      if (line.rfind("P:", 0) == 0)
        name = line.substr(2);
      else if (line.rfind("F:", 0) == 0)
        dir = line.substr(2);
      else if (line.rfind("R:", 0) == 0 && file_kept("/" + (dir.empty() ? "" : dir + "/") + line.substr(2)))
        any = true;
    }
    if (!any) continue;
    if (!out.installed.empty()) out.installed += "\n";
    out.installed += s;
    out.kept_packages.push_back(name);
  }
  if (!out.installed.empty()) out.installed += "\n";
  return out;
}

}  // namespace slimtrace::packer::pkgdb
