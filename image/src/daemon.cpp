// docker-daemon: images in a Docker engine, reached through its HTTP API on a unix socket. Both
// directions stream: `docker save` output is unpacked while it arrives, and the archive for
// `docker load` is assembled from the layout's blobs while it is sent, so no full copy of the
// image is ever spooled to disk.
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <system_error>
#include <thread>
#include <vector>

#include "archive_util.hpp"
#include "http.hpp"
#include "io_util.hpp"
#include "remote_transport.hpp"
#include "slimtrace/fd.hpp"
#include "slimtrace/image/digest.hpp"
#include "tar_writer.hpp"

namespace slimtrace::image::detail {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr std::string_view kDefaultDockerHost = "unix:///var/run/docker.sock";

struct Engine {
  std::string host;    // "unix:///run/docker.sock", for messages
  std::string socket;  // "/run/docker.sock"
};

Result<Engine> resolve_engine(const RemoteOptions& options) {
  std::string host = options.docker_host;
  if (host.empty()) {
    const char* env = std::getenv("DOCKER_HOST");
    if (env && *env) host = env;
  }
  if (host.empty()) host = kDefaultDockerHost;
  constexpr std::string_view kUnix = "unix://";
  if (host.rfind(kUnix, 0) == 0 && host.size() > kUnix.size()) return Engine{host, host.substr(kUnix.size())};
  return Error{"docker engine '" + host +
               "' is not supported: only unix sockets are (DOCKER_HOST=unix:///var/run/docker.sock); "
               "tcp://, ssh:// and npipe:// endpoints are not"};
}

// Connects once before any request, so that a missing engine gives the errno of the connect itself
// rather than whatever wording the HTTP layer chooses.
Status check_engine(const Engine& engine) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (engine.socket.size() >= sizeof(addr.sun_path))
    return Error{"docker engine socket '" + engine.socket + "': path too long"};
  std::memcpy(addr.sun_path, engine.socket.c_str(), engine.socket.size() + 1);
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return Error::from_errno("socket");
  int r;
  do {
    r = ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr));
  } while (r != 0 && errno == EINTR);
  if (r == 0) return {};
  int e = errno;
  if (e == ENOENT || e == ECONNREFUSED || e == ENOTSOCK)
    return Error{"docker engine not running at " + engine.host + ": connect: " + std::strerror(e), e};
  return Error{"cannot reach docker engine at " + engine.host + ": connect: " + std::strerror(e), e};
}

// The name the engine knows the image by: "NAME:TAG", "NAME@DIGEST", or a bare image ID.
std::string engine_name(const ImageRef& ref) {
  if (ref.repository.empty() && !ref.digest.empty()) return ref.digest;
  return ref.name();
}

// "/images/NAME" with '/', ':' and '@' left as the docker client sends them.
std::string images_path(const ImageRef& ref) { return "/images/" + percent_encode(engine_name(ref), "/:@"); }

std::string one_line(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  for (char& c : s)
    if (c == '\n' || c == '\r') c = ' ';
  return s;
}

// The engine's error for a non-2xx response: its {"message": ...} or the body itself.
std::string engine_message(const HttpResponse& res) {
  json j = json::parse(res.body, nullptr, /*allow_exceptions=*/false);
  if (j.is_object() && j.contains("message") && j["message"].is_string())
    return one_line(j["message"].get<std::string>());
  std::string body = one_line(res.body);
  if (body.size() > 300) body = body.substr(0, 300) + "...";
  return "HTTP " + std::to_string(res.status) + (body.empty() ? "" : ": " + body);
}

HttpRequest request(const Engine& engine, std::string method, const std::string& path) {
  HttpRequest r;
  r.method = std::move(method);
  r.url = "http://docker" + path;
  r.unix_socket = engine.socket;
  r.follow_redirects = false;
  // `docker save` of a large image can pause while the engine assembles layers; do not give up
  // as quickly as on a registry.
  r.stall_timeout_seconds = 600;
  return r;
}

Result<HttpResponse> perform(const Engine& engine, const HttpRequest& req) {
  auto res = http_perform(req);
  if (!res) return Error{"docker engine at " + engine.host + ": " + one_line(res.error().message)};
  return res;
}

// GET /images/{name}/json: the image's inspect document, or "image not found" on 404.
Result<json> inspect_image(const Engine& engine, const ImageRef& ref) {
  SLIMTRACE_ASSIGN_OR_RETURN(HttpResponse res,
                             perform(engine, request(engine, "GET", images_path(ref) + "/json")));
  if (res.status == 404) return Error{"image not found in the engine"};
  if (res.status / 100 != 2) return Error{"docker engine: " + engine_message(res)};
  json j = json::parse(res.body, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return Error{"docker engine sent an image inspect that is not JSON"};
  return j;
}

Status send_all(int fd, const char* p, size_t n) {
  while (n) {
    ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return Error::from_errno("send");
    p += w;
    n -= static_cast<size_t>(w);
  }
  return {};
}

// One piece of the archive sent to `docker load`: bytes held in memory, or a blob file's content.
struct Segment {
  std::string bytes;
  fs::path file;
  int64_t size = 0;
};

Result<std::string> tar_header_bytes(const TarHeader& h) {
  std::string out;
  TarWriter tw([&out](const char* p, size_t n) -> Status {
    out.append(p, n);
    return {};
  });
  SLIMTRACE_TRY(tw.add_header(h));
  return out;
}

std::string tar_padding(int64_t size) {
  return std::string(static_cast<size_t>((512 - size % 512) % 512), '\0');
}

Result<json> read_json_file(const fs::path& p, const std::string& what) {
  SLIMTRACE_ASSIGN_OR_RETURN(std::string text, read_small_file(p, what));
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return Error{what + " is not a JSON object"};
  return j;
}

Result<std::string> descriptor_digest(const json& d, const std::string& what) {
  if (!d.is_object() || !d.contains("digest") || !d["digest"].is_string())
    return Error{what + " has no digest"};
  std::string digest = d["digest"];
  SLIMTRACE_TRY(digest_hex(digest));
  return digest;
}

// The docker-save archive of the layout's only image, as a list of segments.
struct LoadArchive {
  std::vector<Segment> segments;
  int64_t total = 0;
};

Result<LoadArchive> plan_load_archive(const fs::path& layout, const std::string& repo_tag) {
  const std::string where = "OCI layout '" + layout.string() + "'";
  SLIMTRACE_ASSIGN_OR_RETURN(json index, read_json_file(layout / "index.json", where + " index.json"));
  if (!index.contains("manifests") || !index["manifests"].is_array() || index["manifests"].size() != 1)
    return Error{where + ": index.json must list exactly one manifest"};
  SLIMTRACE_ASSIGN_OR_RETURN(std::string manifest_digest,
                             descriptor_digest(index["manifests"][0], where + " index.json manifest"));
  auto blob = [&](const std::string& digest) { return layout / "blobs" / "sha256" / digest.substr(7); };
  SLIMTRACE_ASSIGN_OR_RETURN(json manifest, read_json_file(blob(manifest_digest), where + " manifest"));
  if (!manifest.contains("config")) return Error{where + ": the manifest has no config (is it an index?)"};
  SLIMTRACE_ASSIGN_OR_RETURN(std::string config_digest,
                             descriptor_digest(manifest["config"], where + " config"));
  if (!manifest.contains("layers") || !manifest["layers"].is_array())
    return Error{where + ": the manifest has no layers"};
  std::vector<std::string> layers;
  for (const auto& l : manifest["layers"]) {
    SLIMTRACE_ASSIGN_OR_RETURN(std::string d, descriptor_digest(l, where + " layer"));
    layers.push_back(d);
  }

  auto member = [](const std::string& digest) { return "blobs/sha256/" + digest.substr(7); };
  json layer_names = json::array();
  for (const auto& d : layers) layer_names.push_back(member(d));
  json m = json::array({json{
      {"Config", member(config_digest)}, {"RepoTags", json::array({repo_tag})}, {"Layers", layer_names}}});
  std::string manifest_json = m.dump();

  LoadArchive out;
  auto add = [&](Segment s) {
    out.total += s.file.empty() ? static_cast<int64_t>(s.bytes.size()) : s.size;
    out.segments.push_back(std::move(s));
  };
  auto add_dir = [&](const std::string& name) -> Status {
    TarHeader h;
    h.name = name;
    h.typeflag = '5';
    h.mode = 0755;
    SLIMTRACE_ASSIGN_OR_RETURN(std::string hb, tar_header_bytes(h));
    add(Segment{std::move(hb), {}, 0});
    return {};
  };
  auto add_bytes = [&](const std::string& name, const std::string& data) -> Status {
    TarHeader h;
    h.name = name;
    h.mode = 0644;
    h.size = static_cast<int64_t>(data.size());
    SLIMTRACE_ASSIGN_OR_RETURN(std::string hb, tar_header_bytes(h));
    add(Segment{hb + data + tar_padding(h.size), {}, 0});
    return {};
  };
  auto add_blob = [&](const std::string& digest) -> Status {
    fs::path p = blob(digest);
    struct stat st {};
    if (::stat(p.c_str(), &st) != 0) return Error::from_errno(where + ": blob '" + p.string() + "'");
    if (!S_ISREG(st.st_mode)) return Error{where + ": blob '" + p.string() + "' is not a regular file"};
    TarHeader h;
    h.name = member(digest);
    h.mode = 0644;
    h.size = st.st_size;
    SLIMTRACE_ASSIGN_OR_RETURN(std::string hb, tar_header_bytes(h));
    add(Segment{std::move(hb), {}, 0});
    add(Segment{{}, p, st.st_size});
    add(Segment{tar_padding(st.st_size), {}, 0});
    return {};
  };

  // manifest.json first: a reader that streams can then know what follows.
  SLIMTRACE_TRY(add_bytes("manifest.json", manifest_json));
  SLIMTRACE_TRY(add_dir("blobs/"));
  SLIMTRACE_TRY(add_dir("blobs/sha256/"));
  SLIMTRACE_TRY(add_blob(config_digest));
  std::set<std::string> seen{config_digest};
  for (const auto& d : layers)
    if (seen.insert(d).second) SLIMTRACE_TRY(add_blob(d));
  add(Segment{std::string(1024, '\0'), {}, 0});
  return out;
}

// Hands out the archive's bytes on request; the body_reader of the upload.
class ArchiveStream {
 public:
  ArchiveStream(const LoadArchive& archive, ProgressFn progress)
      : archive_(archive), progress_(std::move(progress)) {}

  Result<size_t> read(char* buf, size_t len) {
    while (i_ < archive_.segments.size()) {
      const Segment& s = archive_.segments[i_];
      if (s.file.empty()) {
        if (off_ < static_cast<int64_t>(s.bytes.size())) {
          size_t n = std::min(len, s.bytes.size() - static_cast<size_t>(off_));
          std::memcpy(buf, s.bytes.data() + off_, n);
          return advance(n);
        }
      } else if (off_ < s.size) {
        if (!fd_.valid()) {
          fd_.reset(::open(s.file.c_str(), O_RDONLY | O_CLOEXEC));
          if (!fd_.valid()) return Error::from_errno("open '" + s.file.string() + "'");
        }
        size_t want = static_cast<size_t>(std::min<int64_t>(static_cast<int64_t>(len), s.size - off_));
        ssize_t n;
        do {
          n = ::read(fd_.get(), buf, want);
        } while (n < 0 && errno == EINTR);
        if (n < 0) return Error::from_errno("read '" + s.file.string() + "'");
        if (n == 0) return Error{"read '" + s.file.string() + "': file shrank while it was sent"};
        return advance(static_cast<size_t>(n));
      }
      fd_.reset();
      off_ = 0;
      ++i_;
    }
    return size_t{0};
  }

 private:
  size_t advance(size_t n) {
    off_ += static_cast<int64_t>(n);
    sent_ += static_cast<int64_t>(n);
    if (progress_) progress_("sending image to the docker engine", sent_, archive_.total);
    return n;
  }

  const LoadArchive& archive_;
  ProgressFn progress_;
  size_t i_ = 0;
  int64_t off_ = 0;
  int64_t sent_ = 0;
  UniqueFd fd_;
};

// The JSON messages of /images/load: {"stream": ...} lines, or {"errorDetail": ..., "error": ...}.
Status check_load_messages(const std::string& body) {
  size_t pos = 0;
  while (pos < body.size()) {
    size_t nl = body.find('\n', pos);
    std::string line = body.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
    pos = nl == std::string::npos ? body.size() : nl + 1;
    if (one_line(line).empty()) continue;
    json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object()) continue;
    std::string msg;
    if (j.contains("errorDetail") && j["errorDetail"].is_object() && j["errorDetail"].contains("message") &&
        j["errorDetail"]["message"].is_string())
      msg = j["errorDetail"]["message"];
    else if (j.contains("error") && j["error"].is_string())
      msg = j["error"];
    if (!msg.empty()) return Error{"docker engine: " + one_line(msg)};
  }
  return {};
}

}  // namespace

Status daemon_check(const RemoteOptions& options) {
  SLIMTRACE_ASSIGN_OR_RETURN(Engine engine, resolve_engine(options));
  return check_engine(engine);
}

Status daemon_save(const ImageRef& ref, const RemoteOptions& options, const fs::path& dest,
                   const ProgressFn& progress) {
  SLIMTRACE_ASSIGN_OR_RETURN(Engine engine, resolve_engine(options));
  SLIMTRACE_TRY(check_engine(engine));
  SLIMTRACE_ASSIGN_OR_RETURN(json info, inspect_image(engine, ref));
  // The image's unpacked size: about what the archive will weigh, for progress only.
  int64_t approx =
      info.contains("Size") && info["Size"].is_number_integer() ? info["Size"].get<int64_t>() : -1;

  std::error_code ec;
  if (!fs::create_directory(dest, ec) || ec)
    return Error{"create directory '" + dest.string() + "': " + (ec ? ec.message() : "File exists")};
  ScopeGuard remove_dest([&] {
    std::error_code ignored;
    fs::remove_all(dest, ignored);
  });

  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return Error::from_errno("socketpair");
  UniqueFd reader(sv[0]), writer(sv[1]);

  // The extractor reads what the sink forwards. When it stops early with an error it closes its
  // end, so the sink's next send fails and the download is abandoned; when it succeeds it drains
  // whatever follows the end-of-archive marker so that the sink never blocks.
  const std::string what = ref.to_string();
  Status extracted;
  std::thread extractor([&] {
    extracted = extract_archive_fd(reader.get(), what, dest);
    if (extracted) {
      char buf[65536];
      while (::read(reader.get(), buf, sizeof buf) > 0) {
      }
    }
    reader.reset();
  });

  bool sink_failed = false;
  int64_t received = 0;
  HttpRequest req = request(engine, "GET", images_path(ref) + "/get");
  req.body_sink = [&](std::string_view chunk) -> Status {
    auto st = send_all(writer.get(), chunk.data(), chunk.size());
    if (!st) {
      sink_failed = true;
      return st;
    }
    received += static_cast<int64_t>(chunk.size());
    if (progress) progress("receiving image from the docker engine", received, std::max(approx, received));
    return {};
  };
  auto res = http_perform(req);
  writer.reset();
  extractor.join();

  if (sink_failed && !extracted) return extracted.error();
  if (!res) return Error{"docker engine at " + engine.host + ": " + one_line(res.error().message)};
  if (res->status == 404) return Error{"image not found in the engine"};
  if (res->status / 100 != 2) return Error{"docker engine: " + engine_message(*res)};
  if (!extracted) return extracted.error();
  remove_dest.dismiss();
  return {};
}

Result<std::string> daemon_load(const fs::path& layout, const ImageRef& ref, const RemoteOptions& options,
                                const ProgressFn& progress) {
  if (ref.repository.empty() || !ref.digest.empty())
    return Error{"an image ID or digest cannot be loaded into; name the output docker-daemon:NAME[:TAG]"};
  const std::string repo_tag = ref.name();
  SLIMTRACE_ASSIGN_OR_RETURN(Engine engine, resolve_engine(options));
  SLIMTRACE_TRY(check_engine(engine));
  SLIMTRACE_ASSIGN_OR_RETURN(LoadArchive archive, plan_load_archive(layout, repo_tag));

  ArchiveStream stream(archive, progress);
  HttpRequest req = request(engine, "POST", "/images/load?quiet=1");
  req.headers.emplace_back("Content-Type: application/x-tar");
  req.body_reader = [&stream](char* buf, size_t len) { return stream.read(buf, len); };
  req.body_size = archive.total;
  SLIMTRACE_ASSIGN_OR_RETURN(HttpResponse res, perform(engine, req));
  if (res.status / 100 != 2) return Error{"docker engine: " + engine_message(res)};
  SLIMTRACE_TRY(check_load_messages(res.body));

  SLIMTRACE_ASSIGN_OR_RETURN(json info, inspect_image(engine, ref));
  if (!info.contains("Id") || !info["Id"].is_string())
    return Error{"docker engine's image inspect has no Id"};
  return info["Id"].get<std::string>();
}

}  // namespace slimtrace::image::detail
