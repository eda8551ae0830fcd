// Builds test images in-process, including broken and hostile ones: raw tar headers are written as
// given (no normalisation), so tests can express path traversal, absurd sizes and the like.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace slimtrace::testing {

struct RawEntry {
  std::string name;      // written verbatim (a pax "path" record is added when > 100 bytes)
  char typeflag = '0';   // '0' file, '1' hardlink, '2' symlink, '3' char, '4' block, '5' dir, '6' fifo
  std::string linkname;  // verbatim
  std::string data;      // file content
  uint32_t mode = 0644;
  uint32_t uid = 0, gid = 0;
  int64_t mtime = 1700000000;
  uint32_t dev_major = 0, dev_minor = 0;
  std::map<std::string, std::string> pax;  // extra pax records, e.g. "SCHILY.xattr.security.capability"
  std::optional<std::string> size_field;   // overrides the 12-byte octal size field verbatim (absurd sizes)
};

RawEntry file(const std::string& name, const std::string& data, uint32_t mode = 0644);
RawEntry dir(const std::string& name, uint32_t mode = 0755);
RawEntry symlink(const std::string& name, const std::string& target);
RawEntry hardlink(const std::string& name, const std::string& target);
RawEntry whiteout(const std::string& path);    // "dir/.wh.name"
RawEntry opaque(const std::string& dir_path);  // "dir/.wh..wh..opq"

enum class LayerCompression { None, Gzip, Zstd };

struct LayerSpec {
  std::vector<RawEntry> entries;
  LayerCompression compression = LayerCompression::Gzip;
  std::string created_by = "test layer";
  bool end_of_archive = true;  // false: omit the two zero blocks (truncated tar)
};

struct ImageSpec {
  std::vector<LayerSpec> layers;
  std::string architecture = "amd64";
  std::string os = "linux";
  nlohmann::json container_config = nlohmann::json::object();  // "config" object: Entrypoint, Cmd...
  bool docker_media_types = false;  // Docker v2 schema 2 manifest/config/layer media types
};

// Raw tar stream (512-byte blocks, ustar headers, pax headers when needed).
std::string make_tar(const std::vector<RawEntry>& entries, bool end_of_archive = true);
std::string gzip_bytes(const std::string& data);
std::string zstd_bytes(const std::string& data);
std::string sha256_hex(const std::string& data);

struct BuiltImage {
  std::string manifest_digest;  // "sha256:..."; empty for docker archives, which hold no manifest blob
  std::string config_digest;
  std::vector<std::string> layer_digests;
  std::vector<std::string> diff_ids;
};

// Writes an OCI image layout at `dir` (created if missing; an existing index.json gets the new
// manifest appended) with ref.name annotation `tag` (empty: none).
BuiltImage write_oci_layout(const std::filesystem::path& dir, const ImageSpec& spec,
                            const std::string& tag = "latest");

// Several platforms under one image index in an OCI layout; returns per-platform results.
std::vector<BuiltImage> write_oci_index(const std::filesystem::path& dir, const std::vector<ImageSpec>& specs,
                                        const std::string& tag = "latest");

// A `docker save` style archive (manifest.json, <hex>.json configs, <hex>/layer.tar layers,
// repositories) holding one or more images, each with its RepoTags.
// Layers are stored uncompressed (LayerSpec::compression is ignored), so layer_digests == diff_ids.
std::vector<BuiltImage> write_docker_archive(
    const std::filesystem::path& file,
    const std::vector<std::pair<ImageSpec, std::vector<std::string>>>& images);

// An OCI layout packed as a tar file (what `skopeo copy ... oci-archive:` writes).
BuiltImage write_oci_archive(const std::filesystem::path& file, const ImageSpec& spec,
                             const std::string& tag = "latest");

// Helpers to break a layout after writing it.
std::filesystem::path blob_path(const std::filesystem::path& layout, const std::string& digest);
std::string read_file(const std::filesystem::path& p);
void write_file(const std::filesystem::path& p, const std::string& data);

// A fresh temp directory removed when the object dies.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& s) const { return path_ / s; }

 private:
  std::filesystem::path path_;
};

}  // namespace slimtrace::testing
