// The seccomp profile is what users hand to docker/podman/runc: the exact JSON matters, it must be
// the same for the same trace, and traces that cannot make one are refused with one clear line.
#include <gtest/gtest.h>

#include "slimtrace/packer/seccomp_profile.hpp"

using slimtrace::packer::make_seccomp_profile;
using slimtrace::packer::SeccompOptions;
using slimtrace::tracer::Trace;

namespace {

Trace ebpf_trace(std::vector<std::string> syscalls) {
  Trace t;
  t.image = "oci:/x:latest";
  t.tracer = "ebpf";
  t.syscalls_recorded = true;
  t.seccomp_arch = "SCMP_ARCH_X86_64";
  t.syscalls = std::move(syscalls);
  return t;
}

}  // namespace

TEST(PackerSeccomp, ExactJsonForAmd64) {
  // Unsorted on purpose, with a duplicate of an always-allowed name.
  auto r = make_seccomp_profile(ebpf_trace({"write", "execve", "openat", "exit_group", "read"}), {"amd64"});
  ASSERT_TRUE(r) << r.error().message;
  const auto expected = nlohmann::json::parse(R"({
    "defaultAction": "SCMP_ACT_ERRNO",
    "defaultErrnoRet": 1,
    "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "syscalls": [{"names": ["epoll_pwait", "execve", "exit", "exit_group", "futex", "getpid", "nanosleep", "openat",
                            "read", "restart_syscall", "rt_sigreturn", "sched_yield", "tgkill", "write"],
                  "action": "SCMP_ACT_ALLOW"}]
  })");
  EXPECT_EQ(r->json, expected) << r->json.dump(2);
  EXPECT_EQ(r->allowed, (std::vector<std::string>{"epoll_pwait", "execve", "exit", "exit_group", "futex",
                                                  "getpid", "nanosleep", "openat", "read", "restart_syscall",
                                                  "rt_sigreturn", "sched_yield", "tgkill", "write"}));
  EXPECT_TRUE(r->warnings.empty());
}

TEST(PackerSeccomp, AlwaysAllowedEvenWhenTheTraceCaughtNothing) {
  auto r = make_seccomp_profile(ebpf_trace({}), {"amd64"});
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->allowed, slimtrace::packer::always_allowed_syscalls());
  for (const char* n : {"exit", "exit_group", "restart_syscall", "rt_sigreturn", "tgkill", "epoll_pwait"})
    EXPECT_EQ(std::count(r->allowed.begin(), r->allowed.end(), n), 1) << n;
}

TEST(PackerSeccomp, DefaultActionVariants) {
  const auto t = ebpf_trace({"read"});
  struct Case {
    std::string option, action;
    std::optional<int> errno_ret;
  };
  for (const Case& c :
       {Case{"errno:EPERM", "SCMP_ACT_ERRNO", 1}, Case{"errno:ENOSYS", "SCMP_ACT_ERRNO", 38},
        Case{"errno:13", "SCMP_ACT_ERRNO", 13}, Case{"kill", "SCMP_ACT_KILL_PROCESS", std::nullopt},
        Case{"log", "SCMP_ACT_LOG", std::nullopt}, Case{"trap", "SCMP_ACT_TRAP", std::nullopt}}) {
    auto r = make_seccomp_profile(t, {"amd64"}, SeccompOptions{c.option});
    ASSERT_TRUE(r) << c.option << ": " << r.error().message;
    EXPECT_EQ(r->json["defaultAction"], c.action) << c.option;
    if (c.errno_ret)
      EXPECT_EQ(r->json["defaultErrnoRet"], *c.errno_ret) << c.option;
    else
      EXPECT_FALSE(r->json.contains("defaultErrnoRet")) << c.option;
  }
  for (const std::string bad : {"allow", "errno:EBOGUS", "errno:", "errno:-1", ""}) {
    auto r = make_seccomp_profile(t, {"amd64"}, SeccompOptions{bad});
    ASSERT_FALSE(r) << bad;
    EXPECT_NE(r.error().message.find("'" + bad + "'"), std::string::npos) << r.error().message;
  }
}

TEST(PackerSeccomp, FanotifyTraceRefused) {
  Trace t;
  t.tracer = "fanotify";
  t.syscalls_recorded = false;
  auto r = make_seccomp_profile(t, {"amd64"});
  ASSERT_FALSE(r);
  EXPECT_EQ(
      r.error().message,
      "the trace was made with the fanotify tracer, which does not record syscalls; trace with --tracer ebpf "
      "to generate a seccomp profile");
  EXPECT_EQ(r.error().message.find('\n'), std::string::npos);
}

TEST(PackerSeccomp, UnknownNameDroppedWithWarning) {
  auto r = make_seccomp_profile(ebpf_trace({"read", "no_such_syscall_xyz"}), {"amd64"});
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(std::count(r->allowed.begin(), r->allowed.end(), "no_such_syscall_xyz"), 0);
  EXPECT_EQ(std::count(r->allowed.begin(), r->allowed.end(), "read"), 1);
  ASSERT_EQ(r->warnings.size(), 1u);
  EXPECT_NE(r->warnings[0].find("'no_such_syscall_xyz'"), std::string::npos) << r->warnings[0];
  EXPECT_EQ(r->json.dump().find("no_such_syscall_xyz"), std::string::npos);
}

TEST(PackerSeccomp, Arm64ProfileBuiltOnAnyHost) {
  // x86-only names make no sense on arm: dropped with a warning, the rest kept for both ABIs.
  auto t = ebpf_trace({"read", "arch_prctl", "clone3"});
  t.seccomp_arch = "SCMP_ARCH_AARCH64";
  auto r = make_seccomp_profile(t, {"linux/arm64/v8"});
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->json["architectures"], nlohmann::json({"SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"}));
  EXPECT_EQ(std::count(r->allowed.begin(), r->allowed.end(), "arch_prctl"), 0);
  EXPECT_EQ(std::count(r->allowed.begin(), r->allowed.end(), "clone3"), 1);
  ASSERT_EQ(r->warnings.size(), 1u);
  EXPECT_NE(r->warnings[0].find("'arch_prctl'"), std::string::npos) << r->warnings[0];
}

TEST(PackerSeccomp, ArchitecturesFromTheTraceWhenTheImageNamesNone) {
  auto r = make_seccomp_profile(ebpf_trace({"read"}), {});
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->json["architectures"], nlohmann::json({"SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"}));
  EXPECT_TRUE(r->warnings.empty());
}

TEST(PackerSeccomp, UnknownImageArchitectureRefused) {
  auto r = make_seccomp_profile(ebpf_trace({"read"}), {"vax"});
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("'vax'"), std::string::npos) << r.error().message;
}

TEST(PackerSeccomp, Deterministic) {
  auto a = make_seccomp_profile(ebpf_trace({"write", "read", "futex", "mmap", "openat", "close"}), {"amd64"});
  auto b = make_seccomp_profile(ebpf_trace({"close", "openat", "mmap", "futex", "read", "write", "read"}),
                                {"amd64"});
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->json.dump(2), b->json.dump(2));
}
