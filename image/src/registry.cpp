// docker:// transport: the OCI distribution API v2 (pull and push) over http_perform.
//
// Auth follows what docker and skopeo do: requests go out anonymously until the registry answers
// 401; its WWW-Authenticate challenge then says Basic (send the credentials on every request) or
// Bearer (get a token for the repository scope from the realm, with the credentials if there are
// any, and send that). /v2/ is pinged first, so the scheme (https, or http for insecure local
// registries) and the challenge are known before the first real request.
#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>
#include <vector>

#include "http.hpp"
#include "io_util.hpp"
#include "remote_transport.hpp"
#include "slimtrace/fd.hpp"
#include "slimtrace/image/digest.hpp"
#include "slimtrace/write_file.hpp"

namespace slimtrace::image::detail {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

constexpr std::string_view kDockerSchema1 = "application/vnd.docker.distribution.manifest.v1+json";
constexpr std::string_view kDockerSchema1Signed = "application/vnd.docker.distribution.manifest.v1+prettyjws";

std::string manifest_accept_header() {
  return "Accept: " + std::string(kOciManifest) + ", " + std::string(kOciIndex) + ", " +
         std::string(kDockerManifest) + ", " + std::string(kDockerManifestList);
}

bool is_index_type(std::string_view mt) { return mt == kOciIndex || mt == kDockerManifestList; }
bool is_manifest_type(std::string_view mt) { return mt == kOciManifest || mt == kDockerManifest; }

std::string base64_encode(std::string_view in) {
  std::string out(4 * ((in.size() + 2) / 3), '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(in.data()), static_cast<int>(in.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

std::optional<std::string> base64_decode(std::string_view in) {
  std::string s(in);
  s.erase(std::remove_if(s.begin(), s.end(), [](unsigned char c) { return std::isspace(c); }), s.end());
  if (s.empty() || s.size() % 4 != 0) return std::nullopt;
  std::string out(3 * s.size() / 4, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(s.data()), static_cast<int>(s.size()));
  if (n < 0) return std::nullopt;
  // EVP_DecodeBlock counts the padding as zero bytes.
  size_t pad = 0;
  if (s.ends_with("=="))
    pad = 2;
  else if (s.ends_with("="))
    pad = 1;
  out.resize(static_cast<size_t>(n) - pad);
  return out;
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

// docker.io is a name, not a host: its API lives elsewhere.
std::string api_host(const std::string& registry) {
  return registry == "docker.io" ? "registry-1.docker.io" : registry;
}

// ---- credentials ----------------------------------------------------------------------------

fs::path default_auth_file() {
  if (const char* p = std::getenv("REGISTRY_AUTH_FILE"); p && *p) return p;
  if (const char* p = std::getenv("DOCKER_CONFIG"); p && *p) return fs::path(p) / "config.json";
  if (const char* p = std::getenv("HOME"); p && *p) return fs::path(p) / ".docker" / "config.json";
  return {};
}

// An "auths" key names a registry as "host", "https://host", "http://host/v1/" and so on.
std::string auth_key_host(std::string key) {
  if (auto s = key.find("://"); s != std::string::npos) key = key.substr(s + 3);
  if (auto s = key.find('/'); s != std::string::npos) key = key.substr(0, s);
  return lower(key);
}

bool auth_key_matches(const std::string& key, const std::string& registry) {
  std::string host = auth_key_host(key);
  std::string want = lower(registry);
  if (host == want) return true;
  // docker login stores Docker Hub as https://index.docker.io/v1/.
  auto hub = [](const std::string& h) {
    return h == "docker.io" || h == "index.docker.io" || h == "registry-1.docker.io";
  };
  return hub(want) && hub(host);
}

// "USER:PASS" for the registry, or "" for anonymous access.
Result<std::string> credentials_for(const std::string& registry, const RemoteOptions& options) {
  if (!options.creds.empty()) {
    if (options.creds.find(':') == std::string::npos) return Error{"--creds: expected USER:PASS, got no ':'"};
    return options.creds;
  }
  fs::path file = options.auth_file.empty() ? default_auth_file() : options.auth_file;
  if (file.empty()) return std::string();
  std::error_code ec;
  if (!fs::exists(file, ec)) {
    // A missing default file just means no logins; a named one that is missing is a mistake.
    if (!options.auth_file.empty())
      return Error{"auth file '" + file.string() + "': No such file or directory"};
    return std::string();
  }
  SLIMTRACE_ASSIGN_OR_RETURN(std::string text, read_small_file(file, "auth file"));
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return Error{"auth file '" + file.string() + "': not valid JSON"};
  if (!j.contains("auths") || !j["auths"].is_object()) return std::string();
  for (const auto& [key, entry] : j["auths"].items()) {
    if (!auth_key_matches(key, registry) || !entry.is_object()) continue;
    if (entry.contains("auth") && entry["auth"].is_string()) {
      auto decoded = base64_decode(entry["auth"].get<std::string>());
      if (!decoded || decoded->find(':') == std::string::npos)
        return Error{"auth file '" + file.string() + "': the \"auth\" of \"" + key +
                     "\" is not base64 of USER:PASS"};
      return *decoded;
    }
    if (entry.contains("username") && entry["username"].is_string() && entry.contains("password") &&
        entry["password"].is_string())
      return entry["username"].get<std::string>() + ":" + entry["password"].get<std::string>();
  }
  return std::string();
}

// ---- WWW-Authenticate ----------------------------------------------------------------------

struct Challenge {
  std::string scheme;  // "basic" or "bearer"
  std::map<std::string, std::string> params;
};

// `Bearer realm="https://auth/token",service="reg",scope="repository:a:pull,push"`.
std::optional<Challenge> parse_challenge(std::string_view h) {
  while (!h.empty() && h.front() == ' ') h.remove_prefix(1);
  auto sp = h.find(' ');
  Challenge c;
  c.scheme = lower(std::string(h.substr(0, sp)));
  if (c.scheme.empty()) return std::nullopt;
  if (sp == std::string_view::npos) return c;
  h.remove_prefix(sp + 1);
  while (!h.empty()) {
    while (!h.empty() && (h.front() == ' ' || h.front() == ',')) h.remove_prefix(1);
    auto eq = h.find('=');
    if (eq == std::string_view::npos) break;
    std::string key = lower(std::string(h.substr(0, eq)));
    h.remove_prefix(eq + 1);
    std::string value;
    if (!h.empty() && h.front() == '"') {
      h.remove_prefix(1);
      while (!h.empty() && h.front() != '"') {
        if (h.front() == '\\' && h.size() > 1) h.remove_prefix(1);
        value += h.front();
        h.remove_prefix(1);
      }
      if (!h.empty()) h.remove_prefix(1);
    } else {
      auto end = h.find(',');
      value = std::string(h.substr(0, end));
      h.remove_prefix(end == std::string_view::npos ? h.size() : end);
    }
    c.params[key] = value;
  }
  return c;
}

// The registry's own words for a failed request: "manifest unknown",
// "unauthorized: authentication required"; else the HTTP status.
std::string registry_error(const HttpResponse& r) {
  json j = json::parse(r.body, nullptr, false);
  if (j.is_object() && j.contains("errors") && j["errors"].is_array() && !j["errors"].empty() &&
      j["errors"][0].is_object()) {
    const json& e = j["errors"][0];
    std::string code = e.contains("code") && e["code"].is_string() ? e["code"].get<std::string>() : "";
    std::string message =
        e.contains("message") && e["message"].is_string() ? e["message"].get<std::string>() : "";
    code = lower(code);
    std::replace(code.begin(), code.end(), '_', ' ');
    if (code.empty()) return message.empty() ? "HTTP " + std::to_string(r.status) : message;
    if (message.empty() || lower(message) == code) return code;
    return code + ": " + message;
  }
  if (r.status == 401) return "unauthorized: authentication required";
  if (r.status == 404) return "not found (HTTP 404)";
  return "HTTP " + std::to_string(r.status);
}

bool transient_status(long s) { return s == 429 || s >= 500; }

void backoff(int attempt, const std::string& retry_after) {
  long ms = 250L << std::min(attempt - 1, 5);
  if (!retry_after.empty() && std::all_of(retry_after.begin(), retry_after.end(), ::isdigit))
    ms = std::max(ms, std::min(30000L, std::atol(retry_after.c_str()) * 1000L));
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
}

// ---- the client -----------------------------------------------------------------------------

class Client {
 public:
  Client(const ImageRef& ref, const RemoteOptions& options, bool push)
      : ref_(ref),
        options_(options),
        host_(api_host(ref.registry)),
        scope_("repository:" + ref.repository + (push ? ":pull,push" : ":pull")) {}

  const ImageRef& ref() const { return ref_; }
  int attempts() const { return std::max(1, options_.attempts); }
  std::string url(const std::string& path) const { return base_ + path; }
  std::string repo_url(const std::string& rest) const {
    return base_ + "/v2/" + ref_.repository + "/" + rest;
  }

  // Absolute URL of an upload Location, which may be relative to the registry.
  std::string resolve(const std::string& location) const {
    if (location.starts_with("http://") || location.starts_with("https://")) return location;
    if (location.starts_with("/")) return base_ + location;
    return base_ + "/" + location;
  }

  // Callers (open_image, write_image) put the reference before these errors.
  Error fail(const std::string& cause) const { return Error{cause}; }

  Status connect() {
    SLIMTRACE_ASSIGN_OR_RETURN(creds_, credentials_for(ref_.registry, options_));
    // Without TLS verification, plain http is allowed too, for registries that do not speak TLS
    // (a local registry as Debian's docker-registry runs it): https first, as docker does.
    std::vector<std::string> schemes = {"https"};
    if (!options_.tls_verify) schemes.emplace_back("http");
    for (size_t i = 0; i < schemes.size(); ++i) {
      bool last = i + 1 == schemes.size();
      base_ = schemes[i] + "://" + host_;
      auto r = send(
          [&]() -> Result<HttpRequest> {
            HttpRequest q;
            q.url = url("/v2/");
            q.connect_timeout_seconds = 15;
            return q;
          },
          /*retry=*/last);
      if (!r) {
        if (!last) continue;
        return r.error();
      }
      if (r->status == 200) return {};
      // An http answer to an https request (400 "client sent an HTTP request to an HTTPS
      // server") or a proxy's page: not a v2 registry on this scheme.
      if (r->status == 401) return fail(registry_error(*r));
      if (!last) continue;
      return fail("registry " + ref_.registry + ": GET " + url("/v2/") + " answered HTTP " +
                  std::to_string(r->status) + ", not a distribution API v2 registry");
    }
    return {};
  }

  // Sends the request `make` builds (once per attempt, so request bodies start over), adding
  // authentication; answers a 401 challenge once, and retries transient failures with backoff
  // when `retry`. Any HTTP status is returned; an Error means there was no response.
  Result<HttpResponse> send(const std::function<Result<HttpRequest>()>& make, bool retry = true) {
    bool answered_challenge = false;
    int max = retry ? attempts() : 1;
    for (int attempt = 1;; ++attempt) {
      SLIMTRACE_ASSIGN_OR_RETURN(HttpRequest req, make());
      req.tls_verify = options_.tls_verify;
      if (auto a = authorization(); !a.empty()) req.headers.push_back("Authorization: " + a);
      // Errors of our own sink or reader (a digest mismatch, a full disk) are not the network's.
      bool callback_failed = false;
      if (req.body_sink) {
        req.body_sink = [inner = std::move(req.body_sink),
                         &callback_failed](std::string_view chunk) -> Status {
          auto st = inner(chunk);
          if (!st) callback_failed = true;
          return st;
        };
      }
      if (req.body_reader) {
        req.body_reader = [inner = std::move(req.body_reader), &callback_failed](char* b,
                                                                                 size_t n) -> Result<size_t> {
          auto r = inner(b, n);
          if (!r) callback_failed = true;
          return r;
        };
      }
      auto r = http_perform(req);
      if (!r) {
        if (callback_failed) return r.error();
        if (attempt < max) {
          backoff(attempt, "");
          continue;
        }
        return fail(transport_error(req, r.error()));
      }
      if (r->status == 401 && !answered_challenge) {
        answered_challenge = true;
        SLIMTRACE_ASSIGN_OR_RETURN(bool changed, answer(r->header("www-authenticate")));
        if (changed) {
          --attempt;  // not a failure of the request
          continue;
        }
      }
      if (transient_status(r->status) && attempt < max) {
        backoff(attempt, r->header("retry-after"));
        continue;
      }
      return r;
    }
  }

 private:
  // The part of a transport error a user acts on: "Connection refused", not curl's framing.
  static std::string cause_of(const Error& e) {
    std::string m = e.message;
    if (!m.starts_with("connect to ")) return m;
    if (e.errnum != 0) return std::strerror(e.errnum);
    if (auto p = m.find(": "); p != std::string::npos) m = m.substr(p + 2);
    return m;
  }

  std::string transport_error(const HttpRequest& req, const Error& e) const {
    std::string m = e.message;
    std::string framing = req.method + " " + req.url + ": ";
    if (m.starts_with(framing)) m = m.substr(framing.size());
    // What curl says when a plain-http server answers a TLS hello.
    if (req.url.starts_with("https://") &&
        (m.find("SSL") != std::string::npos || m.find("TLS") != std::string::npos))
      return "registry " + ref_.registry + ": TLS handshake failed: " + m +
             (options_.tls_verify ? " (for a plain-http registry use --tls-verify=false)" : "");
    return "registry " + ref_.registry + " unreachable: " + cause_of(Error{m, e.errnum});
  }

  std::string authorization() const {
    if (scheme_ == "bearer" && !token_.empty()) return "Bearer " + token_;
    if (scheme_ == "basic" && !creds_.empty()) return "Basic " + base64_encode(creds_);
    return "";
  }

  // Takes up a 401 challenge. Returns whether the request is worth sending again.
  Result<bool> answer(const std::string& header) {
    auto c = parse_challenge(header);
    if (!c) return false;
    if (c->scheme == "basic") {
      if (creds_.empty() || scheme_ == "basic") return false;
      scheme_ = "basic";
      return true;
    }
    if (c->scheme != "bearer") return false;
    auto realm = c->params.find("realm");
    if (realm == c->params.end() || realm->second.empty())
      return fail("the registry asks for a bearer token but names no realm");
    std::string scope = c->params.count("scope") ? c->params["scope"] : scope_;
    // A token already fetched for this scope that was refused has expired or is not enough.
    auto cached = tokens_.find(scope);
    if (cached != tokens_.end() && !(scheme_ == "bearer" && token_ == cached->second)) {
      scheme_ = "bearer";
      token_ = cached->second;
      return true;
    }
    SLIMTRACE_ASSIGN_OR_RETURN(std::string token, fetch_token(realm->second, c->params["service"], scope));
    tokens_[scope] = token;
    scheme_ = "bearer";
    token_ = token;
    return true;
  }

  Result<std::string> fetch_token(const std::string& realm, const std::string& service,
                                  const std::string& scope) {
    std::string u = realm + (realm.find('?') == std::string::npos ? "?" : "&");
    if (!service.empty()) u += "service=" + percent_encode(service) + "&";
    u += "scope=" + percent_encode(scope);
    Result<HttpResponse> r = Error{""};
    for (int attempt = 1;; ++attempt) {
      HttpRequest q;
      q.url = u;
      q.tls_verify = options_.tls_verify;
      if (!creds_.empty()) q.headers.push_back("Authorization: Basic " + base64_encode(creds_));
      r = http_perform(q);
      bool transient = !r || transient_status(r->status);
      if (!transient || attempt >= attempts()) break;
      backoff(attempt, r ? r->header("retry-after") : "");
    }
    if (!r) return fail("token service " + realm + " unreachable: " + cause_of(r.error()));
    if (r->status == 401 || r->status == 403)
      return fail("unauthorized: the token service refused the credentials (HTTP " +
                  std::to_string(r->status) + ")");
    if (r->status != 200) return fail("token service " + realm + ": " + registry_error(*r));
    json j = json::parse(r->body, nullptr, false);
    for (const char* k : {"token", "access_token"}) {
      if (j.is_object() && j.contains(k) && j[k].is_string() && !j[k].get<std::string>().empty())
        return j[k].get<std::string>();
    }
    return fail("token service " + realm + " answered without a token");
  }

  ImageRef ref_;
  RemoteOptions options_;
  std::string host_;
  std::string scope_;
  std::string base_;
  std::string creds_;
  std::string scheme_;  // of the last challenge answered: "basic", "bearer" or "" (anonymous)
  std::string token_;
  std::map<std::string, std::string> tokens_;  // by scope
};

// ---- pull -----------------------------------------------------------------------------------

struct Fetched {
  std::string body;
  std::string media_type;
  std::string digest;
};

std::string media_type_of(const json& j, const HttpResponse& r) {
  if (j.is_object() && j.contains("mediaType") && j["mediaType"].is_string())
    return j["mediaType"].get<std::string>();
  std::string ct = r.header("content-type");
  ct = ct.substr(0, ct.find(';'));
  while (!ct.empty() && ct.back() == ' ') ct.pop_back();
  if (!ct.empty() && ct != "application/json" && ct != "text/plain") return ct;
  // OCI allows mediaType to be absent; the shape says which it is.
  if (j.is_object() && j.contains("manifests")) return std::string(kOciIndex);
  return std::string(kOciManifest);
}

// GET of a manifest or index by tag or digest; verified against `want_digest` (when given) and
// the digest the registry says it served.
Result<Fetched> fetch_manifest(Client& c, const std::string& reference, const std::string& want_digest,
                               int64_t want_size) {
  SLIMTRACE_ASSIGN_OR_RETURN(HttpResponse r, c.send([&]() -> Result<HttpRequest> {
    HttpRequest q;
    q.url = c.repo_url("manifests/" + reference);
    q.headers.push_back(manifest_accept_header());
    return q;
  }));
  if (r.status != 200) return c.fail(registry_error(r));
  if (static_cast<int64_t>(r.body.size()) > kMaxJsonBlob)
    return c.fail("manifest " + reference + " is larger than " + std::to_string(kMaxJsonBlob) + " bytes");
  Fetched f;
  f.digest = sha256_digest(r.body);
  std::string what = want_digest.empty() ? "manifest " + reference : "manifest " + want_digest;
  if (!want_digest.empty() && f.digest != want_digest)
    return c.fail(what + ": digest mismatch (got " + f.digest + ")");
  if (want_size >= 0 && static_cast<int64_t>(r.body.size()) != want_size)
    return c.fail(what + ": size mismatch (got " + std::to_string(r.body.size()) + " bytes, expected " +
                  std::to_string(want_size) + ")");
  std::string served = r.header("docker-content-digest");
  if (served.starts_with("sha256:") && served != f.digest)
    return c.fail(what + ": digest mismatch (the registry says " + served + ", content is " + f.digest + ")");
  json j = json::parse(r.body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return c.fail(what + " is not valid JSON");
  f.media_type = media_type_of(j, r);
  if (f.media_type == kDockerSchema1 || f.media_type == kDockerSchema1Signed ||
      (j.contains("schemaVersion") && j["schemaVersion"] == 1))
    return c.fail(what + ": Docker schema 1 manifests are not supported");
  f.body = std::move(r.body);
  return f;
}

std::string platform_string(const json& p) {
  if (!p.is_object()) return "unknown";
  auto get = [&](const char* k) { return p.contains(k) && p[k].is_string() ? p[k].get<std::string>() : ""; };
  std::string s = get("os") + "/" + get("architecture");
  if (!get("variant").empty()) s += "/" + get("variant");
  return s;
}

bool platform_matches(const json& p, const Platform& want) {
  if (!p.is_object()) return false;
  auto get = [&](const char* k) { return p.contains(k) && p[k].is_string() ? p[k].get<std::string>() : ""; };
  if (get("os") != want.os || get("architecture") != want.architecture) return false;
  return want.variant.empty() || get("variant") == want.variant;
}

struct Desc {
  std::string media_type;
  std::string digest;
  int64_t size = -1;
};

Result<Desc> descriptor(const json& d, const std::string& what) {
  if (!d.is_object() || !d.contains("digest") || !d["digest"].is_string())
    return Error{what + ": descriptor without a digest"};
  Desc out;
  out.digest = d["digest"].get<std::string>();
  SLIMTRACE_TRY(digest_hex(out.digest));
  out.media_type =
      d.contains("mediaType") && d["mediaType"].is_string() ? d["mediaType"].get<std::string>() : "";
  if (!d.contains("size") || !d["size"].is_number_integer() || d["size"].get<int64_t>() < 0)
    return Error{what + ": descriptor of " + out.digest + " without a size"};
  out.size = d["size"].get<int64_t>();
  return out;
}

Result<Desc> select_platform(Client& c, const std::string& index_body, const Platform& want) {
  json idx = json::parse(index_body);
  if (!idx.contains("manifests") || !idx["manifests"].is_array())
    return c.fail("image index without manifests");
  std::vector<std::string> seen;
  for (const auto& m : idx["manifests"]) {
    // Attestation manifests (buildx) say unknown/unknown; they are never what is asked for.
    if (m.is_object() && m.contains("platform")) {
      if (platform_matches(m["platform"], want)) return descriptor(m, "image index");
      std::string p = platform_string(m["platform"]);
      if (p != "unknown/unknown" && std::find(seen.begin(), seen.end(), p) == seen.end()) seen.push_back(p);
    }
  }
  std::string list;
  for (const auto& s : seen) list += (list.empty() ? "" : ", ") + s;
  return c.fail("no image for platform " + want.to_string() + " in the index (it has " +
                (list.empty() ? "no platforms" : list) + ")");
}

Status write_all(int fd, std::string_view data, const fs::path& p) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return Error::from_errno("write '" + p.string() + "'");
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return {};
}

// Streams a blob to blobs/sha256/HEX under `dest`, through a temp file renamed into place once
// its size and digest are right.
Status fetch_blob(Client& c, const Desc& d, const fs::path& dest, const ProgressFn& progress) {
  SLIMTRACE_ASSIGN_OR_RETURN(std::string hex, digest_hex(d.digest));
  fs::path final_path = dest / "blobs" / "sha256" / hex;
  std::error_code ec;
  if (fs::exists(final_path, ec)) return {};  // the same blob twice in one manifest
  fs::path tmp = dest / "blobs" / "sha256" / (".tmp-" + hex);
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!fd.valid()) return Error::from_errno("open '" + tmp.string() + "'");
  ScopeGuard remove_tmp([&] { ::unlink(tmp.c_str()); });

  std::string what = "blob " + d.digest;
  Sha256 hasher;
  int64_t got = 0;
  SLIMTRACE_ASSIGN_OR_RETURN(HttpResponse r, c.send([&]() -> Result<HttpRequest> {
    // Each attempt starts from an empty file.
    if (::ftruncate(fd.get(), 0) != 0 || ::lseek(fd.get(), 0, SEEK_SET) != 0)
      return Error::from_errno("truncate '" + tmp.string() + "'");
    hasher = Sha256();
    got = 0;
    HttpRequest q;
    q.url = c.repo_url("blobs/" + d.digest);
    q.body_sink = [&](std::string_view chunk) -> Status {
      got += static_cast<int64_t>(chunk.size());
      if (d.size >= 0 && got > d.size)
        return c.fail(what + ": size mismatch (more than the " + std::to_string(d.size) +
                      " bytes the manifest says)");
      hasher.update(chunk.data(), chunk.size());
      SLIMTRACE_TRY(write_all(fd.get(), chunk, tmp));
      if (progress) progress(what, got, d.size);
      return {};
    };
    return q;
  }));
  if (r.status != 200) return c.fail(what + ": " + registry_error(r));
  if (d.size >= 0 && got != d.size)
    return c.fail(what + ": size mismatch (got " + std::to_string(got) + " bytes, the manifest says " +
                  std::to_string(d.size) + ")");
  std::string actual = hasher.finish();
  if (actual != d.digest) return c.fail(what + ": digest mismatch (got " + actual + ")");
  if (::fsync(fd.get()) != 0) return Error::from_errno("fsync '" + tmp.string() + "'");
  fd.reset();
  if (::rename(tmp.c_str(), final_path.c_str()) != 0)
    return Error::from_errno("rename '" + tmp.string() + "'");
  remove_tmp.dismiss();
  return {};
}

Status write_blob(const fs::path& dest, const std::string& digest, const std::string& data) {
  SLIMTRACE_ASSIGN_OR_RETURN(std::string hex, digest_hex(digest));
  return write_file_atomically(dest / "blobs" / "sha256" / hex, data);
}

// ---- push -----------------------------------------------------------------------------------

Result<bool> blob_exists(Client& c, const Desc& d) {
  SLIMTRACE_ASSIGN_OR_RETURN(HttpResponse r, c.send([&]() -> Result<HttpRequest> {
    HttpRequest q;
    q.method = "HEAD";
    q.url = c.repo_url("blobs/" + d.digest);
    return q;
  }));
  if (r.status == 200) return true;
  if (r.status == 404) return false;
  return c.fail("blob " + d.digest + ": " + registry_error(r));
}

std::string with_query(const std::string& url, const std::string& param) {
  return url + (url.find('?') == std::string::npos ? "?" : "&") + param;
}

// One upload session: POST, then either one PUT with the whole blob, or PATCHes of chunk_size
// bytes and a closing PUT. `transient` says whether a failure is worth starting over.
Status upload_once(Client& c, const Desc& d, int fd, int64_t chunk_size, const ProgressFn& progress,
                   bool& transient) {
  transient = false;
  std::string what = "blob " + d.digest;
  auto check = [&](const Result<HttpResponse>& r, long want, const std::string& step) -> Status {
    if (!r) {
      transient = r.error().message.find(" unreachable: ") != std::string::npos;
      return r.error();
    }
    if (r->status == want) return {};
    transient = transient_status(r->status);
    return c.fail(what + ": " + step + ": " + registry_error(*r));
  };
  auto reader = [&](int64_t end, int64_t& pos) {
    return [&, end](char* buf, size_t len) -> Result<size_t> {
      size_t want = static_cast<size_t>(std::min<int64_t>(static_cast<int64_t>(len), end - pos));
      if (want == 0) return size_t{0};
      ssize_t n;
      do n = ::pread(fd, buf, want, pos);
      while (n < 0 && errno == EINTR);
      if (n < 0) return Error::from_errno("read " + what);
      if (n == 0) return Error{"read " + what + ": file shorter than its descriptor says"};
      pos += n;
      if (progress) progress(what, pos, d.size);
      return static_cast<size_t>(n);
    };
  };

  auto started = c.send(
      [&]() -> Result<HttpRequest> {
        HttpRequest q;
        q.method = "POST";
        q.url = c.repo_url("blobs/uploads/");
        return q;
      },
      /*retry=*/false);
  SLIMTRACE_TRY(check(started, 202, "starting the upload"));
  std::string location = started->header("location");
  if (location.empty()) return c.fail(what + ": the registry started an upload but sent no Location");
  location = c.resolve(location);

  int64_t pos = 0;
  if (chunk_size > 0) {
    while (pos < d.size) {
      int64_t start = pos;
      int64_t end = std::min(d.size, start + chunk_size);
      auto r = c.send(
          [&]() -> Result<HttpRequest> {
            pos = start;
            HttpRequest q;
            q.method = "PATCH";
            q.url = location;
            q.headers.emplace_back("Content-Type: application/octet-stream");
            q.headers.push_back("Content-Range: " + std::to_string(start) + "-" + std::to_string(end - 1));
            q.body_reader = reader(end, pos);
            q.body_size = end - start;
            return q;
          },
          /*retry=*/false);
      SLIMTRACE_TRY(
          check(r, 202, "uploading bytes " + std::to_string(start) + "-" + std::to_string(end - 1)));
      if (pos != end) return c.fail(what + ": the upload of a chunk stopped short");
      if (std::string l = r->header("location"); !l.empty()) location = c.resolve(l);
    }
    auto r = c.send(
        [&]() -> Result<HttpRequest> {
          HttpRequest q;
          q.method = "PUT";
          q.url = with_query(location, "digest=" + percent_encode(d.digest));
          q.headers.emplace_back("Content-Type: application/octet-stream");
          return q;
        },
        /*retry=*/false);
    return check(r, 201, "completing the upload");
  }
  auto r = c.send(
      [&]() -> Result<HttpRequest> {
        pos = 0;
        HttpRequest q;
        q.method = "PUT";
        q.url = with_query(location, "digest=" + percent_encode(d.digest));
        q.headers.emplace_back("Content-Type: application/octet-stream");
        q.body_reader = reader(d.size, pos);
        q.body_size = d.size;
        return q;
      },
      /*retry=*/false);
  return check(r, 201, "uploading");
}

Status upload_blob(Client& c, const Desc& d, const fs::path& layout, int64_t chunk_size,
                   const ProgressFn& progress) {
  SLIMTRACE_ASSIGN_OR_RETURN(std::string hex, digest_hex(d.digest));
  fs::path p = layout / "blobs" / "sha256" / hex;
  UniqueFd fd(::open(p.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return Error::from_errno("open '" + p.string() + "'");
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return Error::from_errno("stat '" + p.string() + "'");
  if (st.st_size != d.size)
    return Error{"blob '" + p.string() + "': " + std::to_string(st.st_size) + " bytes, its descriptor says " +
                 std::to_string(d.size)};
  for (int attempt = 1;; ++attempt) {
    bool transient = false;
    Status s = upload_once(c, d, fd.get(), chunk_size, progress, transient);
    if (s || !transient || attempt >= c.attempts()) return s;
    backoff(attempt, "");
  }
}

}  // namespace

Status registry_pull(const ImageRef& ref, const Platform& platform, const RemoteOptions& options,
                     const fs::path& dest, const ProgressFn& progress) {
  if (ref.transport != Transport::Registry) return Error{"not a docker:// reference"};
  Client c(ref, options, /*push=*/false);
  SLIMTRACE_TRY(c.connect());

  std::string reference = ref.digest.empty() ? (ref.tag.empty() ? "latest" : ref.tag) : ref.digest;
  SLIMTRACE_ASSIGN_OR_RETURN(Fetched m, fetch_manifest(c, reference, ref.digest, -1));
  std::vector<Fetched> indexes;
  for (int depth = 0; is_index_type(m.media_type); ++depth) {
    if (depth >= 4) return c.fail("image indexes nested too deeply");
    SLIMTRACE_ASSIGN_OR_RETURN(Desc d, select_platform(c, m.body, platform));
    indexes.push_back(std::move(m));
    SLIMTRACE_ASSIGN_OR_RETURN(m, fetch_manifest(c, d.digest, d.digest, d.size));
  }
  if (!is_manifest_type(m.media_type)) return c.fail("unsupported manifest type " + m.media_type);

  json manifest = json::parse(m.body);
  std::string what = "manifest " + m.digest;
  if (!manifest.contains("config")) return c.fail(what + " has no config");
  auto config = descriptor(manifest["config"], what + " config");
  if (!config) return c.fail(config.error().message);
  std::vector<Desc> blobs{*config};
  if (manifest.contains("layers")) {
    if (!manifest["layers"].is_array()) return c.fail(what + ": layers is not an array");
    for (const auto& l : manifest["layers"]) {
      auto d = descriptor(l, what + " layer");
      if (!d) return c.fail(d.error().message);
      blobs.push_back(*d);
    }
  }

  std::error_code ec;
  if (fs::exists(dest, ec)) return Error{"'" + dest.string() + "' already exists"};
  fs::create_directories(dest / "blobs" / "sha256", ec);
  if (ec) return Error{"mkdir '" + (dest / "blobs" / "sha256").string() + "': " + ec.message()};
  ScopeGuard remove_dest([&] {
    std::error_code ignored;
    fs::remove_all(dest, ignored);
  });

  SLIMTRACE_TRY(write_blob(dest, m.digest, m.body));
  for (const auto& d : blobs) SLIMTRACE_TRY(fetch_blob(c, d, dest, progress));

  SLIMTRACE_TRY(write_file_atomically(dest / "oci-layout", R"({"imageLayoutVersion":"1.0.0"})"));
  json desc = {{"mediaType", m.media_type}, {"digest", m.digest}, {"size", m.body.size()}};
  if (ref.digest.empty() && !ref.tag.empty())
    desc["annotations"] = {{"org.opencontainers.image.ref.name", ref.tag}};
  json index = {{"schemaVersion", 2}, {"mediaType", kOciIndex}, {"manifests", json::array({desc})}};
  SLIMTRACE_TRY(write_file_atomically(dest / "index.json", index.dump()));
  remove_dest.dismiss();
  return {};
}

Result<std::string> registry_push(const fs::path& layout, const ImageRef& ref, const RemoteOptions& options,
                                  const ProgressFn& progress) {
  if (ref.transport != Transport::Registry) return Error{"not a docker:// reference"};
  SLIMTRACE_ASSIGN_OR_RETURN(std::string index_text, read_small_file(layout / "index.json", "index.json"));
  json index = json::parse(index_text, nullptr, false);
  std::string where = "'" + (layout / "index.json").string() + "'";
  if (index.is_discarded() || !index.contains("manifests") || !index["manifests"].is_array() ||
      index["manifests"].size() != 1)
    return Error{where + ": expected exactly one manifest"};
  SLIMTRACE_ASSIGN_OR_RETURN(Desc md, descriptor(index["manifests"][0], where));
  SLIMTRACE_ASSIGN_OR_RETURN(std::string hex, digest_hex(md.digest));
  SLIMTRACE_ASSIGN_OR_RETURN(std::string body,
                             read_small_file(layout / "blobs" / "sha256" / hex, "manifest"));
  if (sha256_digest(body) != md.digest)
    return Error{"manifest " + md.digest + " in " + where + ": digest mismatch"};
  json manifest = json::parse(body, nullptr, false);
  if (manifest.is_discarded() || !manifest.is_object())
    return Error{"manifest " + md.digest + " is not valid JSON"};
  std::string media_type = manifest.contains("mediaType") && manifest["mediaType"].is_string()
                               ? manifest["mediaType"].get<std::string>()
                               : (md.media_type.empty() ? std::string(kOciManifest) : md.media_type);
  if (!is_manifest_type(media_type)) return Error{"manifest " + md.digest + ": cannot push a " + media_type};

  std::vector<Desc> blobs;
  if (manifest.contains("layers") && manifest["layers"].is_array()) {
    for (const auto& l : manifest["layers"]) {
      SLIMTRACE_ASSIGN_OR_RETURN(Desc d, descriptor(l, "manifest " + md.digest + " layer"));
      blobs.push_back(d);
    }
  }
  if (!manifest.contains("config")) return Error{"manifest " + md.digest + " has no config"};
  // The config last: a registry may check that a manifest's blobs exist, never the other way.
  SLIMTRACE_ASSIGN_OR_RETURN(Desc config,
                             descriptor(manifest["config"], "manifest " + md.digest + " config"));
  blobs.push_back(config);

  if (!ref.digest.empty() && ref.digest != md.digest)
    return Error{"the image's manifest is " + md.digest + ", not the digest the reference names"};

  Client c(ref, options, /*push=*/true);
  SLIMTRACE_TRY(c.connect());
  for (const auto& d : blobs) {
    SLIMTRACE_ASSIGN_OR_RETURN(bool exists, blob_exists(c, d));
    if (exists) {
      if (progress) progress("blob " + d.digest + " (already there)", d.size, d.size);
      continue;
    }
    SLIMTRACE_TRY(upload_blob(c, d, layout, options.chunk_size, progress));
  }

  std::string reference = ref.digest.empty() ? (ref.tag.empty() ? "latest" : ref.tag) : ref.digest;
  SLIMTRACE_ASSIGN_OR_RETURN(HttpResponse head, c.send([&]() -> Result<HttpRequest> {
    HttpRequest q;
    q.method = "HEAD";
    q.url = c.repo_url("manifests/" + reference);
    q.headers.push_back(manifest_accept_header());
    return q;
  }));
  if (head.status == 200 && head.header("docker-content-digest") == md.digest) return md.digest;
  // Any other answer (404, or a registry that does not do HEAD on manifests): the PUT decides.

  SLIMTRACE_ASSIGN_OR_RETURN(HttpResponse put, c.send([&]() -> Result<HttpRequest> {
    HttpRequest q;
    q.method = "PUT";
    q.url = c.repo_url("manifests/" + reference);
    q.headers.push_back("Content-Type: " + media_type);
    q.body = body;
    return q;
  }));
  if (put.status != 201 && put.status != 200) return c.fail(registry_error(put));
  std::string acked = put.header("docker-content-digest");
  if (!acked.empty() && acked != md.digest)
    return c.fail("the registry stored the manifest as " + acked + ", not " + md.digest);
  return md.digest;
}

Status registry_check_push(const ImageRef& ref, const RemoteOptions& options) {
  if (ref.transport != Transport::Registry) return Error{"not a docker:// reference"};
  Client c(ref, options, /*push=*/true);
  SLIMTRACE_TRY(c.connect());
  // A token service may grant pull where push was asked for; only starting an upload tells.
  SLIMTRACE_ASSIGN_OR_RETURN(HttpResponse started, c.send([&]() -> Result<HttpRequest> {
    HttpRequest q;
    q.method = "POST";
    q.url = c.repo_url("blobs/uploads/");
    return q;
  }));
  if (started.status != 202) return c.fail("cannot push: " + registry_error(started));
  if (std::string location = started.header("location"); !location.empty()) {
    // Abandoned uploads expire anyway; cancelling is a courtesy, so its answer does not matter.
    (void)c.send(
        [&]() -> Result<HttpRequest> {
          HttpRequest q;
          q.method = "DELETE";
          q.url = c.resolve(location);
          return q;
        },
        /*retry=*/false);
  }
  return {};
}

}  // namespace slimtrace::image::detail
