// Where images that do not live in the file system are reached: a Docker engine (docker-daemon:)
// and OCI distribution registries (docker://).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

namespace slimtrace::image {

struct RemoteOptions {
  // docker://: "USER:PASS" used instead of the auth file's entry for the registry.
  std::string creds;
  // docker://: verify the registry's TLS certificate; false also allows plain http (local registries).
  bool tls_verify = true;
  // docker://: the auth file with "auths"; empty: $REGISTRY_AUTH_FILE, else $DOCKER_CONFIG/config.json,
  // else ~/.docker/config.json.
  std::filesystem::path auth_file;
  // docker-daemon: the engine's endpoint, "unix:///path" (empty: $DOCKER_HOST, else
  // unix:///var/run/docker.sock).
  std::string docker_host;
  // docker:// uploads: 0 sends each blob in one request; N > 0 sends it in chunks of N bytes.
  int64_t chunk_size = 0;
  // docker://: attempts per request on transient failures (connection errors, 429, 5xx), with backoff.
  int attempts = 4;
};

}  // namespace slimtrace::image
