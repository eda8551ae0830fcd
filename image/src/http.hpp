// Internal: one HTTP request over libcurl, to a registry (TCP, TLS) or a Docker engine (unix socket).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "slimtrace/result.hpp"

namespace slimtrace::image::detail {

struct HttpRequest {
  std::string method = "GET";        // GET, HEAD, POST, PUT, PATCH, DELETE
  std::string url;                   // for unix sockets: "http://docker/v1.41/..." (the host is ignored)
  std::vector<std::string> headers;  // "Name: value"
  std::string unix_socket;           // connect here instead of the URL's host
  bool tls_verify = true;
  std::string basic_auth;        // "user:pass"
  bool follow_redirects = true;  // registries redirect blob downloads to their storage
  // The body: `body`, or when body_reader is set, whatever it yields until it returns 0.
  std::string body;
  std::function<Result<size_t>(char* buf, size_t len)> body_reader;
  int64_t body_size = -1;  // with body_reader: the length if known; -1 sends chunked
  // Where a 2xx response's body goes; unset (or a non-2xx response): HttpResponse::body.
  std::function<Status(std::string_view chunk)> body_sink;
  long connect_timeout_seconds = 30;
  // Abort when slower than 1 byte/s for this long (0: never); no total timeout, blobs are large.
  long stall_timeout_seconds = 120;
};

struct HttpResponse {
  long status = 0;
  std::map<std::string, std::string> headers;  // names lower-cased; the last value of each
  std::string body;
  std::string effective_url;  // after redirects
  std::string header(const std::string& lower_name) const {
    auto it = headers.find(lower_name);
    return it == headers.end() ? std::string() : it->second;
  }
};

// Percent-encodes all but unreserved characters (RFC 3986) and those in `keep` (e.g. "/:@" for a
// path that holds an image name).
std::string percent_encode(std::string_view text, std::string_view keep = {});

// Performs one request. An Error means no complete HTTP response: the message names the endpoint
// and the cause in one line ("connect to 127.0.0.1:5000: Connection refused"), or carries the
// sink's or reader's error. Any HTTP status, 4xx and 5xx included, is a response, not an Error.
Result<HttpResponse> http_perform(const HttpRequest& request);

}  // namespace slimtrace::image::detail
