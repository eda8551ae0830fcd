// Test image builder. Everything is written by hand (tar headers, JSON, layout files) rather than
// through the code under test, so that a bug in the image library cannot hide itself in its tests.
#include "image_builder.hpp"

#include <openssl/evp.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <set>
#include <sstream>
#include <stdexcept>
#include <system_error>

namespace slimtrace::testing {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr size_t kBlock = 512;

constexpr const char* kOciManifestType = "application/vnd.oci.image.manifest.v1+json";
constexpr const char* kOciIndexType = "application/vnd.oci.image.index.v1+json";
constexpr const char* kOciConfigType = "application/vnd.oci.image.config.v1+json";
constexpr const char* kDockerManifestType = "application/vnd.docker.distribution.manifest.v2+json";
constexpr const char* kDockerListType = "application/vnd.docker.distribution.manifest.list.v2+json";
constexpr const char* kDockerConfigType = "application/vnd.docker.container.image.v1+json";
constexpr const char* kRefName = "org.opencontainers.image.ref.name";

// Writes `value` as zero-padded octal filling width-1 digits plus a NUL, the form GNU tar writes.
void put_octal(char* field, size_t width, uint64_t value) {
  std::string digits(width - 1, '0');
  for (size_t i = width - 1; i > 0 && value != 0; --i) {
    digits[i - 1] = static_cast<char>('0' + (value & 7));
    value >>= 3;
  }
  std::memcpy(field, digits.data(), width - 1);
  field[width - 1] = '\0';
}

// Copies at most `width` bytes; longer strings are cut (the pax header carries the full value).
void put_string(char* field, size_t width, const std::string& s) {
  std::memcpy(field, s.data(), std::min(width, s.size()));
}

void pad_to_block(std::string& out) {
  size_t rem = out.size() % kBlock;
  if (rem != 0) out.append(kBlock - rem, '\0');
}

// One pax record: "<len> <key>=<value>\n", where <len> counts its own digits too.
std::string pax_record(const std::string& key, const std::string& value) {
  size_t body = 1 + key.size() + 1 + value.size() + 1;  // " key=value\n"
  size_t len = body + std::to_string(body).size();
  if (std::to_string(len).size() != std::to_string(body).size()) len = body + std::to_string(len).size();
  return std::to_string(len) + " " + key + "=" + value + "\n";
}

void append_header(std::string& out, const std::string& name, char typeflag, const std::string& linkname,
                   uint64_t size, const RawEntry& e, const std::optional<std::string>& size_field) {
  char h[kBlock];
  std::memset(h, 0, sizeof h);
  put_string(h + 0, 100, name);
  put_octal(h + 100, 8, e.mode);
  put_octal(h + 108, 8, e.uid);
  put_octal(h + 116, 8, e.gid);
  if (size_field) {
    std::memset(h + 124, 0, 12);
    put_string(h + 124, 12, *size_field);
  } else {
    put_octal(h + 124, 12, size);
  }
  put_octal(h + 136, 12, static_cast<uint64_t>(e.mtime < 0 ? 0 : e.mtime));
  h[156] = typeflag;
  put_string(h + 157, 100, linkname);
  std::memcpy(h + 257, "ustar", 6);  // includes the NUL
  std::memcpy(h + 263, "00", 2);
  put_string(h + 265, 32, e.uid == 0 ? "root" : "");
  put_string(h + 297, 32, e.gid == 0 ? "root" : "");
  put_octal(h + 329, 8, e.dev_major);
  put_octal(h + 337, 8, e.dev_minor);
  // The checksum is computed with its own field read as eight spaces.
  std::memset(h + 148, ' ', 8);
  unsigned sum = 0;
  for (unsigned char c : std::string_view(h, kBlock)) sum += c;
  put_octal(h + 148, 7, sum);  // six digits and a NUL...
  h[155] = ' ';                // ...then a space, as ustar specifies
  out.append(h, kBlock);
}

json descriptor(const std::string& media_type, const std::string& data) {
  return json{{"mediaType", media_type},
              {"digest", "sha256:" + sha256_hex(data)},
              {"size", static_cast<int64_t>(data.size())}};
}

std::string write_blob(const fs::path& layout, const std::string& data) {
  std::string hex = sha256_hex(data);
  write_file(layout / "blobs" / "sha256" / hex, data);
  return "sha256:" + hex;
}

std::string layer_media_type(LayerCompression c, bool docker) {
  switch (c) {
    case LayerCompression::None:
      return docker ? "application/vnd.docker.image.rootfs.diff.tar"
                    : "application/vnd.oci.image.layer.v1.tar";
    case LayerCompression::Gzip:
      return docker ? "application/vnd.docker.image.rootfs.diff.tar.gzip"
                    : "application/vnd.oci.image.layer.v1.tar+gzip";
    case LayerCompression::Zstd:
      // Docker has no zstd media type of its own; registries accept the OCI one in v2s2 manifests.
      return "application/vnd.oci.image.layer.v1.tar+zstd";
  }
  return {};
}

std::string compress(const std::string& tar, LayerCompression c) {
  switch (c) {
    case LayerCompression::None:
      return tar;
    case LayerCompression::Gzip:
      return gzip_bytes(tar);
    case LayerCompression::Zstd:
      return zstd_bytes(tar);
  }
  return tar;
}

// A fixed creation time keeps every built image byte-identical from run to run.
constexpr const char* kCreated = "2023-11-14T22:13:20Z";

json make_config(const ImageSpec& spec, const std::vector<std::string>& diff_ids) {
  json history = json::array();
  for (const auto& l : spec.layers) history.push_back({{"created", kCreated}, {"created_by", l.created_by}});
  return json{{"architecture", spec.architecture},
              {"os", spec.os},
              {"created", kCreated},
              {"config", spec.container_config},
              {"rootfs", {{"type", "layers"}, {"diff_ids", diff_ids}}},
              {"history", history}};
}

struct ManifestBlob {
  BuiltImage built;
  json descriptor;  // of the manifest, for an index
};

// Writes layers, config and manifest blobs of one image into a layout.
ManifestBlob write_image_blobs(const fs::path& layout, const ImageSpec& spec) {
  ManifestBlob r;
  const bool docker = spec.docker_media_types;
  json layers = json::array();
  for (const auto& l : spec.layers) {
    std::string tar = make_tar(l.entries, l.end_of_archive);
    r.built.diff_ids.push_back("sha256:" + sha256_hex(tar));
    std::string blob = compress(tar, l.compression);
    r.built.layer_digests.push_back(write_blob(layout, blob));
    layers.push_back(descriptor(layer_media_type(l.compression, docker), blob));
  }
  std::string config = make_config(spec, r.built.diff_ids).dump();
  r.built.config_digest = write_blob(layout, config);
  std::string manifest_type = docker ? kDockerManifestType : kOciManifestType;
  json manifest{{"schemaVersion", 2},
                {"mediaType", manifest_type},
                {"config", descriptor(docker ? kDockerConfigType : kOciConfigType, config)},
                {"layers", layers}};
  std::string m = manifest.dump();
  r.built.manifest_digest = write_blob(layout, m);
  r.descriptor = descriptor(manifest_type, m);
  return r;
}

// Adds `desc` to the layout's index.json, creating the layout files when missing.
void add_to_index(const fs::path& layout, json desc, const std::string& tag) {
  fs::create_directories(layout / "blobs" / "sha256");
  write_file(layout / "oci-layout", R"({"imageLayoutVersion":"1.0.0"})");
  json index{{"schemaVersion", 2}, {"mediaType", kOciIndexType}, {"manifests", json::array()}};
  if (fs::exists(layout / "index.json")) index = json::parse(read_file(layout / "index.json"));
  if (!tag.empty()) desc["annotations"] = {{kRefName, tag}};
  index["manifests"].push_back(desc);
  write_file(layout / "index.json", index.dump());
}

void add_disk_entries(const fs::path& root, const fs::path& rel, std::vector<RawEntry>& out) {
  std::vector<fs::path> children;
  for (const auto& de : fs::directory_iterator(root / rel)) children.push_back(de.path().filename());
  std::sort(children.begin(), children.end());
  for (const auto& c : children) {
    fs::path r = rel / c;
    if (fs::is_directory(root / r)) {
      out.push_back(dir(r.string() + "/"));
      add_disk_entries(root, r, out);
    } else {
      out.push_back(file(r.string(), read_file(root / r)));
    }
  }
}

}  // namespace

RawEntry file(const std::string& name, const std::string& data, uint32_t mode) {
  RawEntry e;
  e.name = name;
  e.typeflag = '0';
  e.data = data;
  e.mode = mode;
  return e;
}

RawEntry dir(const std::string& name, uint32_t mode) {
  RawEntry e;
  e.name = name;
  e.typeflag = '5';
  e.mode = mode;
  return e;
}

RawEntry symlink(const std::string& name, const std::string& target) {
  RawEntry e;
  e.name = name;
  e.typeflag = '2';
  e.linkname = target;
  e.mode = 0777;
  return e;
}

RawEntry hardlink(const std::string& name, const std::string& target) {
  RawEntry e;
  e.name = name;
  e.typeflag = '1';
  e.linkname = target;
  return e;
}

RawEntry whiteout(const std::string& path) {
  fs::path p(path);
  std::string parent = p.parent_path().string();
  std::string name = (parent.empty() ? "" : parent + "/") + ".wh." + p.filename().string();
  return file(name, "", 0644);
}

RawEntry opaque(const std::string& dir_path) {
  std::string d = dir_path;
  while (!d.empty() && d.back() == '/') d.pop_back();
  return file((d.empty() ? "" : d + "/") + ".wh..wh..opq", "", 0644);
}

std::string make_tar(const std::vector<RawEntry>& entries, bool end_of_archive) {
  std::string out;
  for (const auto& e : entries) {
    std::string records;
    if (e.name.size() > 100) records += pax_record("path", e.name);
    if (e.linkname.size() > 100) records += pax_record("linkpath", e.linkname);
    for (const auto& [k, v] : e.pax) records += pax_record(k, v);
    if (!records.empty()) {
      RawEntry ph;
      ph.mtime = e.mtime;
      std::string base = fs::path(e.name).filename().string();
      append_header(out, ("PaxHeaders.0/" + base).substr(0, 100), 'x', "", records.size(), ph, std::nullopt);
      out += records;
      pad_to_block(out);
    }
    append_header(out, e.name, e.typeflag, e.linkname, e.data.size(), e, e.size_field);
    out += e.data;
    pad_to_block(out);
  }
  if (end_of_archive) out.append(2 * kBlock, '\0');
  return out;
}

std::string gzip_bytes(const std::string& data) {
  z_stream zs{};
  // windowBits 15+16 asks zlib for a gzip wrapper; its header has mtime 0 and no name.
  if (deflateInit2(&zs, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
    throw std::runtime_error("deflateInit2 failed");
  }
  std::string out(deflateBound(&zs, data.size()) + 64, '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  zs.avail_in = static_cast<uInt>(data.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  int rc = deflate(&zs, Z_FINISH);
  size_t n = zs.total_out;
  deflateEnd(&zs);
  if (rc != Z_STREAM_END) throw std::runtime_error("deflate failed");
  out.resize(n);
  return out;
}

std::string zstd_bytes(const std::string& data) {
  std::string out(ZSTD_compressBound(data.size()), '\0');
  size_t n = ZSTD_compress(out.data(), out.size(), data.data(), data.size(), 3);
  if (ZSTD_isError(n)) throw std::runtime_error(std::string("zstd: ") + ZSTD_getErrorName(n));
  out.resize(n);
  return out;
}

std::string sha256_hex(const std::string& data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr) != 1) {
    throw std::runtime_error("EVP_Digest failed");
  }
  static const char* kHex = "0123456789abcdef";
  std::string hex;
  hex.reserve(2 * len);
  for (unsigned i = 0; i < len; ++i) {
    hex += kHex[md[i] >> 4];
    hex += kHex[md[i] & 15];
  }
  return hex;
}

BuiltImage write_oci_layout(const fs::path& dir, const ImageSpec& spec, const std::string& tag) {
  fs::create_directories(dir / "blobs" / "sha256");
  ManifestBlob m = write_image_blobs(dir, spec);
  add_to_index(dir, m.descriptor, tag);
  return m.built;
}

std::vector<BuiltImage> write_oci_index(const fs::path& dir, const std::vector<ImageSpec>& specs,
                                        const std::string& tag) {
  fs::create_directories(dir / "blobs" / "sha256");
  std::vector<BuiltImage> out;
  json manifests = json::array();
  bool all_docker = !specs.empty();
  for (const auto& spec : specs) {
    ManifestBlob m = write_image_blobs(dir, spec);
    m.descriptor["platform"] = {{"architecture", spec.architecture}, {"os", spec.os}};
    manifests.push_back(m.descriptor);
    out.push_back(m.built);
    all_docker = all_docker && spec.docker_media_types;
  }
  std::string type = all_docker ? kDockerListType : kOciIndexType;
  std::string index = json{{"schemaVersion", 2}, {"mediaType", type}, {"manifests", manifests}}.dump();
  write_blob(dir, index);
  add_to_index(dir, descriptor(type, index), tag);
  return out;
}

std::vector<BuiltImage> write_docker_archive(
    const fs::path& file_path, const std::vector<std::pair<ImageSpec, std::vector<std::string>>>& images) {
  std::vector<RawEntry> entries;
  std::set<std::string> written;
  json manifest = json::array();
  json repositories = json::object();
  std::vector<BuiltImage> out;
  for (const auto& [spec, tags] : images) {
    BuiltImage b;
    json layer_paths = json::array();
    std::string last_layer_id;
    for (const auto& l : spec.layers) {
      // `docker save` (20.10) stores layers uncompressed, one directory per layer.
      std::string tar = make_tar(l.entries, l.end_of_archive);
      std::string hex = sha256_hex(tar);
      b.diff_ids.push_back("sha256:" + hex);
      b.layer_digests.push_back("sha256:" + hex);
      last_layer_id = hex;
      layer_paths.push_back(hex + "/layer.tar");
      if (written.insert(hex).second) {
        entries.push_back(dir(hex + "/"));
        entries.push_back(file(hex + "/VERSION", "1.0"));
        entries.push_back(file(hex + "/json", json{{"id", hex}}.dump()));
        entries.push_back(file(hex + "/layer.tar", tar));
      }
    }
    std::string config = make_config(spec, b.diff_ids).dump();
    std::string config_hex = sha256_hex(config);
    b.config_digest = "sha256:" + config_hex;
    // A docker archive has no registry manifest, so there is no manifest digest to report.
    if (written.insert(config_hex + ".json").second) entries.push_back(file(config_hex + ".json", config));
    json repo_tags = json::array();
    for (const auto& t : tags) {
      repo_tags.push_back(t);
      auto colon = t.rfind(':');
      std::string name = colon == std::string::npos ? t : t.substr(0, colon);
      std::string tg = colon == std::string::npos ? "latest" : t.substr(colon + 1);
      if (!last_layer_id.empty()) repositories[name][tg] = last_layer_id;
    }
    manifest.push_back({{"Config", config_hex + ".json"},
                        {"RepoTags", repo_tags.empty() ? json(nullptr) : repo_tags},
                        {"Layers", layer_paths}});
    out.push_back(b);
  }
  entries.push_back(file("manifest.json", manifest.dump()));
  entries.push_back(file("repositories", repositories.dump()));
  if (file_path.has_parent_path()) fs::create_directories(file_path.parent_path());
  write_file(file_path, make_tar(entries));
  return out;
}

BuiltImage write_oci_archive(const fs::path& file_path, const ImageSpec& spec, const std::string& tag) {
  TempDir tmp;
  BuiltImage b = write_oci_layout(tmp.path(), spec, tag);
  std::vector<RawEntry> entries;
  add_disk_entries(tmp.path(), fs::path(), entries);
  if (file_path.has_parent_path()) fs::create_directories(file_path.parent_path());
  write_file(file_path, make_tar(entries));
  return b;
}

fs::path blob_path(const fs::path& layout, const std::string& digest) {
  auto colon = digest.find(':');
  if (colon == std::string::npos) return layout / "blobs" / "sha256" / digest;
  return layout / "blobs" / digest.substr(0, colon) / digest.substr(colon + 1);
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + p.string());
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_file(const fs::path& p, const std::string& data) {
  if (p.has_parent_path()) fs::create_directories(p.parent_path());
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  if (!out) throw std::runtime_error("cannot write " + p.string());
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
  if (!out) throw std::runtime_error("short write to " + p.string());
}

TempDir::TempDir() {
  const char* env = std::getenv("TMPDIR");
  fs::path base = env != nullptr && *env != '\0' ? fs::path(env) : fs::path("/tmp");
  std::string tmpl = (base / "slimtrace-test-XXXXXX").string();
  if (mkdtemp(tmpl.data()) == nullptr) {
    throw std::system_error(errno, std::generic_category(), "mkdtemp " + tmpl);
  }
  path_ = tmpl;
}

namespace {
// Tests make unreadable or unwritable directories on purpose; open them up so they can be removed.
void open_up(const fs::path& d) {
  ::chmod(d.c_str(), 0700);
  std::error_code ec;
  for (fs::directory_iterator it(d, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->is_directory(ec) && !it->is_symlink(ec)) open_up(it->path());
  }
}
}  // namespace

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
  if (!ec) return;
  open_up(path_);
  fs::remove_all(path_, ec);
}

}  // namespace slimtrace::testing
