#include "slimtrace/image/reference.hpp"

#include <archive.h>
#include <archive_entry.h>

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
  }
  return "?";
}

std::string ImageRef::to_string() const {
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
  } else if (scheme == "docker" || scheme == "docker-daemon" || scheme == "containers-storage" ||
             scheme == "dir") {
    return Error{"transport '" + scheme +
                 ":' is not supported yet (use oci:, oci-archive: or docker-archive:)"};
  } else {
    // A bare path: detected by content.
    fs::path p = text;
    std::error_code ec;
    if (!fs::exists(p, ec)) {
      return Error{"unknown image reference '" + text +
                   "': no such file or directory (use oci:DIR[:TAG], oci-archive:FILE[:TAG] or "
                   "docker-archive:FILE[:NAME:TAG])"};
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
