// OCI config generation: what `docker run` would do with an image's config and the user's flags.
// Built once unit_tests sees tracer/src (the runner's internal headers) and links slimtrace_tracer.
#if __has_include("bundle.hpp")

#include "bundle.hpp"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>

#include "image_builder.hpp"

namespace slimtrace::tracer {
namespace {

const char* kPasswd =
    "root:x:0:0:root:/root:/bin/sh\n"
    "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
    "# a comment\n"
    "app:x:1000:1000:App:/home/app:/bin/sh\n"
    "web:x:33:33:www:/var/www:/bin/false\n";
const char* kGroup =
    "root:x:0:\n"
    "daemon:x:1:\n"
    "staff:x:50:app,web\n"
    "app:x:1000:\n"
    "audio:x:29:app\n"
    "www-data:x:33:\n";

TEST(ResolveUser, EmptyIsRootWithItsHome) {
  auto u = resolve_user("", kPasswd, kGroup);
  ASSERT_TRUE(u) << u.error().message;
  EXPECT_EQ(u->uid, 0u);
  EXPECT_EQ(u->gid, 0u);
  EXPECT_EQ(u->home, "/root");
}

TEST(ResolveUser, NameGivesPasswdIdsAndGroupMemberships) {
  auto u = resolve_user("app", kPasswd, kGroup);
  ASSERT_TRUE(u) << u.error().message;
  EXPECT_EQ(u->uid, 1000u);
  EXPECT_EQ(u->gid, 1000u);
  EXPECT_EQ(u->home, "/home/app");
  EXPECT_EQ(u->additional_gids, (std::vector<uint32_t>{50, 29}));
}

TEST(ResolveUser, NumericUidTakesGidFromPasswdWhenListed) {
  auto u = resolve_user("33", kPasswd, kGroup);
  ASSERT_TRUE(u) << u.error().message;
  EXPECT_EQ(u->uid, 33u);
  EXPECT_EQ(u->gid, 33u);
  EXPECT_EQ(u->home, "/var/www");
}

TEST(ResolveUser, NumericUidNotInPasswdGetsGidZero) {
  auto u = resolve_user("4242", kPasswd, kGroup);
  ASSERT_TRUE(u) << u.error().message;
  EXPECT_EQ(u->uid, 4242u);
  EXPECT_EQ(u->gid, 0u);
  EXPECT_EQ(u->home, "/");
  EXPECT_TRUE(u->additional_gids.empty());
}

TEST(ResolveUser, ExplicitGroupByNameOrNumber) {
  auto a = resolve_user("app:staff", kPasswd, kGroup);
  ASSERT_TRUE(a) << a.error().message;
  EXPECT_EQ(a->uid, 1000u);
  EXPECT_EQ(a->gid, 50u);
  EXPECT_TRUE(a->additional_gids.empty());
  auto b = resolve_user("1000:77", kPasswd, kGroup);
  ASSERT_TRUE(b) << b.error().message;
  EXPECT_EQ(b->uid, 1000u);
  EXPECT_EQ(b->gid, 77u);
  auto c = resolve_user("5000:www-data", "", kGroup);
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->uid, 5000u);
  EXPECT_EQ(c->gid, 33u);
}

TEST(ResolveUser, UnknownNamesAreClearErrors) {
  auto u = resolve_user("nobody", kPasswd, kGroup);
  ASSERT_FALSE(u);
  EXPECT_NE(u.error().message.find("'nobody'"), std::string::npos);
  EXPECT_NE(u.error().message.find("/etc/passwd"), std::string::npos);
  auto g = resolve_user("app:wheel", kPasswd, kGroup);
  ASSERT_FALSE(g);
  EXPECT_NE(g.error().message.find("'wheel'"), std::string::npos);
  EXPECT_NE(g.error().message.find("/etc/group"), std::string::npos);
  EXPECT_FALSE(resolve_user("app", "", ""));  // no /etc/passwd in the image
}

TEST(EffectiveArgs, DockerOverrideRules) {
  ImageRunConfig c;
  c.entrypoint = {"/entry.sh"};
  c.cmd = {"serve", "--port", "80"};
  EXPECT_EQ(effective_args(c, std::nullopt, {}),
            (std::vector<std::string>{"/entry.sh", "serve", "--port", "80"}));
  EXPECT_EQ(effective_args(c, std::nullopt, {"sh"}), (std::vector<std::string>{"/entry.sh", "sh"}));
  // --entrypoint clears the image's Cmd.
  EXPECT_EQ(effective_args(c, std::vector<std::string>{"/bin/ls"}, {}),
            (std::vector<std::string>{"/bin/ls"}));
  EXPECT_EQ(effective_args(c, std::vector<std::string>{"/bin/ls"}, {"-l", "/"}),
            (std::vector<std::string>{"/bin/ls", "-l", "/"}));
  ImageRunConfig only_cmd;
  only_cmd.cmd = {"/bin/sh"};
  EXPECT_EQ(effective_args(only_cmd, std::nullopt, {"id"}), (std::vector<std::string>{"id"}));
}

TEST(EffectiveEnv, OverridesByKeyAndDefaults) {
  ::setenv("SLIMTRACE_BUNDLE_TEST_VAR", "from-host", 1);
  ::unsetenv("SLIMTRACE_BUNDLE_TEST_UNSET");
  auto env = effective_env({"PATH=/opt/bin", "A=1", "B=2"},
                           {"B=override", "C=3", "SLIMTRACE_BUNDLE_TEST_VAR", "SLIMTRACE_BUNDLE_TEST_UNSET"},
                           "abc123", "/home/app");
  EXPECT_EQ(env, (std::vector<std::string>{"HOSTNAME=abc123", "PATH=/opt/bin", "A=1", "B=override", "C=3",
                                           "SLIMTRACE_BUNDLE_TEST_VAR=from-host", "HOME=/home/app"}));
  auto defaults = effective_env({"HOME=/data"}, {}, "h", "/root");
  EXPECT_EQ(defaults,
            (std::vector<std::string>{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                                      "HOSTNAME=h", "HOME=/data"}));
}

TEST(Capabilities, DockerDefaultsMinusBoundingSet) {
  EXPECT_EQ(docker_default_capabilities().size(), 14u);
  EXPECT_EQ(capability_number("CAP_NET_RAW"), 13);
  EXPECT_EQ(capability_number("SYS_RESOURCE"), 24);
  EXPECT_EQ(capability_number("CAP_NOPE"), -1);
  uint64_t all = ~uint64_t{0};
  EXPECT_EQ(limit_to_bounding_set(docker_default_capabilities(), all), docker_default_capabilities());
  uint64_t without = all & ~(uint64_t{1} << 13) & ~(uint64_t{1} << 27);  // no NET_RAW, no MKNOD
  auto caps = limit_to_bounding_set(docker_default_capabilities(), without);
  EXPECT_EQ(caps.size(), 12u);
  EXPECT_EQ(std::count(caps.begin(), caps.end(), "CAP_NET_RAW"), 0);
  EXPECT_EQ(std::count(caps.begin(), caps.end(), "CAP_MKNOD"), 0);
  EXPECT_EQ(std::count(caps.begin(), caps.end(), "CAP_CHOWN"), 1);
  auto bnd = read_bounding_set();
  ASSERT_TRUE(bnd) << bnd.error().message;
}

TEST(ImageRunConfig, ReadsTheImageConfig) {
  nlohmann::json j = {
      {"config",
       {{"Entrypoint", {"/e"}},
        {"Cmd", {"a", "b"}},
        {"Env", {"X=1"}},
        {"WorkingDir", "/srv/"},
        {"User", "app"},
        {"StopSignal", "SIGQUIT"},
        {"Volumes", {{"/data/", nlohmann::json::object()}, {"/cache", nlohmann::json::object()}}}}}};
  auto c = ImageRunConfig::from_image_config(j);
  EXPECT_EQ(c.entrypoint, (std::vector<std::string>{"/e"}));
  EXPECT_EQ(c.cmd, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(c.env, (std::vector<std::string>{"X=1"}));
  EXPECT_EQ(c.working_dir, "/srv/");
  EXPECT_EQ(c.user, "app");
  EXPECT_EQ(c.stop_signal, "SIGQUIT");
  EXPECT_EQ(c.volumes, (std::vector<std::string>{"/cache", "/data"}));
  EXPECT_TRUE(ImageRunConfig::from_image_config(nlohmann::json::object()).cmd.empty());
}

BundleInputs sample_inputs() {
  BundleInputs in;
  in.image.entrypoint = {"/bin/sh", "-c"};
  in.image.cmd = {"echo hi"};
  in.image.env = {"A=1"};
  in.image.user = "app";
  in.image.working_dir = "/srv";
  in.passwd = kPasswd;
  in.group = kGroup;
  in.hostname = "0123456789ab";
  in.rootfs = "/work/bundle/rootfs";
  in.netns = "/work/netns";
  in.hosts_file = "/work/bundle/etc/hosts";
  in.hostname_file = "/work/bundle/etc/hostname";
  in.resolv_file = "/work/bundle/etc/resolv.conf";
  in.volumes = {{"/data", "/work/bundle/volumes/0"}};
  in.mounts = {{"/host/src", "/src", true}};
  in.bounding_set = ~(uint64_t{1} << 29);  // no AUDIT_WRITE on this "host"
  in.nofile_limit = 20000;
  return in;
}

const nlohmann::json* find_mount(const nlohmann::json& config, const std::string& dest) {
  for (const auto& m : config["mounts"])
    if (m["destination"] == dest) return &m;
  return nullptr;
}

TEST(MakeOciConfig, RunsTheImageLikeDockerRun) {
  auto r = make_oci_config(sample_inputs());
  ASSERT_TRUE(r) << r.error().message;
  const auto& c = r->config;
  const auto& p = c["process"];
  EXPECT_EQ(p["args"], nlohmann::json({"/bin/sh", "-c", "echo hi"}));
  EXPECT_EQ(p["cwd"], "/srv");
  EXPECT_EQ(p["user"]["uid"], 1000);
  EXPECT_EQ(p["user"]["gid"], 1000);
  EXPECT_EQ(p["user"]["additionalGids"], nlohmann::json({50, 29}));
  EXPECT_EQ(p["terminal"], false);
  EXPECT_EQ(p["noNewPrivileges"], false);
  EXPECT_EQ(p["rlimits"][0]["type"], "RLIMIT_NOFILE");
  EXPECT_EQ(p["rlimits"][0]["hard"], 20000);
  auto caps = p["capabilities"]["bounding"].get<std::vector<std::string>>();
  EXPECT_EQ(caps.size(), 13u);
  EXPECT_EQ(std::count(caps.begin(), caps.end(), "CAP_AUDIT_WRITE"), 0);
  EXPECT_EQ(p["capabilities"]["effective"], p["capabilities"]["bounding"]);
  EXPECT_NE(std::find(p["env"].begin(), p["env"].end(), "HOME=/home/app"), p["env"].end());
  EXPECT_NE(std::find(p["env"].begin(), p["env"].end(), "HOSTNAME=0123456789ab"), p["env"].end());

  EXPECT_EQ(c["hostname"], "0123456789ab");
  EXPECT_EQ(c["root"]["path"], "/work/bundle/rootfs");
  std::vector<std::string> ns;
  for (const auto& n : c["linux"]["namespaces"]) {
    ns.push_back(n["type"]);
    if (n["type"] == "network") {
      EXPECT_EQ(n["path"], "/work/netns");
    }
  }
  EXPECT_EQ(ns, (std::vector<std::string>{"pid", "mount", "ipc", "uts", "cgroup", "network"}));
  EXPECT_EQ(c["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ALLOW");
  EXPECT_TRUE(c["linux"]["seccomp"]["syscalls"].empty());
  EXPECT_NE(std::find(c["linux"]["maskedPaths"].begin(), c["linux"]["maskedPaths"].end(), "/proc/kcore"),
            c["linux"]["maskedPaths"].end());

  for (const char* d : {"/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/sys/fs/cgroup"})
    EXPECT_NE(find_mount(c, d), nullptr) << d;
  auto* sys = find_mount(c, "/sys");
  ASSERT_NE(sys, nullptr);
  EXPECT_NE(std::find((*sys)["options"].begin(), (*sys)["options"].end(), "ro"), (*sys)["options"].end());
  auto* hosts = find_mount(c, "/etc/hosts");
  ASSERT_NE(hosts, nullptr);
  EXPECT_EQ((*hosts)["source"], "/work/bundle/etc/hosts");
  ASSERT_NE(find_mount(c, "/etc/resolv.conf"), nullptr);
  ASSERT_NE(find_mount(c, "/etc/hostname"), nullptr);
  auto* vol = find_mount(c, "/data");
  ASSERT_NE(vol, nullptr);
  EXPECT_EQ((*vol)["source"], "/work/bundle/volumes/0");
  auto* src = find_mount(c, "/src");
  ASSERT_NE(src, nullptr);
  EXPECT_EQ((*src)["type"], "bind");
  EXPECT_NE(std::find((*src)["options"].begin(), (*src)["options"].end(), "ro"), (*src)["options"].end());
}

TEST(MakeOciConfig, Errors) {
  auto in = sample_inputs();
  in.image.entrypoint.clear();
  in.image.cmd.clear();
  auto r = make_oci_config(in);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("no command"), std::string::npos);
  in = sample_inputs();
  in.image.user = "ghost";
  EXPECT_FALSE(make_oci_config(in));
  in = sample_inputs();
  in.image.working_dir.clear();
  auto d = make_oci_config(in);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->cwd, "/");
}

TEST(HostMount, Parse) {
  auto m = HostMount::parse("/tmp:/data:ro");
  ASSERT_TRUE(m) << m.error().message;
  EXPECT_EQ(m->source, "/tmp");
  EXPECT_EQ(m->destination, "/data");
  EXPECT_TRUE(m->read_only);
  auto rw = HostMount::parse("/tmp:/data");
  ASSERT_TRUE(rw);
  EXPECT_FALSE(rw->read_only);
  EXPECT_FALSE(HostMount::parse("/tmp"));
  EXPECT_FALSE(HostMount::parse("/tmp:relative"));
  EXPECT_FALSE(HostMount::parse("/tmp:/data:zz"));
  EXPECT_FALSE(HostMount::parse("/does/not/exist/slimtrace:/data"));
}

TEST(ReadFileInRoot, NeverLeavesTheRoot) {
  testing::TempDir t;
  std::filesystem::create_directories(t / "root/etc");
  testing::write_file(t / "root/inside", "inside\n");
  testing::write_file(t / "outside", "outside\n");
  // An absolute link resolves against the image's root, not the host's.
  std::filesystem::create_symlink("/inside", t / "root/etc/passwd");
  std::filesystem::create_symlink("../../outside", t / "root/etc/group");
  auto p = read_file_in_root(t / "root", "/etc/passwd");
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_EQ(*p, "inside\n");
  auto g = read_file_in_root(t / "root", "/etc/group");
  ASSERT_TRUE(g) << g.error().message;
  EXPECT_EQ(*g, "");  // "../../outside" stays in the root, where there is no such file
  auto missing = read_file_in_root(t / "root", "/etc/shadow");
  ASSERT_TRUE(missing);
  EXPECT_EQ(*missing, "");
}

}  // namespace
}  // namespace slimtrace::tracer

#endif  // __has_include("bundle.hpp")
