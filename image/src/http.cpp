#include "http.hpp"

#include <curl/curl.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>

namespace slimtrace::image::detail {
namespace {

struct CurlDeleter {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
struct SlistDeleter {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};

void init_curl_once() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

// State shared with the callbacks of one transfer.
struct Transfer {
  CURL* curl = nullptr;
  const HttpRequest* request = nullptr;
  HttpResponse* response = nullptr;
  std::optional<Error> callback_error;
  size_t body_offset = 0;  // into request->body when there is no reader
};

size_t on_header(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  std::string_view line(data, size * n);
  if (line.starts_with("HTTP/")) {
    // Each response in a redirect chain starts over; only the last one's headers count.
    t->response->headers.clear();
    return size * n;
  }
  auto colon = line.find(':');
  if (colon == std::string_view::npos) return size * n;
  std::string name(line.substr(0, colon));
  std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
  std::string_view value = line.substr(colon + 1);
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
  while (!value.empty() && (value.back() == '\r' || value.back() == '\n' || value.back() == ' '))
    value.remove_suffix(1);
  t->response->headers[name] = std::string(value);
  return size * n;
}

size_t on_body(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  long status = 0;
  curl_easy_getinfo(t->curl, CURLINFO_RESPONSE_CODE, &status);
  std::string_view chunk(data, size * n);
  if (t->request->body_sink && status >= 200 && status < 300) {
    if (auto st = t->request->body_sink(chunk); !st) {
      t->callback_error = st.error();
      return CURL_WRITEFUNC_ERROR;
    }
    return size * n;
  }
  // Error bodies are kept for the message; bound them so a confused server cannot fill memory.
  if (t->response->body.size() < (64u << 20)) t->response->body.append(chunk);
  return size * n;
}

size_t on_read(char* buf, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  size_t want = size * n;
  if (t->request->body_reader) {
    auto r = t->request->body_reader(buf, want);
    if (!r) {
      t->callback_error = r.error();
      return CURL_READFUNC_ABORT;
    }
    return *r;
  }
  const std::string& body = t->request->body;
  size_t left = body.size() - t->body_offset;
  size_t k = std::min(left, want);
  std::copy_n(body.data() + t->body_offset, k, buf);
  t->body_offset += k;
  return k;
}

// "http://host:port/path" -> "host:port"; for messages.
std::string endpoint_of(const HttpRequest& r) {
  if (!r.unix_socket.empty()) return r.unix_socket;
  std::string_view u = r.url;
  auto s = u.find("://");
  if (s != std::string_view::npos) u.remove_prefix(s + 3);
  return std::string(u.substr(0, u.find('/')));
}

std::string describe_curl_error(CURL* c, CURLcode code, const char* detail, const HttpRequest& r) {
  std::string ep = endpoint_of(r);
  std::string d = detail && *detail ? detail : curl_easy_strerror(code);
  long os_errno = 0;
  curl_easy_getinfo(c, CURLINFO_OS_ERRNO, &os_errno);
  switch (code) {
    case CURLE_COULDNT_CONNECT:
      // "Connection refused" says more than curl's "Failed to connect ... after 0 ms".
      return "connect to " + ep + ": " + (os_errno != 0 ? std::strerror(static_cast<int>(os_errno)) : d);
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
      return "connect to " + ep + ": " + d;
    case CURLE_OPERATION_TIMEDOUT:
      return r.method + " " + r.url + ": timed out: " + d;
    default:
      return r.method + " " + r.url + ": " + d;
  }
}

}  // namespace

std::string percent_encode(std::string_view text, std::string_view keep) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' ||
        keep.find(static_cast<char>(c)) != std::string_view::npos) {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

Result<HttpResponse> http_perform(const HttpRequest& request) {
  init_curl_once();
  std::unique_ptr<CURL, CurlDeleter> curl(curl_easy_init());
  if (!curl) return Error{"curl_easy_init failed"};
  CURL* c = curl.get();
  HttpResponse response;
  Transfer t{c, &request, &response, std::nullopt, 0};
  char errbuf[CURL_ERROR_SIZE] = {};

  curl_easy_setopt(c, CURLOPT_URL, request.url.c_str());
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &t);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &t);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, request.connect_timeout_seconds);
  if (request.stall_timeout_seconds > 0) {
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, request.stall_timeout_seconds);
  }
  if (!request.unix_socket.empty())
    curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, request.unix_socket.c_str());
  if (!request.tls_verify) {
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
  }
  if (!request.basic_auth.empty()) {
    curl_easy_setopt(c, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
    curl_easy_setopt(c, CURLOPT_USERPWD, request.basic_auth.c_str());
  }
  if (request.follow_redirects) {
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
    // Credentials belong to the registry, never to the storage it redirects to.
    curl_easy_setopt(c, CURLOPT_UNRESTRICTED_AUTH, 0L);
  }

  bool has_body = request.body_reader || !request.body.empty();
  if (request.method == "HEAD") {
    curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
  } else if (request.method == "GET") {
    curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
  } else {
    if (request.method == "POST") {
      curl_easy_setopt(c, CURLOPT_POST, 1L);
    } else {
      curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
      curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, request.method.c_str());
    }
    curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
    curl_easy_setopt(c, CURLOPT_READDATA, &t);
    curl_off_t size = request.body_reader ? request.body_size : static_cast<curl_off_t>(request.body.size());
    if (!has_body) size = 0;
    if (request.method == "POST")
      curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, size);
    else
      curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, size);
  }

  std::unique_ptr<curl_slist, SlistDeleter> headers;
  auto add_header = [&](const std::string& h) {
    headers.reset(curl_slist_append(headers.release(), h.c_str()));
  };
  for (const auto& h : request.headers) add_header(h);
  // A 1 s wait for "100 Continue" per upload adds up over many blobs; registries do not need it.
  add_header("Expect:");
  if (request.body_reader && request.body_size < 0 && request.method != "GET" && request.method != "HEAD")
    add_header("Transfer-Encoding: chunked");
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers.get());

  CURLcode rc = curl_easy_perform(c);
  if (t.callback_error) return *t.callback_error;
  if (rc != CURLE_OK) return Error{describe_curl_error(c, rc, errbuf, request)};
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &response.status);
  char* eff = nullptr;
  curl_easy_getinfo(c, CURLINFO_EFFECTIVE_URL, &eff);
  if (eff) response.effective_url = eff;
  return response;
}

}  // namespace slimtrace::image::detail
