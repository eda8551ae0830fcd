// Internal: moving images between the file system and the places they live outside it. The
// transports themselves (open_image, write_image) go through a local OCI layout in the work
// directory, so everything else reads and writes only local images.
#pragma once

#include <filesystem>
#include <string>

#include "slimtrace/image/file_tree.hpp"
#include "slimtrace/image/reference.hpp"
#include "slimtrace/image/remote.hpp"
#include "slimtrace/image/source.hpp"
#include "slimtrace/result.hpp"

namespace slimtrace::image::detail {

// docker://: fetches the manifest named by ref (tag or digest), and when it is an index / manifest
// list, the one for `platform`; then its config and layers, each verified against its digest and
// size while it streams. Writes them as a new OCI image layout at `dest` (which does not exist
// yet): blobs/sha256/..., oci-layout, and an index.json whose only descriptor is the selected
// manifest, with the media type and digest the registry served.
Status registry_pull(const ImageRef& ref, const Platform& platform, const RemoteOptions& options,
                     const std::filesystem::path& dest, const ProgressFn& progress = {});

// docker://: pushes the image of the OCI layout `layout` (whose index.json has exactly one
// manifest) to ref: each blob the registry lacks, then the manifest under ref's tag (by digest if
// ref names one). Returns the manifest digest the registry acknowledged.
Result<std::string> registry_push(const std::filesystem::path& layout, const ImageRef& ref,
                                  const RemoteOptions& options, const ProgressFn& progress = {});

// docker://: checks before any long work that an image can be pushed to ref: the registry answers,
// accepts the credentials, and lets an upload start (which is then cancelled).
Status registry_check_push(const ImageRef& ref, const RemoteOptions& options);

// docker-daemon: checks that the engine answers on its socket.
Status daemon_check(const RemoteOptions& options);

// docker-daemon: streams `GET /images/{name}/get` from the engine and unpacks the docker-save
// archive into `dest` (a new directory), ready for the docker-archive reader.
Status daemon_save(const ImageRef& ref, const RemoteOptions& options, const std::filesystem::path& dest,
                   const ProgressFn& progress = {});

// docker-daemon: streams the image of the OCI layout `layout` (exactly one manifest) to the
// engine's `POST /images/load` as a docker-save archive, tagged ref.name(). Returns the image ID
// the engine reports ("sha256:...").
Result<std::string> daemon_load(const std::filesystem::path& layout, const ImageRef& ref,
                                const RemoteOptions& options, const ProgressFn& progress = {});

}  // namespace slimtrace::image::detail
