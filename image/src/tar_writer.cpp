#include "tar_writer.hpp"

#include <algorithm>
#include <array>
#include <cstring>

namespace slimtrace::image::detail {
namespace {

constexpr size_t kBlock = 512;

// Largest values the ustar octal fields hold: 7 digits for ids and modes, 11 for size and mtime.
constexpr uint64_t kMaxOctal7 = 07777777;
constexpr int64_t kMaxOctal11 = 077777777777LL;

void put_octal(char* field, size_t width, uint64_t value) {
  // width-1 zero-padded digits and a NUL terminator, as GNU tar and Go write them.
  std::memset(field, '0', width - 1);
  field[width - 1] = '\0';
  for (size_t i = width - 1; i > 0 && value > 0; --i) {
    field[i - 1] = static_cast<char>('0' + (value & 7));
    value >>= 3;
  }
}

void put_string(char* field, size_t width, const std::string& s) {
  std::memcpy(field, s.data(), std::min(width, s.size()));
}

// The name a pax header gets: fixed, so it never carries a pid or a time as some tars do.
std::string pax_header_name(const std::string& name) {
  std::string base = name;
  while (!base.empty() && base.back() == '/') base.pop_back();
  auto slash = base.rfind('/');
  if (slash != std::string::npos) base = base.substr(slash + 1);
  std::string n = "PaxHeaders/" + base;
  if (n.size() > 100) n.resize(100);
  return n;
}

std::array<char, kBlock> ustar_block(const std::string& name, char typeflag, uint32_t mode, uint64_t uid,
                                     uint64_t gid, uint64_t size, uint64_t mtime, const std::string& linkname,
                                     uint32_t dev_major, uint32_t dev_minor) {
  std::array<char, kBlock> b{};
  put_string(&b[0], 100, name);
  put_octal(&b[100], 8, mode & 07777);
  put_octal(&b[108], 8, uid);
  put_octal(&b[116], 8, gid);
  put_octal(&b[124], 12, size);
  put_octal(&b[136], 12, mtime);
  b[156] = typeflag;
  put_string(&b[157], 100, linkname);
  std::memcpy(&b[257], "ustar", 6);  // magic with its NUL
  b[263] = '0';
  b[264] = '0';
  // uname/gname stay empty: names would tie the layer to the build host's passwd.
  if (typeflag == '3' || typeflag == '4') {
    put_octal(&b[329], 8, dev_major);
    put_octal(&b[337], 8, dev_minor);
  }
  std::memset(&b[148], ' ', 8);
  unsigned sum = 0;
  for (char c : b) sum += static_cast<unsigned char>(c);
  put_octal(&b[148], 7, sum);  // 6 digits + NUL, then the space already there
  b[155] = ' ';
  return b;
}

}  // namespace

std::string pax_record(const std::string& key, const std::string& value) {
  size_t body = 1 + key.size() + 1 + value.size() + 1;  // " key=value\n"
  size_t len = body + 1;
  while (std::to_string(len).size() + body != len) len = std::to_string(len).size() + body;
  return std::to_string(len) + " " + key + "=" + value + "\n";
}

std::string tar_name(const std::string& tree_path, bool directory) {
  if (tree_path.empty() || tree_path == "/") return "./";
  std::string n = tree_path[0] == '/' ? tree_path.substr(1) : tree_path;
  if (directory && n.back() != '/') n += '/';
  return n;
}

Status TarWriter::emit(const char* data, size_t len) {
  if (len == 0) return {};
  SLIMTRACE_TRY(sink_(data, len));
  written_ += static_cast<int64_t>(len);
  return {};
}

Status TarWriter::add_header(const TarHeader& h) {
  if (expected_ != data_) return Error{"tar entry '" + current_ + "': previous entry not finished"};
  if (h.size < 0) return Error{"tar entry '" + h.name + "': negative size"};
  current_ = h.name;
  expected_ = h.typeflag == '0' ? h.size : 0;
  data_ = 0;

  std::string pax;
  if (h.name.size() > 100) pax += pax_record("path", h.name);
  if (h.linkname.size() > 100) pax += pax_record("linkpath", h.linkname);
  if (h.uid > kMaxOctal7) pax += pax_record("uid", std::to_string(h.uid));
  if (h.gid > kMaxOctal7) pax += pax_record("gid", std::to_string(h.gid));
  if (expected_ > kMaxOctal11) pax += pax_record("size", std::to_string(expected_));
  if (h.mtime < 0 || h.mtime > kMaxOctal11) pax += pax_record("mtime", std::to_string(h.mtime));
  if (h.dev_major > kMaxOctal7) pax += pax_record("SCHILY.devmajor", std::to_string(h.dev_major));
  if (h.dev_minor > kMaxOctal7) pax += pax_record("SCHILY.devminor", std::to_string(h.dev_minor));
  // Sorted so the bytes do not depend on the order the layers listed the attributes in.
  std::vector<Xattr> xattrs = h.xattrs;
  std::sort(xattrs.begin(), xattrs.end(), [](const Xattr& a, const Xattr& b) { return a.name < b.name; });
  for (const auto& x : xattrs) pax += pax_record("SCHILY.xattr." + x.name, x.value);

  if (!pax.empty()) {
    auto ph = ustar_block(pax_header_name(h.name), 'x', 0644, 0, 0, pax.size(), 0, {}, 0, 0);
    SLIMTRACE_TRY(emit(ph.data(), ph.size()));
    SLIMTRACE_TRY(emit(pax.data(), pax.size()));
    static const std::array<char, kBlock> zeros{};
    size_t pad = (kBlock - pax.size() % kBlock) % kBlock;
    SLIMTRACE_TRY(emit(zeros.data(), pad));
  }
  auto clamp7 = [](uint64_t v) { return v > kMaxOctal7 ? 0 : v; };
  uint64_t size = expected_ > kMaxOctal11 ? 0 : static_cast<uint64_t>(expected_);
  uint64_t mtime = (h.mtime < 0 || h.mtime > kMaxOctal11) ? 0 : static_cast<uint64_t>(h.mtime);
  auto b =
      ustar_block(h.name, h.typeflag, h.mode, clamp7(h.uid), clamp7(h.gid), size, mtime, h.linkname,
                  static_cast<uint32_t>(clamp7(h.dev_major)), static_cast<uint32_t>(clamp7(h.dev_minor)));
  return emit(b.data(), b.size());
}

Status TarWriter::add_data(const char* data, size_t len) {
  if (data_ + static_cast<int64_t>(len) > expected_)
    return Error{"tar entry '" + current_ + "': more data than its size " + std::to_string(expected_)};
  data_ += static_cast<int64_t>(len);
  return emit(data, len);
}

Status TarWriter::end_entry() {
  if (data_ != expected_)
    return Error{"tar entry '" + current_ + "': wrote " + std::to_string(data_) + " of " +
                 std::to_string(expected_) + " bytes"};
  static const std::array<char, kBlock> zeros{};
  size_t pad = (kBlock - static_cast<size_t>(data_ % static_cast<int64_t>(kBlock))) % kBlock;
  expected_ = data_ = 0;
  return emit(zeros.data(), pad);
}

Status TarWriter::finish() {
  if (data_ != expected_) return Error{"tar entry '" + current_ + "': not finished"};
  static const std::array<char, 2 * kBlock> zeros{};
  return emit(zeros.data(), zeros.size());
}

}  // namespace slimtrace::image::detail
