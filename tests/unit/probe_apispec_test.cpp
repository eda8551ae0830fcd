#include <gtest/gtest.h>

#include "slimtrace/probe/apispec.hpp"

using namespace slimtrace::probe;
using nlohmann::json;

namespace {
std::vector<std::string> paths_of(const json& spec) {
  auto ops = api_get_operations(spec);
  EXPECT_TRUE(ops.ok()) << (ops ? "" : ops.error().message);
  std::vector<std::string> out;
  if (ops)
    for (const auto& o : *ops) out.push_back(o.path);
  return out;
}
}  // namespace

TEST(ProbeApiSpec, OpenApi3GetOperationsWithExamples) {
  json spec = json::parse(R"({
    "openapi": "3.0.3",
    "servers": [{"url": "http://api.example.com/v1/"}],
    "components": {"parameters": {"Id": {"name": "id", "in": "path", "required": true,
                                          "schema": {"type": "integer", "example": 42}}}},
    "paths": {
      "/pets": {"get": {"operationId": "list",
                        "parameters": [{"name": "limit", "in": "query", "required": true, "example": 5},
                                       {"name": "opt", "in": "query", "schema": {"type": "string"}}]},
                "post": {}},
      "/pets/{id}": {"get": {"parameters": [{"$ref": "#/components/parameters/Id"}]}},
      "/owners/{name}/pets/{kind}": {
        "parameters": [{"name": "name", "in": "path", "examples": {"a": {"value": "ann b"}}}],
        "get": {"parameters": [{"name": "kind", "in": "path", "schema": {"enum": ["cat", "dog"]}}]}},
      "/things/{x}": {"get": {}},
      "/health": {"get": {}},
      "/only-post": {"post": {}}
    }})");
  EXPECT_EQ(paths_of(spec), (std::vector<std::string>{"/v1/health", "/v1/owners/ann%20b/pets/cat",
                                                      "/v1/pets?limit=5", "/v1/pets/42", "/v1/things/1"}));
  auto ops = api_get_operations(spec);
  ASSERT_TRUE(ops.ok());
  EXPECT_EQ((*ops)[2].operation_id, "list");
  EXPECT_EQ((*ops)[3].template_path, "/pets/{id}");
}

TEST(ProbeApiSpec, Swagger2BasePathAndXExample) {
  json spec = json::parse(R"({
    "swagger": "2.0", "basePath": "/api",
    "parameters": {"User": {"name": "user", "in": "path", "type": "string", "x-example": "bob"}},
    "paths": {
      "/users/{user}": {"get": {"parameters": [{"$ref": "#/parameters/User"}]}},
      "/items/{n}": {"get": {"parameters": [{"name": "n", "in": "path", "type": "integer", "default": 7}]}},
      "/": {"get": {}}
    }})");
  EXPECT_EQ(paths_of(spec), (std::vector<std::string>{"/api/", "/api/items/7", "/api/users/bob"}));
}

TEST(ProbeApiSpec, RejectsWhatIsNotASpec) {
  EXPECT_FALSE(api_get_operations(json::parse(R"({"paths": {}})")).ok());
  EXPECT_FALSE(api_get_operations(json::parse(R"({"openapi": "3.1.0"})")).ok());
  EXPECT_FALSE(api_get_operations(json::parse("[]")).ok());
  auto yaml = parse_api_spec("openapi: 3.0.0\npaths: {}\n", "spec.yaml");
  ASSERT_FALSE(yaml.ok());
  EXPECT_NE(yaml.error().message.find("only JSON"), std::string::npos) << yaml.error().message;
  EXPECT_TRUE(parse_api_spec(R"({"openapi":"3.0.0","paths":{}})", "x").ok());
}
