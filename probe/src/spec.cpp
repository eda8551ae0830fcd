#include "slimtrace/probe/spec.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace slimtrace::probe {
namespace {

bool valid_method(std::string_view m) {
  return !m.empty() && m.size() <= 16 &&
         std::all_of(m.begin(), m.end(), [](char c) { return std::isupper(static_cast<unsigned char>(c)); });
}

Result<int> parse_port_number(std::string_view s) {
  int v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || ptr != s.data() + s.size() || v < 1 || v > 65535)
    return Error{"'" + std::string(s) + "': not a port number (1-65535)"};
  return v;
}

bool has_control_chars(std::string_view s) {
  return std::any_of(s.begin(), s.end(),
                     [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; });
}

}  // namespace

Result<int> parse_port(std::string_view text) {
  std::string_view num = text;
  if (auto slash = text.find('/'); slash != std::string_view::npos) {
    std::string proto(text.substr(slash + 1));
    std::transform(proto.begin(), proto.end(), proto.begin(), ::tolower);
    if (proto != "tcp") return Error{"port '" + std::string(text) + "': only tcp ports can be probed"};
    num = text.substr(0, slash);
  }
  auto p = parse_port_number(num);
  if (!p) return p.error().context("port");
  return p;
}

Result<HttpProbeSpec> parse_http_probe(std::string_view text) {
  HttpProbeSpec s;
  std::string t(text);
  auto sp = t.find(' ');
  std::string target = t;
  if (sp != std::string::npos) {
    s.method = t.substr(0, sp);
    target =
        t.substr(t.find_first_not_of(' ', sp) == std::string::npos ? t.size() : t.find_first_not_of(' ', sp));
    std::transform(s.method.begin(), s.method.end(), s.method.begin(), ::toupper);
    if (!valid_method(s.method))
      return Error{"--http-probe '" + t + "': '" + s.method + "' is not an HTTP method"};
  }
  if (!target.empty() && target[0] == ':') {
    auto slash = target.find('/');
    auto port =
        parse_port_number(target.substr(1, slash == std::string::npos ? std::string::npos : slash - 1));
    if (!port) return port.error().context("--http-probe '" + t + "'");
    s.port = *port;
    target = slash == std::string::npos ? "/" : target.substr(slash);
  }
  if (target.empty() || target[0] != '/' || target.find(' ') != std::string::npos ||
      has_control_chars(target))
    return Error{"--http-probe '" + t + "': expected 'METHOD /path' or 'METHOD :PORT/path'"};
  s.path = target;
  return s;
}

Result<std::vector<HttpProbeSpec>> parse_probe_file_text(std::string_view text,
                                                         const std::filesystem::path& name) {
  using nlohmann::json;
  const std::string where = "probe file '" + name.string() + "'";
  json doc = json::parse(text, nullptr, false);
  if (doc.is_discarded()) return Error{where + ": not valid JSON"};
  if (!doc.is_array()) return Error{where + ": expected a JSON array of probes"};
  std::vector<HttpProbeSpec> out;
  for (size_t i = 0; i < doc.size(); ++i) {
    const json& e = doc[i];
    const std::string at = where + ": probe " + std::to_string(i + 1);
    if (!e.is_object()) return Error{at + ": expected an object"};
    static const char* known[] = {"method", "path", "port", "headers", "body", "body_file", "expect_status"};
    for (const auto& [k, v] : e.items())
      if (std::find(std::begin(known), std::end(known), k) == std::end(known))
        return Error{at + ": unknown field '" + k + "'"};
    HttpProbeSpec s;
    if (e.contains("method")) {
      if (!e["method"].is_string()) return Error{at + ": 'method' must be a string"};
      s.method = e["method"].get<std::string>();
      std::transform(s.method.begin(), s.method.end(), s.method.begin(), ::toupper);
      if (!valid_method(s.method)) return Error{at + ": '" + s.method + "' is not an HTTP method"};
    }
    if (!e.contains("path") || !e["path"].is_string()) return Error{at + ": 'path' (a string) is required"};
    s.path = e["path"].get<std::string>();
    if (s.path.empty() || s.path[0] != '/' || s.path.find(' ') != std::string::npos ||
        has_control_chars(s.path))
      return Error{at + ": 'path' must start with '/' and contain no spaces"};
    if (e.contains("port")) {
      if (!e["port"].is_number_integer() || e["port"].get<long long>() < 1 ||
          e["port"].get<long long>() > 65535)
        return Error{at + ": 'port' must be a number 1-65535"};
      s.port = e["port"].get<int>();
    }
    if (e.contains("headers")) {
      const json& h = e["headers"];
      if (h.is_object()) {
        for (const auto& [k, v] : h.items()) {
          if (!v.is_string()) return Error{at + ": header '" + k + "' must be a string"};
          s.headers.push_back(k + ": " + v.get<std::string>());
        }
      } else if (h.is_array()) {
        for (const auto& v : h) {
          if (!v.is_string() || v.get<std::string>().find(':') == std::string::npos)
            return Error{at + ": 'headers' entries must be strings 'Name: value'"};
          s.headers.push_back(v.get<std::string>());
        }
      } else {
        return Error{at + ": 'headers' must be an object or an array"};
      }
      for (const auto& hd : s.headers)
        if (has_control_chars(hd)) return Error{at + ": header '" + hd + "' contains control characters"};
    }
    if (e.contains("body") && e.contains("body_file"))
      return Error{at + ": give 'body' or 'body_file', not both"};
    if (e.contains("body")) s.body = e["body"].is_string() ? e["body"].get<std::string>() : e["body"].dump();
    if (e.contains("body_file")) {
      if (!e["body_file"].is_string()) return Error{at + ": 'body_file' must be a string"};
      std::filesystem::path bf = e["body_file"].get<std::string>();
      if (bf.is_relative()) bf = name.parent_path() / bf;
      std::ifstream f(bf, std::ios::binary);
      if (!f) return Error{at + ": cannot read body_file '" + bf.string() + "'"};
      std::stringstream ss;
      ss << f.rdbuf();
      s.body = ss.str();
    }
    if (e.contains("expect_status")) {
      const json& x = e["expect_status"];
      auto add = [&](const json& v) -> Status {
        if (!v.is_number_integer() || v.get<long long>() < 100 || v.get<long long>() > 599)
          return Error{at + ": 'expect_status' must be an HTTP status (100-599) or an array of them"};
        s.expect_status.push_back(v.get<int>());
        return {};
      };
      if (x.is_array()) {
        if (x.empty()) return Error{at + ": 'expect_status' is an empty array"};
        for (const auto& v : x) SLIMTRACE_TRY(add(v));
      } else {
        SLIMTRACE_TRY(add(x));
      }
    }
    out.push_back(std::move(s));
  }
  return out;
}

Result<std::vector<HttpProbeSpec>> load_probe_file(const std::filesystem::path& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return Error::from_errno("probe file '" + path.string() + "'");
  std::stringstream ss;
  ss << f.rdbuf();
  return parse_probe_file_text(ss.str(), path);
}

Result<ContinueAfter> parse_continue_after(std::string_view text) {
  ContinueAfter c;
  if (text == "probe") {
    c.mode = ContinueMode::Probe;
  } else if (text == "exit") {
    c.mode = ContinueMode::Exit;
  } else if (text == "signal") {
    c.mode = ContinueMode::Signal;
  } else if (text == "enter") {
    c.mode = ContinueMode::Enter;
  } else if (text.rfind("timeout:", 0) == 0) {
    std::string n(text.substr(8));
    double v = 0;
    auto [ptr, ec] = std::from_chars(n.data(), n.data() + n.size(), v);
    if (n.empty() || ec != std::errc() || ptr != n.data() + n.size() || !(v > 0))
      return Error{"--continue-after '" + std::string(text) +
                   "': timeout needs a positive number of seconds, e.g. timeout:30"};
    c.mode = ContinueMode::Timeout;
    c.timeout_seconds = v;
  } else {
    return Error{"--continue-after '" + std::string(text) +
                 "': expected probe, exit, timeout:SECONDS, signal or enter"};
  }
  return c;
}

std::string to_string(const ContinueAfter& c) {
  switch (c.mode) {
    case ContinueMode::Probe:
      return "probe";
    case ContinueMode::Exit:
      return "exit";
    case ContinueMode::Timeout: {
      std::ostringstream o;
      o << "timeout:" << c.timeout_seconds;
      return o.str();
    }
    case ContinueMode::Signal:
      return "signal";
    case ContinueMode::Enter:
      return "enter";
  }
  return "probe";
}

}  // namespace slimtrace::probe
