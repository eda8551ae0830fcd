// The GET operations of an OpenAPI 3 or Swagger 2 document (JSON), as concrete paths to request.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "slimtrace/result.hpp"

namespace slimtrace::probe {

struct ApiOperation {
  std::string path;           // base path + template with parameters filled, plus required query parameters
  std::string template_path;  // as written in the spec, e.g. "/pets/{id}"
  std::string operation_id;
};

// Every GET operation, sorted by path template. Path parameters take the parameter's `example`, the first
// of `examples`, the schema's `example`, `default` or first `enum` value (Swagger 2: `x-example`,
// `default`, `enum`), else the placeholder "1". Required query parameters are added the same way.
// The base path comes from Swagger 2 `basePath` or the path of OpenAPI 3 `servers[0].url`.
Result<std::vector<ApiOperation>> api_get_operations(const nlohmann::json& spec);

// Parses a spec document; only JSON is accepted (a YAML document gets an error that says so).
Result<nlohmann::json> parse_api_spec(std::string_view text, const std::string& name);

}  // namespace slimtrace::probe
