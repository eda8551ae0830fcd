#include "slimtrace/probe/http.hpp"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <mutex>

#include "slimtrace/image/digest.hpp"
#include "slimtrace/probe/netns.hpp"

namespace slimtrace::probe {
namespace {

struct Transfer {
  const std::filesystem::path* netns = nullptr;
  image::Sha256 hash;
  std::string body;
  std::string location;
  bool opened = false;
  std::string socket_error;
};

bool is_loopback(const sockaddr* sa) {
  if (sa->sa_family == AF_INET) {
    sockaddr_in in{};
    std::memcpy(&in, sa, sizeof in);
    return (ntohl(in.sin_addr.s_addr) >> 24) == 127;
  }
  if (sa->sa_family == AF_INET6) {
    sockaddr_in6 in6{};
    std::memcpy(&in6, sa, sizeof in6);
    return IN6_IS_ADDR_LOOPBACK(&in6.sin6_addr) != 0;
  }
  return false;
}

// Every connection libcurl makes goes through here: it is created in the container's namespace, and
// anything but a loopback address is refused, so no probe can leave that namespace.
curl_socket_t open_socket(void* clientp, curlsocktype purpose, curl_sockaddr* address) {
  auto* t = static_cast<Transfer*>(clientp);
  if (purpose != CURLSOCKTYPE_IPCXN || !is_loopback(&address->addr)) {
    t->socket_error = "refused a connection outside the container's loopback";
    return CURL_SOCKET_BAD;
  }
  auto s = socket_in_netns(*t->netns, address->family, address->socktype, address->protocol);
  if (!s) {
    t->socket_error = s.error().message;
    return CURL_SOCKET_BAD;
  }
  return *s;
}

int close_socket(void*, curl_socket_t s) { return ::close(s); }

int sockopt(void* clientp, curl_socket_t, curlsocktype) {
  static_cast<Transfer*>(clientp)->opened = true;
  return CURL_SOCKOPT_OK;
}

size_t on_body(char* data, size_t size, size_t n, void* userp) {
  auto* t = static_cast<Transfer*>(userp);
  size_t len = size * n;
  t->hash.update(data, len);
  if (t->body.size() < HttpResponse::kMaxKeptBody)
    t->body.append(data, std::min(len, HttpResponse::kMaxKeptBody - t->body.size()));
  return len;
}

size_t on_header(char* data, size_t size, size_t n, void* userp) {
  auto* t = static_cast<Transfer*>(userp);
  size_t len = size * n;
  std::string line(data, len);
  if (line.size() > 9 && strncasecmp(line.c_str(), "location:", 9) == 0) {
    std::string v = line.substr(9);
    auto b = v.find_first_not_of(" \t");
    auto e = v.find_last_not_of(" \t\r\n");
    t->location = b == std::string::npos ? "" : v.substr(b, e - b + 1);
  }
  return len;
}

void global_init() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

}  // namespace

std::string request_url(const HttpRequest& r) {
  std::string host = r.host.find(':') != std::string::npos ? "[" + r.host + "]" : r.host;
  return r.scheme + "://" + host + ":" + std::to_string(r.port) + r.path;
}

HttpClient::HttpClient(std::filesystem::path netns) : netns_(std::move(netns)) { global_init(); }

HttpResponse HttpClient::send(const HttpRequest& request) const {
  HttpResponse resp;
  CURL* c = curl_easy_init();
  if (!c) {
    resp.error = "curl_easy_init failed";
    return resp;
  }
  Transfer t;
  t.netns = &netns_;
  std::string url = request_url(request);
  curl_slist* headers = nullptr;
  for (const auto& h : request.headers) headers = curl_slist_append(headers, h.c_str());

  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_PROXY, "");
  curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, open_socket);
  curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, &t);
  curl_easy_setopt(c, CURLOPT_CLOSESOCKETFUNCTION, close_socket);
  curl_easy_setopt(c, CURLOPT_SOCKOPTFUNCTION, sockopt);
  curl_easy_setopt(c, CURLOPT_SOCKOPTDATA, &t);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &t);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &t);
  // Apps in images commonly serve TLS with self-signed certificates; what matters is that they answer.
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(request.timeout_ms));
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(std::min(request.timeout_ms, 5000)));
  curl_easy_setopt(c, CURLOPT_USERAGENT, "slimtrace-probe/1");
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, nullptr);
  if (request.method == "HEAD") {
    curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
  } else if (request.method != "GET") {
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, request.method.c_str());
  }
  if (!request.body.empty()) {
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, request.body.data());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(request.body.size()));
    if (request.method == "GET") curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, "GET");
  }

  auto t0 = std::chrono::steady_clock::now();
  CURLcode rc = curl_easy_perform(c);
  resp.latency_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  curl_off_t connect_us = 0;
  curl_easy_getinfo(c, CURLINFO_CONNECT_TIME_T, &connect_us);
  resp.connected = t.opened && connect_us > 0;
  if (rc == CURLE_OK) {
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    resp.transport_ok = true;
    resp.connected = true;
    resp.status = static_cast<int>(status);
    char* ct = nullptr;
    curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct);
    if (ct) resp.content_type = ct;
  } else {
    resp.error = curl_easy_strerror(rc);
    if (!t.socket_error.empty()) resp.error += " (" + t.socket_error + ")";
  }
  resp.location = t.location;
  resp.body = std::move(t.body);
  resp.body_digest = t.hash.finish();
  curl_slist_free_all(headers);
  curl_easy_cleanup(c);
  return resp;
}

}  // namespace slimtrace::probe
