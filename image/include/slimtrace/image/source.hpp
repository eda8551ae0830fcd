// An image read from disk: its manifest, config and layer descriptors, all verified against their
// digests except layer contents, which are verified while they stream (see layer_reader.hpp).
#pragma once

#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "slimtrace/image/reference.hpp"
#include "slimtrace/image/remote.hpp"
#include "slimtrace/result.hpp"

namespace slimtrace::image {

inline constexpr std::string_view kOciManifest = "application/vnd.oci.image.manifest.v1+json";
inline constexpr std::string_view kOciIndex = "application/vnd.oci.image.index.v1+json";
inline constexpr std::string_view kOciConfig = "application/vnd.oci.image.config.v1+json";
inline constexpr std::string_view kOciLayerTar = "application/vnd.oci.image.layer.v1.tar";
inline constexpr std::string_view kOciLayerGzip = "application/vnd.oci.image.layer.v1.tar+gzip";
inline constexpr std::string_view kOciLayerZstd = "application/vnd.oci.image.layer.v1.tar+zstd";
inline constexpr std::string_view kDockerManifest = "application/vnd.docker.distribution.manifest.v2+json";
inline constexpr std::string_view kDockerManifestList =
    "application/vnd.docker.distribution.manifest.list.v2+json";
inline constexpr std::string_view kDockerConfig = "application/vnd.docker.container.image.v1+json";
inline constexpr std::string_view kDockerLayerGzip = "application/vnd.docker.image.rootfs.diff.tar.gzip";

struct Platform {
  std::string os = "linux";
  std::string architecture = "amd64";
  std::string variant;
  // Parses "os/arch[/variant]".
  static Result<Platform> parse(const std::string& text);
  std::string to_string() const;
};

enum class Compression { None, Gzip, Zstd };

struct LayerDescriptor {
  std::string media_type;
  std::string digest;   // of the blob as stored
  int64_t size = -1;    // of the blob as stored; -1 when the source does not say (docker-archive)
  std::string diff_id;  // of the uncompressed tar, from the config
  std::filesystem::path blob_path;
  std::string created_by;  // from the config's history, when known
};

struct SourceImage {
  ImageRef ref;
  std::string manifest_digest;
  std::string manifest_media_type;
  nlohmann::json manifest;
  std::string config_digest;
  nlohmann::json config;
  std::vector<LayerDescriptor> layers;
  Platform platform;
  // Where archive transports were unpacked; removed with the SourceImage's work directory.
  std::filesystem::path root;
};

struct OpenOptions {
  Platform platform;
  // Scratch space for archive transports; a unique subdirectory is made and removed on exit.
  std::filesystem::path work_dir;
  // How docker: and docker-daemon: sources are reached.
  RemoteOptions remote = {};
};

// Opens an image, verifying every manifest, index and config blob against its digest and size.
Result<SourceImage> open_image(const ImageRef& ref, const OpenOptions& options);

}  // namespace slimtrace::image
