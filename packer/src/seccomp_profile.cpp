#include "slimtrace/packer/seccomp_profile.hpp"

#include <fcntl.h>
#include <seccomp.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <set>
#include <string_view>

#include "slimtrace/fd.hpp"

namespace slimtrace::packer {
namespace {

// The trace follows `runc create` from before its exec and counts syscalls from the moment the
// container's filter is loaded, with noNewPrivileges=false, where runc loads the filter earliest:
// its own synchronous calls after that (setgroups/setresuid/setresgid, capget/capset, prctl,
// chdir, the fd clean-up, getppid, the exec fifo, execve) are in the trace. With
// noNewPrivileges=true runc loads the filter just before execve, so its synchronous calls there are
// a subset of those: only execve. Measured with runc 1.1.5 on a busybox app, removing names one by
// one: noNewPrivileges=false needs capget capset chdir getppid prctl setgid setgroups setuid (and
// fstat getcwd nanosleep) beyond what the app needs under noNewPrivileges=true; none was missing
// from the trace.
//
// What the trace catches only by timing luck, so is always allowed:
// - any process: signal return, restarted calls, exit;
// - the Go runtime of `runc init`, whose background threads share the filter (TSYNC) and may run
//   between the filter load and execve: async preemption (getpid + tgkill, then rt_sigreturn),
//   sysmon's nanosleep, futex wake-ups, sched_yield, and the netpoller's epoll_pwait (measured:
//   epoll_pwait, tgkill and rt_sigreturn appeared in 1 of 5 traces of the same busybox app; a
//   failing epoll_pwait makes the Go runtime abort, and runc init with it).
const std::vector<std::string> kAlwaysAllowed = {"exit", "exit_group", "restart_syscall", "rt_sigreturn"};
const std::vector<std::string> kRuntimeAsync = {"epoll_pwait", "futex",       "getpid",
                                                "nanosleep",   "sched_yield", "tgkill"};

struct ArchInfo {
  std::string_view name;  // as in the JSON
  uint32_t token;
};

// Docker's grouping: a 64-bit image may run the compat ABIs of its CPU too.
struct ArchFamily {
  std::string_view image_arch;  // OCI/Go GOARCH name
  std::array<ArchInfo, 3> archs;
  size_t count;
};

const std::array<ArchFamily, 10> kFamilies = {{
    {"amd64",
     {{{"SCMP_ARCH_X86_64", SCMP_ARCH_X86_64},
       {"SCMP_ARCH_X86", SCMP_ARCH_X86},
       {"SCMP_ARCH_X32", SCMP_ARCH_X32}}},
     3},
    {"arm64", {{{"SCMP_ARCH_AARCH64", SCMP_ARCH_AARCH64}, {"SCMP_ARCH_ARM", SCMP_ARCH_ARM}, {}}}, 2},
    {"386", {{{"SCMP_ARCH_X86", SCMP_ARCH_X86}, {}, {}}}, 1},
    {"arm", {{{"SCMP_ARCH_ARM", SCMP_ARCH_ARM}, {}, {}}}, 1},
    {"ppc64le", {{{"SCMP_ARCH_PPC64LE", SCMP_ARCH_PPC64LE}, {}, {}}}, 1},
    {"ppc64", {{{"SCMP_ARCH_PPC64", SCMP_ARCH_PPC64}, {"SCMP_ARCH_PPC", SCMP_ARCH_PPC}, {}}}, 2},
    {"s390x", {{{"SCMP_ARCH_S390X", SCMP_ARCH_S390X}, {"SCMP_ARCH_S390", SCMP_ARCH_S390}, {}}}, 2},
    {"riscv64", {{{"SCMP_ARCH_RISCV64", SCMP_ARCH_RISCV64}, {}, {}}}, 1},
    {"mips64le",
     {{{"SCMP_ARCH_MIPSEL64", SCMP_ARCH_MIPSEL64},
       {"SCMP_ARCH_MIPSEL64N32", SCMP_ARCH_MIPSEL64N32},
       {"SCMP_ARCH_MIPSEL", SCMP_ARCH_MIPSEL}}},
     3},
    {"mips64",
     {{{"SCMP_ARCH_MIPS64", SCMP_ARCH_MIPS64},
       {"SCMP_ARCH_MIPS64N32", SCMP_ARCH_MIPS64N32},
       {"SCMP_ARCH_MIPS", SCMP_ARCH_MIPS}}},
     3},
}};

const ArchFamily* family_of_image_arch(std::string_view arch) {
  // "linux/arm64/v8" and "arm64/v8" name the same family as "arm64".
  if (arch.starts_with("linux/")) arch.remove_prefix(6);
  if (auto slash = arch.find('/'); slash != std::string_view::npos) arch = arch.substr(0, slash);
  if (arch == "x86_64") arch = "amd64";
  if (arch == "aarch64") arch = "arm64";
  for (const auto& f : kFamilies)
    if (f.image_arch == arch) return &f;
  return nullptr;
}

// The family whose first (native) arch is the one the trace recorded names for.
const ArchFamily* family_of_scmp_arch(std::string_view scmp) {
  for (const auto& f : kFamilies)
    if (f.archs[0].name == scmp) return &f;
  return nullptr;
}

struct DefaultAction {
  std::string json_action;
  uint32_t scmp = 0;
  std::optional<int> errno_ret;
};

Result<DefaultAction> parse_default_action(const std::string& spec) {
  if (spec == "kill") return DefaultAction{"SCMP_ACT_KILL_PROCESS", SCMP_ACT_KILL_PROCESS, std::nullopt};
  if (spec == "log") return DefaultAction{"SCMP_ACT_LOG", SCMP_ACT_LOG, std::nullopt};
  if (spec == "trap") return DefaultAction{"SCMP_ACT_TRAP", SCMP_ACT_TRAP, std::nullopt};
  int e = -1;
  if (spec == "errno" || spec == "errno:EPERM")
    e = EPERM;
  else if (spec == "errno:ENOSYS")
    e = ENOSYS;
  else if (spec.starts_with("errno:")) {
    const char* b = spec.data() + 6;
    const char* end = spec.data() + spec.size();
    int v = 0;
    auto [p, ec] = std::from_chars(b, end, v);
    if (ec == std::errc() && p == end && b != end && v > 0 && v < 4096) e = v;
  }
  if (e < 0)
    return Error{"seccomp default action '" + spec +
                 "': not one of errno:EPERM, errno:ENOSYS, errno:<number>, kill, log, trap"};
  return DefaultAction{"SCMP_ACT_ERRNO", SCMP_ACT_ERRNO(static_cast<uint32_t>(e)), e};
}

struct FilterDeleter {
  void operator()(void* ctx) const { seccomp_release(ctx); }
};
using FilterCtx = std::unique_ptr<void, FilterDeleter>;

std::string errno_text(int rc) { return std::strerror(rc < 0 ? -rc : rc); }

// Builds the filter the way runc does (names resolved for the host's libseccomp, rules added for
// every architecture of the profile) and exports it, never loading it into this process.
Status compile_filter(const DefaultAction& action, const std::vector<ArchInfo>& archs,
                      const std::vector<std::string>& names) {
  FilterCtx ctx(seccomp_init(action.scmp));
  if (!ctx) return Error{"seccomp profile: libseccomp could not create a filter (seccomp_init)"};
  bool native_listed = false;
  const uint32_t native = seccomp_arch_native();
  for (const auto& a : archs) {
    if (a.token == native) native_listed = true;
    int rc = seccomp_arch_add(ctx.get(), a.token);
    if (rc != 0 && rc != -EEXIST)
      return Error{"seccomp profile: architecture " + std::string(a.name) + ": " + errno_text(rc), -rc};
  }
  if (!native_listed) {
    int rc = seccomp_arch_remove(ctx.get(), native);
    if (rc != 0) return Error{"seccomp profile: removing the host architecture: " + errno_text(rc), -rc};
  }
  for (const auto& n : names) {
    const int nr = seccomp_syscall_resolve_name(n.c_str());
    if (nr == __NR_SCMP_ERROR) continue;  // only reachable for names no profile arch has: dropped earlier
    int rc = seccomp_rule_add(ctx.get(), SCMP_ACT_ALLOW, nr, 0);
    if (rc != 0)
      return Error{"seccomp profile: syscall '" + n + "': libseccomp rejects the rule: " + errno_text(rc),
                   -rc};
  }
  UniqueFd devnull(::open("/dev/null", O_WRONLY | O_CLOEXEC));
  if (!devnull.valid()) return Error::from_errno("seccomp profile: open '/dev/null'");
  int rc = seccomp_export_bpf(ctx.get(), devnull.get());
  if (rc != 0)
    return Error{"seccomp profile: libseccomp could not compile the filter: " + errno_text(rc), -rc};
  return {};
}

}  // namespace

const std::vector<std::string>& always_allowed_syscalls() {
  static const std::vector<std::string> all = [] {
    std::set<std::string> s(kAlwaysAllowed.begin(), kAlwaysAllowed.end());
    s.insert(kRuntimeAsync.begin(), kRuntimeAsync.end());
    return std::vector<std::string>(s.begin(), s.end());
  }();
  return all;
}

Result<SeccompProfile> make_seccomp_profile(const tracer::Trace& trace,
                                            const std::vector<std::string>& image_archs,
                                            const SeccompOptions& options) {
  if (!trace.syscalls_recorded) {
    if (trace.tracer == "fanotify")
      return Error{
          "the trace was made with the fanotify tracer, which does not record syscalls; trace with --tracer "
          "ebpf "
          "to generate a seccomp profile"};
    return Error{"the trace of '" + trace.image +
                 "' has no recorded syscalls; trace with --tracer ebpf to generate a seccomp profile"};
  }
  SLIMTRACE_ASSIGN_OR_RETURN(DefaultAction action, parse_default_action(options.default_action));

  SeccompProfile out;

  // Architectures: the image's, in the order given, then the trace's if the image did not name it.
  std::vector<ArchInfo> archs;
  auto add_family = [&archs](const ArchFamily& f) {
    for (size_t i = 0; i < f.count; ++i) {
      const ArchInfo& a = f.archs[i];
      if (std::none_of(archs.begin(), archs.end(), [&a](const ArchInfo& x) { return x.token == a.token; }))
        archs.push_back(a);
    }
  };
  for (const auto& ia : image_archs) {
    const ArchFamily* f = family_of_image_arch(ia);
    if (!f) return Error{"image architecture '" + ia + "': no seccomp architecture is known for it"};
    add_family(*f);
  }
  const ArchFamily* traced = family_of_scmp_arch(trace.seccomp_arch);
  if (!traced) return Error{"trace: seccomp architecture '" + trace.seccomp_arch + "' is not supported"};
  if (!image_archs.empty() && std::none_of(archs.begin(), archs.end(),
                                           [&](const ArchInfo& a) { return a.name == trace.seccomp_arch; }))
    out.warnings.push_back("the trace was recorded on " + trace.seccomp_arch +
                           ", which the image's architectures do not include; added it");
  add_family(*traced);

  // Names: the trace's plus the always-allowed ones, kept when libseccomp knows them as a real
  // syscall on at least one architecture of the profile.
  std::set<std::string> wanted(trace.syscalls.begin(), trace.syscalls.end());
  wanted.insert(kAlwaysAllowed.begin(), kAlwaysAllowed.end());
  wanted.insert(kRuntimeAsync.begin(), kRuntimeAsync.end());
  for (const auto& n : wanted) {
    if (n.empty()) continue;
    bool known = false;
    bool real = false;
    for (const auto& a : archs) {
      int nr = seccomp_syscall_resolve_name_arch(a.token, n.c_str());
      if (nr != __NR_SCMP_ERROR) known = true;
      if (nr >= 0) real = true;
    }
    if (!known) {
      out.warnings.push_back("syscall '" + n + "' is unknown to libseccomp " +
                             std::to_string(seccomp_version()->major) + "." +
                             std::to_string(seccomp_version()->minor) + "." +
                             std::to_string(seccomp_version()->micro) + "; left out of the profile");
      continue;
    }
    if (!real) {
      out.warnings.push_back("syscall '" + n + "' does not exist on the profile's architectures; left out");
      continue;
    }
    out.allowed.push_back(n);  // std::set iteration: already sorted
  }

  SLIMTRACE_TRY(compile_filter(action, archs, out.allowed));

  for (const auto& a : archs) out.architectures.emplace_back(a.name);
  out.json = nlohmann::json::object();
  out.json["defaultAction"] = action.json_action;
  if (action.errno_ret) out.json["defaultErrnoRet"] = *action.errno_ret;
  out.json["architectures"] = out.architectures;
  out.json["syscalls"] = nlohmann::json::array();
  if (!out.allowed.empty())
    out.json["syscalls"].push_back({{"names", out.allowed}, {"action", "SCMP_ACT_ALLOW"}});
  return out;
}

}  // namespace slimtrace::packer
