// flatten_bench IMAGE: opens an image and flattens all its layers (every blob streamed, decompressed
// and checked against its digest and diff_id), then prints what it saw. bench/run.sh times it
// against the floor of only decompressing the layers.
#include <cstdio>

#include "slimtrace/image/file_tree.hpp"
#include "slimtrace/image/reference.hpp"
#include "slimtrace/image/source.hpp"
#include "slimtrace/workdir.hpp"

int main(int argc, char** argv) {
  using namespace slimtrace;
  if (argc != 2) {
    std::fprintf(stderr, "usage: flatten_bench IMAGE\n");
    return 2;
  }
  auto ref = image::parse_reference(argv[1]);
  if (!ref) {
    std::fprintf(stderr, "flatten_bench: %s\n", ref.error().message.c_str());
    return 1;
  }
  auto work = WorkDir::create();
  if (!work) {
    std::fprintf(stderr, "flatten_bench: %s\n", work.error().message.c_str());
    return 1;
  }
  image::OpenOptions opts;
  opts.work_dir = work->path();
  auto img = image::open_image(*ref, opts);
  if (!img) {
    std::fprintf(stderr, "flatten_bench: %s\n", img.error().message.c_str());
    return 1;
  }
  auto tree = image::flatten(*img);
  if (!tree) {
    std::fprintf(stderr, "flatten_bench: %s\n", tree.error().message.c_str());
    return 1;
  }
  int64_t uncompressed = 0;
  for (const auto& s : tree->layer_stats()) uncompressed += s.uncompressed_size;
  std::printf("layers %zu entries %zu bytes %lld layer_bytes_uncompressed %lld shadowed %zu\n",
              img->layers.size(), tree->size(), static_cast<long long>(tree->total_bytes()),
              static_cast<long long>(uncompressed), tree->shadowed().size());
  return 0;
}
