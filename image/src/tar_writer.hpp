// Internal: a deterministic tar stream writer. Headers carry only what the entry says (no user or
// group names, no atime/ctime, no pid or clock anywhere), so the same entries give the same bytes.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "slimtrace/image/file_tree.hpp"
#include "slimtrace/result.hpp"

namespace slimtrace::image::detail {

struct TarHeader {
  std::string name;  // relative, no leading "/"; directories end in "/" ("usr/bin/", "./" for root)
  char typeflag = '0';
  uint32_t mode = 0;  // permission bits incl. setuid/setgid/sticky
  uint32_t uid = 0, gid = 0;
  int64_t mtime = 0;
  int64_t size = 0;      // data bytes that follow (regular files only)
  std::string linkname;  // symlink target as stored, or hardlink target in relative form
  uint32_t dev_major = 0, dev_minor = 0;
  std::vector<Xattr> xattrs;
};

// Receives the tar stream; an error stops the writer.
using TarSink = std::function<Status(const char* data, size_t len)>;

class TarWriter {
 public:
  explicit TarWriter(TarSink sink) : sink_(std::move(sink)) {}

  // Writes the header (and a pax 'x' header before it when a field does not fit ustar or there
  // are xattrs). For typeflag '0' exactly `size` bytes must follow through add_data().
  Status add_header(const TarHeader& h);
  Status add_data(const char* data, size_t len);
  // Checks that the announced size was written and pads to the 512-byte block.
  Status end_entry();
  // The two zero blocks that end the archive.
  Status finish();

  int64_t bytes_written() const { return written_; }

 private:
  Status emit(const char* data, size_t len);

  TarSink sink_;
  int64_t written_ = 0;
  int64_t expected_ = 0;
  int64_t data_ = 0;
  std::string current_;
};

// "/usr/bin/x" -> "usr/bin/x"; directories get a trailing "/"; "/" -> "./".
std::string tar_name(const std::string& tree_path, bool directory);

// One pax extended header record: "<len> <key>=<value>\n", len counting its own digits.
std::string pax_record(const std::string& key, const std::string& value);

}  // namespace slimtrace::image::detail
