// Internal: an OCI runtime bundle (config.json + the files it bind-mounts) that runs an image the
// way `docker run --network none` would. The config generation is pure (unit-tested without root);
// prepare_bundle() does the I/O.
#pragma once

#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "slimtrace/image/file_tree.hpp"
#include "slimtrace/result.hpp"
#include "slimtrace/tracer/runner.hpp"

namespace slimtrace::tracer {

// The parts of an image config that decide how it runs.
struct ImageRunConfig {
  std::vector<std::string> entrypoint;
  std::vector<std::string> cmd;
  std::vector<std::string> env;
  std::string working_dir;
  std::string user;
  std::vector<std::string> volumes;  // sorted container paths
  std::string stop_signal;           // as written in the image ("SIGQUIT", "3"); empty: none
  // From an image config blob (the object holding "config"); missing fields stay empty.
  static ImageRunConfig from_image_config(const nlohmann::json& image_config);
};

struct ResolvedUser {
  uint32_t uid = 0;
  uint32_t gid = 0;
  std::vector<uint32_t> additional_gids;
  std::string home = "/";
};

// Resolves a Docker USER value ("", "name", "uid", "name:group", "uid:gid", "uid:group", ...) with
// the image's own /etc/passwd and /etc/group contents (either may be empty when the file is missing).
Result<ResolvedUser> resolve_user(const std::string& user, const std::string& passwd,
                                  const std::string& group);

// Docker's default capability set, in Docker's order.
const std::vector<std::string>& docker_default_capabilities();
// Capability number for "CAP_X" or "X"; -1 when unknown.
int capability_number(const std::string& name);
// `caps` minus those not in `bounding` (a CapBnd mask).
std::vector<std::string> limit_to_bounding_set(const std::vector<std::string>& caps, uint64_t bounding);
// CapBnd of this process from /proc/self/status.
Result<uint64_t> read_bounding_set();

// The command a container runs: Docker's rules for --entrypoint and CMD overrides.
std::vector<std::string> effective_args(const ImageRunConfig& config,
                                        const std::optional<std::vector<std::string>>& entrypoint,
                                        const std::vector<std::string>& cmd);
// Image Env with `overrides` (KEY=VALUE, or KEY alone to take it from our environment) applied by
// key, and PATH, HOSTNAME and HOME defaulted as Docker does.
std::vector<std::string> effective_env(const std::vector<std::string>& image_env,
                                       const std::vector<std::string>& overrides, const std::string& hostname,
                                       const std::string& home);

struct VolumeMount {
  std::string destination;       // container path
  std::filesystem::path source;  // empty host directory under the bundle
};

// Everything config.json is made from.
struct BundleInputs {
  ImageRunConfig image;
  std::optional<std::vector<std::string>> entrypoint;
  std::vector<std::string> cmd;
  std::vector<std::string> env;
  std::vector<HostMount> mounts;
  std::string hostname;
  std::filesystem::path rootfs;  // as written into root.path (absolute or relative to the bundle)
  std::filesystem::path netns;   // network namespace file; empty: a new, unnamed one
  std::filesystem::path hosts_file, hostname_file, resolv_file;  // host files bind-mounted into /etc
  std::vector<VolumeMount> volumes;
  std::string passwd, group;  // contents of the image's /etc/passwd and /etc/group
  uint64_t bounding_set = ~uint64_t{0};
  uint64_t nofile_limit = 1048576;        // RLIMIT_NOFILE soft and hard
  std::optional<nlohmann::json> seccomp;  // linux.seccomp; unset: allow-all
};

struct BundleConfig {
  nlohmann::json config;  // config.json
  std::vector<std::string> args;
  std::string cwd;
};

Result<BundleConfig> make_oci_config(const BundleInputs& in);

struct PreparedBundle {
  std::filesystem::path dir;     // the bundle directory (config.json inside)
  std::filesystem::path rootfs;  // host path of the rootfs
  BundleConfig config;
  ImageRunConfig image;
};

// Writes config.json, /etc/hosts, /etc/hostname, /etc/resolv.conf and the volume directories into
// `bundle_dir` for an already materialised `rootfs` (read for /etc/passwd and /etc/group, never
// following links out of it).
Result<PreparedBundle> prepare_bundle(const RunSpec& spec, const std::filesystem::path& bundle_dir,
                                      const std::filesystem::path& rootfs, const std::string& hostname,
                                      const std::filesystem::path& netns);

// Reads a file inside `root` with every component resolved inside it (openat2 RESOLVE_IN_ROOT).
// A missing file gives an empty string, not an error.
Result<std::string> read_file_in_root(const std::filesystem::path& root, const std::string& path);

}  // namespace slimtrace::tracer
