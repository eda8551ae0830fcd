// Checks an image the way a registry and a runtime would.
#pragma once

#include <string>
#include <vector>

#include "slimtrace/image/reference.hpp"
#include "slimtrace/image/source.hpp"
#include "slimtrace/result.hpp"

namespace slimtrace::image {

struct ValidationReport {
  std::vector<std::string> problems;  // empty: valid
  int manifests = 0;
  int layers = 0;
  // docker: / docker-daemon: only: the image could not be fetched (engine or registry unreachable,
  // refused, no such image, or a blob that failed its digest on the way); problems says why.
  bool fetch_failed = false;
  bool ok() const { return problems.empty(); }
};

// Digests and sizes of every blob, media types, config parse, config rootfs.diff_ids against the
// decompressed layers, tar readability. Errors opening the image are problems too.
ValidationReport validate_image(const ImageRef& ref, const OpenOptions& options);

}  // namespace slimtrace::image
