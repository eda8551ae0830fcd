// Runs busybox images the test builds under a real OCI runtime (root needed) and checks what a user
// of `docker run` would: exit code, logs, user, env, working dir, volumes, network, teardown.
// The tracer is a stub here: these tests are about running; tracing has its own tests.
#include "slimtrace/tracer/runner.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>
#include <regex>
#include <sstream>

#include "image_builder.hpp"
#include "runner_internal.hpp"
#include "runtime.hpp"
#include "slimtrace/image/file_tree.hpp"
#include "slimtrace/image/reference.hpp"
#include "slimtrace/image/source.hpp"

namespace slimtrace::tracer {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;

class StubTracer final : public TracerBackend {
 public:
  Status follow(int host_pid) override {
    followed = host_pid;
    return {};
  }
  Status poll(int timeout_ms) override {
    if (timeout_ms > 0) ::usleep(static_cast<useconds_t>(timeout_ms) * 1000);
    return {};
  }
  Status finish(Trace& out) override {
    out.limitations.push_back("stub tracer: nothing recorded");
    return {};
  }
  int followed = 0;
};

TracerFactory stub_factory() {
  return [](TracerKind, const TracerOptions&) -> Result<std::unique_ptr<TracerBackend>> {
    return std::unique_ptr<TracerBackend>(std::make_unique<StubTracer>());
  };
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

testing::ImageSpec busybox_image(nlohmann::json config) {
  using namespace slimtrace::testing;
  LayerSpec base;
  base.entries.push_back(dir("bin/"));
  base.entries.push_back(file("bin/busybox", slurp("/bin/busybox"), 0755));
  for (const char* applet : {"sh", "cat", "ls", "id", "pwd", "env", "ip", "echo", "sleep", "touch",
                             "hostname", "stat", "true", "grep", "wc"})
    base.entries.push_back(symlink(std::string("bin/") + applet, "busybox"));
  base.entries.push_back(dir("etc/"));
  base.entries.push_back(
      file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n"));
  base.entries.push_back(file("etc/group", "root:x:0:\nstaff:x:50:app\napp:x:1000:\n"));
  base.entries.push_back(dir("tmp/", 01777));
  base.entries.push_back(dir("root/", 0700));
  auto home = dir("home/app/");
  home.uid = home.gid = 1000;
  base.entries.push_back(dir("home/"));
  base.entries.push_back(home);
  auto srv = dir("srv/");
  srv.uid = srv.gid = 1000;
  base.entries.push_back(srv);
  auto data = dir("data/");
  data.uid = data.gid = 1000;
  base.entries.push_back(data);
  ImageSpec spec;
  spec.layers.push_back(base);
  spec.container_config = std::move(config);
  return spec;
}

class RunnerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (runs containers under an OCI runtime)";
    auto rt = find_runtime("", work_.path() / "rt");
    if (!rt) GTEST_SKIP() << rt.error().message;
  }

  // Opens an image built from `config` and keeps it alive for the test.
  void open(nlohmann::json config) {
    auto layout = work_.path() / ("image-" + std::to_string(++images_));
    testing::write_oci_layout(layout, busybox_image(std::move(config)));
    auto ref = image::parse_reference("oci:" + layout.string());
    ASSERT_TRUE(ref) << ref.error().message;
    auto img = image::open_image(*ref, {image::Platform{}, work_.path() / "open"});
    ASSERT_TRUE(img) << img.error().message;
    image_ = std::move(img).value();
    auto tree = image::flatten(image_);
    ASSERT_TRUE(tree) << tree.error().message;
    tree_ = std::move(tree).value();
  }

  RunSpec spec(std::vector<std::string> cmd) {
    RunSpec s;
    s.image = &image_;
    s.tree = &tree_;
    s.cmd = std::move(cmd);
    s.work_dir = work_.path() / ("run-" + std::to_string(++runs_));
    s.stop_grace_seconds = 2;
    return s;
  }

  // What must be gone after any run: mounts under the work dir, the netns file, the bundle.
  void expect_clean(const RunSpec& s) {
    EXPECT_EQ(slurp("/proc/self/mountinfo").find(work_.path().string()), std::string::npos);
    EXPECT_FALSE(fs::exists(s.work_dir / "netns"));
    EXPECT_FALSE(fs::exists(s.work_dir / "bundle"));
  }

  TempDir work_;
  image::SourceImage image_;
  image::FileTree tree_;
  int runs_ = 0;
  int images_ = 0;
};

TEST_F(RunnerTest, ExitCodeAndLogsOfAContainerThatEndsByItself) {
  open({{"Cmd", {"/bin/sh"}}});
  auto s = spec({"sh", "-c", "cat /etc/hostname; ls /nonexistent; exit 3"});
  auto r = run_traced_with(s, {}, stub_factory());
  ASSERT_TRUE(r) << r.error().message;
  ASSERT_TRUE(r->trace.exit_code.has_value());
  EXPECT_EQ(*r->trace.exit_code, 3);
  EXPECT_FALSE(r->trace.stopped_by_slimtrace);
  EXPECT_EQ(r->trace.command,
            (std::vector<std::string>{"sh", "-c", "cat /etc/hostname; ls /nonexistent; exit 3"}));
  EXPECT_EQ(r->trace.tracer, "ebpf");
  EXPECT_FALSE(r->trace.runtime.empty());
  EXPECT_TRUE(std::regex_match(slurp(r->stdout_log), std::regex("[0-9a-f]{12}\n"))) << slurp(r->stdout_log);
  EXPECT_NE(slurp(r->stderr_log).find("/nonexistent"), std::string::npos) << slurp(r->stderr_log);
  expect_clean(s);
}

TEST_F(RunnerTest, UserEnvAndWorkingDirFromTheImageAndFlags) {
  open({{"Cmd", {"/bin/sh"}}, {"User", "app"}, {"WorkingDir", "/srv"}, {"Env", {"A=from-image", "B=image"}}});
  auto s = spec({"sh", "-c", "id; pwd; env"});
  s.env = {"B=flag", "C=flag"};
  auto r = run_traced_with(s, {}, stub_factory());
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->trace.exit_code, 0);
  auto out = slurp(r->stdout_log);
  EXPECT_NE(out.find("uid=1000(app) gid=1000(app)"), std::string::npos) << out;
  EXPECT_NE(out.find("50(staff)"), std::string::npos) << out;
  EXPECT_NE(out.find("\n/srv\n"), std::string::npos) << out;
  EXPECT_NE(out.find("A=from-image\n"), std::string::npos) << out;
  EXPECT_NE(out.find("B=flag\n"), std::string::npos) << out;
  EXPECT_EQ(out.find("B=image"), std::string::npos) << out;
  EXPECT_NE(out.find("C=flag\n"), std::string::npos) << out;
  EXPECT_NE(out.find("HOME=/home/app\n"), std::string::npos) << out;
  EXPECT_NE(out.find("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"),
            std::string::npos)
      << out;
  expect_clean(s);
}

TEST_F(RunnerTest, EntrypointOverrideAndHostMount) {
  open({{"Entrypoint", {"/bin/false-entrypoint"}}, {"Cmd", {"x"}}});
  TempDir host;
  testing::write_file(host / "hello.txt", "from the host\n");
  auto s = spec({"/mnt/hello.txt"});
  s.entrypoint = std::vector<std::string>{"cat"};
  auto m = HostMount::parse(host.path().string() + ":/mnt:ro");
  ASSERT_TRUE(m) << m.error().message;
  s.mounts.push_back(*m);
  auto r = run_traced_with(s, {}, stub_factory());
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->trace.exit_code, 0) << slurp(r->stderr_log);
  EXPECT_EQ(slurp(r->stdout_log), "from the host\n");
  EXPECT_EQ(r->trace.command, (std::vector<std::string>{"cat", "/mnt/hello.txt"}));
}

TEST_F(RunnerTest, VolumeIsAnEmptyWritableDirectory) {
  open({{"Cmd", {"/bin/sh"}}, {"User", "app"}, {"Volumes", {{"/data", nlohmann::json::object()}}}});
  auto s = spec({"sh", "-c", "ls -A /data; touch /data/written && echo wrote; stat -c %u /data"});
  auto r = run_traced_with(s, {}, stub_factory());
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->trace.exit_code, 0) << slurp(r->stderr_log);
  EXPECT_EQ(slurp(r->stdout_log), "wrote\n1000\n");
  expect_clean(s);
}

TEST_F(RunnerTest, NetworkNamespaceHasOnlyLoopbackUp) {
  open({{"Cmd", {"/bin/sh"}}});
  auto s = spec({"ip", "-o", "link"});
  auto r = run_traced_with(s, {}, stub_factory());
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->trace.exit_code, 0) << slurp(r->stderr_log);
  auto out = slurp(r->stdout_log);
  std::istringstream lines(out);
  std::string line;
  std::vector<std::string> links;
  while (std::getline(lines, line))
    if (!line.empty()) links.push_back(line);
  ASSERT_EQ(links.size(), 1u) << out;
  EXPECT_NE(links[0].find(": lo:"), std::string::npos) << out;
  EXPECT_NE(links[0].find("UP"), std::string::npos) << out;
}

TEST_F(RunnerTest, StopsAfterDurationWithSigkillWhenTheSignalIsIgnored) {
  // PID 1 ignores SIGTERM it has no handler for: the grace period ends with SIGKILL.
  open({{"Cmd", {"sleep", "1000"}}});
  auto s = spec({});
  s.duration = 0.5;
  s.stop_grace_seconds = 1;
  auto r = run_traced_with(s, {}, stub_factory());
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_TRUE(r->trace.stopped_by_slimtrace);
  EXPECT_FALSE(r->trace.exit_code.has_value());
  EXPECT_EQ(r->trace.command, (std::vector<std::string>{"sleep", "1000"}));
  expect_clean(s);
}

TEST_F(RunnerTest, StopSignalFromTheImage) {
  // A shell that traps the image's StopSignal exits cleanly with a message.
  open(
      {{"Cmd", {"sh", "-c", "trap 'echo got USR1; exit 0' USR1; echo ready; while true; do sleep 0.1; done"}},
       {"StopSignal", "SIGUSR1"}});
  auto s = spec({});
  s.duration = 1;
  auto r = run_traced_with(s, {}, stub_factory());
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_TRUE(r->trace.stopped_by_slimtrace);
  EXPECT_EQ(slurp(r->stdout_log), "ready\ngot USR1\n");
}

TEST_F(RunnerTest, WhileRunningSeesTheContainerAndEndsTheRun) {
  open({{"Cmd", {"sleep", "1000"}}});
  auto s = spec({});
  s.stop_grace_seconds = 0.5;
  RunningContainer seen;
  bool netns_existed = false;
  auto r = run_traced_with(
      s,
      [&](const RunningContainer& c) -> Status {
        seen = c;
        netns_existed = fs::exists(c.netns);
        return {};
      },
      stub_factory());
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_TRUE(r->trace.stopped_by_slimtrace);
  EXPECT_GT(seen.pid, 0);
  EXPECT_TRUE(netns_existed);
  EXPECT_FALSE(seen.id.empty());
  expect_clean(s);

  // An error from while_running is the run's error, and teardown still happens.
  auto s2 = spec({});
  s2.stop_grace_seconds = 0.5;
  auto failed = run_traced_with(
      s2, [](const RunningContainer&) -> Status { return Error{"probe failed: nope"}; }, stub_factory());
  ASSERT_FALSE(failed);
  EXPECT_EQ(failed.error().message, "probe failed: nope");
  expect_clean(s2);
}

TEST_F(RunnerTest, ErrorsTearDownToo) {
  open({{"Cmd", {"/bin/sh"}}, {"User", "ghost"}});
  auto s = spec({});
  auto r = run_traced_with(s, {}, stub_factory());
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("'ghost'"), std::string::npos) << r.error().message;
  expect_clean(s);

  open({{"Cmd", {"/bin/sh"}}});
  auto s2 = spec({"/no/such/binary"});
  auto r2 = run_traced_with(s2, {}, stub_factory());
  ASSERT_FALSE(r2);
  EXPECT_NE(r2.error().message.find("/no/such/binary"), std::string::npos) << r2.error().message;
  expect_clean(s2);

  auto s3 = spec({"true"});
  auto r3 =
      run_traced_with(s3, {}, [](TracerKind, const TracerOptions&) -> Result<std::unique_ptr<TracerBackend>> {
        return Error{"cannot load BPF programs: Operation not permitted"};
      });
  ASSERT_FALSE(r3);
  EXPECT_EQ(classify_run_error(r3.error()), RunFailure::TracerUnavailable);
  expect_clean(s3);
}

TEST_F(RunnerTest, FanotifyRunsOnATmpfsThatIsUnmountedAfterwards) {
  open({{"Cmd", {"/bin/sh"}}});
  auto s = spec({"sh", "-c", "cat /etc/hostname"});
  s.tracer = TracerKind::Fanotify;
  fs::path seen_rootfs;
  auto r = run_traced_with(
      s, {}, [&](TracerKind kind, const TracerOptions& o) -> Result<std::unique_ptr<TracerBackend>> {
        EXPECT_EQ(kind, TracerKind::Fanotify);
        seen_rootfs = o.rootfs;
        return std::unique_ptr<TracerBackend>(std::make_unique<StubTracer>());
      });
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->trace.tracer, "fanotify");
  EXPECT_EQ(r->trace.exit_code, 0);
  EXPECT_EQ(seen_rootfs, s.work_dir / "bundle/rootfs-mnt/rootfs");
  expect_clean(s);
}

TEST_F(RunnerTest, Crun) {
  auto rt = find_runtime("crun", work_.path() / "rt");
  if (!rt) GTEST_SKIP() << rt.error().message;
  open({{"Cmd", {"/bin/sh"}}});
  auto s = spec({"sh", "-c", "echo hi; exit 4"});
  s.runtime = "crun";
  auto r = run_traced_with(s, {}, stub_factory());
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->trace.exit_code, 4);
  EXPECT_EQ(slurp(r->stdout_log), "hi\n");
  expect_clean(s);
}

TEST(FindRuntime, NamesTheMissingRuntime) {
  TempDir t;
  auto r = find_runtime("slimtrace-no-such-runtime", t.path());
  ASSERT_FALSE(r);
  EXPECT_EQ(classify_run_error(r.error()), RunFailure::RuntimeUnavailable);
  EXPECT_NE(r.error().message.find("slimtrace-no-such-runtime"), std::string::npos);
  EXPECT_NE(r.error().message.find("runc or crun"), std::string::npos);
}

}  // namespace
}  // namespace slimtrace::tracer
