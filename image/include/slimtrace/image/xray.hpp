// `slimtrace xray`: a static report on an image: layers, sizes, waste, largest files and
// directories, and findings that multi-stage-build practice warns about.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "slimtrace/image/file_tree.hpp"
#include "slimtrace/image/source.hpp"
#include "slimtrace/result.hpp"

namespace slimtrace::image {

enum class Severity { Info = 0, Low = 1, Medium = 2, High = 3, Critical = 4 };
std::string_view severity_name(Severity s);
std::optional<Severity> parse_severity(std::string_view text);

struct Finding {
  std::string id;  // stable, e.g. "build-tooling", "package-cache", "secret", "root-user"
  Severity severity = Severity::Info;
  std::string title;                // one line
  std::vector<std::string> paths;   // the paths involved (may be capped, see paths_total)
  std::vector<int64_t> path_bytes;  // bytes behind each of `paths`, same order (biggest first)
  int64_t paths_total = 0;
  int64_t bytes = 0;
  std::string advice;
};

struct XrayLayer {
  std::string digest;
  std::string diff_id;
  int64_t compressed_size = 0;
  int64_t uncompressed_size = 0;
  std::string created_by;
  LayerStats stats;
};

struct SizedPath {
  std::string path;
  int64_t bytes = 0;
};

struct XrayReport {
  std::string reference;
  std::string manifest_digest;
  std::string config_digest;
  std::string platform;
  std::vector<XrayLayer> layers;
  int64_t files = 0;        // entries in the flattened view
  int64_t total_bytes = 0;  // regular file bytes in the flattened view
  int64_t layer_bytes = 0;  // sum of uncompressed layer sizes
  int64_t compressed_bytes = 0;
  int64_t wasted_bytes = 0;  // bytes of versions later layers overwrite or delete
  double efficiency = 1.0;   // dive's score
  std::vector<SizedPath> largest_files;
  // Directory size: all regular files under it. A directory whose bytes all lie in one
  // subdirectory is left out in favour of that subdirectory (no /var, /var/lib, /var/lib/apt chains).
  std::vector<SizedPath> largest_dirs;
  std::vector<Finding> findings;
  std::optional<Severity> max_severity() const;
};

struct XrayOptions {
  size_t top = 10;  // largest files/dirs listed
};

Result<XrayReport> xray(const SourceImage& image, const FileTree& tree, const XrayOptions& options = {},
                        const ProgressFn& progress = {});
// JSON for machines, schema "slimtrace.xray/v1": schema, reference, manifest_digest, config_digest,
// platform, layers[] {index, digest, diff_id, compressed_size, uncompressed_size, created_by,
// files_added, bytes_added, whiteouts, bytes_removed}, totals {files, bytes, layer_bytes,
// compressed_bytes, wasted_bytes, efficiency (0..1)}, largest_files[] and largest_dirs[] {path, bytes},
// findings[] {id, severity, title, paths, path_bytes, paths_total, bytes, advice}, max_severity (or
// null). Layer numbers, in titles too, are 0-based indexes into layers[], as in error messages.
nlohmann::json to_json(const XrayReport& report);
std::string to_text(const XrayReport& report);

}  // namespace slimtrace::image
