// Image references in the transport syntax of skopeo and podman.
#pragma once

#include <filesystem>
#include <optional>
#include <string>

#include "slimtrace/result.hpp"

namespace slimtrace::image {

enum class Transport {
  OciLayout,
  OciArchive,
  DockerArchive,
  DockerDaemon,  // "docker-daemon:NAME[:TAG]" or "docker-daemon:sha256:ID": a Docker engine's store
  Registry,      // "docker://[REGISTRY/]NAME[:TAG|@DIGEST]": an OCI distribution registry
};

struct ImageRef {
  Transport transport = Transport::OciLayout;
  std::filesystem::path path;
  // oci/oci-archive: the org.opencontainers.image.ref.name to select (empty: the only image).
  // docker-archive: "name:tag" to select, or empty.
  std::string tag;
  // docker-archive: "@N" selects the N-th image of a multi-image archive.
  std::optional<int> index;

  // docker: only: the registry host[:port] ("docker.io" when the name has none) and the
  // repository ("library/busybox"); docker-daemon: repository is the name as given ("app",
  // "localhost:5000/app"). For both, `tag` is the bare tag ("latest" when neither tag nor digest is
  // given) and `digest` the "sha256:..." the image is named by, if any (docker-daemon: an image ID).
  std::string registry;
  std::string repository;
  std::string digest;

  // docker: and docker-daemon: images live outside the file system; path is empty for them.
  bool is_remote() const { return transport == Transport::DockerDaemon || transport == Transport::Registry; }
  // "REGISTRY/REPOSITORY:TAG" (docker:) or "NAME:TAG" (docker-daemon:), "@DIGEST" when named so.
  std::string name() const;
  std::string to_string() const;
};

std::string_view transport_name(Transport t);

// Parses "oci:DIR[:TAG]", "oci-archive:FILE[:TAG]", "docker-archive:FILE[:NAME:TAG|:@N]",
// "docker-daemon:NAME[:TAG]", "docker-daemon:sha256:ID", "docker://[REGISTRY/]NAME[:TAG|@DIGEST]", or a bare
// path whose transport is detected from its content (a directory with oci-layout, a tar holding
// manifest.json and/or oci-layout). Output references may name paths that do not exist yet.
Result<ImageRef> parse_reference(const std::string& text, bool must_exist = true);

}  // namespace slimtrace::image
