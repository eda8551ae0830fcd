#include "slimtrace/image/reference.hpp"

#include <archive.h>
#include <archive_entry.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <system_error>

namespace slimtrace::image {
namespace fs = std::filesystem;

std::string_view transport_name(Transport t) {
  switch (t) {
    case Transport::OciLayout:
      return "oci";
    case Transport::OciArchive:
      return "oci-archive";
    case Transport::DockerArchive:
      return "docker-archive";
    case Transport::DockerDaemon:
      return "docker-daemon";
    case Transport::Registry:
      return "docker";
  }
  return "?";
}

std::string ImageRef::name() const {
  if (transport == Transport::DockerDaemon && repository.empty()) return digest;
  std::string s = transport == Transport::Registry ? registry + "/" + repository : repository;
  return digest.empty() ? s + ":" + tag : s + "@" + digest;
}

std::string ImageRef::to_string() const {
  if (transport == Transport::Registry) return "docker://" + name();
  if (transport == Transport::DockerDaemon) return "docker-daemon:" + name();
  std::string s = std::string(transport_name(transport)) + ":" + path.string();
  if (index) return s + ":@" + std::to_string(*index);
  if (!tag.empty()) s += ":" + tag;
  return s;
}

namespace {

// Looks at the first members of a tar to tell a docker-save archive from an OCI archive.
Result<Transport> sniff_archive(const fs::path& file) {
  archive* a = archive_read_new();
  archive_read_support_format_tar(a);
  archive_read_support_filter_all(a);
  bool has_manifest_json = false, has_oci_layout = false;
  if (archive_read_open_filename(a, file.c_str(), 1 << 16) != ARCHIVE_OK) {
    std::string msg = archive_error_string(a) ? archive_error_string(a) : "unreadable";
    archive_read_free(a);
    return Error{"'" + file.string() + "' is neither an image directory nor an image archive: " + msg};
  }
  archive_entry* e = nullptr;
  int r;
  while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK) {
    std::string name = archive_entry_pathname(e);
    if (name.rfind("./", 0) == 0) name = name.substr(2);
    if (name == "manifest.json") has_manifest_json = true;
    if (name == "oci-layout") has_oci_layout = true;
    archive_read_data_skip(a);
  }
  bool read_ok = (r == ARCHIVE_EOF);
  std::string msg = archive_error_string(a) ? archive_error_string(a) : "";
  archive_read_free(a);
  if (!read_ok) return Error{"'" + file.string() + "' is not a readable tar archive: " + msg};
  // Docker 25+ writes both; its manifest.json is what `docker load` reads, so prefer it.
  if (has_manifest_json) return Transport::DockerArchive;
  if (has_oci_layout) return Transport::OciArchive;
  return Error{"'" + file.string() + "' is a tar archive without manifest.json or oci-layout: not an image"};
}

bool is_digest(std::string_view d) {
  if (!d.starts_with("sha256:") || d.size() != 7 + 64) return false;
  return std::all_of(d.begin() + 7, d.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

bool is_tag(std::string_view t) {
  if (t.empty() || t.size() > 128 || t[0] == '.' || t[0] == '-') return false;
  return std::all_of(t.begin(), t.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-';
  });
}

bool is_repository(std::string_view r) {
  if (r.empty() || r.front() == '/' || r.back() == '/' || r.find("//") != std::string_view::npos)
    return false;
  return std::all_of(r.begin(), r.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-' || c == '/';
  });
}

// "NAME[:TAG][@DIGEST]" -> repository (as written), tag ("latest" unless a digest names it), digest.
Status split_docker_name(const std::string& text, const std::string& whole, ImageRef& ref) {
  std::string name = text;
  if (auto at = name.find('@'); at != std::string::npos) {
    ref.digest = name.substr(at + 1);
    name.resize(at);
    if (!is_digest(ref.digest))
      return Error{"bad digest in image reference '" + whole + "' (expected @sha256:<64 hex digits>)"};
  }
  auto slash = name.rfind('/');
  auto colon = name.rfind(':');
  if (colon != std::string::npos && (slash == std::string::npos || colon > slash)) {
    ref.tag = name.substr(colon + 1);
    name.resize(colon);
    if (!is_tag(ref.tag)) return Error{"bad tag '" + ref.tag + "' in image reference '" + whole + "'"};
  } else if (ref.digest.empty()) {
    ref.tag = "latest";
  }
  ref.repository = name;
  return {};
}

Result<ImageRef> parse_registry_reference(const std::string& text, const std::string& rest) {
  ImageRef ref;
  ref.transport = Transport::Registry;
  if (!rest.starts_with("//"))
    return Error{"bad image reference '" + text + "' (expected docker://[REGISTRY/]NAME[:TAG|@DIGEST])"};
  SLIMTRACE_TRY(split_docker_name(rest.substr(2), text, ref));
  // Like docker: the first component is a registry when it looks like a host.
  std::string name = ref.repository;
  auto slash = name.find('/');
  std::string first = slash == std::string::npos ? "" : name.substr(0, slash);
  if (!first.empty() && (first.find('.') != std::string::npos || first.find(':') != std::string::npos ||
                         first == "localhost")) {
    ref.registry = first;
    ref.repository = name.substr(slash + 1);
  } else {
    ref.registry = "docker.io";
  }
  if (ref.registry == "index.docker.io") ref.registry = "docker.io";
  if (ref.registry == "docker.io" && ref.repository.find('/') == std::string::npos)
    ref.repository = "library/" + ref.repository;
  if (!is_repository(ref.repository))
    return Error{"bad repository name '" + ref.repository + "' in image reference '" + text +
                 "' (lower-case letters, digits, '.', '_', '-' and '/')"};
  return ref;
}

Result<ImageRef> parse_daemon_reference(const std::string& text, const std::string& rest) {
  ImageRef ref;
  ref.transport = Transport::DockerDaemon;
  if (rest.empty())
    return Error{"image reference '" + text + "' names no image (expected docker-daemon:NAME[:TAG])"};
  if (is_digest(rest)) {  // an image ID
    ref.digest = rest;
    return ref;
  }
  SLIMTRACE_TRY(split_docker_name(rest, text, ref));
  if (!ref.digest.empty())
    return Error{"image reference '" + text +
                 "': docker-daemon: takes NAME[:TAG] or an image ID (sha256:...), not NAME@DIGEST"};
  std::string repo = ref.repository;
  // A registry host may carry upper case and a port; the path after it may not.
  auto slash = repo.find('/');
  std::string path = slash == std::string::npos ? repo : repo.substr(slash + 1);
  if (!is_repository(path))
    return Error{"bad image name '" + ref.repository + "' in image reference '" + text + "'"};
  return ref;
}

}  // namespace

Result<ImageRef> parse_reference(const std::string& text, bool must_exist) {
  if (text.empty()) return Error{"empty image reference"};
  ImageRef ref;
  auto colon = text.find(':');
  std::string scheme = colon == std::string::npos ? "" : text.substr(0, colon);
  std::string rest = colon == std::string::npos ? text : text.substr(colon + 1);

  // Like skopeo: the path ends at the first ':' after the transport; what follows is the tag
  // (oci, oci-archive), or NAME[:TAG] or @INDEX (docker-archive).
  auto split_tag = [&](bool docker) {
    auto c = rest.find(':');
    ref.path = rest.substr(0, c);
    if (c == std::string::npos) return;
    std::string tail = rest.substr(c + 1);
    if (docker && !tail.empty() && tail[0] == '@') {
      int idx = -1;
      auto [p, ec] = std::from_chars(tail.data() + 1, tail.data() + tail.size(), idx);
      ref.index = (ec == std::errc() && p == tail.data() + tail.size()) ? idx : -1;
      return;
    }
    ref.tag = tail;
    if (docker && !ref.tag.empty() &&
        ref.tag.find(':', ref.tag.rfind('/') == std::string::npos ? 0 : ref.tag.rfind('/')) ==
            std::string::npos)
      ref.tag += ":latest";
  };

  if (scheme == "oci") {
    ref.transport = Transport::OciLayout;
    split_tag(false);
  } else if (scheme == "oci-archive") {
    ref.transport = Transport::OciArchive;
    split_tag(false);
  } else if (scheme == "docker-archive") {
    ref.transport = Transport::DockerArchive;
    split_tag(true);
    if (ref.index && *ref.index < 0) return Error{"bad image index in '" + text + "' (expected :@N)"};
  } else if (scheme == "docker") {
    return parse_registry_reference(text, rest);
  } else if (scheme == "docker-daemon") {
    return parse_daemon_reference(text, rest);
  } else if (scheme == "containers-storage" || scheme == "dir") {
    return Error{
        "transport '" + scheme +
        ":' is not supported (use oci:, oci-archive:, docker-archive:, docker-daemon: or docker://)"};
  } else {
    // A bare path: detected by content.
    fs::path p = text;
    std::error_code ec;
    if (!fs::exists(p, ec)) {
      return Error{
          "unknown image reference '" + text +
          "': no such file or directory (use oci:DIR[:TAG], oci-archive:FILE[:TAG], "
          "docker-archive:FILE[:NAME:TAG], docker-daemon:NAME[:TAG] or docker://REGISTRY/NAME[:TAG])"};
    }
    ref.path = p;
    if (fs::is_directory(p, ec)) {
      if (!fs::exists(p / "oci-layout", ec) && !fs::exists(p / "index.json", ec))
        return Error{"'" + text + "' is a directory but not an OCI image layout (no oci-layout file)"};
      ref.transport = Transport::OciLayout;
      return ref;
    }
    SLIMTRACE_ASSIGN_OR_RETURN(ref.transport, sniff_archive(p));
    return ref;
  }
  if (ref.path.empty()) return Error{"image reference '" + text + "' names no path"};
  if (must_exist) {
    std::error_code ec;
    if (!fs::exists(ref.path, ec))
      return Error{"image '" + ref.to_string() + "': '" + ref.path.string() + "': No such file or directory"};
  }
  return ref;
}

}  // namespace slimtrace::image
