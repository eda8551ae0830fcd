#include "slimtrace/image/source.hpp"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <system_error>

#include "archive_util.hpp"
#include "io_util.hpp"
#include "remote_transport.hpp"
#include "slimtrace/fd.hpp"
#include "slimtrace/image/digest.hpp"
#include "slimtrace/image/layer_reader.hpp"

namespace slimtrace::image {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

using detail::kMaxJsonBlob;
using detail::read_small_file;

Result<json> parse_json(const std::string& text, const std::string& what) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Error{what + " is not valid JSON"};
  if (!j.is_object() && !j.is_array()) return Error{what + " is not a JSON object"};
  return j;
}

std::string short_digest(const std::string& d) { return d.size() > 19 ? d.substr(0, 19) : d; }

struct Descriptor {
  std::string media_type;
  std::string digest;
  int64_t size = -1;
  json raw;
};

Result<Descriptor> parse_descriptor(const json& j, const std::string& what) {
  if (!j.is_object()) return Error{what + ": descriptor is not an object"};
  Descriptor d;
  d.raw = j;
  if (j.contains("mediaType") && j["mediaType"].is_string()) d.media_type = j["mediaType"];
  if (!j.contains("digest") || !j["digest"].is_string()) return Error{what + ": descriptor has no digest"};
  d.digest = j["digest"];
  SLIMTRACE_TRY(digest_hex(d.digest));
  if (!j.contains("size") || !j["size"].is_number_integer()) return Error{what + ": descriptor has no size"};
  d.size = j["size"];
  if (d.size < 0) return Error{what + ": descriptor has a negative size"};
  return d;
}

fs::path blob_file(const fs::path& root, const std::string& digest) {
  return root / "blobs" / "sha256" / digest.substr(7);
}

// Reads a JSON blob of an OCI layout and checks it against its descriptor.
Result<std::string> read_verified_blob(const fs::path& root, const Descriptor& d, const std::string& what) {
  auto p = blob_file(root, d.digest);
  std::error_code ec;
  if (!fs::exists(p, ec)) return Error{what + " names missing blob " + d.digest};
  if (d.size > kMaxJsonBlob) return Error{what + " blob " + d.digest + " declares an implausible size"};
  SLIMTRACE_ASSIGN_OR_RETURN(std::string data, read_small_file(p, what + " blob " + short_digest(d.digest)));
  if (static_cast<int64_t>(data.size()) != d.size)
    return Error{what + " blob " + d.digest + ": size " + std::to_string(data.size()) +
                 " does not match the " + std::to_string(d.size) + " its descriptor states"};
  auto actual = sha256_digest(data);
  if (actual != d.digest)
    return Error{what + " blob " + d.digest + ": digest mismatch (content is " + actual + ")"};
  return data;
}

bool is_index_type(std::string_view mt) { return mt == kOciIndex || mt == kDockerManifestList; }
bool is_manifest_type(std::string_view mt) { return mt == kOciManifest || mt == kDockerManifest; }

bool is_layer_type(std::string_view mt) {
  return mt == kOciLayerTar || mt == kOciLayerGzip || mt == kOciLayerZstd || mt == kDockerLayerGzip ||
         mt == "application/vnd.docker.image.rootfs.diff.tar" ||
         mt == "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" ||
         mt == "application/vnd.oci.image.layer.nondistributable.v1.tar" ||
         mt == "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip" ||
         mt == "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd";
}

bool platform_matches(const json& p, const Platform& want) {
  if (!p.is_object()) return false;
  auto get = [&](const char* k) { return p.contains(k) && p[k].is_string() ? p[k].get<std::string>() : ""; };
  if (get("os") != want.os || get("architecture") != want.architecture) return false;
  return want.variant.empty() || get("variant") == want.variant;
}

std::string platform_of(const json& p) {
  if (!p.is_object()) return "unknown";
  std::string s = detail::json_string(p, "os", "?") + "/" + detail::json_string(p, "architecture", "?");
  if (p.contains("variant") && p["variant"].is_string()) s += "/" + p["variant"].get<std::string>();
  return s;
}

// Config history entries that made layers, in order, so each layer gets its created_by.
std::vector<std::string> layer_history(const json& config) {
  std::vector<std::string> out;
  if (!config.contains("history") || !config["history"].is_array()) return out;
  for (const auto& h : config["history"]) {
    if (!h.is_object()) continue;
    if (detail::json_bool(h, "empty_layer", false)) continue;
    out.push_back(h.contains("created_by") && h["created_by"].is_string() ? h["created_by"].get<std::string>()
                                                                          : "");
  }
  return out;
}

Result<std::vector<std::string>> config_diff_ids(const json& config, const std::string& what) {
  if (!config.is_object() || !config.contains("rootfs") || !config["rootfs"].is_object() ||
      !config["rootfs"].contains("diff_ids") || !config["rootfs"]["diff_ids"].is_array())
    return Error{what + " has no rootfs.diff_ids"};
  std::vector<std::string> ids;
  for (const auto& d : config["rootfs"]["diff_ids"]) {
    if (!d.is_string()) return Error{what + " has a non-string diff_id"};
    SLIMTRACE_TRY(digest_hex(d.get<std::string>()));
    ids.push_back(d);
  }
  return ids;
}

Status finish_from_config(SourceImage& img, const std::string& config_text) {
  SLIMTRACE_ASSIGN_OR_RETURN(img.config,
                             parse_json(config_text, "image config " + short_digest(img.config_digest)));
  if (!img.config.is_object()) return Error{"image config is not a JSON object"};
  SLIMTRACE_ASSIGN_OR_RETURN(auto diff_ids,
                             config_diff_ids(img.config, "image config " + short_digest(img.config_digest)));
  if (diff_ids.size() != img.layers.size())
    return Error{"image config lists " + std::to_string(diff_ids.size()) + " diff_ids but the manifest has " +
                 std::to_string(img.layers.size()) + " layers"};
  auto history = layer_history(img.config);
  for (size_t i = 0; i < img.layers.size(); ++i) {
    img.layers[i].diff_id = diff_ids[i];
    if (i < history.size()) img.layers[i].created_by = history[i];
  }
  img.platform.os = detail::json_string(img.config, "os", img.platform.os);
  img.platform.architecture = detail::json_string(img.config, "architecture", img.platform.architecture);
  img.platform.variant = img.config.contains("variant") && img.config["variant"].is_string()
                             ? img.config["variant"].get<std::string>()
                             : "";
  return {};
}

Status load_manifest(SourceImage& img, const fs::path& root, const Descriptor& d) {
  SLIMTRACE_ASSIGN_OR_RETURN(std::string text, read_verified_blob(root, d, "manifest"));
  SLIMTRACE_ASSIGN_OR_RETURN(img.manifest, parse_json(text, "manifest " + short_digest(d.digest)));
  if (!img.manifest.is_object()) return Error{"manifest " + short_digest(d.digest) + " is not a JSON object"};
  img.manifest_digest = d.digest;
  img.manifest_media_type = detail::json_string(img.manifest, "mediaType", d.media_type);
  if (img.manifest_media_type.empty()) img.manifest_media_type = std::string(kOciManifest);
  if (detail::json_int(img.manifest, "schemaVersion", 0) != 2)
    return Error{"manifest " + short_digest(d.digest) +
                 ": unsupported schemaVersion (Docker schema 1 is not supported)"};
  if (!is_manifest_type(img.manifest_media_type))
    return Error{"manifest " + short_digest(d.digest) + ": unsupported media type '" +
                 img.manifest_media_type + "'"};
  if (!img.manifest.contains("config")) return Error{"manifest " + short_digest(d.digest) + " has no config"};
  SLIMTRACE_ASSIGN_OR_RETURN(Descriptor cfg, parse_descriptor(img.manifest["config"], "manifest config"));
  SLIMTRACE_ASSIGN_OR_RETURN(std::string config_text, read_verified_blob(root, cfg, "config"));
  img.config_digest = cfg.digest;
  if (!img.manifest.contains("layers") || !img.manifest["layers"].is_array())
    return Error{"manifest " + short_digest(d.digest) + " has no layers array"};
  int i = 0;
  for (const auto& lj : img.manifest["layers"]) {
    SLIMTRACE_ASSIGN_OR_RETURN(Descriptor ld, parse_descriptor(lj, "layer " + std::to_string(i)));
    if (!is_layer_type(ld.media_type))
      return Error{"layer " + std::to_string(i) + " (" + short_digest(ld.digest) +
                   "): unsupported media type '" + ld.media_type + "'"};
    LayerDescriptor layer;
    layer.media_type = ld.media_type;
    layer.digest = ld.digest;
    layer.size = ld.size;
    layer.blob_path = blob_file(root, ld.digest);
    std::error_code ec;
    auto st = fs::status(layer.blob_path, ec);
    if (ec || !fs::is_regular_file(st)) return Error{"manifest names missing layer blob " + ld.digest};
    auto fsize = static_cast<int64_t>(fs::file_size(layer.blob_path, ec));
    if (fsize != ld.size)
      return Error{"layer " + std::to_string(i) + " blob " + ld.digest + ": size " + std::to_string(fsize) +
                   " does not match the " + std::to_string(ld.size) + " the manifest states"};
    img.layers.push_back(std::move(layer));
    ++i;
  }
  return finish_from_config(img, config_text);
}

std::string ref_name(const json& desc) {
  if (desc.contains("annotations") && desc["annotations"].is_object()) {
    const auto& a = desc["annotations"];
    if (a.contains("org.opencontainers.image.ref.name") && a["org.opencontainers.image.ref.name"].is_string())
      return a["org.opencontainers.image.ref.name"];
  }
  return "";
}

// Picks the platform's manifest from an index, following nested indexes.
Result<Descriptor> select_from_index(const json& index, const Platform& want, const std::string& what,
                                     int depth = 0) {
  if (depth > 4) return Error{what + ": image indexes nested too deeply"};
  if (!index.contains("manifests") || !index["manifests"].is_array())
    return Error{what + " has no manifests array"};
  std::vector<std::string> seen;
  for (const auto& m : index["manifests"]) {
    SLIMTRACE_ASSIGN_OR_RETURN(Descriptor d, parse_descriptor(m, what + " entry"));
    if (m.contains("platform")) {
      // Attestation manifests (buildx) carry platform unknown/unknown; skip them silently.
      if (platform_matches(m["platform"], want)) return d;
      seen.push_back(platform_of(m["platform"]));
    }
  }
  std::string list;
  for (const auto& s : seen) list += (list.empty() ? "" : ", ") + s;
  return Error{what + ": platform " + want.to_string() +
               " not found (available: " + (list.empty() ? "none" : list) + ")"};
}

Result<SourceImage> open_layout(const ImageRef& ref, const fs::path& root, const Platform& platform) {
  SourceImage img;
  img.ref = ref;
  img.root = root;
  img.platform = platform;
  std::error_code ec;
  if (!fs::is_directory(root, ec)) return Error{"'" + root.string() + "' is not a directory"};
  if (auto layout = read_small_file(root / "oci-layout", "oci-layout file"); layout) {
    SLIMTRACE_ASSIGN_OR_RETURN(json lj, parse_json(*layout, "oci-layout file"));
    if (!lj.is_object() || detail::json_string(lj, "imageLayoutVersion") != "1.0.0")
      return Error{"'" + root.string() + "/oci-layout' does not declare imageLayoutVersion 1.0.0"};
  } else {
    return Error{"'" + root.string() + "' is not an OCI image layout: " + layout.error().message};
  }
  SLIMTRACE_ASSIGN_OR_RETURN(std::string index_text, read_small_file(root / "index.json", "index.json"));
  SLIMTRACE_ASSIGN_OR_RETURN(json index, parse_json(index_text, "'" + (root / "index.json").string() + "'"));
  if (!index.is_object() || !index.contains("manifests") || !index["manifests"].is_array())
    return Error{"'" + (root / "index.json").string() + "' has no manifests array"};

  std::vector<json> candidates;
  std::vector<std::string> tags;
  for (const auto& m : index["manifests"]) {
    auto name = ref_name(m);
    if (!name.empty()) tags.push_back(name);
    if (ref.tag.empty() || name == ref.tag) candidates.push_back(m);
  }
  std::string tag_list;
  for (const auto& t : tags) tag_list += (tag_list.empty() ? "" : ", ") + t;
  if (candidates.empty()) {
    if (!ref.tag.empty())
      return Error{"no image tagged '" + ref.tag + "' in '" + root.string() +
                   "' (tags: " + (tag_list.empty() ? "none" : tag_list) + ")"};
    return Error{"'" + root.string() + "' holds no image"};
  }
  Descriptor chosen;
  if (candidates.size() == 1) {
    SLIMTRACE_ASSIGN_OR_RETURN(chosen, parse_descriptor(candidates[0], "index.json entry"));
  } else {
    // Several entries: a multi-platform top-level index, or several tags (ambiguous).
    json sub = json::object();
    sub["manifests"] = candidates;
    bool all_have_platform = true;
    for (const auto& c : candidates) all_have_platform = all_have_platform && c.contains("platform");
    if (!all_have_platform)
      return Error{"'" + root.string() + "' holds " + std::to_string(candidates.size()) +
                   " images; pick one with oci:" + root.string() +
                   ":TAG (tags: " + (tag_list.empty() ? "none" : tag_list) + ")"};
    SLIMTRACE_ASSIGN_OR_RETURN(chosen, select_from_index(sub, platform, "index.json"));
  }
  for (int depth = 0; is_index_type(chosen.media_type); ++depth) {
    if (depth > 4) return Error{"image indexes nested too deeply"};
    SLIMTRACE_ASSIGN_OR_RETURN(std::string text, read_verified_blob(root, chosen, "image index"));
    SLIMTRACE_ASSIGN_OR_RETURN(json sub, parse_json(text, "image index " + short_digest(chosen.digest)));
    SLIMTRACE_ASSIGN_OR_RETURN(
        chosen, select_from_index(sub, platform, "image index " + short_digest(chosen.digest)));
  }
  if (!chosen.media_type.empty() && !is_manifest_type(chosen.media_type))
    return Error{"index entry " + short_digest(chosen.digest) + ": unsupported media type '" +
                 chosen.media_type + "'"};
  SLIMTRACE_TRY(load_manifest(img, root, chosen));
  return img;
}

std::string normalize_repo_tag(std::string t) {
  for (const char* p : {"docker.io/library/", "docker.io/", "index.docker.io/library/"}) {
    std::string_view prefix = p;
    if (t.rfind(prefix, 0) == 0) t = t.substr(prefix.size());
  }
  if (t.find(':', t.rfind('/') == std::string::npos ? 0 : t.rfind('/')) == std::string::npos) t += ":latest";
  return t;
}

Result<SourceImage> open_docker_dir(const ImageRef& ref, const fs::path& root) {
  SourceImage img;
  img.ref = ref;
  img.root = root;
  SLIMTRACE_ASSIGN_OR_RETURN(std::string text,
                             read_small_file(root / "manifest.json", "docker-archive manifest.json"));
  SLIMTRACE_ASSIGN_OR_RETURN(json list, parse_json(text, "docker-archive manifest.json"));
  if (!list.is_array() || list.empty()) return Error{"docker-archive manifest.json lists no image"};
  std::vector<std::string> all_tags;
  const json* chosen = nullptr;
  for (size_t i = 0; i < list.size(); ++i) {
    const auto& e = list[i];
    if (!e.is_object())
      return Error{"docker-archive manifest.json entry " + std::to_string(i) + " is not an object"};
    if (e.contains("RepoTags") && e["RepoTags"].is_array()) {
      for (const auto& t : e["RepoTags"]) {
        if (!t.is_string()) continue;
        all_tags.push_back(t);
        if (!ref.tag.empty() && normalize_repo_tag(t) == normalize_repo_tag(ref.tag)) chosen = &e;
      }
    }
  }
  std::string tag_list;
  for (const auto& t : all_tags) tag_list += (tag_list.empty() ? "" : ", ") + t;
  if (ref.index) {
    if (*ref.index >= static_cast<int>(list.size()))
      return Error{"docker-archive '" + ref.path.string() + "' holds " + std::to_string(list.size()) +
                   " images; index @" + std::to_string(*ref.index) + " is out of range"};
    chosen = &list[static_cast<size_t>(*ref.index)];
  } else if (!ref.tag.empty()) {
    if (!chosen)
      return Error{"no image tagged '" + ref.tag + "' in docker-archive '" + ref.path.string() +
                   "' (tags: " + (tag_list.empty() ? "none" : tag_list) + ")"};
  } else if (list.size() == 1) {
    chosen = &list[0];
  } else {
    return Error{"docker-archive '" + ref.path.string() + "' holds " + std::to_string(list.size()) +
                 " images; pick one with docker-archive:" + ref.path.string() +
                 ":NAME:TAG or :@N (tags: " + tag_list + ")"};
  }
  const json& e = *chosen;
  if (!e.contains("Config") || !e["Config"].is_string())
    return Error{"docker-archive manifest entry has no Config"};
  if (!e.contains("Layers") || !e["Layers"].is_array())
    return Error{"docker-archive manifest entry has no Layers"};
  SLIMTRACE_ASSIGN_OR_RETURN(fs::path config_path,
                             detail::resolve_within(root, e["Config"].get<std::string>()));
  SLIMTRACE_ASSIGN_OR_RETURN(std::string config_text, read_small_file(config_path, "image config"));
  img.config_digest = sha256_digest(config_text);
  // The config's file name is its digest ("<hex>.json" or "blobs/sha256/<hex>"): check it.
  std::string cname = fs::path(e["Config"].get<std::string>()).filename().string();
  if (cname.size() >= 64) {
    std::string hex = cname.substr(0, 64);
    if (img.config_digest != "sha256:" + hex)
      return Error{"docker-archive config '" + e["Config"].get<std::string>() +
                   "': digest mismatch (content is " + img.config_digest + ")"};
  }
  int i = 0;
  for (const auto& l : e["Layers"]) {
    if (!l.is_string()) return Error{"docker-archive manifest entry has a non-string layer"};
    LayerDescriptor layer;
    SLIMTRACE_ASSIGN_OR_RETURN(layer.blob_path, detail::resolve_within(root, l.get<std::string>()));
    std::error_code ec;
    if (!fs::is_regular_file(layer.blob_path, ec))
      return Error{"docker-archive names missing layer '" + l.get<std::string>() + "'"};
    layer.size = static_cast<int64_t>(fs::file_size(layer.blob_path, ec));
    // Newer archives store layers as blobs/sha256/<digest>: that name is a digest we can check.
    std::string lp = l.get<std::string>();
    if (lp.rfind("blobs/sha256/", 0) == 0 && lp.size() == 13 + 64) layer.digest = "sha256:" + lp.substr(13);
    layer.media_type = "application/vnd.docker.image.rootfs.diff.tar";
    img.layers.push_back(std::move(layer));
    ++i;
  }
  // A docker-archive has no manifest blob; describe the image as an OCI manifest would, for reports.
  img.manifest_media_type = std::string(kDockerManifest);
  img.manifest =
      json{{"schemaVersion", 2}, {"mediaType", kDockerManifest}, {"config", {{"digest", img.config_digest}}}};
  SLIMTRACE_TRY(finish_from_config(img, config_text));
  return img;
}

}  // namespace

Result<Platform> Platform::parse(const std::string& text) {
  Platform p;
  auto a = text.find('/');
  if (a == std::string::npos || a == 0 || a + 1 >= text.size())
    return Error{"bad platform '" + text + "' (expected os/arch[/variant], e.g. linux/amd64)"};
  p.os = text.substr(0, a);
  auto b = text.find('/', a + 1);
  p.architecture = text.substr(a + 1, b == std::string::npos ? std::string::npos : b - a - 1);
  if (b != std::string::npos) p.variant = text.substr(b + 1);
  if (p.architecture.empty()) return Error{"bad platform '" + text + "' (empty architecture)"};
  return p;
}

std::string Platform::to_string() const {
  return os + "/" + architecture + (variant.empty() ? "" : "/" + variant);
}

Result<SourceImage> open_image(const ImageRef& ref, const OpenOptions& options) {
  auto wrap = [&](Result<SourceImage> r) -> Result<SourceImage> {
    if (!r) return r.error().context(ref.to_string());
    return r;
  };
  switch (ref.transport) {
    case Transport::OciLayout:
      return wrap(open_layout(ref, ref.path, options.platform));
    case Transport::Registry:
    case Transport::DockerDaemon: {
      if (options.work_dir.empty())
        return Error{ref.to_string() + ": no work directory to fetch the image into"};
      fs::path dest = options.work_dir / "input-remote";
      for (int i = 1; fs::exists(dest); ++i) dest = options.work_dir / ("input-remote-" + std::to_string(i));
      if (ref.transport == Transport::Registry) {
        if (auto st = detail::registry_pull(ref, options.platform, options.remote, dest); !st)
          return st.error().context(ref.to_string());
        return wrap(open_layout(ref, dest, options.platform));
      }
      if (auto st = detail::daemon_save(ref, options.remote, dest); !st)
        return st.error().context(ref.to_string());
      // The engine's archive holds just this image; its RepoTags may name it differently
      // (by ID, or normalised), so it is read as the only image there.
      ImageRef only = ref;
      only.transport = Transport::DockerArchive;
      only.tag.clear();
      auto r = open_docker_dir(only, dest);
      if (r) {
        r->ref = ref;
        r->platform = r->platform.os.empty() ? options.platform : r->platform;
      }
      return wrap(std::move(r));
    }
    case Transport::OciArchive:
    case Transport::DockerArchive: {
      if (options.work_dir.empty())
        return Error{ref.to_string() + ": no work directory to unpack the archive into"};
      std::string tmpl = (options.work_dir / "input-XXXXXX").string();
      if (!::mkdtemp(tmpl.data())) return Error::from_errno("mkdtemp '" + tmpl + "'");
      fs::path dest = tmpl;
      if (auto st = detail::extract_archive(ref.path, dest); !st) return st.error().context(ref.to_string());
      if (ref.transport == Transport::OciArchive) return wrap(open_layout(ref, dest, options.platform));
      auto r = open_docker_dir(ref, dest);
      if (r) r->platform = r->platform.os.empty() ? options.platform : r->platform;
      return wrap(std::move(r));
    }
  }
  return Error{"unknown transport"};
}

}  // namespace slimtrace::image
