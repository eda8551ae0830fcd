#include "slimtrace/image/writer.hpp"

#include <fcntl.h>
#include <isa-l.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <memory>
#include <optional>
#include <tuple>
#include <vector>

#include "io_util.hpp"
#include "remote_transport.hpp"
#include "slimtrace/fd.hpp"
#include "slimtrace/image/digest.hpp"
#include "slimtrace/image/layer_reader.hpp"
#include "slimtrace/workdir.hpp"
#include "tar_writer.hpp"

namespace slimtrace::image {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// The compressors see the tar stream in chunks of exactly this size (the last one shorter), so the
// compressed bytes depend only on the tar bytes, never on how the tar writer split its writes.
constexpr size_t kChunk = 1 << 20;

std::string short_digest(const std::string& d) { return d.size() > 19 ? d.substr(0, 19) + "..." : d; }

std::string layer_name(const SourceImage& src, int layer) {
  std::string s = "layer " + std::to_string(layer);
  if (layer >= 0 && static_cast<size_t>(layer) < src.layers.size() &&
      !src.layers[static_cast<size_t>(layer)].digest.empty())
    s += " (" + short_digest(src.layers[static_cast<size_t>(layer)].digest) + ")";
  return s;
}

Status write_all(int fd, const char* p, size_t n, const std::string& what) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return Error::from_errno("write '" + what + "'");
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
  return {};
}

Status pread_all(int fd, char* p, size_t n, int64_t off, const std::string& what) {
  while (n > 0) {
    ssize_t r = ::pread(fd, p, n, static_cast<off_t>(off));
    if (r < 0) {
      if (errno == EINTR) continue;
      return Error::from_errno("read '" + what + "'");
    }
    if (r == 0) return Error{"read '" + what + "': unexpected end of file"};
    p += r;
    n -= static_cast<size_t>(r);
    off += r;
  }
  return {};
}

// ---- temp files: written next to their final name and renamed into place ----

std::atomic<int> g_temp_counter{0};

class TempFile {
 public:
  // `final_path` is where commit() puts it; the temp name sits in the same directory.
  static Result<TempFile> create(const fs::path& final_path) {
    TempFile t;
    t.path_ =
        final_path.parent_path() / ("." + final_path.filename().string() + ".tmp-" +
                                    std::to_string(::getpid()) + "-" + std::to_string(g_temp_counter++));
    register_cleanup_path(t.path_);
    t.fd_ = UniqueFd(::open(t.path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
    if (!t.fd_.valid()) {
      unregister_cleanup_path(t.path_);
      return Error::from_errno("create '" + t.path_.string() + "'");
    }
    return t;
  }
  // Archives are named FILE.tmp-<pid> so a user finding one knows which run left it.
  static Result<TempFile> create_named(const fs::path& temp_path) {
    TempFile t;
    t.path_ = temp_path;
    register_cleanup_path(t.path_);
    t.fd_ = UniqueFd(::open(t.path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (!t.fd_.valid()) {
      unregister_cleanup_path(t.path_);
      return Error::from_errno("create '" + t.path_.string() + "'");
    }
    return t;
  }
  TempFile() = default;
  TempFile(TempFile&& o) noexcept : path_(std::move(o.path_)), fd_(std::move(o.fd_)) { o.path_.clear(); }
  TempFile& operator=(TempFile&&) = delete;
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  ~TempFile() {
    if (path_.empty()) return;
    fd_.reset();
    ::unlink(path_.c_str());
    unregister_cleanup_path(path_);
  }

  int fd() const { return fd_.get(); }
  const fs::path& path() const { return path_; }

  // Data reaches the disk before the name does: a crash leaves either the old file or the whole
  // new one under the final name.
  Status commit(const fs::path& final_path) {
    if (::fsync(fd_.get()) != 0) return Error::from_errno("fsync '" + path_.string() + "'");
    if (::close(fd_.release()) != 0) return Error::from_errno("close '" + path_.string() + "'");
    if (::rename(path_.c_str(), final_path.c_str()) != 0)
      return Error::from_errno("rename '" + path_.string() + "' to '" + final_path.string() + "'");
    unregister_cleanup_path(path_);
    path_.clear();
    return {};
  }

 private:
  fs::path path_;
  UniqueFd fd_;
};

Status write_file_atomic(const fs::path& final_path, const std::string& bytes) {
  SLIMTRACE_ASSIGN_OR_RETURN(TempFile t, TempFile::create(final_path));
  SLIMTRACE_TRY(write_all(t.fd(), bytes.data(), bytes.size(), t.path().string()));
  return t.commit(final_path);
}

// ---- compression ----

using ByteSink = std::function<Status(const char*, size_t)>;

class Compressor {
 public:
  virtual ~Compressor() = default;
  // Consumes all of data; `end` marks the last call.
  virtual Status compress(const char* data, size_t len, bool end) = 0;
};

class NoCompressor final : public Compressor {
 public:
  explicit NoCompressor(ByteSink out) : out_(std::move(out)) {}
  Status compress(const char* data, size_t len, bool) override { return out_(data, len); }

 private:
  ByteSink out_;
};

// ISA-L igzip at level 3 (its best ratio, near zlib -6, still several times faster): a fixed level and
// ISA-L's fixed gzip header (mtime 0, no name), so the same tar gives the same bytes.
class GzipCompressor final : public Compressor {
 public:
  explicit GzipCompressor(ByteSink out)
      : out_(std::move(out)), level_buf_(ISAL_DEF_LVL3_DEFAULT), buf_(kChunk) {
    isal_deflate_init(&s_);
    s_.level = 3;
    s_.level_buf = level_buf_.data();
    s_.level_buf_size = static_cast<uint32_t>(level_buf_.size());
    s_.gzip_flag = IGZIP_GZIP;
    s_.flush = NO_FLUSH;
    s_.end_of_stream = 0;
  }
  Status compress(const char* data, size_t len, bool end) override {
    s_.next_in = reinterpret_cast<uint8_t*>(const_cast<char*>(data));
    s_.avail_in = static_cast<uint32_t>(len);
    s_.end_of_stream = end ? 1 : 0;
    for (;;) {
      s_.next_out = buf_.data();
      s_.avail_out = static_cast<uint32_t>(buf_.size());
      int rc = isal_deflate(&s_);
      if (rc != COMP_OK)
        return Error{"gzip compression failed (isal_deflate error " + std::to_string(rc) + ")"};
      size_t produced = buf_.size() - s_.avail_out;
      if (produced) SLIMTRACE_TRY(out_(reinterpret_cast<const char*>(buf_.data()), produced));
      if (end) {
        if (s_.internal_state.state == ZSTATE_END) break;
      } else if (s_.avail_in == 0 && s_.avail_out != 0) {
        break;
      }
    }
    return {};
  }

 private:
  ByteSink out_;
  isal_zstream s_{};
  std::vector<uint8_t> level_buf_;
  std::vector<uint8_t> buf_;
};

// libzstd at level 3, single-threaded, no checksum: the parameters that decide the bytes are fixed.
class ZstdCompressor final : public Compressor {
 public:
  explicit ZstdCompressor(ByteSink out)
      : out_(std::move(out)), cctx_(ZSTD_createCCtx()), buf_(ZSTD_CStreamOutSize()) {}
  ~ZstdCompressor() override { ZSTD_freeCCtx(cctx_); }
  ZstdCompressor(const ZstdCompressor&) = delete;
  ZstdCompressor& operator=(const ZstdCompressor&) = delete;

  Status init() {
    if (!cctx_) return Error{"zstd: cannot allocate a compression context"};
    for (auto [p, v] : {std::pair{ZSTD_c_compressionLevel, 3}, std::pair{ZSTD_c_checksumFlag, 0},
                        std::pair{ZSTD_c_nbWorkers, 0}}) {
      size_t r = ZSTD_CCtx_setParameter(cctx_, p, v);
      if (ZSTD_isError(r)) return Error{std::string("zstd: ") + ZSTD_getErrorName(r)};
    }
    return {};
  }
  Status compress(const char* data, size_t len, bool end) override {
    ZSTD_inBuffer in{data, len, 0};
    for (;;) {
      ZSTD_outBuffer out{buf_.data(), buf_.size(), 0};
      size_t rem = ZSTD_compressStream2(cctx_, &out, &in, end ? ZSTD_e_end : ZSTD_e_continue);
      if (ZSTD_isError(rem)) return Error{std::string("zstd compression failed: ") + ZSTD_getErrorName(rem)};
      if (out.pos) SLIMTRACE_TRY(out_(buf_.data(), out.pos));
      if (end ? rem == 0 : in.pos == in.size) break;
    }
    return {};
  }

 private:
  ByteSink out_;
  ZSTD_CCtx* cctx_;
  std::vector<char> buf_;
};

// Tar bytes in; the diff_id over them and the digest over what reaches the file, in one pass.
class LayerStream {
 public:
  LayerStream(int fd, std::string what) : fd_(fd), what_(std::move(what)) { chunk_.reserve(kChunk); }

  Status init(Compression c) {
    ByteSink sink = [this](const char* p, size_t n) -> Status {
      blob_hash_.update(p, n);
      compressed_ += static_cast<int64_t>(n);
      return write_all(fd_, p, n, what_);
    };
    switch (c) {
      case Compression::None:
        comp_ = std::make_unique<NoCompressor>(sink);
        break;
      case Compression::Gzip:
        comp_ = std::make_unique<GzipCompressor>(sink);
        break;
      case Compression::Zstd: {
        auto z = std::make_unique<ZstdCompressor>(sink);
        SLIMTRACE_TRY(z->init());
        comp_ = std::move(z);
        break;
      }
    }
    return {};
  }

  Status write(const char* p, size_t n) {
    diff_hash_.update(p, n);
    uncompressed_ += static_cast<int64_t>(n);
    while (n > 0) {
      size_t take = std::min(n, kChunk - chunk_.size());
      chunk_.insert(chunk_.end(), p, p + take);
      p += take;
      n -= take;
      if (chunk_.size() == kChunk) {
        SLIMTRACE_TRY(comp_->compress(chunk_.data(), chunk_.size(), false));
        chunk_.clear();
      }
    }
    return {};
  }

  Status finish() {
    SLIMTRACE_TRY(comp_->compress(chunk_.data(), chunk_.size(), true));
    chunk_.clear();
    diff_id_ = diff_hash_.finish();
    digest_ = blob_hash_.finish();
    return {};
  }

  const std::string& diff_id() const { return diff_id_; }
  const std::string& digest() const { return digest_; }
  int64_t compressed() const { return compressed_; }
  int64_t uncompressed() const { return uncompressed_; }

 private:
  int fd_;
  std::string what_;
  std::unique_ptr<Compressor> comp_;
  std::vector<char> chunk_;
  Sha256 diff_hash_, blob_hash_;
  int64_t compressed_ = 0, uncompressed_ = 0;
  std::string diff_id_, digest_;
};

// ---- what goes into the layer ----

struct ContentKey {
  int layer = 0;
  int64_t entry = 0;
  bool operator<(const ContentKey& o) const { return std::tie(layer, entry) < std::tie(o.layer, o.entry); }
};

struct Plan {
  std::vector<detail::TarHeader> headers;
  std::vector<std::optional<ContentKey>> content;  // per header: where a regular file's bytes come from
  std::vector<const std::string*> replaced;        // per header: bytes given by the caller instead
  std::map<ContentKey, int64_t> sizes;             // expected size of each piece of content
  int64_t files = 0;
  int64_t file_bytes = 0;
  int64_t spooled_bytes = 0;  // the part of file_bytes copied out of the source layers
};

void copy_meta(const FileEntry& e, detail::TarHeader& h) {
  h.mode = e.mode & 07777;
  h.uid = e.uid;
  h.gid = e.gid;
  h.mtime = e.mtime;
  h.xattrs = e.xattrs;
}

void apply_override(const MetadataOverride& o, detail::TarHeader& h) {
  if (o.mode) h.mode = *o.mode;
  if (o.uid) h.uid = *o.uid;
  if (o.gid) h.gid = *o.gid;
}

std::string octal(uint32_t v) {
  std::string s;
  do {
    s.insert(s.begin(), static_cast<char>('0' + (v & 7)));
    v >>= 3;
  } while (v);
  return "0" + s;
}

Status check_options(const FileTree& tree, const std::set<std::string>& selection, const WriteOptions& opt) {
  for (const auto& [path, bytes] : opt.replaced_contents) {
    if (!selection.count(path)) return Error{"replace content of '" + path + "': the path is not selected"};
    const FileEntry* e = tree.find(path);
    if (e->type != EntryType::Regular && e->type != EntryType::Hardlink)
      return Error{"replace content of '" + path + "': the path is a " +
                   std::string(entry_type_name(e->type)) + ", not a regular file"};
  }
  for (const auto& [path, o] : opt.overrides) {
    if (!selection.count(path)) return Error{"override metadata of '" + path + "': the path is not selected"};
    if (o.mode && *o.mode > 07777)
      return Error{"override metadata of '" + path + "': mode " + octal(*o.mode) +
                   " is more than permission bits (07777)"};
  }
  return {};
}

Result<Plan> make_plan(const FileTree& tree, const std::set<std::string>& selection,
                       const WriteOptions& opt) {
  for (const auto& path : selection)
    if (!tree.find(path)) return Error{"selected path '" + path + "' is not in the image"};
  SLIMTRACE_TRY(check_options(tree, selection, opt));

  // A hardlink group is written as one regular file plus links to it. The file is the group's
  // first selected member in path order, so tar readers always meet it before its links, and a
  // group whose original target is not selected still keeps its content. A member with replaced
  // content leaves the group: it becomes a file of its own and never carries the group's bytes.
  // The members share one inode, so an override of any member is the whole group's metadata.
  std::map<std::string, std::string> leader;               // group (target path) -> path written as the file
  std::map<std::string, MetadataOverride> group_override;  // group -> overrides of its members, path order
  for (const auto& path : selection) {
    const FileEntry* e = tree.find(path);
    if (opt.replaced_contents.count(path)) continue;
    std::string group;
    if (e->type == EntryType::Regular) group = path;
    if (e->type == EntryType::Hardlink) group = e->link_target;
    if (group.empty()) continue;
    leader.emplace(group, path);
    if (auto o = opt.overrides.find(path); o != opt.overrides.end()) {
      MetadataOverride& g = group_override[group];
      if (o->second.mode) g.mode = o->second.mode;
      if (o->second.uid) g.uid = o->second.uid;
      if (o->second.gid) g.gid = o->second.gid;
    }
  }

  Plan plan;
  for (const auto& path : selection) {
    const FileEntry& e = *tree.find(path);
    auto own_override = opt.overrides.find(path);
    bool overridden = own_override != opt.overrides.end();
    // Directories only implied by their children were never in any layer; readers imply them again,
    // unless the caller gave them metadata of their own.
    if (!e.explicit_entry && !overridden) continue;
    auto replaced = opt.replaced_contents.find(path);
    detail::TarHeader h;
    h.name = detail::tar_name(path, e.type == EntryType::Directory);
    copy_meta(e, h);
    std::optional<ContentKey> content;
    const std::string* bytes = nullptr;
    auto as_file_or_link = [&](const FileEntry& target) {
      if (replaced != opt.replaced_contents.end()) {
        copy_meta(target, h);  // the inode's metadata, now for a file of its own
        if (overridden) apply_override(own_override->second, h);
        h.typeflag = '0';
        h.size = static_cast<int64_t>(replaced->second.size());
        bytes = &replaced->second;
        plan.files++;
        plan.file_bytes += h.size;
        return;
      }
      const std::string& lead = leader.at(target.path);
      if (lead == path) {
        copy_meta(target, h);  // a hardlink shares its target's inode, hence its metadata
        h.typeflag = '0';
        h.size = target.size;
        content = ContentKey{target.layer, target.layer_entry};
        plan.sizes[*content] = target.size;
        plan.files++;
        plan.file_bytes += target.size;
        plan.spooled_bytes += target.size;
      } else {
        h.typeflag = '1';
        h.linkname = detail::tar_name(lead, false);
      }
      if (auto g = group_override.find(target.path); g != group_override.end()) apply_override(g->second, h);
    };
    switch (e.type) {
      case EntryType::Regular:
        as_file_or_link(e);
        break;
      case EntryType::Hardlink: {
        const FileEntry* target = tree.find(e.link_target);
        if (!target || target->type != EntryType::Regular)
          return Error{"hardlink '" + path + "' points to '" + e.link_target +
                       "', which is not a regular file in the image"};
        as_file_or_link(*target);
        break;
      }
      case EntryType::Directory:
        h.typeflag = '5';
        break;
      case EntryType::Symlink:
        h.typeflag = '2';
        h.linkname = e.link_target;
        break;
      case EntryType::CharDevice:
      case EntryType::BlockDevice:
        h.typeflag = e.type == EntryType::CharDevice ? '3' : '4';
        h.dev_major = e.dev_major;
        h.dev_minor = e.dev_minor;
        break;
      case EntryType::Fifo:
        h.typeflag = '6';
        break;
    }
    if (overridden && e.type != EntryType::Regular && e.type != EntryType::Hardlink)
      apply_override(own_override->second, h);
    plan.headers.push_back(std::move(h));
    plan.content.push_back(content);
    plan.replaced.push_back(bytes);
  }
  return plan;
}

// An unnamed file for the spooled contents: it vanishes with the process, whatever happens.
Result<UniqueFd> open_spool(const fs::path& dir) {
  UniqueFd fd(::open(dir.c_str(), O_RDWR | O_TMPFILE | O_CLOEXEC, 0600));
  if (fd.valid()) return fd;
  std::string tmpl = (dir / "spool-XXXXXX").string();
  fd = UniqueFd(::mkostemp(tmpl.data(), O_CLOEXEC));
  if (!fd.valid()) return Error::from_errno("create spool file in '" + dir.string() + "'");
  ::unlink(tmpl.c_str());
  return fd;
}

// Copies the selected contents out of the source layers, one pass per layer, into the spool.
// Each layer is read to its end and verified, so nothing unverified reaches the output.
Result<std::map<ContentKey, int64_t>> spool_contents(const SourceImage& src, const Plan& plan, int spool_fd,
                                                     const ProgressFn& progress, int64_t total) {
  std::map<int, std::map<int64_t, int64_t>> by_layer;
  for (const auto& [key, size] : plan.sizes) by_layer[key.layer][key.entry] = size;
  std::map<ContentKey, int64_t> offsets;
  int64_t offset = 0;
  std::vector<char> buf(kChunk);
  for (const auto& [layer, wanted] : by_layer) {
    if (layer < 0 || static_cast<size_t>(layer) >= src.layers.size())
      return Error{"the image tree names layer " + std::to_string(layer) + ", but the image has " +
                   std::to_string(src.layers.size()) + " layers"};
    SLIMTRACE_ASSIGN_OR_RETURN(LayerReader reader,
                               LayerReader::open(src.layers[static_cast<size_t>(layer)], layer));
    size_t remaining = wanted.size();
    while (remaining > 0) {
      SLIMTRACE_ASSIGN_OR_RETURN(std::optional<TarEntry> entry, reader.next());
      if (!entry) break;
      auto it = wanted.find(entry->index);
      if (it == wanted.end()) continue;
      int64_t copied = 0;
      for (;;) {
        SLIMTRACE_ASSIGN_OR_RETURN(size_t n, reader.read(std::span<char>(buf.data(), buf.size())));
        if (n == 0) break;
        SLIMTRACE_TRY(write_all(spool_fd, buf.data(), n, "spool file"));
        copied += static_cast<int64_t>(n);
        if (progress) progress("copying selected files", offset + copied, total);
      }
      if (copied != it->second)
        return Error{layer_name(src, layer) + " entry '" + entry->raw_path + "': holds " +
                     std::to_string(copied) + " bytes, the image tree says " + std::to_string(it->second)};
      offsets[ContentKey{layer, entry->index}] = offset;
      offset += copied;
      --remaining;
    }
    if (remaining > 0)
      return Error{layer_name(src, layer) + ": " + std::to_string(remaining) +
                   " selected entries were not found in the layer"};
    SLIMTRACE_TRY(reader.finish());
  }
  return offsets;
}

Status write_layer_tar(const Plan& plan, int spool_fd, const std::map<ContentKey, int64_t>& offsets,
                       LayerStream& out, const ProgressFn& progress, int64_t total) {
  detail::TarWriter tw([&out](const char* p, size_t n) { return out.write(p, n); });
  std::vector<char> buf(kChunk);
  int64_t done = 0;
  for (size_t i = 0; i < plan.headers.size(); ++i) {
    const auto& h = plan.headers[i];
    SLIMTRACE_TRY(tw.add_header(h));
    if (const std::string* bytes = plan.replaced[i]) {
      for (size_t off = 0; off < bytes->size(); off += kChunk) {
        size_t n = std::min(kChunk, bytes->size() - off);
        SLIMTRACE_TRY(tw.add_data(bytes->data() + off, n));
        done += static_cast<int64_t>(n);
        if (progress) progress("writing layer", done, total);
      }
    } else if (plan.content[i]) {
      int64_t off = offsets.at(*plan.content[i]);
      int64_t left = h.size;
      while (left > 0) {
        size_t n = static_cast<size_t>(std::min<int64_t>(left, static_cast<int64_t>(buf.size())));
        SLIMTRACE_TRY(pread_all(spool_fd, buf.data(), n, off, "spool file"));
        SLIMTRACE_TRY(tw.add_data(buf.data(), n));
        off += static_cast<int64_t>(n);
        left -= static_cast<int64_t>(n);
        done += static_cast<int64_t>(n);
        if (progress) progress("writing layer", done, total);
      }
    }
    SLIMTRACE_TRY(tw.end_entry());
  }
  return tw.finish();
}

std::string_view layer_media_type(Compression c) {
  switch (c) {
    case Compression::Gzip:
      return kOciLayerGzip;
    case Compression::Zstd:
      return kOciLayerZstd;
    case Compression::None:
      break;
  }
  return kOciLayerTar;
}

std::string source_digest(const SourceImage& src) {
  // docker-archive inputs have no manifest blob; their config digest is the image's ID.
  return src.manifest_digest.empty() ? src.config_digest : src.manifest_digest;
}

json make_config(const SourceImage& src, const std::string& diff_id, const std::string& created_by) {
  const json& sc = src.config;
  json cfg = json::object();
  auto str = [&](const json& obj, const char* key) -> std::optional<std::string> {
    if (obj.is_object() && obj.contains(key) && obj[key].is_string()) return obj[key].get<std::string>();
    return std::nullopt;
  };
  cfg["architecture"] = str(sc, "architecture").value_or(src.platform.architecture);
  cfg["os"] = str(sc, "os").value_or(src.platform.os);
  if (auto v = str(sc, "variant"); v && !v->empty()) cfg["variant"] = *v;
  json c = json::object();
  if (sc.is_object() && sc.contains("config") && sc["config"].is_object()) {
    for (const char* key : {"Entrypoint", "Cmd", "Env", "WorkingDir", "User", "ExposedPorts", "Volumes",
                            "Labels", "StopSignal", "Healthcheck"}) {
      if (sc["config"].contains(key) && !sc["config"][key].is_null()) c[key] = sc["config"][key];
    }
  }
  cfg["config"] = c;
  cfg["rootfs"] = {{"type", "layers"}, {"diff_ids", json::array({diff_id})}};
  json h = json::object();
  auto created = str(sc, "created");
  if (created) h["created"] = *created;
  h["created_by"] = created_by;
  h["comment"] = "minified from " + source_digest(src);
  cfg["history"] = json::array({h});
  if (created) cfg["created"] = *created;
  return cfg;
}

json descriptor(std::string_view media_type, const std::string& digest, int64_t size) {
  return json{{"mediaType", media_type}, {"digest", digest}, {"size", size}};
}

// "name" -> "name:latest"; a tag after the last '/' is kept.
std::string docker_repo_tag(const std::string& t) {
  auto slash = t.rfind('/');
  if (t.find(':', slash == std::string::npos ? 0 : slash) == std::string::npos) return t + ":latest";
  return t;
}

struct LayoutTarget {
  fs::path dir;
  bool existing = false;  // merge into the index.json already there
  json existing_index;
  json index_annotations;  // for the new index entry
};

struct Inputs {
  const SourceImage& src;
  const Plan& plan;
  int spool_fd;
  const std::map<ContentKey, int64_t>& offsets;
  const WriteOptions& options;
  const ProgressFn& progress;
};

Status mkdirs(const fs::path& p) {
  std::error_code ec;
  fs::create_directories(p, ec);
  if (ec) return Error{"create directory '" + p.string() + "': " + ec.message(), ec.value()};
  return {};
}

// Blobs, then config, then manifest, then index.json: each through a temp file and rename, so a
// reader never sees an index naming something that is not complete on disk.
Result<WrittenImage> write_layout(const Inputs& in, const LayoutTarget& target) {
  WrittenImage out;
  out.files = in.plan.files;
  out.file_bytes = in.plan.file_bytes;
  fs::path blobs = target.dir / "blobs" / "sha256";
  SLIMTRACE_TRY(mkdirs(blobs));
  if (!target.existing)
    SLIMTRACE_TRY(write_file_atomic(target.dir / "oci-layout", R"({"imageLayoutVersion":"1.0.0"})"));

  {
    SLIMTRACE_ASSIGN_OR_RETURN(TempFile t, TempFile::create(blobs / "layer"));
    LayerStream stream(t.fd(), t.path().string());
    SLIMTRACE_TRY(stream.init(in.options.compression));
    SLIMTRACE_TRY(write_layer_tar(in.plan, in.spool_fd, in.offsets, stream, in.progress, in.plan.file_bytes));
    SLIMTRACE_TRY(stream.finish());
    SLIMTRACE_TRY(t.commit(blobs / stream.digest().substr(7)));
    out.layer_digest = stream.digest();
    out.diff_id = stream.diff_id();
    out.compressed_size = stream.compressed();
    out.uncompressed_size = stream.uncompressed();
  }

  std::string config_bytes;
  std::string manifest_bytes;
  try {
    config_bytes = make_config(in.src, out.diff_id, in.options.created_by).dump();
    json manifest = {
        {"schemaVersion", 2},
        {"mediaType", kOciManifest},
        {"config",
         descriptor(kOciConfig, sha256_digest(config_bytes), static_cast<int64_t>(config_bytes.size()))},
        {"layers", json::array({descriptor(layer_media_type(in.options.compression), out.layer_digest,
                                           out.compressed_size)})},
        {"annotations",
         {{"io.slimtrace.source.digest", source_digest(in.src)},
          {"org.opencontainers.image.base.name", "scratch"}}},
    };
    manifest_bytes = manifest.dump();
  } catch (const json::exception& e) {
    return Error{std::string("image config: cannot serialise the source's settings: ") + e.what()};
  }
  out.config_digest = sha256_digest(config_bytes);
  out.manifest_digest = sha256_digest(manifest_bytes);
  SLIMTRACE_TRY(write_file_atomic(blobs / out.config_digest.substr(7), config_bytes));
  SLIMTRACE_TRY(write_file_atomic(blobs / out.manifest_digest.substr(7), manifest_bytes));

  json entry = descriptor(kOciManifest, out.manifest_digest, static_cast<int64_t>(manifest_bytes.size()));
  if (!target.index_annotations.empty()) entry["annotations"] = target.index_annotations;
  json index;
  if (target.existing) {
    index = target.existing_index;
    auto& list = index["manifests"];
    std::string ref_name = detail::json_string(target.index_annotations, "org.opencontainers.image.ref.name");
    bool replaced = false;
    if (!ref_name.empty()) {
      for (auto& m : list) {
        if (m.is_object() && m.contains("annotations") && m["annotations"].is_object() &&
            detail::json_string(m["annotations"], "org.opencontainers.image.ref.name") == ref_name) {
          m = entry;
          replaced = true;
          break;
        }
      }
    }
    if (!replaced) list.push_back(entry);
  } else {
    index = {{"schemaVersion", 2}, {"mediaType", kOciIndex}, {"manifests", json::array({entry})}};
  }
  SLIMTRACE_TRY(write_file_atomic(target.dir / "index.json", index.dump()));
  return out;
}

// Tars a directory deterministically: sorted names, fixed owners, modes and times.
Status tar_directory(const fs::path& root, int fd, const std::string& what) {
  std::vector<std::pair<std::string, bool>> items;  // relative name, is directory
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(root, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    items.emplace_back(fs::relative(it->path(), root).string(), it->is_directory());
  }
  if (ec) return Error{"read directory '" + root.string() + "': " + ec.message(), ec.value()};
  std::sort(items.begin(), items.end());
  detail::TarWriter tw([&](const char* p, size_t n) { return write_all(fd, p, n, what); });
  std::vector<char> buf(kChunk);
  for (const auto& [rel, is_dir] : items) {
    detail::TarHeader h;
    h.name = is_dir ? rel + "/" : rel;
    h.typeflag = is_dir ? '5' : '0';
    h.mode = is_dir ? 0755 : 0644;
    fs::path p = root / rel;
    UniqueFd in;
    if (!is_dir) {
      in = UniqueFd(::open(p.c_str(), O_RDONLY | O_CLOEXEC));
      if (!in.valid()) return Error::from_errno("open '" + p.string() + "'");
      struct stat st {};
      if (::fstat(in.get(), &st) != 0) return Error::from_errno("stat '" + p.string() + "'");
      h.size = st.st_size;
    }
    SLIMTRACE_TRY(tw.add_header(h));
    int64_t off = 0;
    while (off < h.size) {
      size_t n = static_cast<size_t>(std::min<int64_t>(h.size - off, static_cast<int64_t>(buf.size())));
      SLIMTRACE_TRY(pread_all(in.get(), buf.data(), n, off, p.string()));
      SLIMTRACE_TRY(tw.add_data(buf.data(), n));
      off += static_cast<int64_t>(n);
    }
    SLIMTRACE_TRY(tw.end_entry());
  }
  return tw.finish();
}

Result<json> read_index(const fs::path& file) {
  SLIMTRACE_ASSIGN_OR_RETURN(std::string text, detail::read_small_file(file, "index.json"));
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("manifests") || !j["manifests"].is_array())
    return Error{"'" + file.string() + "' is not a valid OCI image index"};
  return j;
}

// Removes a directory tree unless dismissed; registered for interrupt cleanup meanwhile.
class TempDir {
 public:
  explicit TempDir(fs::path p) : path_(std::move(p)) { register_cleanup_path(path_); }
  ~TempDir() {
    if (path_.empty()) return;
    std::error_code ec;
    fs::remove_all(path_, ec);
    unregister_cleanup_path(path_);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const fs::path& path() const { return path_; }
  void release() {
    unregister_cleanup_path(path_);
    path_.clear();
  }

 private:
  fs::path path_;
};

Result<fs::path> make_temp_dir(const fs::path& parent, const std::string& stem) {
  std::string tmpl = (parent / (stem + "-XXXXXX")).string();
  if (!::mkdtemp(tmpl.data())) return Error::from_errno("create directory '" + tmpl + "'");
  return fs::path(tmpl);
}

Result<WrittenImage> write_oci_dir(const Inputs& in, const std::string& tag) {
  const fs::path& dir = in.options.output.path;
  json annotations = json::object();
  if (!tag.empty()) annotations["org.opencontainers.image.ref.name"] = tag;
  std::error_code ec;
  bool exists = fs::exists(dir, ec);
  bool empty_dir = exists && fs::is_directory(dir, ec) && fs::is_empty(dir, ec);
  if (exists && !empty_dir) {
    if (!fs::is_directory(dir, ec) || !fs::exists(dir / "oci-layout", ec))
      return Error{"output '" + dir.string() + "' exists and is not an OCI image layout"};
    LayoutTarget target{dir, true, {}, annotations};
    SLIMTRACE_ASSIGN_OR_RETURN(target.existing_index, read_index(dir / "index.json"));
    return write_layout(in, target);
  }
  // A new layout is built beside its final place and renamed there whole.
  fs::path parent = dir.parent_path().empty() ? fs::path(".") : dir.parent_path();
  SLIMTRACE_TRY(mkdirs(parent));
  SLIMTRACE_ASSIGN_OR_RETURN(fs::path tmp, make_temp_dir(parent, "." + dir.filename().string() + ".tmp-" +
                                                                     std::to_string(::getpid())));
  TempDir guard(tmp);
  SLIMTRACE_ASSIGN_OR_RETURN(WrittenImage w, write_layout(in, LayoutTarget{tmp, false, {}, annotations}));
  if (::rename(tmp.c_str(), dir.c_str()) != 0)
    return Error::from_errno("rename '" + tmp.string() + "' to '" + dir.string() + "'");
  guard.release();
  return w;
}

Result<WrittenImage> write_archive(const Inputs& in, const fs::path& scratch, const std::string& tag) {
  const fs::path& file = in.options.output.path;
  bool docker = in.options.output.transport == Transport::DockerArchive;
  SLIMTRACE_ASSIGN_OR_RETURN(fs::path staging_path, make_temp_dir(scratch, "layout"));
  TempDir staging(staging_path);
  json annotations = json::object();
  std::string repo_tag;
  if (!tag.empty()) {
    if (docker) {
      // What Docker 25 writes in the index.json of `docker save`.
      repo_tag = docker_repo_tag(tag);
      annotations["io.containerd.image.name"] = repo_tag;
      annotations["org.opencontainers.image.ref.name"] = repo_tag.substr(repo_tag.rfind(':') + 1);
    } else {
      annotations["org.opencontainers.image.ref.name"] = tag;
    }
  }
  SLIMTRACE_ASSIGN_OR_RETURN(WrittenImage w,
                             write_layout(in, LayoutTarget{staging_path, false, {}, annotations}));
  if (docker) {
    json m = json::array({json{{"Config", "blobs/sha256/" + w.config_digest.substr(7)},
                               {"RepoTags", repo_tag.empty() ? json::array() : json::array({repo_tag})},
                               {"Layers", json::array({"blobs/sha256/" + w.layer_digest.substr(7)})}}});
    SLIMTRACE_TRY(write_file_atomic(staging_path / "manifest.json", m.dump()));
  }
  fs::path parent = file.parent_path().empty() ? fs::path(".") : file.parent_path();
  SLIMTRACE_TRY(mkdirs(parent));
  fs::path tmp = parent / (file.filename().string() + ".tmp-" + std::to_string(::getpid()));
  SLIMTRACE_ASSIGN_OR_RETURN(TempFile t, TempFile::create_named(tmp));
  SLIMTRACE_TRY(tar_directory(staging_path, t.fd(), tmp.string()));
  SLIMTRACE_TRY(t.commit(file));
  return w;
}

Status publish(const fs::path& layout, const ImageRef& output, const RemoteOptions& remote,
               const ProgressFn& progress) {
  if (output.transport == Transport::Registry) {
    SLIMTRACE_ASSIGN_OR_RETURN(std::string digest, detail::registry_push(layout, output, remote, progress));
    (void)digest;
    return {};
  }
  if (output.transport == Transport::DockerDaemon) {
    SLIMTRACE_ASSIGN_OR_RETURN(std::string id, detail::daemon_load(layout, output, remote, progress));
    (void)id;
    return {};
  }
  return Error{"not a docker: or docker-daemon: reference"};
}

// docker: and docker-daemon: outputs: a complete layout in the scratch space first, so nothing
// reaches the registry or the engine unless the whole image was written.
Result<WrittenImage> write_remote(const Inputs& in, const fs::path& scratch, const std::string& tag) {
  SLIMTRACE_ASSIGN_OR_RETURN(fs::path staging_path, make_temp_dir(scratch, "outgoing"));
  TempDir staging(staging_path);
  json annotations = json::object();
  if (!tag.empty()) annotations["org.opencontainers.image.ref.name"] = tag;
  SLIMTRACE_ASSIGN_OR_RETURN(WrittenImage w,
                             write_layout(in, LayoutTarget{staging_path, false, {}, annotations}));
  SLIMTRACE_TRY(publish(staging_path, in.options.output, in.options.remote, in.progress));
  return w;
}

}  // namespace

Status check_output(const ImageRef& output, const RemoteOptions& remote, Compression compression) {
  auto fail = [&](const Error& e) { return e.context("write " + output.to_string()); };
  if (output.transport == Transport::DockerDaemon) {
    if (compression == Compression::Zstd)
      return Error{"write " + output.to_string() +
                   ": docker load does not read zstd layers; use --compression gzip or none"};
    if (auto st = detail::daemon_check(remote); !st) return fail(st.error());
  } else if (output.transport == Transport::Registry) {
    if (auto st = detail::registry_check_push(output, remote); !st) return fail(st.error());
  }
  return {};
}

Status publish_layout(const fs::path& layout, const ImageRef& output, const RemoteOptions& remote,
                      const ProgressFn& progress) {
  if (auto st = publish(layout, output, remote, progress); !st)
    return st.error().context("write " + output.to_string());
  return {};
}

std::set<std::string> select_all(const FileTree& tree) {
  std::set<std::string> all;
  for (const auto& [path, entry] : tree.entries()) all.insert(path);
  return all;
}

Result<WrittenImage> write_image(const SourceImage& source, const FileTree& tree,
                                 const std::set<std::string>& selection, const WriteOptions& options,
                                 const ProgressFn& progress) {
  auto fail = [&](const Error& e) { return e.context("write " + options.output.to_string()); };
  if (options.output.transport == Transport::DockerDaemon && options.compression == Compression::Zstd)
    return fail(Error{"docker load does not read zstd layers; use --compression gzip or none"});
  auto plan = make_plan(tree, selection, options);
  if (!plan) return fail(plan.error());

  std::optional<WorkDir> own_work;
  fs::path scratch = options.work_dir;
  if (scratch.empty()) {
    auto w = WorkDir::create();
    if (!w) return fail(w.error());
    own_work.emplace(std::move(w).value());
    scratch = own_work->path();
  }
  auto spool = open_spool(scratch);
  if (!spool) return fail(spool.error());
  auto offsets = spool_contents(source, *plan, spool->get(), progress, plan->spooled_bytes);
  if (!offsets) return fail(offsets.error());

  std::string tag = options.tag.empty() ? options.output.tag : options.tag;
  Inputs in{source, *plan, spool->get(), *offsets, options, progress};
  Result<WrittenImage> r = options.output.is_remote() ? write_remote(in, scratch, tag)
                           : options.output.transport == Transport::OciLayout
                               ? write_oci_dir(in, tag)
                               : write_archive(in, scratch, tag);
  if (!r) return fail(r.error());
  return r;
}

}  // namespace slimtrace::image
