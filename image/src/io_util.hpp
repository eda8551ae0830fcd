// Internal: reading the small metadata files of an image (index.json, manifests, configs).
#pragma once

#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "slimtrace/result.hpp"

namespace slimtrace::image::detail {

// Manifests and configs are small: refuse absurd ones rather than read them into memory.
inline constexpr int64_t kMaxJsonBlob = 16 << 20;

// The whole content of regular file `p`, at most `limit` bytes; `what` names it in errors
// ("index.json is missing ('/x/index.json')").
Result<std::string> read_small_file(const std::filesystem::path& p, const std::string& what,
                                    int64_t limit = kMaxJsonBlob);

// Fields of untrusted JSON: `fallback` when the object lacks the key or holds another type there
// (json::value would throw on a wrong type, and a hostile manifest must be an error, not a crash).
inline std::string json_string(const nlohmann::json& obj, const char* key, const std::string& fallback = {}) {
  if (!obj.is_object()) return fallback;
  auto it = obj.find(key);
  return it != obj.end() && it->is_string() ? it->get<std::string>() : fallback;
}
inline int64_t json_int(const nlohmann::json& obj, const char* key, int64_t fallback) {
  if (!obj.is_object()) return fallback;
  auto it = obj.find(key);
  return it != obj.end() && it->is_number_integer() ? it->get<int64_t>() : fallback;
}
inline bool json_bool(const nlohmann::json& obj, const char* key, bool fallback) {
  if (!obj.is_object()) return fallback;
  auto it = obj.find(key);
  return it != obj.end() && it->is_boolean() ? it->get<bool>() : fallback;
}

}  // namespace slimtrace::image::detail
