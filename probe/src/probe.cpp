#include "slimtrace/probe/probe.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <deque>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "slimtrace/fd.hpp"
#include "slimtrace/image/digest.hpp"
#include "slimtrace/probe/apispec.hpp"
#include "slimtrace/probe/http.hpp"
#include "slimtrace/probe/links.hpp"
#include "slimtrace/probe/netns.hpp"

extern char** environ;

namespace slimtrace::probe {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

Clock::time_point after(Clock::time_point t, double seconds) {
  return t + std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
}

std::string join_ports(const std::vector<int>& ports) {
  std::string s;
  for (size_t i = 0; i < ports.size(); ++i) s += (i ? "," : "") + std::to_string(ports[i]);
  return s;
}

std::string last_lines(const std::string& text, int lines) {
  if (text.empty()) return {};
  size_t end = text.size();
  if (text[end - 1] == '\n') --end;
  size_t pos = end;
  for (int n = 0; n < lines && pos > 0; ++n) {
    size_t nl = text.rfind('\n', pos - 1);
    if (nl == std::string::npos) {
      pos = 0;
      break;
    }
    pos = nl;
    if (n + 1 < lines && pos == 0) break;
  }
  return text.substr(pos == 0 ? 0 : pos + 1, end - (pos == 0 ? 0 : pos + 1));
}

std::string read_file_tail(const std::filesystem::path& p, size_t max_bytes = 64 * 1024) {
  std::ifstream f(p, std::ios::binary);
  if (!f) return {};
  f.seekg(0, std::ios::end);
  auto size = static_cast<size_t>(std::max<std::streamoff>(0, f.tellg()));
  size_t start = size > max_bytes ? size - max_bytes : 0;
  f.seekg(static_cast<std::streamoff>(start));
  std::string s(size - start, '\0');
  f.read(s.data(), static_cast<std::streamsize>(s.size()));
  return s;
}

// One probing session: the shared state of the steps below.
class Session {
 public:
  Session(const ProbeTarget& t, const ProbeOptions& o)
      : t_(t), o_(o), client_(t.netns), start_(Clock::now()), deadline_(after(start_, o.probe_timeout)) {}

  ProbeReport run();

 private:
  ProbeReport run_replay();
  bool gone() const { return t_.exited && t_.exited(); }
  bool out_of_time() {
    if (Clock::now() < deadline_) return false;
    if (!rep_.timed_out) {
      rep_.timed_out = true;
      rep_.warnings.push_back("the probe timeout of " + fmt_seconds(o_.probe_timeout) +
                              " s was reached; stopping the container");
    }
    return true;
  }
  // Probing stops when the container is gone or time is up.
  bool must_stop() {
    if (gone()) {
      cut_short_ = probing_;
      return true;
    }
    return out_of_time();
  }
  void notice(const std::string& s) const {
    if (o_.notice) o_.notice(s);
  }
  static std::string fmt_seconds(double s) {
    std::ostringstream o;
    o << s;
    return o.str();
  }
  int remaining_ms(int cap) const {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline_ - Clock::now()).count();
    return static_cast<int>(std::clamp<int64_t>(left, 1, cap));
  }

  // Polls the listening sockets until `done(ports)` or `until` or the container is gone.
  bool wait_ports(Clock::time_point until, const std::function<bool(const std::vector<int>&)>& done);
  void readiness(const std::vector<int>& expected, bool default_mode, ContinueAfter& mode);
  std::string host_for(int port) const;
  void detect_port(int port);
  // `host` empty: chosen from the listening sockets. `check_stable` false sends the request once.
  ProbeResult http_probe(const std::string& origin, const std::string& scheme, int port,
                         const HttpProbeSpec& spec, HttpResponse* first_out = nullptr,
                         std::optional<HttpResponse> already = std::nullopt, const std::string& host = {},
                         bool check_stable = true);
  // Connects to `host`:`port` (a few tries) and records the outcome in `r`.
  void tcp_connect(ProbeResult& r, int port, const std::string& host);
  void user_probes();
  void crawl(int port, const HttpResponse& root);
  void api_specs(int port);
  ProbeResult exec_probe(const std::string& cmd);
  void exec_probes();
  std::vector<std::string> host_env() const;
  ProbeResult host_command(const std::string& cmd, const std::vector<std::string>& env);
  void host_commands();
  ProbeResult replay_one(const ProbeResult& original);
  void continue_after(const ContinueAfter& mode);

  const ProbeTarget& t_;
  const ProbeOptions& o_;
  HttpClient client_;
  Clock::time_point start_, deadline_;
  ProbeReport rep_;
  bool probing_ = false, cut_short_ = false;
  std::vector<ListeningSocket> sockets_;
  std::map<int, std::string> scheme_;          // port -> http | https (HTTP ports only)
  std::map<int, HttpResponse> root_;           // port -> the response to GET /
  std::map<int, std::set<std::string>> done_;  // port -> GET paths already probed
};

bool Session::wait_ports(Clock::time_point until, const std::function<bool(const std::vector<int>&)>& done) {
  for (;;) {
    sockets_ = listening_sockets(t_.pid);
    if (done(listening_ports(sockets_))) return true;
    if (gone() || Clock::now() >= until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

void Session::readiness(const std::vector<int>& expected, bool default_mode, ContinueAfter& mode) {
  auto any = [](const std::vector<int>& p) { return !p.empty(); };
  auto settle = [&] {
    // Services often open several ports in a row; give the others a moment.
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    sockets_ = listening_sockets(t_.pid);
  };
  const auto ready_until = std::min(deadline_, after(start_, o_.ready_timeout));
  if (!expected.empty()) {
    notice("waiting for ports " + join_ports(expected) + " to listen (up to " +
           fmt_seconds(o_.ready_timeout) + " s)");
    bool all = wait_ports(ready_until, [&](const std::vector<int>& p) {
      return std::all_of(expected.begin(), expected.end(),
                         [&](int e) { return std::find(p.begin(), p.end(), e) != p.end(); });
    });
    rep_.ready = all;
    if (all) settle();
    auto listening = listening_ports(sockets_);
    if (!all) {
      std::vector<int> missing;
      for (int e : expected)
        if (std::find(listening.begin(), listening.end(), e) == listening.end()) missing.push_back(e);
      std::string why = gone() ? "the container exited before listening on port(s) " + join_ports(missing)
                               : "the container did not listen on port(s) " + join_ports(missing) +
                                     " within " + fmt_seconds(seconds_between(start_, Clock::now())) + " s";
      // A declared port that never listens means the app is not ready: fail with the log tail
      // rather than minify from a half-started app.
      rep_.error = why;
      if (Clock::now() >= deadline_) out_of_time();
    }
  } else if (default_mode) {
    // No port is known: a service shows itself by listening, a batch job by exiting.
    notice("the image exposes no port: waiting for a listening socket or for the container to exit");
    if (wait_ports(deadline_, any)) {
      mode = ContinueAfter{ContinueMode::Probe, 0};
      settle();
      rep_.ready = true;
    } else {
      mode = ContinueAfter{ContinueMode::Exit, 0};
      rep_.ready = gone();
      if (!gone()) out_of_time();
    }
  } else {
    bool port_needed = mode.mode == ContinueMode::Probe && o_.exec_probes.empty() && o_.host_commands.empty();
    auto until = port_needed ? ready_until : std::min(ready_until, after(start_, 3));
    if (port_needed)
      notice("waiting for the container to listen on a port (up to " + fmt_seconds(o_.ready_timeout) + " s)");
    if (wait_ports(until, any)) {
      settle();
      rep_.ready = true;
    } else if (port_needed) {
      rep_.error = gone() ? "the container exited without listening on any port"
                          : "the container did not listen on any port within " +
                                fmt_seconds(seconds_between(start_, Clock::now())) + " s";
    } else {
      rep_.ready = true;  // nothing to wait for
    }
  }
  rep_.ready_seconds = seconds_between(start_, Clock::now());
  rep_.ports = listening_ports(sockets_);
}

std::string Session::host_for(int port) const {
  bool any = false, only_v6_loopback = true;
  for (const auto& s : sockets_) {
    if (s.port != port) continue;
    any = true;
    if (!s.v6_loopback) only_v6_loopback = false;
  }
  return any && only_v6_loopback ? "::1" : "127.0.0.1";
}

ProbeResult Session::http_probe(const std::string& origin, const std::string& scheme, int port,
                                const HttpProbeSpec& spec, HttpResponse* first_out,
                                std::optional<HttpResponse> already, const std::string& host,
                                bool check_stable) {
  HttpRequest req;
  req.scheme = scheme;
  req.host = host.empty() ? host_for(port) : host;
  req.port = port;
  req.method = spec.method;
  req.path = spec.path;
  req.headers = spec.headers;
  req.body = spec.body;
  req.timeout_ms = remaining_ms(30000);
  HttpResponse first = already ? std::move(*already) : client_.send(req);
  ProbeResult r;
  r.kind = scheme;
  r.origin = origin;
  r.target = request_url(req);
  r.method = spec.method;
  r.port = port;
  r.path = spec.path;
  r.request_headers = spec.headers;
  r.request_body = spec.body;
  r.latency_ms = first.latency_ms;
  if (!spec.expect_status.empty()) {
    r.expected = "status";
    for (size_t i = 0; i < spec.expect_status.size(); ++i)
      r.expected += (i ? " or " : " ") + std::to_string(spec.expect_status[i]);
  } else {
    r.expected = origin == "user" ? "a status below 500" : "any HTTP response";
  }
  if (!first.transport_ok) {
    r.error = first.error;
    r.met = false;
    if (first_out) *first_out = std::move(first);
    return r;
  }
  r.status = first.status;
  r.body_digest = first.body_digest;
  if (!spec.expect_status.empty())
    r.met = std::find(spec.expect_status.begin(), spec.expect_status.end(), first.status) !=
            spec.expect_status.end();
  else
    r.met = origin != "user" || first.status < 500;
  if (check_stable && !must_stop()) {
    req.timeout_ms = remaining_ms(30000);
    HttpResponse second = client_.send(req);
    r.stable =
        second.transport_ok && second.status == first.status && second.body_digest == first.body_digest;
  }
  if (!r.met) r.error = "status " + std::to_string(first.status);
  if (first_out) *first_out = std::move(first);
  return r;
}

void Session::detect_port(int port) {
  HttpProbeSpec root;
  HttpRequest req;
  req.host = host_for(port);
  req.port = port;
  // Short: a service that does not speak HTTP may never answer at all.
  req.timeout_ms = remaining_ms(5000);
  bool connected = false;
  double connect_latency = 0;
  for (const char* scheme : {"http", "https"}) {
    req.scheme = scheme;
    HttpResponse resp = client_.send(req);
    if (resp.connected && !connected) {
      connected = true;
      connect_latency = resp.latency_ms;
    }
    if (resp.transport_ok) {
      scheme_[port] = scheme;
      done_[port].insert("/");
      HttpResponse kept;
      rep_.results.push_back(http_probe("default", scheme, port, root, &kept, std::move(resp)));
      root_[port] = std::move(kept);
      return;
    }
    if (must_stop()) break;
  }
  // Not HTTP: a TCP service, and accepting a connection is what it can show.
  ProbeResult r;
  r.kind = "tcp";
  r.origin = "default";
  r.port = port;
  r.target = (req.host == "::1" ? "[::1]" : req.host) + ":" + std::to_string(port);
  r.expected = "a TCP connection";
  if (connected) {
    // The HTTP attempt already got through: the service accepted a connection. One-shot servers
    // (nc -l in a loop) may not be listening again yet, so this is the evidence to keep.
    r.met = true;
    r.latency_ms = connect_latency;
    rep_.results.push_back(std::move(r));
    return;
  }
  tcp_connect(r, port, req.host);
  rep_.results.push_back(std::move(r));
}

void Session::tcp_connect(ProbeResult& r, int port, const std::string& host) {
  auto t0 = Clock::now();
  int family = host == "::1" ? AF_INET6 : AF_INET;
  for (int attempt = 0; attempt < 20 && !r.met && !must_stop(); ++attempt) {
    if (attempt > 0) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    auto s = socket_in_netns(t_.netns, family, SOCK_STREAM, 0);
    if (!s) {
      r.error = s.error().message;
      break;
    }
    UniqueFd fd(*s);
    timeval tv{5, 0};
    ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int rc;
    if (family == AF_INET) {
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_port = htons(static_cast<uint16_t>(port));
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      rc = ::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a);
    } else {
      sockaddr_in6 a{};
      a.sin6_family = AF_INET6;
      a.sin6_port = htons(static_cast<uint16_t>(port));
      a.sin6_addr = in6addr_loopback;
      rc = ::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a);
    }
    if (rc == 0) {
      r.met = true;
      r.error.clear();
    } else {
      r.error = std::string("connect: ") + std::strerror(errno);
    }
  }
  r.latency_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

void Session::user_probes() {
  for (const auto& spec : o_.http_probes) {
    std::vector<std::pair<int, std::string>> targets;
    if (spec.port) {
      auto it = scheme_.find(*spec.port);
      targets.emplace_back(*spec.port, it == scheme_.end() ? "http" : it->second);
    } else {
      for (const auto& [port, scheme] : scheme_) targets.emplace_back(port, scheme);
    }
    if (targets.empty()) {
      ProbeResult r;
      r.kind = "http";
      r.origin = "user";
      r.method = spec.method;
      r.path = spec.path;
      r.target = spec.method + " " + spec.path;
      r.expected = "a port that speaks HTTP";
      r.error = "no listening port speaks HTTP";
      rep_.results.push_back(std::move(r));
      continue;
    }
    for (const auto& [port, scheme] : targets) {
      if (must_stop()) return;
      rep_.results.push_back(http_probe("user", scheme, port, spec));
    }
  }
}

bool looks_like(const HttpResponse& r, const std::string& path, const char* type, const char* ext) {
  std::string ct = r.content_type;
  std::transform(ct.begin(), ct.end(), ct.begin(), ::tolower);
  if (ct.find(type) != std::string::npos) return true;
  std::string p = path.substr(0, path.find('?'));
  std::string e(ext);
  return p.size() >= e.size() && p.compare(p.size() - e.size(), e.size(), e) == 0;
}

void Session::crawl(int port, const HttpResponse& root) {
  const Origin origin{scheme_[port], port};
  struct Page {
    std::string path;
    int depth;
  };
  std::deque<Page> queue;
  int pages = 1;  // "/" is the first page
  auto enqueue_links = [&](const std::string& base, const HttpResponse& resp, int depth) {
    if (depth >= o_.crawl_depth) return;
    std::vector<std::string> links;
    if (looks_like(resp, base, "text/html", ".html") || looks_like(resp, base, "xhtml", ".htm"))
      links = extract_html_links(resp.body);
    else if (looks_like(resp, base, "text/css", ".css"))
      links = extract_css_links(resp.body);
    if (resp.status >= 300 && resp.status < 400 && !resp.location.empty()) links.push_back(resp.location);
    for (const auto& l : links) {
      auto p = same_origin_path(l, base, origin);
      if (!p || done_[port].count(*p)) continue;
      done_[port].insert(*p);
      queue.push_back({*p, depth + 1});
    }
  };
  enqueue_links("/", root, 0);
  while (!queue.empty() && pages < o_.crawl_max_pages) {
    if (must_stop()) return;
    Page page = std::move(queue.front());
    queue.pop_front();
    HttpProbeSpec spec;
    spec.path = page.path;
    HttpResponse resp;
    rep_.results.push_back(http_probe("crawl", origin.scheme, port, spec, &resp));
    ++pages;
    if (resp.transport_ok) enqueue_links(page.path, resp, page.depth);
  }
}

void Session::api_specs(int port) {
  const std::string scheme = scheme_[port];
  auto call_all = [&](const nlohmann::json& spec, const std::string& name) {
    auto ops = api_get_operations(spec);
    if (!ops) {
      rep_.warnings.push_back("API spec " + name + ": " + ops.error().message);
      return;
    }
    for (const auto& op : *ops) {
      if (must_stop()) return;
      if (done_[port].count(op.path)) continue;
      done_[port].insert(op.path);
      HttpProbeSpec s;
      s.path = op.path;
      rep_.results.push_back(http_probe("apispec", scheme, port, s));
    }
  };
  for (size_t i = 0; i < o_.api_specs.size(); ++i) call_all(o_.api_specs[i], "file " + std::to_string(i + 1));
  for (const auto& path : o_.api_spec_paths) {
    if (must_stop()) return;
    HttpProbeSpec s;
    s.path = path;
    HttpResponse resp;
    done_[port].insert(path);
    rep_.results.push_back(http_probe("apispec", scheme, port, s, &resp));
    if (!resp.transport_ok || resp.status != 200) continue;  // not served on this port
    auto doc = parse_api_spec(resp.body, request_url({scheme, host_for(port), port, "GET", path, {}, {}, 0}));
    if (!doc) {
      rep_.warnings.push_back(doc.error().message);
      continue;
    }
    call_all(*doc, path + " on port " + std::to_string(port));
  }
}

ProbeResult Session::exec_probe(const std::string& cmd) {
  ProbeResult r;
  r.kind = "exec";
  r.origin = "user";
  r.target = cmd;
  r.expected = "exit 0";
  if (!t_.exec) {
    r.error = "exec is not available for this container";
    return r;
  }
  auto t0 = Clock::now();
  auto out = t_.exec({"/bin/sh", "-c", cmd}, remaining_ms(600000));
  r.latency_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  if (!out) {
    r.error = out.error().message;
  } else {
    r.exit_code = out->exit_code;
    r.stdout_digest = image::sha256_digest(out->out);
    r.met = out->exit_code == 0 && !out->timed_out;
    if (out->timed_out)
      r.error = "timed out";
    else if (!r.met)
      r.error = "exit " + std::to_string(out->exit_code) + ": " + last_lines(out->err + out->out, 5);
  }
  return r;
}

void Session::exec_probes() {
  for (const auto& cmd : o_.exec_probes) {
    if (must_stop()) return;
    rep_.results.push_back(exec_probe(cmd));
  }
}

std::vector<std::string> Session::host_env() const {
  auto ports = listening_ports(sockets_);
  std::vector<std::string> env = {"SLIMTRACE_TARGET_HOST=127.0.0.1", "SLIMTRACE_PORTS=" + join_ports(ports)};
  if (!ports.empty()) env.push_back("SLIMTRACE_PORT=" + std::to_string(ports.front()));
  return env;
}

ProbeResult Session::host_command(const std::string& cmd, const std::vector<std::string>& env) {
  ProbeResult r;
  r.kind = "host-cmd";
  r.origin = "user";
  r.target = cmd;
  r.expected = "exit 0";
  auto out = run_host_command(t_.netns, cmd, env, remaining_ms(3600 * 1000));
  if (!out) {
    r.error = out.error().message;
  } else {
    r.latency_ms = out->latency_ms;
    r.exit_code = out->exit_code;
    r.stdout_digest = out->stdout_digest;
    r.met = out->exit_code == 0 && !out->timed_out;
    if (out->timed_out)
      r.error = "timed out";
    else if (!r.met)
      r.error = "exit " + std::to_string(out->exit_code) + ": " + last_lines(out->err + out->out, 5);
  }
  return r;
}

void Session::host_commands() {
  const auto env = host_env();
  for (const auto& cmd : o_.host_commands) {
    if (must_stop()) return;
    rep_.results.push_back(host_command(cmd, env));
  }
}

void Session::continue_after(const ContinueAfter& mode) {
  auto wait_until = [&](Clock::time_point until, const std::function<bool()>& done) {
    while (!gone() && !done()) {
      // The overall timeout first: when it is also `until`, the report must say it fired.
      if (out_of_time()) return;
      if (Clock::now() >= until) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  };
  switch (mode.mode) {
    case ContinueMode::Probe:
      return;
    case ContinueMode::Exit:
      if (!gone())
        notice("waiting for the container to exit (up to the probe timeout, " +
               fmt_seconds(o_.probe_timeout) + " s)");
      wait_until(deadline_, [] { return false; });
      return;
    case ContinueMode::Timeout:
      wait_until(std::min(deadline_, after(Clock::now(), mode.timeout_seconds)), [] { return false; });
      return;
    case ContinueMode::Signal: {
      notice("probes done; send SIGUSR1 to process " + std::to_string(::getpid()) + " to stop the container");
      sigset_t set;
      sigemptyset(&set);
      sigaddset(&set, SIGUSR1);
      wait_until(deadline_, [&] {
        timespec ts{0, 0};
        return ::sigtimedwait(&set, nullptr, &ts) == SIGUSR1;
      });
      return;
    }
    case ContinueMode::Enter: {
      notice("probes done; press Enter to stop the container");
      wait_until(deadline_, [] {
        pollfd p{0, POLLIN, 0};
        if (::poll(&p, 1, 0) <= 0) return false;
        char buf[256];
        // EOF counts as the key press: nothing more will come.
        (void)!::read(0, buf, sizeof buf);
        return true;
      });
      return;
    }
  }
}

// The host a recorded target was sent to: "http://[::1]:80/" and "[::1]:6379" went to ::1.
std::string recorded_host(const std::string& target) {
  return target.find("[::1]") != std::string::npos ? "::1" : "127.0.0.1";
}

bool is_http_kind(const std::string& kind) { return kind == "http" || kind == "https"; }

// The statuses of an expectation written by http_probe ("status 200 or 201"); empty for the others.
std::vector<int> recorded_statuses(const std::string& expected) {
  std::vector<int> out;
  const std::string prefix = "status ";
  if (expected.rfind(prefix, 0) != 0) return out;
  std::istringstream in(expected.substr(prefix.size()));
  std::string word;
  while (in >> word) {
    if (word == "or") continue;
    try {
      out.push_back(std::stoi(word));
    } catch (const std::exception&) {
      return {};
    }
  }
  return out;
}

ProbeResult Session::replay_one(const ProbeResult& o) {
  ProbeResult r;
  if (is_http_kind(o.kind) && o.port) {
    HttpProbeSpec spec;
    spec.method = o.method.empty() ? "GET" : o.method;
    spec.path = o.path.empty() ? "/" : o.path;
    spec.headers = o.request_headers;
    spec.body = o.request_body;
    spec.expect_status = recorded_statuses(o.expected);
    // Once: stability is a property of the original run, and the comparison reads it from there.
    r = http_probe(o.origin, o.kind, *o.port, spec, nullptr, std::nullopt, recorded_host(o.target), false);
  } else if (o.kind == "tcp" && o.port) {
    tcp_connect(r, *o.port, recorded_host(o.target));
  } else if (o.kind == "exec") {
    r = exec_probe(o.target);
  } else if (o.kind == "host-cmd") {
    r = host_command(o.target, host_env());
  } else if (is_http_kind(o.kind)) {
    // Nothing was sent originally (no port spoke HTTP): there is no request to repeat, and the
    // outcome stays what it was.
    r = o;
    r.latency_ms = 0;
    return r;
  } else {
    r = o;
    r.latency_ms = 0;
    r.met = false;
    r.error = "cannot replay a probe of kind '" + o.kind + "'";
    return r;
  }
  r.kind = o.kind;
  r.origin = o.origin;
  r.target = o.target;
  r.method = o.method;
  r.port = o.port;
  r.path = o.path;
  r.expected = o.expected;
  return r;
}

ProbeReport Session::run_replay() {
  const ProbeReport& original = *o_.replay;
  ContinueAfter mode;
  if (o_.continue_after) {
    mode = *o_.continue_after;
    rep_.continue_after_default = false;
  } else if (auto m = parse_continue_after(original.continue_after)) {
    mode = *m;
    rep_.continue_after_default = original.continue_after_default;
  } else {
    mode = ContinueAfter{original.ports.empty() ? ContinueMode::Exit : ContinueMode::Probe, 0};
    rep_.warnings.push_back("the original probe results name no valid continue-after mode ('" +
                            original.continue_after + "'); using " + to_string(mode));
  }
  rep_.continue_after = to_string(mode);

  // The ports the original run found listening are the readiness condition: the same app, minified,
  // must open the same ports. Without any (a batch job), there is nothing to wait for.
  if (!original.ports.empty()) {
    readiness(original.ports, false, mode);
  } else {
    rep_.ready = true;
  }
  if (!rep_.error.empty()) {
    rep_.log_tail = log_tail(t_.stdout_log, t_.stderr_log);
    return std::move(rep_);
  }
  if (!gone() && !original.results.empty()) {
    probing_ = true;
    notice("replaying " + std::to_string(original.results.size()) + " probe(s)");
    for (const auto& o : original.results) {
      if (must_stop()) break;
      rep_.results.push_back(replay_one(o));
    }
  }
  probing_ = false;
  if (cut_short_) rep_.warnings.push_back("the container exited before all probes ran");
  if (!rep_.timed_out) continue_after(mode);
  if (rep_.failed() > 0) rep_.log_tail = log_tail(t_.stdout_log, t_.stderr_log);
  return std::move(rep_);
}

ProbeReport Session::run() {
  std::vector<int> expected = o_.image_ports;
  expected.insert(expected.end(), o_.expose.begin(), o_.expose.end());
  std::sort(expected.begin(), expected.end());
  expected.erase(std::unique(expected.begin(), expected.end()), expected.end());
  rep_.expected_ports = expected;
  if (o_.replay) return run_replay();
  rep_.continue_after_default = !o_.continue_after;
  ContinueAfter mode = o_.continue_after.value_or(ContinueAfter{ContinueMode::Probe, 0});

  readiness(expected, !o_.continue_after, mode);
  rep_.continue_after = to_string(mode);

  if (!rep_.error.empty()) {
    rep_.log_tail = log_tail(t_.stdout_log, t_.stderr_log);
    return std::move(rep_);
  }
  if (!gone()) {
    probing_ = true;
    if (!rep_.ports.empty()) notice("probing port(s) " + join_ports(rep_.ports));
    for (int port : rep_.ports) {
      if (must_stop()) break;
      detect_port(port);
    }
    if (!must_stop()) user_probes();
    for (const auto& [port, scheme] : scheme_) {
      if (must_stop()) break;
      if (o_.crawl && o_.crawl_depth > 0) crawl(port, root_[port]);
    }
    if (!o_.api_specs.empty() || !o_.api_spec_paths.empty())
      for (const auto& [port, scheme] : scheme_) {
        if (must_stop()) break;
        api_specs(port);
      }
    exec_probes();
    host_commands();
  }
  probing_ = false;
  if (cut_short_) rep_.warnings.push_back("the container exited before all probes ran");
  if (!rep_.timed_out) continue_after(mode);
  if (rep_.failed() > 0) rep_.log_tail = log_tail(t_.stdout_log, t_.stderr_log);
  return std::move(rep_);
}

}  // namespace

std::vector<int> exposed_tcp_ports(const nlohmann::json& image_config) {
  std::vector<int> out;
  const nlohmann::json* cfg = &image_config;
  if (image_config.contains("config") && image_config["config"].is_object()) cfg = &image_config["config"];
  if (!cfg->contains("ExposedPorts") || !(*cfg)["ExposedPorts"].is_object()) return out;
  for (const auto& [key, v] : (*cfg)["ExposedPorts"].items()) {
    auto p = parse_port(key);
    if (p) out.push_back(*p);
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

std::string log_tail(const std::filesystem::path& stdout_log, const std::filesystem::path& stderr_log,
                     int lines) {
  std::string s;
  for (const auto& [p, label] : {std::pair{stderr_log, "stderr"}, std::pair{stdout_log, "stdout"}}) {
    if (p.empty()) continue;
    std::string tail = last_lines(read_file_tail(p), lines);
    if (tail.empty()) continue;
    s += std::string("--- last lines of the container's ") + label + " ---\n" + tail + "\n";
  }
  if (s.empty()) s = "(the container wrote nothing to stdout or stderr)\n";
  return s;
}

Result<HostCommandResult> run_host_command(const std::filesystem::path& netns, const std::string& command,
                                           const std::vector<std::string>& env, int timeout_ms) {
  UniqueFd ns(::open(netns.c_str(), O_RDONLY | O_CLOEXEC));
  if (!ns.valid()) return Error::from_errno("open network namespace '" + netns.string() + "'");
  int out_pipe[2], err_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) return Error::from_errno("pipe");
  UniqueFd out_r(out_pipe[0]), out_w(out_pipe[1]);
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) return Error::from_errno("pipe");
  UniqueFd err_r(err_pipe[0]), err_w(err_pipe[1]);
  UniqueFd devnull(::open("/dev/null", O_RDONLY | O_CLOEXEC));

  // Everything the child needs is prepared before fork(): only async-signal-safe calls after it.
  std::vector<std::string> env_strings;
  for (char** e = environ; e && *e; ++e) {
    std::string_view kv(*e);
    bool overridden = std::any_of(env.begin(), env.end(), [&](const std::string& x) {
      auto eq = x.find('=');
      return kv.substr(0, kv.find('=')) == std::string_view(x).substr(0, eq);
    });
    if (!overridden) env_strings.emplace_back(kv);
  }
  env_strings.insert(env_strings.end(), env.begin(), env.end());
  std::vector<char*> envp;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::string sh = "/bin/sh", dash_c = "-c", cmd = command;
  char* argv[] = {sh.data(), dash_c.data(), cmd.data(), nullptr};
  sigset_t none;
  sigemptyset(&none);

  auto t0 = Clock::now();
  pid_t pid = ::fork();
  if (pid < 0) return Error::from_errno("fork for --probe-cmd");
  if (pid == 0) {
    ::setpgid(0, 0);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    if (::setns(ns.get(), CLONE_NEWNET) != 0) ::_exit(126);
    if (devnull.valid()) ::dup2(devnull.get(), 0);
    ::dup2(out_w.get(), 1);
    ::dup2(err_w.get(), 2);
    ::execve(sh.c_str(), argv, envp.data());
    ::_exit(127);
  }
  out_w.reset();
  err_w.reset();
  HostCommandResult res;
  image::Sha256 hash;
  constexpr size_t kKeep = 1 << 20;
  pollfd fds[2] = {{out_r.get(), POLLIN, 0}, {err_r.get(), POLLIN, 0}};
  auto until = after(t0, timeout_ms / 1000.0);
  int open_count = 2;
  while (open_count > 0) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now()).count();
    if (left <= 0) {
      res.timed_out = true;
      ::kill(-pid, SIGKILL);
      break;
    }
    int n = ::poll(fds, 2, static_cast<int>(std::min<int64_t>(left, 1000)));
    if (n < 0 && errno != EINTR) break;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      char buf[65536];
      ssize_t got = ::read(fds[i].fd, buf, sizeof buf);
      if (got <= 0) {
        fds[i].fd = -1;
        --open_count;
        continue;
      }
      std::string& keep = i == 0 ? res.out : res.err;
      if (i == 0) hash.update(buf, static_cast<size_t>(got));
      if (keep.size() < kKeep) keep.append(buf, std::min(static_cast<size_t>(got), kKeep - keep.size()));
    }
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  // Leftover children of the command (a server it started) do not outlive the probe.
  ::kill(-pid, SIGKILL);
  res.latency_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  res.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  res.stdout_digest = hash.finish();
  return res;
}

ProbeReport run_probes(const ProbeTarget& target, const ProbeOptions& options) {
  Session s(target, options);
  return s.run();
}

}  // namespace slimtrace::probe
