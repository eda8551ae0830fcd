#include "slimtrace/image/layer_reader.hpp"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <isa-l.h>
#include <unistd.h>
#include <zstd.h>

#include <cstring>
#include <vector>

#include "path_util.hpp"
#include "slimtrace/fd.hpp"
#include "slimtrace/image/digest.hpp"

namespace slimtrace::image {

namespace detail {
std::string clean_path(std::string_view p) {
  std::vector<std::string_view> parts;
  size_t pos = 0;
  while (pos <= p.size()) {
    size_t next = p.find('/', pos);
    if (next == std::string_view::npos) next = p.size();
    auto comp = p.substr(pos, next - pos);
    pos = next + 1;
    if (comp.empty() || comp == ".") continue;
    if (comp == "..") {
      if (!parts.empty()) parts.pop_back();
      continue;
    }
    parts.push_back(comp);
  }
  std::string out;
  for (auto c : parts) {
    out += '/';
    out += c;
  }
  return out.empty() ? "/" : out;
}
}  // namespace detail

Result<std::string> normalize_entry_path(std::string_view raw) {
  if (raw.empty()) return Error{"entry has an empty name"};
  if (raw.find('\0') != std::string_view::npos) return Error{"entry name contains a NUL byte"};
  std::string out;
  size_t pos = 0;
  while (pos <= raw.size()) {
    size_t next = raw.find('/', pos);
    if (next == std::string_view::npos) next = raw.size();
    auto comp = raw.substr(pos, next - pos);
    pos = next + 1;
    if (comp.empty() || comp == ".") continue;
    if (comp == "..") return Error{"path has a '..' component (path traversal)"};
    out += '/';
    out += comp;
  }
  return out.empty() ? std::string("/") : out;
}

namespace {
constexpr size_t kBufSize = 1 << 20;

std::string short_digest(const std::string& d) { return d.size() > 19 ? d.substr(0, 19) : d; }
}  // namespace

struct LayerReader::Impl {
  LayerDescriptor desc;
  int index = 0;
  std::string where;
  UniqueFd fd;
  Compression comp = Compression::None;
  Sha256 blob_hash, tar_hash;
  int64_t compressed = 0, uncompressed = 0;

  std::vector<uint8_t> in, out;
  size_t in_pos = 0, in_len = 0;
  bool in_eof = false;
  bool stream_done = false;  // decompressor saw the end of its last member/frame and input is exhausted

  inflate_state gz{};
  bool gz_member_done = false;
  ZSTD_DStream* zs = nullptr;

  archive* ar = nullptr;
  bool tar_eof = false;
  int64_t next_index = 0;
  std::string error;         // set by the read callback so errors name their real cause
  std::string current_path;  // the last entry returned, for errors met while skipping its data
  int64_t current_size = 0;

  ~Impl() {
    if (ar) archive_read_free(ar);
    if (zs) ZSTD_freeDStream(zs);
  }

  Error fail(const std::string& msg) const { return Error{where + ": " + msg}; }
  // Same style as flatten's errors: "layer N (sha256:...) entry 'x': reason".
  Error fail_entry(const std::string& raw, const std::string& msg) const {
    return Error{where + " entry '" + raw + "': " + msg};
  }
  // An error while reading or skipping the current entry's data names that entry: an absurd size
  // in its header shows up here as a truncated stream.
  Error fail_current(const std::string& msg) const {
    if (current_path.empty()) return fail(msg);
    return fail_entry(current_path, msg + "; its header declares " + std::to_string(current_size) + " bytes");
  }

  // Refills the compressed input buffer; false on read error (sets error).
  bool fill() {
    if (in_pos < in_len || in_eof) return true;
    for (;;) {
      ssize_t n = ::read(fd.get(), in.data(), in.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        error = std::string("read blob: ") + std::strerror(errno);
        return false;
      }
      in_pos = 0;
      in_len = static_cast<size_t>(n);
      if (n == 0) in_eof = true;
      blob_hash.update(in.data(), in_len);
      compressed += n;
      return true;
    }
  }

  // Produces the next chunk of the uncompressed tar stream into `out`; returns its length, 0 at the
  // end of the stream, -1 on error.
  ssize_t produce() {
    for (;;) {
      if (stream_done) return 0;
      if (!fill()) return -1;
      size_t avail = in_len - in_pos;
      if (comp == Compression::None) {
        if (avail == 0) {
          stream_done = true;
          return 0;
        }
        std::memcpy(out.data(), in.data() + in_pos, avail);
        in_pos = in_len;
        return static_cast<ssize_t>(avail);
      }
      if (comp == Compression::Gzip) {
        if (gz_member_done) {
          if (avail == 0 && in_eof) {
            stream_done = true;
            return 0;
          }
          if (avail == 0) continue;
          // Another gzip member follows (multi-member streams are valid gzip).
          if (in[in_pos] != 0x1f) {
            error = "trailing garbage after the gzip stream";
            return -1;
          }
          isal_inflate_init(&gz);
          gz.crc_flag = ISAL_GZIP;
          gz_member_done = false;
        }
        if (avail == 0 && in_eof) {
          error = "truncated gzip stream";
          return -1;
        }
        gz.next_in = in.data() + in_pos;
        gz.avail_in = static_cast<uint32_t>(avail);
        gz.next_out = out.data();
        gz.avail_out = static_cast<uint32_t>(out.size());
        int r = isal_inflate(&gz);
        in_pos = in_len - gz.avail_in;
        if (r != ISAL_DECOMP_OK && r != ISAL_END_INPUT && r != ISAL_OUT_OVERFLOW) {
          error = r == ISAL_INCORRECT_CHECKSUM ? "gzip checksum mismatch (corrupt layer)"
                                               : "corrupt gzip data (isa-l error " + std::to_string(r) + ")";
          return -1;
        }
        if (gz.block_state == ISAL_BLOCK_FINISH) gz_member_done = true;
        size_t produced = out.size() - gz.avail_out;
        if (produced) return static_cast<ssize_t>(produced);
        continue;
      }
      // zstd
      if (avail == 0 && in_eof) {
        error = "truncated zstd stream";
        return -1;
      }
      ZSTD_inBuffer zin{in.data() + in_pos, avail, 0};
      ZSTD_outBuffer zout{out.data(), out.size(), 0};
      size_t r = ZSTD_decompressStream(zs, &zout, &zin);
      in_pos += zin.pos;
      if (ZSTD_isError(r)) {
        error = std::string("corrupt zstd data: ") + ZSTD_getErrorName(r);
        return -1;
      }
      if (r == 0 && in_pos == in_len) {
        // Frame complete; the stream ends here unless more input (another frame) follows.
        if (!fill()) return -1;
        if (in_eof && in_pos == in_len) stream_done = true;
      }
      if (zout.pos) return static_cast<ssize_t>(zout.pos);
    }
  }

  static la_ssize_t read_cb(archive*, void* self, const void** buf) {
    auto* impl = static_cast<Impl*>(self);
    ssize_t n = impl->produce();
    if (n < 0) return -1;
    impl->tar_hash.update(impl->out.data(), static_cast<size_t>(n));
    impl->uncompressed += n;
    *buf = impl->out.data();
    return n;
  }

  std::string archive_error() const {
    if (!error.empty()) return error;
    const char* s = archive_error_string(ar);
    std::string msg = s ? s : "unreadable tar stream";
    // libarchive says "Truncated input file (...)" or "Truncated tar archive": say what it means.
    if (msg.rfind("Truncated", 0) == 0) return "truncated layer: the tar stream ends early (" + msg + ")";
    return msg;
  }
};

LayerReader::LayerReader(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
LayerReader::~LayerReader() = default;
LayerReader::LayerReader(LayerReader&&) noexcept = default;
LayerReader& LayerReader::operator=(LayerReader&&) noexcept = default;

Result<LayerReader> LayerReader::open(const LayerDescriptor& layer, int layer_index) {
  auto impl = std::make_unique<Impl>();
  impl->desc = layer;
  impl->index = layer_index;
  impl->where = "layer " + std::to_string(layer_index) + " (" +
                short_digest(layer.digest.empty() ? layer.blob_path.filename().string() : layer.digest) + ")";
  impl->fd.reset(::open(layer.blob_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!impl->fd.valid())
    return Error::from_errno(impl->where + ": open blob '" + layer.blob_path.string() + "'");
  ::posix_fadvise(impl->fd.get(), 0, 0, POSIX_FADV_SEQUENTIAL);
  impl->in.resize(kBufSize);
  impl->out.resize(kBufSize);
  if (!impl->fill()) return impl->fail(impl->error);
  const uint8_t* b = impl->in.data();
  if (impl->in_len >= 2 && b[0] == 0x1f && b[1] == 0x8b) {
    impl->comp = Compression::Gzip;
    isal_inflate_init(&impl->gz);
    impl->gz.crc_flag = ISAL_GZIP;
  } else if (impl->in_len >= 4 && b[0] == 0x28 && b[1] == 0xb5 && b[2] == 0x2f && b[3] == 0xfd) {
    impl->comp = Compression::Zstd;
    impl->zs = ZSTD_createDStream();
    ZSTD_initDStream(impl->zs);
  }
  impl->ar = archive_read_new();
  archive_read_support_format_tar(impl->ar);
  if (archive_read_open(impl->ar, impl.get(), nullptr, &Impl::read_cb, nullptr) != ARCHIVE_OK)
    return impl->fail("not a tar stream: " + impl->archive_error());
  return LayerReader(std::move(impl));
}

Result<std::optional<TarEntry>> LayerReader::next() {
  auto& m = *impl_;
  if (m.tar_eof) return std::optional<TarEntry>{};
  archive_entry* e = nullptr;
  int r = archive_read_next_header(m.ar, &e);
  if (r == ARCHIVE_EOF) {
    m.tar_eof = true;
    return std::optional<TarEntry>{};
  }
  if (r != ARCHIVE_OK && r != ARCHIVE_WARN) return m.fail_current(m.archive_error());
  TarEntry t;
  t.index = m.next_index++;
  const char* raw = archive_entry_pathname(e);
  t.raw_path = raw ? raw : "";
  auto norm = normalize_entry_path(t.raw_path);
  if (!norm) return m.fail_entry(t.raw_path, norm.error().message);
  t.path = std::move(*norm);
  t.mode = static_cast<uint32_t>(archive_entry_perm(e)) & 07777;
  t.uid = static_cast<uint32_t>(archive_entry_uid(e));
  t.gid = static_cast<uint32_t>(archive_entry_gid(e));
  t.mtime = archive_entry_mtime(e);
  t.size = archive_entry_size_is_set(e) ? archive_entry_size(e) : 0;
  if (t.size < 0) return m.fail_entry(t.raw_path, "negative size");
  if (const char* hl = archive_entry_hardlink(e)) {
    t.type = EntryType::Hardlink;
    auto target = normalize_entry_path(hl);
    if (!target)
      return m.fail_entry(t.raw_path, "hardlink target '" + std::string(hl) + "': " + target.error().message);
    t.link_target = *target;
    t.size = 0;
  } else {
    switch (archive_entry_filetype(e)) {
      case AE_IFREG:
        t.type = EntryType::Regular;
        break;
      case AE_IFDIR:
        t.type = EntryType::Directory;
        t.size = 0;
        break;
      case AE_IFLNK: {
        t.type = EntryType::Symlink;
        const char* target = archive_entry_symlink(e);
        t.link_target = target ? target : "";
        if (t.link_target.empty()) return m.fail_entry(t.raw_path, "symlink with an empty target");
        t.size = 0;
        break;
      }
      case AE_IFCHR:
        t.type = EntryType::CharDevice;
        t.size = 0;
        break;
      case AE_IFBLK:
        t.type = EntryType::BlockDevice;
        t.size = 0;
        break;
      case AE_IFIFO:
        t.type = EntryType::Fifo;
        t.size = 0;
        break;
      default:
        return m.fail_entry(t.raw_path, "unsupported entry type (sockets cannot be in a layer)");
    }
  }
  if (t.type == EntryType::CharDevice || t.type == EntryType::BlockDevice) {
    t.dev_major = static_cast<uint32_t>(archive_entry_rdevmajor(e));
    t.dev_minor = static_cast<uint32_t>(archive_entry_rdevminor(e));
  }
  archive_entry_xattr_reset(e);
  const char* name = nullptr;
  const void* value = nullptr;
  size_t vsize = 0;
  while (archive_entry_xattr_next(e, &name, &value, &vsize) == ARCHIVE_OK) {
    t.xattrs.push_back(Xattr{name, std::string(static_cast<const char*>(value), vsize)});
  }
  m.current_path = t.raw_path;
  m.current_size = t.size;
  return std::optional<TarEntry>(std::move(t));
}

Result<size_t> LayerReader::read(std::span<char> buf) {
  auto& m = *impl_;
  la_ssize_t n = archive_read_data(m.ar, buf.data(), buf.size());
  if (n < 0) return m.fail_current(m.archive_error());
  return static_cast<size_t>(n);
}

Status LayerReader::finish() {
  auto& m = *impl_;
  // Read the rest of the tar, then drain whatever follows the end-of-archive marker: the digests
  // cover the whole blob.
  while (!m.tar_eof) {
    auto e = next();
    if (!e) return e.error();
  }
  for (;;) {
    ssize_t n = m.produce();
    if (n < 0) return m.fail(m.error);
    if (n == 0) break;
    m.tar_hash.update(m.out.data(), static_cast<size_t>(n));
    m.uncompressed += n;
  }
  // Compressed bytes not yet hashed can remain only with Compression::None (already consumed).
  auto blob = m.blob_hash.finish();
  auto tar = m.tar_hash.finish();
  if (m.desc.size >= 0 && m.compressed != m.desc.size)
    return m.fail("blob size " + std::to_string(m.compressed) + " does not match the " +
                  std::to_string(m.desc.size) + " the manifest states");
  if (!m.desc.digest.empty() && blob != m.desc.digest)
    return m.fail("blob digest mismatch: content is " + blob + ", manifest says " + m.desc.digest);
  if (!m.desc.diff_id.empty() && tar != m.desc.diff_id)
    return m.fail("diff_id mismatch: uncompressed content is " + tar + ", config says " + m.desc.diff_id);
  return {};
}

Compression LayerReader::compression() const { return impl_->comp; }
int64_t LayerReader::compressed_bytes() const { return impl_->compressed; }
int64_t LayerReader::uncompressed_bytes() const { return impl_->uncompressed; }

}  // namespace slimtrace::image
