#include "bundle.hpp"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>

#include "slimtrace/fd.hpp"

namespace slimtrace::tracer {
namespace {

constexpr const char* kDefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

std::vector<std::string> string_list(const nlohmann::json& j) {
  std::vector<std::string> out;
  if (j.is_string()) {
    // A shell-form value stored as a plain string: Docker runs it with /bin/sh -c.
    out = {"/bin/sh", "-c", j.get<std::string>()};
  } else if (j.is_array()) {
    for (const auto& v : j)
      if (v.is_string()) out.push_back(v.get<std::string>());
  }
  return out;
}

std::string string_field(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  return (it != j.end() && it->is_string()) ? it->get<std::string>() : std::string{};
}

std::optional<uint32_t> parse_id(const std::string& s) {
  if (s.empty()) return std::nullopt;
  uint32_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || p != s.data() + s.size()) return std::nullopt;
  return v;
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    if (c == sep) {
      out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  out.push_back(cur);
  return out;
}

struct PasswdEntry {
  std::string name;
  uint32_t uid = 0, gid = 0;
  std::string home;
};
struct GroupEntry {
  std::string name;
  uint32_t gid = 0;
  std::vector<std::string> members;
};

std::vector<PasswdEntry> parse_passwd(const std::string& text) {
  std::vector<PasswdEntry> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    auto f = split(line, ':');
    if (f.size() < 4) continue;
    auto uid = parse_id(f[2]);
    auto gid = parse_id(f[3]);
    if (!uid || !gid) continue;
    out.push_back({f[0], *uid, *gid, f.size() > 5 ? f[5] : std::string{}});
  }
  return out;
}

std::vector<GroupEntry> parse_group(const std::string& text) {
  std::vector<GroupEntry> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    auto f = split(line, ':');
    if (f.size() < 3) continue;
    auto gid = parse_id(f[2]);
    if (!gid) continue;
    GroupEntry g{f[0], *gid, {}};
    if (f.size() > 3 && !f[3].empty()) g.members = split(f[3], ',');
    out.push_back(std::move(g));
  }
  return out;
}

const std::map<std::string, int>& capability_table() {
  static const std::map<std::string, int> t = {
      {"CHOWN", 0},
      {"DAC_OVERRIDE", 1},
      {"DAC_READ_SEARCH", 2},
      {"FOWNER", 3},
      {"FSETID", 4},
      {"KILL", 5},
      {"SETGID", 6},
      {"SETUID", 7},
      {"SETPCAP", 8},
      {"LINUX_IMMUTABLE", 9},
      {"NET_BIND_SERVICE", 10},
      {"NET_BROADCAST", 11},
      {"NET_ADMIN", 12},
      {"NET_RAW", 13},
      {"IPC_LOCK", 14},
      {"IPC_OWNER", 15},
      {"SYS_MODULE", 16},
      {"SYS_RAWIO", 17},
      {"SYS_CHROOT", 18},
      {"SYS_PTRACE", 19},
      {"SYS_PACCT", 20},
      {"SYS_ADMIN", 21},
      {"SYS_BOOT", 22},
      {"SYS_NICE", 23},
      {"SYS_RESOURCE", 24},
      {"SYS_TIME", 25},
      {"SYS_TTY_CONFIG", 26},
      {"MKNOD", 27},
      {"LEASE", 28},
      {"AUDIT_WRITE", 29},
      {"AUDIT_CONTROL", 30},
      {"SETFCAP", 31},
      {"MAC_OVERRIDE", 32},
      {"MAC_ADMIN", 33},
      {"SYSLOG", 34},
      {"WAKE_ALARM", 35},
      {"BLOCK_SUSPEND", 36},
      {"AUDIT_READ", 37},
      {"PERFMON", 38},
      {"BPF", 39},
      {"CHECKPOINT_RESTORE", 40},
  };
  return t;
}

nlohmann::json mount_entry(const std::string& dest, const std::string& type, const std::string& source,
                           std::vector<std::string> options) {
  return {{"destination", dest}, {"type", type}, {"source", source}, {"options", std::move(options)}};
}

std::string clean_container_path(const std::string& p) {
  // Volumes and mount destinations are absolute container paths; normalise "a/b/" to "/a/b".
  std::filesystem::path norm = std::filesystem::path("/" + p).lexically_normal();
  std::string s = norm.string();
  while (s.size() > 1 && s.back() == '/') s.pop_back();
  return s;
}

}  // namespace

ImageRunConfig ImageRunConfig::from_image_config(const nlohmann::json& image_config) {
  ImageRunConfig c;
  if (!image_config.is_object()) return c;
  auto it = image_config.find("config");
  if (it == image_config.end() || !it->is_object()) return c;
  const auto& cfg = *it;
  if (auto e = cfg.find("Entrypoint"); e != cfg.end()) c.entrypoint = string_list(*e);
  if (auto e = cfg.find("Cmd"); e != cfg.end()) c.cmd = string_list(*e);
  if (auto e = cfg.find("Env"); e != cfg.end() && e->is_array()) {
    for (const auto& v : *e)
      if (v.is_string()) c.env.push_back(v.get<std::string>());
  }
  c.working_dir = string_field(cfg, "WorkingDir");
  c.user = string_field(cfg, "User");
  c.stop_signal = string_field(cfg, "StopSignal");
  if (auto v = cfg.find("Volumes"); v != cfg.end() && v->is_object()) {
    for (const auto& [path, _] : v->items()) c.volumes.push_back(clean_container_path(path));
    std::sort(c.volumes.begin(), c.volumes.end());
    c.volumes.erase(std::unique(c.volumes.begin(), c.volumes.end()), c.volumes.end());
  }
  return c;
}

Result<ResolvedUser> resolve_user(const std::string& user, const std::string& passwd,
                                  const std::string& group) {
  auto users = parse_passwd(passwd);
  auto groups = parse_group(group);
  std::string user_part = user, group_part;
  bool group_given = false;
  if (auto colon = user.find(':'); colon != std::string::npos) {
    user_part = user.substr(0, colon);
    group_part = user.substr(colon + 1);
    group_given = true;
  }

  ResolvedUser r;
  const PasswdEntry* found = nullptr;
  if (user_part.empty()) user_part = "0";
  if (auto uid = parse_id(user_part)) {
    r.uid = *uid;
    for (const auto& u : users)
      if (u.uid == *uid) {
        found = &u;
        break;
      }
  } else {
    for (const auto& u : users)
      if (u.name == user_part) {
        found = &u;
        break;
      }
    if (!found) return Error{"user '" + user_part + "': no matching entry in the image's /etc/passwd"};
    r.uid = found->uid;
  }
  if (found) {
    r.gid = found->gid;
    if (!found->home.empty()) r.home = found->home;
  }

  if (group_given) {
    if (group_part.empty()) return Error{"user '" + user + "': empty group"};
    if (auto gid = parse_id(group_part)) {
      r.gid = *gid;
    } else {
      const GroupEntry* g = nullptr;
      for (const auto& e : groups)
        if (e.name == group_part) {
          g = &e;
          break;
        }
      if (!g) return Error{"group '" + group_part + "': no matching entry in the image's /etc/group"};
      r.gid = g->gid;
    }
  } else if (found) {
    // Supplementary groups come from /etc/group membership, as runc computes them for a named user.
    for (const auto& g : groups) {
      if (std::find(g.members.begin(), g.members.end(), found->name) == g.members.end()) continue;
      if (g.gid == r.gid) continue;
      if (std::find(r.additional_gids.begin(), r.additional_gids.end(), g.gid) == r.additional_gids.end())
        r.additional_gids.push_back(g.gid);
    }
  }
  return r;
}

const std::vector<std::string>& docker_default_capabilities() {
  static const std::vector<std::string> caps = {
      "CAP_CHOWN",   "CAP_DAC_OVERRIDE", "CAP_FSETID",           "CAP_FOWNER",
      "CAP_MKNOD",   "CAP_NET_RAW",      "CAP_SETGID",           "CAP_SETUID",
      "CAP_SETFCAP", "CAP_SETPCAP",      "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT",
      "CAP_KILL",    "CAP_AUDIT_WRITE",
  };
  return caps;
}

int capability_number(const std::string& name) {
  std::string n = name.rfind("CAP_", 0) == 0 ? name.substr(4) : name;
  auto it = capability_table().find(n);
  return it == capability_table().end() ? -1 : it->second;
}

std::vector<std::string> limit_to_bounding_set(const std::vector<std::string>& caps, uint64_t bounding) {
  std::vector<std::string> out;
  for (const auto& c : caps) {
    int n = capability_number(c);
    if (n >= 0 && n < 64 && (bounding & (uint64_t{1} << n)) != 0) out.push_back(c);
  }
  return out;
}

Result<uint64_t> read_bounding_set() {
  std::ifstream in("/proc/self/status");
  if (!in) return Error::from_errno("open '/proc/self/status'");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("CapBnd:", 0) != 0) continue;
    std::string hex = line.substr(7);
    hex.erase(0, hex.find_first_not_of(" \t"));
    uint64_t v = 0;
    auto [p, ec] = std::from_chars(hex.data(), hex.data() + hex.size(), v, 16);
    if (ec != std::errc{}) return Error{"/proc/self/status: unreadable CapBnd '" + hex + "'"};
    return v;
  }
  return Error{"/proc/self/status: no CapBnd line"};
}

std::vector<std::string> effective_args(const ImageRunConfig& config,
                                        const std::optional<std::vector<std::string>>& entrypoint,
                                        const std::vector<std::string>& cmd) {
  std::vector<std::string> args;
  if (entrypoint) {
    // `docker run --entrypoint X` drops the image's Cmd; only an explicit command follows it.
    args = *entrypoint;
    args.insert(args.end(), cmd.begin(), cmd.end());
    return args;
  }
  args = config.entrypoint;
  const auto& c = cmd.empty() ? config.cmd : cmd;
  args.insert(args.end(), c.begin(), c.end());
  return args;
}

std::vector<std::string> effective_env(const std::vector<std::string>& image_env,
                                       const std::vector<std::string>& overrides, const std::string& hostname,
                                       const std::string& home) {
  std::vector<std::string> env;
  auto key_of = [](const std::string& kv) { return kv.substr(0, kv.find('=')); };
  auto set = [&](const std::string& kv) {
    std::string k = key_of(kv);
    for (auto& e : env)
      if (key_of(e) == k) {
        e = kv;
        return;
      }
    env.push_back(kv);
  };
  auto has = [&](const std::string& k) {
    return std::any_of(env.begin(), env.end(), [&](const std::string& e) { return key_of(e) == k; });
  };
  // Docker's order: PATH first when the image has none, HOSTNAME, then the image's and the user's.
  if (std::none_of(image_env.begin(), image_env.end(),
                   [&](const std::string& e) { return key_of(e) == "PATH"; }))
    env.push_back(std::string("PATH=") + kDefaultPath);
  env.push_back("HOSTNAME=" + hostname);
  for (const auto& e : image_env) set(e);
  for (const auto& o : overrides) {
    if (o.find('=') != std::string::npos) {
      set(o);
    } else if (const char* v = std::getenv(o.c_str())) {
      // `-e KEY` takes the value from our own environment, or is dropped when unset (as docker does).
      set(o + "=" + v);
    }
  }
  if (!has("HOME")) env.push_back("HOME=" + home);
  return env;
}

Result<BundleConfig> make_oci_config(const BundleInputs& in) {
  BundleConfig out;
  out.args = effective_args(in.image, in.entrypoint, in.cmd);
  if (out.args.empty()) return Error{"no command: the image has no Entrypoint or Cmd and none was given"};
  SLIMTRACE_ASSIGN_OR_RETURN(ResolvedUser user, resolve_user(in.image.user, in.passwd, in.group));
  out.cwd = in.image.working_dir.empty() ? "/" : clean_container_path(in.image.working_dir);
  auto env = effective_env(in.image.env, in.env, in.hostname, user.home);
  auto caps = limit_to_bounding_set(docker_default_capabilities(), in.bounding_set);

  nlohmann::json user_json = {{"uid", user.uid}, {"gid", user.gid}};
  if (!user.additional_gids.empty()) user_json["additionalGids"] = user.additional_gids;

  nlohmann::json process = {
      {"terminal", false},
      {"user", user_json},
      {"args", out.args},
      {"env", env},
      {"cwd", out.cwd},
      {"capabilities", {{"bounding", caps}, {"effective", caps}, {"permitted", caps}}},
      {"rlimits", nlohmann::json::array(
                      {{{"type", "RLIMIT_NOFILE"}, {"hard", in.nofile_limit}, {"soft", in.nofile_limit}}})},
      {"noNewPrivileges", false},
  };

  nlohmann::json mounts = nlohmann::json::array();
  mounts.push_back(mount_entry("/proc", "proc", "proc", {"nosuid", "noexec", "nodev"}));
  mounts.push_back(
      mount_entry("/dev", "tmpfs", "tmpfs", {"nosuid", "strictatime", "mode=755", "size=65536k"}));
  mounts.push_back(mount_entry("/dev/pts", "devpts", "devpts",
                               {"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}));
  mounts.push_back(mount_entry("/sys", "sysfs", "sysfs", {"nosuid", "noexec", "nodev", "ro"}));
  mounts.push_back(
      mount_entry("/sys/fs/cgroup", "cgroup", "cgroup", {"nosuid", "noexec", "nodev", "relatime", "ro"}));
  mounts.push_back(mount_entry("/dev/mqueue", "mqueue", "mqueue", {"nosuid", "noexec", "nodev"}));
  mounts.push_back(
      mount_entry("/dev/shm", "tmpfs", "shm", {"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}));
  if (!in.resolv_file.empty())
    mounts.push_back(mount_entry("/etc/resolv.conf", "bind", in.resolv_file.string(), {"rbind", "rprivate"}));
  if (!in.hostname_file.empty())
    mounts.push_back(mount_entry("/etc/hostname", "bind", in.hostname_file.string(), {"rbind", "rprivate"}));
  if (!in.hosts_file.empty())
    mounts.push_back(mount_entry("/etc/hosts", "bind", in.hosts_file.string(), {"rbind", "rprivate"}));
  for (const auto& v : in.volumes)
    mounts.push_back(mount_entry(v.destination, "bind", v.source.string(), {"rbind", "rprivate"}));
  for (const auto& m : in.mounts) {
    if (m.destination.empty() || m.destination[0] != '/')
      return Error{"mount '" + m.source + ":" + m.destination + "': destination must be an absolute path"};
    mounts.push_back(mount_entry(clean_container_path(m.destination), "bind", m.source,
                                 {"rbind", "rprivate", m.read_only ? "ro" : "rw"}));
  }

  nlohmann::json namespaces = nlohmann::json::array(
      {{{"type", "pid"}}, {{"type", "mount"}}, {{"type", "ipc"}}, {{"type", "uts"}}, {{"type", "cgroup"}}});
  if (in.netns.empty())
    namespaces.push_back({{"type", "network"}});
  else
    namespaces.push_back({{"type", "network"}, {"path", in.netns.string()}});

  nlohmann::json linux_section = {
      {"namespaces", namespaces},
      {"resources", {{"devices", nlohmann::json::array({{{"allow", false}, {"access", "rwm"}}})}}},
      // Allow-all unless a profile is given: the runtime still installs it, which marks where the
      // app's own syscalls start, and nothing is denied before the tracer sees it.
      {"seccomp", in.seccomp ? *in.seccomp
                             : nlohmann::json{{"defaultAction", "SCMP_ACT_ALLOW"},
                                              {"architectures", {"SCMP_ARCH_X86_64"}},
                                              {"syscalls", nlohmann::json::array()}}},
      {"maskedPaths",
       {"/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
        "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
        "/sys/devices/virtual/powercap"}},
      {"readonlyPaths", {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}},
  };

  out.config = {
      {"ociVersion", "1.0.2"},
      {"process", process},
      {"root", {{"path", in.rootfs.string()}, {"readonly", false}}},
      {"hostname", in.hostname},
      {"mounts", mounts},
      {"linux", linux_section},
  };
  return out;
}

Result<std::string> read_file_in_root(const std::filesystem::path& root, const std::string& path) {
  UniqueFd root_fd(::open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!root_fd.valid()) return Error::from_errno("open '" + root.string() + "'");
  open_how how{};
  how.flags = O_RDONLY | O_CLOEXEC;
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  std::string rel = path;
  while (!rel.empty() && rel[0] == '/') rel.erase(0, 1);
  long fd = ::syscall(SYS_openat2, root_fd.get(), rel.c_str(), &how, sizeof how);
  if (fd < 0) {
    if (errno == ENOENT || errno == ENOTDIR) return std::string{};
    return Error::from_errno("open '" + path + "' in the image");
  }
  UniqueFd f(static_cast<int>(fd));
  std::string data;
  char buf[8192];
  for (;;) {
    ssize_t n = ::read(f.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Error::from_errno("read '" + path + "' in the image");
    }
    if (n == 0) break;
    data.append(buf, static_cast<size_t>(n));
    if (data.size() > (64u << 20)) return Error{"read '" + path + "' in the image: file too large"};
  }
  return data;
}

namespace {

Status write_text(const std::filesystem::path& p, const std::string& text) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  if (!out) return Error{"write '" + p.string() + "': failed"};
  return {};
}

uint64_t nofile_limit() {
  // Docker asks for 1048576; without CAP_SYS_RESOURCE a runtime cannot go above our own hard limit.
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_max == RLIM_INFINITY) return 1048576;
  return std::min<uint64_t>(1048576, rl.rlim_max);
}

}  // namespace

Result<PreparedBundle> prepare_bundle(const RunSpec& spec, const std::filesystem::path& bundle_dir,
                                      const std::filesystem::path& rootfs, const std::string& hostname,
                                      const std::filesystem::path& netns) {
  if (!spec.image) return Error{"run: no image given"};
  PreparedBundle pb;
  pb.dir = bundle_dir;
  pb.rootfs = rootfs;
  pb.image = ImageRunConfig::from_image_config(spec.image->config);

  std::error_code ec;
  std::filesystem::create_directories(bundle_dir, ec);
  if (ec) return Error{"create '" + bundle_dir.string() + "': " + ec.message(), ec.value()};

  BundleInputs in;
  in.image = pb.image;
  in.entrypoint = spec.entrypoint;
  in.cmd = spec.cmd;
  in.env = spec.env;
  in.mounts = spec.mounts;
  in.seccomp = spec.seccomp;
  in.hostname = hostname;
  in.rootfs = std::filesystem::absolute(rootfs);
  in.netns = netns;
  SLIMTRACE_ASSIGN_OR_RETURN(in.passwd, read_file_in_root(rootfs, "/etc/passwd"));
  SLIMTRACE_ASSIGN_OR_RETURN(in.group, read_file_in_root(rootfs, "/etc/group"));
  SLIMTRACE_ASSIGN_OR_RETURN(in.bounding_set, read_bounding_set());
  in.nofile_limit = nofile_limit();

  auto etc = bundle_dir / "etc";
  std::filesystem::create_directories(etc, ec);
  if (ec) return Error{"create '" + etc.string() + "': " + ec.message(), ec.value()};
  in.hosts_file = etc / "hosts";
  in.hostname_file = etc / "hostname";
  in.resolv_file = etc / "resolv.conf";
  SLIMTRACE_TRY(write_text(
      in.hosts_file, "127.0.0.1\tlocalhost " + hostname + "\n::1\tlocalhost ip6-localhost ip6-loopback\n"));
  SLIMTRACE_TRY(write_text(in.hostname_file, hostname + "\n"));
  // The network namespace has only loopback: a resolver answering "connection refused" at once is
  // better than one timing out against a nameserver that cannot be reached.
  SLIMTRACE_TRY(write_text(
      in.resolv_file,
      "# slimtrace: the container has loopback only\nnameserver 127.0.0.1\noptions timeout:1 attempts:1\n"));

  for (size_t i = 0; i < pb.image.volumes.size(); ++i) {
    const auto& dest = pb.image.volumes[i];
    auto src = bundle_dir / "volumes" / std::to_string(i);
    std::filesystem::create_directories(src, ec);
    if (ec) return Error{"create volume directory '" + src.string() + "': " + ec.message(), ec.value()};
    // A fresh Docker volume takes the owner and mode of the image's directory at that path.
    uint32_t uid = 0, gid = 0, mode = 0755;
    if (spec.tree) {
      auto resolved = spec.tree->resolve(dest);
      const image::FileEntry* e = resolved ? spec.tree->find(*resolved) : nullptr;
      if (e && e->type == image::EntryType::Directory) {
        uid = e->uid;
        gid = e->gid;
        mode = e->mode;
      }
    }
    if (::geteuid() == 0 && ::chown(src.c_str(), uid, gid) != 0)
      return Error::from_errno("chown volume directory '" + src.string() + "'");
    if (::chmod(src.c_str(), mode & 07777) != 0) return Error::from_errno("chmod '" + src.string() + "'");
    in.volumes.push_back({dest, src});
  }

  SLIMTRACE_ASSIGN_OR_RETURN(pb.config, make_oci_config(in));
  SLIMTRACE_TRY(write_text(bundle_dir / "config.json", pb.config.config.dump(2) + "\n"));
  return pb;
}

}  // namespace slimtrace::tracer
