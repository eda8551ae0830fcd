#include "slimtrace/image/validate.hpp"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <optional>
#include <set>
#include <vector>

#include "archive_util.hpp"
#include "io_util.hpp"
#include "remote_transport.hpp"
#include "slimtrace/fd.hpp"
#include "slimtrace/image/digest.hpp"
#include "slimtrace/image/layer_reader.hpp"
#include "slimtrace/workdir.hpp"

namespace slimtrace::image {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// Manifests, configs and indexes are small; anything larger is refused rather than read whole.
constexpr int64_t kMaxJsonBlob = 64LL << 20;
constexpr int kMaxIndexDepth = 8;

std::string short_digest(const std::string& d) { return d.size() > 19 ? d.substr(0, 19) + "..." : d; }

bool is_index_type(const std::string& mt) { return mt == kOciIndex || mt == kDockerManifestList; }
bool is_manifest_type(const std::string& mt) { return mt == kOciManifest || mt == kDockerManifest; }
bool is_config_type(const std::string& mt) { return mt == kOciConfig || mt == kDockerConfig; }
bool is_layer_type(const std::string& mt) {
  return mt == kOciLayerTar || mt == kOciLayerGzip || mt == kOciLayerZstd || mt == kDockerLayerGzip ||
         mt == "application/vnd.docker.image.rootfs.diff.tar" ||
         mt == "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" ||
         mt == "application/vnd.oci.image.layer.nondistributable.v1.tar" ||
         mt == "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip" ||
         mt == "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd";
}

struct Descriptor {
  std::string media_type;
  std::string digest;
  int64_t size = -1;
  json annotations;
};

Result<std::string> read_limited(const fs::path& p, int64_t limit) {
  return detail::read_small_file(p, "'" + p.filename().string() + "'", limit);
}

class Validator {
 public:
  Validator(fs::path root, ValidationReport& r) : root_(std::move(root)), r_(r) {}

  void problem(std::string s) { r_.problems.push_back(std::move(s)); }

  void check_layout_file() {
    auto text = read_limited(root_ / "oci-layout", 1 << 20);
    if (!text) return problem("oci-layout file missing or unreadable: " + text.error().message);
    json j = json::parse(*text, nullptr, false);
    if (j.is_discarded() || !j.is_object() || detail::json_string(j, "imageLayoutVersion") != "1.0.0")
      problem("oci-layout file does not declare imageLayoutVersion 1.0.0");
  }

  void check_index_json() {
    auto text = read_limited(root_ / "index.json", kMaxJsonBlob);
    if (!text) return problem("index.json: " + text.error().message);
    json index = json::parse(*text, nullptr, false);
    if (index.is_discarded()) return problem("index.json is not valid JSON");
    walk_index(index, "index.json", 0);
  }

  void check_docker_manifest(bool count) {
    auto text = read_limited(root_ / "manifest.json", kMaxJsonBlob);
    if (!text) return problem("manifest.json: " + text.error().message);
    json list = json::parse(*text, nullptr, false);
    if (list.is_discarded() || !list.is_array()) return problem("manifest.json is not a JSON array");
    if (list.empty()) problem("manifest.json lists no image");
    for (size_t i = 0; i < list.size(); ++i)
      check_docker_entry(list[i], "manifest.json entry " + std::to_string(i), count);
  }

 private:
  fs::path blob_file(const std::string& digest) const {
    return root_ / "blobs" / "sha256" / digest.substr(7);
  }

  std::optional<Descriptor> parse_descriptor(const json& d, const std::string& what) {
    if (!d.is_object()) {
      problem(what + ": descriptor is not an object");
      return std::nullopt;
    }
    Descriptor out;
    if (!d.contains("mediaType") || !d["mediaType"].is_string()) {
      problem(what + ": descriptor has no mediaType");
      return std::nullopt;
    }
    out.media_type = d["mediaType"].get<std::string>();
    if (!d.contains("digest") || !d["digest"].is_string()) {
      problem(what + ": descriptor has no digest");
      return std::nullopt;
    }
    out.digest = d["digest"].get<std::string>();
    if (auto hex = digest_hex(out.digest); !hex) {
      problem(what + ": " + hex.error().message);
      return std::nullopt;
    }
    if (!d.contains("size") || !d["size"].is_number_integer() || d["size"].get<int64_t>() < 0) {
      problem(what + " (" + short_digest(out.digest) + "): descriptor has no valid size");
      return std::nullopt;
    }
    out.size = d["size"].get<int64_t>();
    if (d.contains("annotations")) out.annotations = d["annotations"];
    return out;
  }

  // Reads a small blob and checks it against its descriptor; nullopt (after saying why) when it
  // cannot be read at all. A digest or size mismatch is reported but the content is still returned
  // so the checks after it can find further problems.
  std::optional<std::string> read_blob(const Descriptor& d, const std::string& what) {
    fs::path p = blob_file(d.digest);
    std::error_code ec;
    if (!fs::is_regular_file(p, ec)) {
      problem(what + " " + d.digest + ": blob is missing");
      return std::nullopt;
    }
    if (d.size > kMaxJsonBlob) {
      problem(what + " " + d.digest + ": descriptor size " + std::to_string(d.size) + " is too large for a " +
              what);
      return std::nullopt;
    }
    auto text = read_limited(p, kMaxJsonBlob);
    if (!text) {
      problem(what + " " + d.digest + ": " + text.error().message);
      return std::nullopt;
    }
    if (static_cast<int64_t>(text->size()) != d.size)
      problem(what + " " + d.digest + ": blob is " + std::to_string(text->size()) +
              " bytes, descriptor says " + std::to_string(d.size));
    std::string actual = sha256_digest(*text);
    if (actual != d.digest) problem(what + " " + d.digest + ": digest mismatch (content is " + actual + ")");
    return std::move(text).value();
  }

  void walk_index(const json& index, const std::string& what, int depth) {
    if (!index.is_object()) return problem(what + " is not a JSON object");
    if (detail::json_int(index, "schemaVersion", 0) != 2) problem(what + ": schemaVersion is not 2");
    if (index.contains("mediaType") &&
        (!index["mediaType"].is_string() || !is_index_type(index["mediaType"].get<std::string>())))
      problem(what + ": unexpected mediaType " + index["mediaType"].dump());
    if (!index.contains("manifests") || !index["manifests"].is_array())
      return problem(what + " has no manifests array");
    if (index["manifests"].empty()) problem(what + " lists no manifest");
    size_t i = 0;
    for (const auto& m : index["manifests"]) {
      std::string where = what + " manifests[" + std::to_string(i++) + "]";
      auto d = parse_descriptor(m, where);
      if (!d) continue;
      if (is_index_type(d->media_type)) {
        if (depth >= kMaxIndexDepth) {
          problem(where + ": image indexes nested deeper than " + std::to_string(kMaxIndexDepth));
          continue;
        }
        auto text = read_blob(*d, "image index");
        if (!text) continue;
        json sub = json::parse(*text, nullptr, false);
        if (sub.is_discarded()) {
          problem("image index " + d->digest + " is not valid JSON");
          continue;
        }
        walk_index(sub, "image index " + short_digest(d->digest), depth + 1);
      } else if (is_manifest_type(d->media_type)) {
        check_manifest(*d);
      } else {
        problem(where + " (" + short_digest(d->digest) + "): unknown media type '" + d->media_type + "'");
      }
    }
  }

  void check_manifest(const Descriptor& d) {
    ++r_.manifests;
    auto text = read_blob(d, "manifest");
    if (!text) return;
    std::string what = "manifest " + short_digest(d.digest);
    json m = json::parse(*text, nullptr, false);
    if (m.is_discarded() || !m.is_object()) return problem(what + " is not a valid JSON object");
    if (detail::json_int(m, "schemaVersion", 0) != 2) problem(what + ": schemaVersion is not 2");
    if (m.contains("mediaType") && m["mediaType"] != d.media_type)
      problem(what + ": mediaType " + m["mediaType"].dump() + " differs from its descriptor's '" +
              d.media_type + "'");
    // Attestations and other artifacts that buildx stores beside images carry no filesystem.
    bool artifact = d.annotations.is_object() && d.annotations.contains("vnd.docker.reference.type");

    std::vector<std::string> diff_ids;
    bool have_diff_ids = false;
    if (!m.contains("config")) {
      problem(what + " has no config descriptor");
    } else if (auto cd = parse_descriptor(m["config"], what + " config")) {
      if (!is_config_type(cd->media_type) && !artifact)
        problem(what + " config: unknown media type '" + cd->media_type + "'");
      if (auto ctext = read_blob(*cd, "config"); ctext && !artifact) {
        json c = json::parse(*ctext, nullptr, false);
        if (c.is_discarded() || !c.is_object()) {
          problem("config " + short_digest(cd->digest) + " is not a valid JSON object");
        } else if (!c.contains("rootfs") || !c["rootfs"].is_object() || !c["rootfs"].contains("diff_ids") ||
                   !c["rootfs"]["diff_ids"].is_array()) {
          problem("config " + short_digest(cd->digest) + " has no rootfs.diff_ids");
        } else {
          have_diff_ids = true;
          for (const auto& id : c["rootfs"]["diff_ids"]) {
            if (!id.is_string() || !digest_hex(id.get<std::string>())) {
              problem("config " + short_digest(cd->digest) + ": bad diff_id " + id.dump());
              diff_ids.emplace_back();
            } else {
              diff_ids.push_back(id.get<std::string>());
            }
          }
        }
      }
    }
    if (!m.contains("layers") || !m["layers"].is_array()) return problem(what + " has no layers array");
    const auto& layers = m["layers"];
    if (have_diff_ids && diff_ids.size() != layers.size())
      problem(what + ": " + std::to_string(layers.size()) + " layers but the config lists " +
              std::to_string(diff_ids.size()) + " diff_ids");
    for (size_t i = 0; i < layers.size(); ++i) {
      std::string where = what + " layer " + std::to_string(i);
      auto ld = parse_descriptor(layers[i], where);
      if (!ld) continue;
      if (artifact) {
        ++r_.layers;
        check_blob_only(*ld, where);
        continue;
      }
      if (!is_layer_type(ld->media_type)) {
        problem(where + " (" + short_digest(ld->digest) + "): unknown media type '" + ld->media_type + "'");
        continue;
      }
      ++r_.layers;
      LayerDescriptor desc;
      desc.media_type = ld->media_type;
      desc.digest = ld->digest;
      desc.size = ld->size;
      desc.diff_id = i < diff_ids.size() ? diff_ids[i] : "";
      desc.blob_path = blob_file(ld->digest);
      std::error_code ec;
      if (!fs::is_regular_file(desc.blob_path, ec)) {
        problem(where + " " + ld->digest + ": blob is missing");
        continue;
      }
      stream_layer(desc, static_cast<int>(i), where);
    }
  }

  // Digest and size of a blob whose content this validator does not interpret.
  void check_blob_only(const Descriptor& d, const std::string& what) {
    fs::path p = blob_file(d.digest);
    std::error_code ec;
    if (!fs::is_regular_file(p, ec)) return problem(what + " " + d.digest + ": blob is missing");
    auto size = static_cast<int64_t>(fs::file_size(p, ec));
    if (size != d.size)
      problem(what + " " + d.digest + ": blob is " + std::to_string(size) + " bytes, descriptor says " +
              std::to_string(d.size));
    auto actual = sha256_file(p.string());
    if (!actual) return problem(what + ": " + actual.error().message);
    if (*actual != d.digest)
      problem(what + " " + d.digest + ": digest mismatch (content is " + *actual + ")");
  }

  // Reads every entry and every byte: what a runtime unpacking the layer would do. The reader
  // checks the blob digest, size and diff_id at the end.
  void stream_layer(const LayerDescriptor& desc, int index, const std::string& what) {
    std::string key = desc.blob_path.string() + "\n" + desc.diff_id;
    if (!streamed_.insert(key).second) return;
    auto reader = LayerReader::open(desc, index);
    if (!reader) return problem(what + ": " + reader.error().message);
    std::vector<char> buf(1 << 20);
    for (;;) {
      auto entry = reader->next();
      if (!entry) return problem(what + ": " + entry.error().message);
      if (!*entry) break;
      for (;;) {
        auto n = reader->read(std::span<char>(buf.data(), buf.size()));
        if (!n) return problem(what + ": " + n.error().message);
        if (*n == 0) break;
      }
    }
    if (auto st = reader->finish(); !st) problem(what + ": " + st.error().message);
  }

  void check_docker_entry(const json& e, const std::string& what, bool count) {
    if (!e.is_object()) return problem(what + " is not an object");
    if (count) ++r_.manifests;
    std::vector<std::string> diff_ids;
    bool have_diff_ids = false;
    if (!e.contains("Config") || !e["Config"].is_string()) {
      problem(what + " has no Config");
    } else {
      std::string name = e["Config"].get<std::string>();
      auto path = detail::resolve_within(root_, name);
      if (!path) {
        problem(what + " Config '" + name + "': " + path.error().message);
      } else if (auto text = read_limited(*path, kMaxJsonBlob); !text) {
        problem(what + " Config '" + name + "': " + text.error().message);
      } else {
        // Docker names configs by their digest ("<hex>.json" or "blobs/sha256/<hex>").
        std::string base = fs::path(name).filename().string();
        std::string actual = sha256_digest(*text);
        if (base.size() >= 64 && digest_hex("sha256:" + base.substr(0, 64)) &&
            actual != "sha256:" + base.substr(0, 64))
          problem(what + " Config '" + name + "': digest mismatch (content is " + actual + ")");
        json c = json::parse(*text, nullptr, false);
        if (c.is_discarded() || !c.is_object() || !c.contains("rootfs") || !c["rootfs"].is_object() ||
            !c["rootfs"].contains("diff_ids") || !c["rootfs"]["diff_ids"].is_array()) {
          problem(what + " Config '" + name + "' is not an image config with rootfs.diff_ids");
        } else {
          have_diff_ids = true;
          for (const auto& id : c["rootfs"]["diff_ids"])
            diff_ids.push_back(id.is_string() ? id.get<std::string>() : "");
        }
      }
    }
    if (!e.contains("Layers") || !e["Layers"].is_array()) return problem(what + " has no Layers");
    const auto& layers = e["Layers"];
    if (have_diff_ids && diff_ids.size() != layers.size())
      problem(what + ": " + std::to_string(layers.size()) + " layers but the config lists " +
              std::to_string(diff_ids.size()) + " diff_ids");
    for (size_t i = 0; i < layers.size(); ++i) {
      std::string where = what + " layer " + std::to_string(i);
      if (!layers[i].is_string()) {
        problem(where + " is not a path");
        continue;
      }
      std::string name = layers[i].get<std::string>();
      if (count) ++r_.layers;
      auto path = detail::resolve_within(root_, name);
      if (!path) {
        problem(where + " '" + name + "': " + path.error().message);
        continue;
      }
      std::error_code ec;
      if (!fs::is_regular_file(*path, ec)) {
        problem(where + " '" + name + "': layer file is missing");
        continue;
      }
      LayerDescriptor desc;
      desc.media_type = "application/vnd.docker.image.rootfs.diff.tar";
      desc.blob_path = *path;
      desc.diff_id = i < diff_ids.size() ? diff_ids[i] : "";
      if (name.rfind("blobs/sha256/", 0) == 0 && name.size() == 13 + 64)
        desc.digest = "sha256:" + name.substr(13);
      stream_layer(desc, static_cast<int>(i), where + " '" + name + "'");
    }
  }

  fs::path root_;
  ValidationReport& r_;
  std::set<std::string> streamed_;
};

}  // namespace

ValidationReport validate_image(const ImageRef& ref, const OpenOptions& options) {
  ValidationReport report;
  fs::path root = ref.path;
  std::optional<WorkDir> own_work;
  fs::path extracted;
  if (ref.transport != Transport::OciLayout) {
    fs::path base = options.work_dir;
    if (base.empty()) {
      auto w = WorkDir::create();
      if (!w) {
        report.problems.push_back(w.error().message);
        return report;
      }
      own_work.emplace(std::move(w).value());
      base = own_work->path();
    }
    std::string tmpl = (base / "validate-XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) {
      report.problems.push_back(Error::from_errno("mkdtemp '" + tmpl + "'").message);
      return report;
    }
    extracted = tmpl;
    register_cleanup_path(extracted);
    root = extracted;
    Status fetched;
    if (ref.transport == Transport::Registry) {
      // The pull checks every blob against its digest; what arrives is then checked as a layout.
      root = extracted / "image";
      fetched = detail::registry_pull(ref, options.platform, options.remote, root);
    } else if (ref.transport == Transport::DockerDaemon) {
      root = extracted / "image";
      fetched = detail::daemon_save(ref, options.remote, root);
    } else {
      fetched = detail::extract_archive(ref.path, extracted);
    }
    if (!fetched) {
      report.problems.push_back(ref.to_string() + ": " + fetched.error().message);
      report.fetch_failed = ref.is_remote();
    }
  }

  std::error_code ec;
  if (report.ok()) {
    Validator v(root, report);
    bool has_index = fs::exists(root / "index.json", ec);
    bool has_docker = fs::exists(root / "manifest.json", ec);
    if (!fs::is_directory(root, ec)) {
      v.problem("'" + root.string() + "' is not a directory");
    } else if ((ref.transport == Transport::DockerArchive || ref.transport == Transport::DockerDaemon) &&
               has_docker) {
      // Docker 25 archives hold both; `docker load` reads manifest.json, so that is what counts,
      // but the OCI side must be valid too.
      if (has_index) v.check_index_json();
      v.check_docker_manifest(!has_index);
    } else if (has_index) {
      v.check_layout_file();
      v.check_index_json();
      if (has_docker) v.check_docker_manifest(false);
    } else if (has_docker) {
      v.check_docker_manifest(true);
    } else {
      v.problem(ref.to_string() + ": neither index.json nor manifest.json found");
    }
  }
  if (!extracted.empty()) {
    fs::remove_all(extracted, ec);
    unregister_cleanup_path(extracted);
  }
  for (auto& p : report.problems) {
    // One line per problem, whatever a message quoted.
    for (auto& c : p)
      if (c == '\n') c = ' ';
  }
  return report;
}

}  // namespace slimtrace::image
