// Package databases pruned to what a slim image still holds, so that scanners see the OS packages
// that are really there and not the ones minification removed.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace slimtrace::packer::pkgdb {

struct DpkgPackage {
  std::string name;
  std::string arch;
  std::string multi_arch;
  std::string paragraph;  // the stanza as written, without the blank line that ends it
};

std::vector<DpkgPackage> parse_dpkg_status(std::string_view status);

// The names a package's file list may have under /var/lib/dpkg/info ("pkg.list", "pkg:arch.list").
std::vector<std::string> dpkg_list_names(const DpkgPackage& p);

// One path per line, as dpkg writes them ("/." for the root).
std::vector<std::string> parse_list(std::string_view list);

struct PrunedDpkg {
  std::string status;                             // the new status file
  std::vector<std::string> kept_packages;         // names in status order
  std::map<std::string, std::string> kept_lists;  // list path -> trimmed content
};

// `lists`: list path -> content. `file_kept(path)`: whether a listed non-directory path survives;
// `line_kept(path)`: whether a listed line (files and directories) stays in the trimmed list.
PrunedDpkg prune_dpkg(std::string_view status, const std::map<std::string, std::string>& lists,
                      const std::function<bool(const std::string&)>& file_kept,
                      const std::function<bool(const std::string&)>& line_kept);

// apk's /lib/apk/db/installed: stanzas of "X:value" lines; F: a directory, R: a file in the last F.
struct PrunedApk {
  std::string installed;
  std::vector<std::string> kept_packages;
};
PrunedApk prune_apk(std::string_view installed, const std::function<bool(const std::string&)>& file_kept);

}  // namespace slimtrace::packer::pkgdb
