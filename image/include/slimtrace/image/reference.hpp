// Image references in the transport syntax of skopeo and podman.
#pragma once

#include <filesystem>
#include <optional>
#include <string>

#include "slimtrace/result.hpp"

namespace slimtrace::image {

enum class Transport { OciLayout, OciArchive, DockerArchive };

struct ImageRef {
  Transport transport = Transport::OciLayout;
  std::filesystem::path path;
  // oci/oci-archive: the org.opencontainers.image.ref.name to select (empty: the only image).
  // docker-archive: "name:tag" to select, or empty.
  std::string tag;
  // docker-archive: "@N" selects the N-th image of a multi-image archive.
  std::optional<int> index;

  std::string to_string() const;
};

std::string_view transport_name(Transport t);

// Parses "oci:DIR[:TAG]", "oci-archive:FILE[:TAG]", "docker-archive:FILE[:NAME:TAG|:@N]", or a bare
// path whose transport is detected from its content (a directory with oci-layout, a tar holding
// manifest.json and/or oci-layout). Output references may name paths that do not exist yet.
Result<ImageRef> parse_reference(const std::string& text, bool must_exist = true);

}  // namespace slimtrace::image
