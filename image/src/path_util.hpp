// Internal: lexical path handling shared by the tree, the archive unpacker and the readers.
#pragma once

#include <string>
#include <string_view>

namespace slimtrace::image::detail {

// Makes "/a/b" from any path: duplicate slashes and "." removed, ".." pops a component and stops
// at the root, as the kernel does for "/..".
std::string clean_path(std::string_view p);

// "/a/b" -> "/a"; "/a" -> "/".
inline std::string parent_of(const std::string& p) {
  auto s = p.rfind('/');
  return s == 0 || s == std::string::npos ? "/" : p.substr(0, s);
}
inline std::string basename_of(const std::string& p) { return p.substr(p.rfind('/') + 1); }
inline std::string join_path(const std::string& dir, const std::string& name) {
  return dir == "/" ? "/" + name : dir + "/" + name;
}

}  // namespace slimtrace::image::detail
