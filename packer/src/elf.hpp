// Reads what the dynamic loader and the kernel need from an executable's first bytes: the ELF
// interpreter and dynamic dependencies, or a script's "#!" line. Works on a stream (layers cannot
// be seeked) and retains only the byte ranges it needs, so a 100 MiB binary costs a few KiB.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace slimtrace::packer::elf {

struct FileInfo {
  bool is_elf = false;
  bool supported = false;  // 64-bit little-endian: the only layout whose dependencies are read
  std::string interp;      // PT_INTERP
  std::vector<std::string> needed;
  std::vector<std::string> runpath;  // DT_RUNPATH, split on ':', not expanded
  std::vector<std::string> rpath;    // DT_RPATH, split on ':', not expanded
  bool is_script = false;
  std::string script_interp;  // first word after "#!"
  std::string script_arg;     // the rest of the "#!" line, trimmed (one argument, as the kernel does)
  std::string problem;        // why the dependencies could not be (fully) read; "" when fine
};

// Fed the file's bytes in order; done() says when nothing more is needed, so the caller can stop
// reading early.
class HeaderScanner {
 public:
  explicit HeaderScanner(int64_t file_size);
  void feed(const char* data, size_t n);
  bool done() const { return done_; }
  // Call after done() or at the end of the data.
  FileInfo finish();

 private:
  struct Range {
    uint64_t off = 0;
    uint64_t len = 0;
    std::string data;  // filled in order
    bool lost = false;
  };
  // nullopt when the bytes are not (yet) available; sets need_more_/broken_ accordingly.
  std::optional<std::string_view> get(uint64_t off, uint64_t len);
  void parse();
  void fill(Range& r);

  uint64_t size_;
  uint64_t pos_ = 0;
  uint64_t chunk_start_ = 0;
  const char* chunk_ = nullptr;
  std::string prefix_;
  std::vector<Range> ranges_;
  bool done_ = false;
  bool need_more_ = false;
  std::string lost_what_;
  FileInfo info_;
};

// Convenience for whole buffers (tests, small files).
FileInfo scan(std::string_view content, int64_t file_size = -1);

// Splits a DT_RUNPATH/DT_RPATH value and expands $ORIGIN/${ORIGIN}, $LIB and $PLATFORM.
std::vector<std::string> expand_search_path(const std::vector<std::string>& entries,
                                            const std::string& origin_dir);

}  // namespace slimtrace::packer::elf
