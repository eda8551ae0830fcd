// HTTP(S) requests with libcurl over sockets created inside the container's network namespace: no
// proxy, no redirects followed, no name resolution, loopback addresses only.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace slimtrace::probe {

struct HttpRequest {
  std::string scheme = "http";     // http or https
  std::string host = "127.0.0.1";  // 127.0.0.1 or ::1 (the only targets ever used)
  int port = 80;
  std::string method = "GET";
  std::string path = "/";            // path and query
  std::vector<std::string> headers;  // "Name: value"
  std::string body;
  int timeout_ms = 30000;
};

struct HttpResponse {
  bool transport_ok = false;  // an HTTP response arrived
  bool connected = false;     // the TCP connection was made (even if no HTTP came back)
  int status = 0;
  std::string content_type;
  std::string location;     // Location header, for redirects
  std::string body;         // the first kMaxKeptBody bytes, for link extraction
  std::string body_digest;  // sha256 of the whole body
  double latency_ms = 0;
  std::string error;  // why transport_ok is false
  static constexpr size_t kMaxKeptBody = 4 << 20;
};

// The URL as recorded in results, e.g. "http://127.0.0.1:8080/x".
std::string request_url(const HttpRequest& r);

class HttpClient {
 public:
  explicit HttpClient(std::filesystem::path netns);
  HttpResponse send(const HttpRequest& request) const;

 private:
  std::filesystem::path netns_;
};

}  // namespace slimtrace::probe
