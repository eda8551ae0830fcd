#include "common.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>

#include "slimtrace/fd.hpp"
#include "slimtrace/image/reference.hpp"

namespace slimtrace::cli {

void print_error(const std::string& message) {
  end_progress();
  std::fprintf(stderr, "slimtrace: %s\n", message.c_str());
}

namespace {
bool g_progress_shown = false;
}

image::ProgressFn make_progress(const GlobalOptions& g) {
  if (g.quiet || !::isatty(STDERR_FILENO)) return {};
  auto last = std::make_shared<std::chrono::steady_clock::time_point>();
  auto start = std::chrono::steady_clock::now();
  return [last, start](std::string_view what, int64_t done, int64_t total) {
    auto now = std::chrono::steady_clock::now();
    // Stay silent for work that takes only a moment, and redraw at most 10 times a second.
    if (now - start < std::chrono::milliseconds(500) || now - *last < std::chrono::milliseconds(100)) return;
    *last = now;
    double mb = static_cast<double>(done) / (1024.0 * 1024.0);
    if (total > 0) {
      double pct = 100.0 * static_cast<double>(done) / static_cast<double>(total);
      std::fprintf(stderr, "\r\033[K%.*s: %.1f MiB (%.0f%%)", static_cast<int>(what.size()), what.data(), mb,
                   pct);
    } else {
      std::fprintf(stderr, "\r\033[K%.*s: %.1f MiB", static_cast<int>(what.size()), what.data(), mb);
    }
    g_progress_shown = true;
  };
}

void end_progress() {
  if (g_progress_shown) {
    std::fprintf(stderr, "\r\033[K");
    g_progress_shown = false;
  }
}

image::RemoteOptions remote_options(const GlobalOptions& g) {
  image::RemoteOptions r;
  r.creds = g.creds;
  r.tls_verify = g.tls_verify;
  r.auth_file = g.auth_file;
  r.chunk_size = g.upload_chunk_size;
  return r;
}

std::optional<OpenedImage> open_or_report(const GlobalOptions& g, const std::string& ref_text,
                                          const image::ProgressFn& progress) {
  auto ref = image::parse_reference(ref_text);
  if (!ref) {
    print_error(ref.error().message);
    return std::nullopt;
  }
  auto platform = image::Platform::parse(g.platform);
  if (!platform) {
    print_error(platform.error().message);
    return std::nullopt;
  }
  auto work = WorkDir::create(g.work_dir);
  if (!work) {
    print_error(work.error().message);
    return std::nullopt;
  }
  image::OpenOptions opts{*platform, work->path(), remote_options(g)};
  auto img = image::open_image(*ref, opts);
  if (!img) {
    print_error(img.error().message);
    return std::nullopt;
  }
  auto tree = image::flatten(*img, progress);
  end_progress();
  if (!tree) {
    print_error(tree.error().message);
    return std::nullopt;
  }
  return OpenedImage{std::move(work).value(), std::move(img).value(), std::move(tree).value()};
}

}  // namespace slimtrace::cli
