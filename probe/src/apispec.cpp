#include "slimtrace/probe/apispec.hpp"

#include <cctype>
#include <optional>

namespace slimtrace::probe {
namespace {

using nlohmann::json;

// Local references only ("#/components/parameters/id"); remote ones are left unresolved.
const json* resolve(const json& root, const json& node, int depth = 0) {
  if (!node.is_object() || !node.contains("$ref")) return &node;
  if (depth > 16 || !node["$ref"].is_string()) return nullptr;
  std::string ref = node["$ref"].get<std::string>();
  if (ref.rfind("#", 0) != 0) return nullptr;
  try {
    const json& target = root.at(json::json_pointer(ref.substr(1)));
    return resolve(root, target, depth + 1);
  } catch (const std::exception&) {
    return nullptr;
  }
}

std::string scalar_text(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number_integer()) return std::to_string(v.get<long long>());
  if (v.is_number()) return v.dump();
  if (v.is_boolean()) return v.get<bool>() ? "true" : "false";
  return {};
}

std::optional<std::string> example_of(const json& root, const json& p) {
  auto pick = [](const json& obj, const char* key) -> std::optional<std::string> {
    if (!obj.is_object() || !obj.contains(key)) return std::nullopt;
    std::string s = scalar_text(obj[key]);
    if (s.empty()) return std::nullopt;
    return s;
  };
  for (const char* key : {"example", "x-example"})
    if (auto v = pick(p, key)) return v;
  if (p.contains("examples") && p["examples"].is_object()) {
    for (const auto& [name, ex] : p["examples"].items()) {
      const json* e = resolve(root, ex);
      if (e) {
        if (auto v = pick(*e, "value")) return v;
      }
    }
  }
  const json* schema = p.contains("schema") ? resolve(root, p["schema"]) : &p;
  if (schema) {
    if (auto v = pick(*schema, "example")) return v;
    if (auto v = pick(*schema, "default")) return v;
    if (schema->contains("enum") && (*schema)["enum"].is_array() && !(*schema)["enum"].empty()) {
      std::string s = scalar_text((*schema)["enum"][0]);
      if (!s.empty()) return s;
    }
  }
  if (auto v = pick(p, "default")) return v;
  return std::nullopt;
}

std::string percent_encode(const std::string& s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

std::string base_path_of(const json& spec) {
  std::string base;
  if (spec.contains("basePath") && spec["basePath"].is_string()) {
    base = spec["basePath"].get<std::string>();
  } else if (spec.contains("servers") && spec["servers"].is_array() && !spec["servers"].empty() &&
             spec["servers"][0].is_object() && spec["servers"][0].contains("url") &&
             spec["servers"][0]["url"].is_string()) {
    std::string url = spec["servers"][0]["url"].get<std::string>();
    // Only the path matters: requests always go to the container itself.
    if (auto scheme = url.find("://"); scheme != std::string::npos) {
      auto slash = url.find('/', scheme + 3);
      url = slash == std::string::npos ? "" : url.substr(slash);
    }
    // Server variables ("{version}") are not expanded; a templated base is dropped.
    if (url.find('{') == std::string::npos) base = url;
  }
  while (!base.empty() && base.back() == '/') base.pop_back();
  if (!base.empty() && base[0] != '/') base = "/" + base;
  return base;
}

}  // namespace

Result<json> parse_api_spec(std::string_view text, const std::string& name) {
  json doc = json::parse(text, nullptr, false);
  if (doc.is_discarded()) {
    return Error{"API spec '" + name +
                 "': not JSON (only JSON specs are supported; convert YAML first, e.g. with yq -o=json)"};
  }
  return doc;
}

Result<std::vector<ApiOperation>> api_get_operations(const json& spec) {
  if (!spec.is_object()) return Error{"not an OpenAPI or Swagger document: not a JSON object"};
  bool v3 = spec.contains("openapi") && spec["openapi"].is_string() &&
            spec["openapi"].get<std::string>().rfind("3", 0) == 0;
  bool v2 = spec.contains("swagger") && scalar_text(spec["swagger"]).rfind("2", 0) == 0;
  if (!v3 && !v2) return Error{"not an OpenAPI 3 or Swagger 2 document: no 'openapi: 3.x' or 'swagger: 2.0'"};
  if (!spec.contains("paths") || !spec["paths"].is_object())
    return Error{"OpenAPI document has no 'paths' object"};

  std::string base = base_path_of(spec);
  std::vector<ApiOperation> out;
  for (const auto& [tmpl, item_raw] : spec["paths"].items()) {
    const json* item = resolve(spec, item_raw);
    if (!item || !item->is_object() || !item->contains("get")) continue;
    const json& op = (*item)["get"];
    if (!op.is_object()) continue;
    // Operation parameters override path-level ones with the same name and location.
    std::vector<const json*> params;
    auto add_params = [&](const json& list) {
      if (!list.is_array()) return;
      for (const auto& raw : list) {
        const json* p = resolve(spec, raw);
        if (!p || !p->is_object() || !p->contains("name") || !p->contains("in")) continue;
        for (auto& existing : params) {
          if ((*existing)["name"] == (*p)["name"] && (*existing)["in"] == (*p)["in"]) {
            existing = p;
            p = nullptr;
            break;
          }
        }
        if (p) params.push_back(p);
      }
    };
    if (item->contains("parameters")) add_params((*item)["parameters"]);
    if (op.contains("parameters")) add_params(op["parameters"]);

    std::string path = tmpl;
    std::string query;
    for (const json* p : params) {
      std::string in = scalar_text((*p)["in"]);
      std::string name = scalar_text((*p)["name"]);
      if (in == "path") {
        std::string value = example_of(spec, *p).value_or("1");
        std::string key = "{" + name + "}";
        for (size_t pos; (pos = path.find(key)) != std::string::npos;)
          path.replace(pos, key.size(), percent_encode(value));
      } else if (in == "query" && p->contains("required") && (*p)["required"] == true) {
        std::string value = example_of(spec, *p).value_or("1");
        query += (query.empty() ? "?" : "&") + percent_encode(name) + "=" + percent_encode(value);
      }
    }
    // A template left unfilled (no parameter declared for it) still gets the placeholder.
    for (size_t open; (open = path.find('{')) != std::string::npos;) {
      size_t close = path.find('}', open);
      if (close == std::string::npos) break;
      path.replace(open, close - open + 1, "1");
    }
    ApiOperation o;
    o.template_path = tmpl;
    o.path = base + (path.empty() || path[0] != '/' ? "/" : "") + path + query;
    if (op.contains("operationId")) o.operation_id = scalar_text(op["operationId"]);
    out.push_back(std::move(o));
  }
  return out;
}

}  // namespace slimtrace::probe
