// The Trace's JSON form is what later stages and users read: it must round-trip exactly.
#include <gtest/gtest.h>

#include "slimtrace/tracer/trace.hpp"

using namespace slimtrace::tracer;

TEST(TraceModel, AccessesMergeHitsAndFailures) {
  Trace t;
  t.add_access("/usr/lib/python3.11/lib-dynload/_foo.so", kOpOpen, 2);
  t.add_access("/etc/passwd", kOpOpen, 0);
  t.add_access("/etc/passwd", kOpStat, 0);
  t.add_access("/etc/passwd", kOpAccess, 13);
  const auto& miss = t.files.at("/usr/lib/python3.11/lib-dynload/_foo.so");
  EXPECT_FALSE(miss.found);
  EXPECT_EQ(miss.error, 2);
  EXPECT_EQ(miss.failed_ops, static_cast<uint32_t>(kOpOpen));
  const auto& hit = t.files.at("/etc/passwd");
  EXPECT_TRUE(hit.found);
  EXPECT_EQ(hit.ops, static_cast<uint32_t>(kOpOpen | kOpStat));
  EXPECT_EQ(hit.count, 3u);
  EXPECT_EQ(hit.error, 13);
}

TEST(TraceModel, JsonRoundTrip) {
  Trace t;
  t.image = "oci:/x:latest";
  t.tracer = "ebpf";
  t.runtime = "/usr/sbin/runc";
  t.command = {"/bin/sh", "-c", "true"};
  t.add_access("/bin/sh", kOpExec, 0);
  t.add_access("/missing", kOpStat | kOpOpen, 2);
  t.execs.push_back(ExecRecord{10, 9, "/bin/sh", {"sh", "-c", "true"}, 0});
  t.processes.push_back(ProcessRecord{10, 9, "sh", 0});
  t.syscalls_recorded = true;
  t.syscalls = {"execve", "exit_group", "read"};
  t.dropped_events = 3;
  t.exit_code = 0;
  auto j = to_json(t);
  EXPECT_EQ(j["schema"], "slimtrace.trace/v1");
  auto back = trace_from_json(nlohmann::json::parse(j.dump()));
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(to_json(*back), j);
  EXPECT_EQ(back->files.at("/missing").error, 2);
  EXPECT_EQ(back->execs[0].argv.size(), 3u);
}

TEST(TraceModel, RejectsOtherVersionsAndBadRecords) {
  auto r = trace_from_json(nlohmann::json{{"schema_version", 99}});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("schema_version 99"), std::string::npos);
  r = trace_from_json(nlohmann::json{{"schema_version", 1}, {"files", {{{"path", "relative"}}}}});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("not absolute"), std::string::npos);
  r = trace_from_json(nlohmann::json{{"schema_version", 1}, {"events", "many"}});
  ASSERT_FALSE(r.ok());
}
