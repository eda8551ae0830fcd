// What the user asks for: HTTP probes (flags and probe files), ports, and when to stop.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "slimtrace/result.hpp"

namespace slimtrace::probe {

struct HttpProbeSpec {
  std::string method = "GET";
  std::string path = "/";            // path and query, starts with '/'
  std::optional<int> port;           // none: every port that speaks HTTP
  std::vector<std::string> headers;  // "Name: value"
  std::string body;
  std::vector<int> expect_status;  // empty: any status below 500
};

// "METHOD /path", "METHOD :PORT/path", or just "/path" (GET).
Result<HttpProbeSpec> parse_http_probe(std::string_view text);

// A JSON array of {method, path, port?, headers?, body?, body_file?, expect_status?}. headers is an
// object or an array of "Name: value"; body is a string (or any JSON value, sent as JSON text);
// body_file is relative to the probe file's directory; expect_status is a number or an array.
// `name` is used in error messages and to resolve body_file.
Result<std::vector<HttpProbeSpec>> parse_probe_file_text(std::string_view text,
                                                         const std::filesystem::path& name);
Result<std::vector<HttpProbeSpec>> load_probe_file(const std::filesystem::path& path);

// "80", "8080/tcp"; a "/udp" port is rejected (probes speak TCP only).
Result<int> parse_port(std::string_view text);

enum class ContinueMode { Probe, Exit, Timeout, Signal, Enter };

struct ContinueAfter {
  ContinueMode mode = ContinueMode::Probe;
  double timeout_seconds = 0;  // for Timeout
};

// probe | exit | timeout:N | signal | enter
Result<ContinueAfter> parse_continue_after(std::string_view text);
std::string to_string(const ContinueAfter& c);

}  // namespace slimtrace::probe
