#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "slimtrace/probe/report.hpp"
#include "slimtrace/probe/spec.hpp"

using namespace slimtrace::probe;

TEST(ProbeSpec, HttpProbeFlag) {
  auto a = parse_http_probe("GET /health");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->method, "GET");
  EXPECT_EQ(a->path, "/health");
  EXPECT_FALSE(a->port.has_value());
  auto b = parse_http_probe("post :8080/api?x=1");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->method, "POST");
  EXPECT_EQ(b->port, 8080);
  EXPECT_EQ(b->path, "/api?x=1");
  auto c = parse_http_probe("/only-path");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->method, "GET");
  auto d = parse_http_probe("HEAD :9000");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->path, "/");
  for (const char* bad : {"GET", "GET health", "G3T /x", "GET :0/x", "GET :99999/", "GET /a b", ""})
    EXPECT_FALSE(parse_http_probe(bad).ok()) << bad;
}

TEST(ProbeSpec, ProbeFile) {
  auto dir = std::filesystem::temp_directory_path() / ("probe-spec-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "body.json") << R"({"k":1})";
  auto specs = parse_probe_file_text(R"([
      {"path": "/"},
      {"method": "post", "path": "/items", "port": 8080, "headers": {"Content-Type": "application/json"},
       "body_file": "body.json", "expect_status": [200, 201]},
      {"method": "PUT", "path": "/x", "headers": ["X-A: 1"], "body": {"a": [1]}, "expect_status": 204}
    ])",
                                     dir / "probes.json");
  ASSERT_TRUE(specs.ok()) << specs.error().message;
  ASSERT_EQ(specs->size(), 3u);
  EXPECT_EQ((*specs)[0].method, "GET");
  EXPECT_EQ((*specs)[1].method, "POST");
  EXPECT_EQ((*specs)[1].port, 8080);
  EXPECT_EQ((*specs)[1].headers, std::vector<std::string>{"Content-Type: application/json"});
  EXPECT_EQ((*specs)[1].body, R"({"k":1})");
  EXPECT_EQ((*specs)[1].expect_status, (std::vector<int>{200, 201}));
  EXPECT_EQ((*specs)[2].body, R"({"a":[1]})");
  EXPECT_EQ((*specs)[2].expect_status, std::vector<int>{204});
  std::filesystem::remove_all(dir);
}

TEST(ProbeSpec, ProbeFileErrorsNameTheEntryAndField) {
  auto err = [](const char* text) {
    auto r = parse_probe_file_text(text, "p.json");
    EXPECT_FALSE(r.ok()) << text;
    return r.ok() ? std::string() : r.error().message;
  };
  EXPECT_EQ(err("{"), "probe file 'p.json': not valid JSON");
  EXPECT_EQ(err("{}"), "probe file 'p.json': expected a JSON array of probes");
  EXPECT_EQ(err(R"([{"path":"/"}, {"method":"GET"}])"),
            "probe file 'p.json': probe 2: 'path' (a string) is required");
  EXPECT_EQ(err(R"([{"path":"x"}])"),
            "probe file 'p.json': probe 1: 'path' must start with '/' and contain no spaces");
  EXPECT_EQ(err(R"([{"path":"/","port":70000}])"),
            "probe file 'p.json': probe 1: 'port' must be a number 1-65535");
  EXPECT_EQ(err(R"([{"path":"/","expect":200}])"), "probe file 'p.json': probe 1: unknown field 'expect'");
  EXPECT_EQ(
      err(R"([{"path":"/","expect_status":"200"}])"),
      "probe file 'p.json': probe 1: 'expect_status' must be an HTTP status (100-599) or an array of them");
  EXPECT_EQ(err(R"([{"path":"/","body":"a","body_file":"b"}])"),
            "probe file 'p.json': probe 1: give 'body' or 'body_file', not both");
  EXPECT_NE(err(R"([{"path":"/","body_file":"/nonexistent/b"}])").find("cannot read body_file"),
            std::string::npos);
  EXPECT_FALSE(load_probe_file("/nonexistent/probes.json").ok());
}

TEST(ProbeSpec, Ports) {
  EXPECT_EQ(parse_port("80").value(), 80);
  EXPECT_EQ(parse_port("8080/tcp").value(), 8080);
  EXPECT_EQ(parse_port("53/TCP").value(), 53);
  EXPECT_FALSE(parse_port("53/udp").ok());
  EXPECT_FALSE(parse_port("http").ok());
  EXPECT_FALSE(parse_port("0").ok());
}

TEST(ProbeSpec, ContinueAfter) {
  EXPECT_EQ(parse_continue_after("probe")->mode, ContinueMode::Probe);
  EXPECT_EQ(parse_continue_after("exit")->mode, ContinueMode::Exit);
  EXPECT_EQ(parse_continue_after("signal")->mode, ContinueMode::Signal);
  EXPECT_EQ(parse_continue_after("enter")->mode, ContinueMode::Enter);
  auto t = parse_continue_after("timeout:2.5");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->mode, ContinueMode::Timeout);
  EXPECT_DOUBLE_EQ(t->timeout_seconds, 2.5);
  EXPECT_EQ(to_string(*t), "timeout:2.5");
  for (const char* bad : {"timeout", "timeout:", "timeout:-1", "timeout:x", "never", "", "Probe"})
    EXPECT_FALSE(parse_continue_after(bad).ok()) << bad;
}

TEST(ProbeReport, JsonRoundTrip) {
  ProbeReport r;
  r.expected_ports = {80};
  r.ports = {80, 6379};
  r.continue_after = "probe";
  r.ready = true;
  r.ready_seconds = 1.5;
  r.container_exit_code = 3;
  r.container_stdout_digest = "sha256:ab";
  r.warnings = {"w"};
  ProbeResult h;
  h.kind = "http";
  h.origin = "user";
  h.target = "http://127.0.0.1:80/x";
  h.method = "POST";
  h.port = 80;
  h.path = "/x";
  h.request_headers = {"A: b"};
  h.request_body = "{}";
  h.status = 201;
  h.latency_ms = 2.5;
  h.body_digest = "sha256:cd";
  h.stable = false;
  h.expected = "status 201";
  h.met = true;
  ProbeResult e;
  e.kind = "exec";
  e.target = "ls";
  e.exit_code = 1;
  e.stdout_digest = "sha256:ef";
  e.expected = "exit 0";
  e.error = "exit 1: no";
  r.results = {h, e};
  auto j = to_json(r);
  EXPECT_EQ(j["schema"], "slimtrace.probes/v1");
  EXPECT_EQ(j["schema_version"], 1);
  auto back = probe_report_from_json(nlohmann::json::parse(j.dump()));
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(to_json(*back), j);
  EXPECT_EQ(back->failed(), 1u);
  EXPECT_EQ(summary(*back),
            "2 probes (1 exec, 1 http), 1 met, 1 failed, ports 80,6379, continue-after probe");

  j["schema_version"] = 2;
  EXPECT_FALSE(probe_report_from_json(j).ok());
  j["schema"] = "other";
  EXPECT_FALSE(probe_report_from_json(j).ok());
  EXPECT_FALSE(probe_report_from_json(nlohmann::json::parse(R"({"schema":"slimtrace.probes/v1"})")).ok());
}
