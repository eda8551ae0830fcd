// The tracer backends without a container runtime: a forked child stands in for the container's
// init (it waits on a pipe until followed, like a created-but-not-started container), installs an
// allow-all seccomp filter the way the runtime does, then touches files the test knows.
#include "tracer_backend.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <spdlog/spdlog.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "image_builder.hpp"
#include "slimtrace/image/file_tree.hpp"
#include "slimtrace/image/reference.hpp"
#include "slimtrace/image/source.hpp"
#include "slimtrace/tracer/runner.hpp"

namespace fs = std::filesystem;
using slimtrace::tracer::ExecRecord;
using slimtrace::tracer::FileAccess;
using slimtrace::tracer::ProcessRecord;
using slimtrace::tracer::Trace;
using slimtrace::tracer::TracerBackend;
using slimtrace::tracer::TracerOptions;
namespace st = slimtrace::tracer;

namespace {

void write_file(const fs::path& p, const std::string& content = "x") { std::ofstream(p) << content; }

// Runs in the forked child: only plain syscalls, no gtest.
void allow_all_seccomp() {
  sock_filter allow{BPF_RET | BPF_K, 0, 0, SECCOMP_RET_ALLOW};
  sock_fprog prog{1, &allow};
  if (::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) != 0) ::_exit(120);
}

// A child that blocks until released, then runs `body` and exits with its return value.
class Child {
 public:
  explicit Child(const std::function<int()>& body) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) return;
    pid_ = ::fork();
    if (pid_ == 0) {
      ::close(fds[1]);
      char c = 0;
      if (::read(fds[0], &c, 1) != 1) ::_exit(121);
      ::close(fds[0]);
      ::_exit(body());
    }
    ::close(fds[0]);
    release_fd_ = fds[1];
  }
  ~Child() {
    if (release_fd_ >= 0) ::close(release_fd_);
    if (pid_ > 0 && !reaped_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  int pid() const { return pid_; }
  void release() {
    char c = 1;
    ASSERT_EQ(::write(release_fd_, &c, 1), 1);
    ::close(release_fd_);
    release_fd_ = -1;
  }
  // Polls the tracers while the child runs; returns its wait status.
  int wait(const std::vector<TracerBackend*>& tracers) {
    int status = 0;
    while (true) {
      pid_t r = ::waitpid(pid_, &status, WNOHANG);
      if (r == pid_) break;
      for (auto* t : tracers) EXPECT_TRUE(t->poll(20).ok());
    }
    reaped_ = true;
    return status;
  }

 private:
  pid_t pid_ = -1;
  int release_fd_ = -1;
  bool reaped_ = false;
};

std::string ebpf_skip_reason() {
  if (std::getenv("SLIMTRACE_TEST_TRACE")) spdlog::set_level(spdlog::level::trace);
  if (::geteuid() != 0) return "needs root to load BPF programs";
  auto t = st::make_ebpf_tracer(TracerOptions{});
  if (!t) return t.error().message;
  return {};
}

const FileAccess* find(const Trace& t, const std::string& path) {
  auto it = t.files.find(path);
  return it == t.files.end() ? nullptr : &it->second;
}

bool has_syscall(const Trace& t, const std::string& name) {
  return std::find(t.syscalls.begin(), t.syscalls.end(), name) != t.syscalls.end();
}

const ProcessRecord* find_process(const Trace& t, int pid) {
  for (const auto& p : t.processes) {
    if (p.pid == pid) return &p;
  }
  return nullptr;
}

class TracerBackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/slimtrace-tracer-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = fs::canonical(tmpl);
  }
  void TearDown() override {
    for (auto it = mounts_.rbegin(); it != mounts_.rend(); ++it) ::umount2(it->c_str(), MNT_DETACH);
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  void mount_tmpfs(const fs::path& where) {
    fs::create_directories(where);
    ASSERT_EQ(::mount("tmpfs", where.c_str(), "tmpfs", 0, "size=16m"), 0) << std::strerror(errno);
    mounts_.push_back(where);
  }
  std::string p(const std::string& rel) const { return (dir_ / rel).string(); }

  fs::path dir_;
  std::vector<fs::path> mounts_;
};

TEST_F(TracerBackendTest, EbpfRecordsPathsExecsProcessesAndSyscalls) {
  if (auto why = ebpf_skip_reason(); !why.empty()) GTEST_SKIP() << why;
  fs::create_directories(dir_ / "sub");
  write_file(dir_ / "a.txt");
  write_file(dir_ / "b.txt");
  write_file(dir_ / "sub/rel.txt");
  write_file(dir_ / "grand.txt");
  write_file(dir_ / "host_only.txt");
  write_file(dir_ / "fd_only.txt");
  fs::create_symlink("a.txt", dir_ / "link");
  mount_tmpfs(dir_ / "mnt");
  write_file(dir_ / "mnt/m.txt");

  const std::string a = p("a.txt"), b = p("b.txt"), missing = p("lib-dynload/_foo.so");
  const std::string link = p("link"), sub = p("sub"), mnt = p("mnt"), grand = p("grand.txt");
  const std::string dir = dir_.string(), made = p("made"), fd_only = p("fd_only.txt");

  auto tracer_r = st::make_ebpf_tracer(TracerOptions{});
  ASSERT_TRUE(tracer_r.ok()) << tracer_r.error().message;
  auto& tracer = *tracer_r;

  Child child([&]() -> int {
    allow_all_seccomp();
    int fd = ::open(a.c_str(), O_RDONLY);
    if (fd < 0) return 101;
    ::close(fd);
    if (::open(missing.c_str(), O_RDONLY) >= 0 || errno != ENOENT) return 102;
    struct stat sb {};
    if (::stat(a.c_str(), &sb) != 0) return 103;
    if (::access(b.c_str(), R_OK) != 0) return 104;
    char buf[PATH_MAX];
    if (::readlink(link.c_str(), buf, sizeof buf) < 0) return 105;
    if (::chdir(sub.c_str()) != 0) return 106;
    fd = ::open("rel.txt", O_RDONLY);
    if (fd < 0) return 107;
    ::close(fd);
    if (::chdir(mnt.c_str()) != 0) return 108;
    fd = ::open("./m.txt", O_RDONLY);
    if (fd < 0) return 109;
    ::close(fd);
    int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
    if (dfd < 0) return 110;
    fd = ::openat(dfd, "b.txt", O_RDONLY);
    if (fd < 0) return 111;
    ::close(fd);
    // fstat(2) as glibc makes it, and statx of the fd: no lookup, so no stat of fd_only.txt. A
    // non-empty path with AT_EMPTY_PATH is a lookup as usual.
    fd = ::open(fd_only.c_str(), O_RDONLY);
    if (fd < 0) return 120;
    if (::syscall(SYS_newfstatat, fd, "", &sb, AT_EMPTY_PATH) != 0) return 121;
    struct statx sx {};
    if (::statx(fd, "", AT_EMPTY_PATH, STATX_SIZE, &sx) != 0) return 122;
    ::close(fd);
    if (::fstatat(dfd, "b.txt", &sb, AT_EMPTY_PATH) != 0) return 123;
    int dfd_keep = ::dup(dfd);
    DIR* d = ::fdopendir(dfd);
    if (!d) return 112;
    while (::readdir(d) != nullptr) {
    }
    ::closedir(d);
    pid_t g = ::fork();
    if (g == 0) {
      int gfd = ::open(grand.c_str(), O_RDONLY);
      ::_exit(gfd >= 0 ? 3 : 113);
    }
    int gstatus = 0;
    ::waitpid(g, &gstatus, 0);
    if (!WIFEXITED(gstatus) || WEXITSTATUS(gstatus) != 3) return 114;
    // Paths made and changed: the minified image needs the directories they live in.
    if (::mkdirat(dfd_keep, "made", 0755) != 0) return 116;
    if (::mkdir(made.c_str(), 0755) == 0 || errno != EEXIST) return 117;
    if (::rename(made.c_str(), (made + "2").c_str()) != 0) return 118;
    if (::rmdir((made + "2").c_str()) != 0) return 119;
    char* const bad_argv[] = {const_cast<char*>("prog"), nullptr};
    ::execv("/nonexistent/prog", bad_argv);
    char* const argv[] = {const_cast<char*>("sh"), const_cast<char*>("-c"), const_cast<char*>("exit 7"),
                          nullptr};
    ::execv("/bin/sh", argv);
    return 115;
  });
  ASSERT_GT(child.pid(), 0);
  ASSERT_TRUE(tracer->follow(child.pid()).ok());
  child.release();
  // The host's own activity while the child runs must not show up.
  { std::ifstream host(p("host_only.txt")); }
  int status = child.wait({tracer.get()});
  ASSERT_TRUE(WIFEXITED(status));
  ASSERT_EQ(WEXITSTATUS(status), 7);

  Trace t;
  ASSERT_TRUE(tracer->finish(t).ok());
  EXPECT_EQ(t.tracer, "ebpf");
  EXPECT_EQ(t.dropped_events, 0u);
  EXPECT_GT(t.events, 0u);

  auto expect_found = [&](const std::string& path, uint32_t op) {
    const FileAccess* f = find(t, path);
    if (f == nullptr) {
      for (const auto& [k, v] : t.files) std::fprintf(stderr, "  traced: %s\n", k.c_str());
    }
    ASSERT_NE(f, nullptr) << path << " missing from the trace";
    EXPECT_TRUE(f->found) << path;
    EXPECT_TRUE(f->ops & op) << path << " lacks op " << op;
  };
  expect_found(a, st::kOpOpen);
  expect_found(a, st::kOpStat);
  expect_found(b, st::kOpAccess);
  expect_found(b, st::kOpOpen);  // openat(dirfd, "b.txt")
  expect_found(b, st::kOpStat);  // fstatat(dirfd, "b.txt", AT_EMPTY_PATH)
  expect_found(fd_only, st::kOpOpen);
  const FileAccess* fd_only_f = find(t, fd_only);
  ASSERT_NE(fd_only_f, nullptr);
  EXPECT_FALSE(fd_only_f->ops & st::kOpStat) << "a stat of an open fd looks nothing up";
  expect_found(link, st::kOpReadlink);
  expect_found(sub, st::kOpChdir);
  expect_found(p("sub/rel.txt"), st::kOpOpen);  // relative to the cwd
  expect_found(p("mnt/m.txt"), st::kOpOpen);    // cwd on another mount
  expect_found(dir, st::kOpList);
  expect_found(grand, st::kOpOpen);         // a grandchild is followed
  expect_found(made, st::kOpCreate);        // mkdirat relative to a directory fd
  expect_found(made, st::kOpModify);        // rename's source
  expect_found(made + "2", st::kOpModify);  // rmdir
  const FileAccess* made_f = find(t, made);
  ASSERT_NE(made_f, nullptr);
  EXPECT_TRUE(made_f->failed_ops & st::kOpCreate) << "the mkdir that met EEXIST";
  expect_found("/bin/sh", st::kOpExec);
  // the file really run (symlinks resolved) and its ELF interpreter, loaded without a syscall
  expect_found(fs::canonical("/bin/sh").string(), st::kOpExec);
  expect_found("/lib64/ld-linux-x86-64.so.2", st::kOpExec);

  const FileAccess* miss = find(t, missing);
  ASSERT_NE(miss, nullptr);
  EXPECT_FALSE(miss->found);
  EXPECT_EQ(miss->error, ENOENT);
  EXPECT_TRUE(miss->failed_ops & st::kOpOpen);
  const FileAccess* bad_exec = find(t, "/nonexistent/prog");
  ASSERT_NE(bad_exec, nullptr);
  EXPECT_EQ(bad_exec->error, ENOENT);

  EXPECT_EQ(find(t, p("host_only.txt")), nullptr) << "the host's own open was recorded";

  auto sh =
      std::find_if(t.execs.begin(), t.execs.end(), [](const ExecRecord& e) { return e.path == "/bin/sh"; });
  ASSERT_NE(sh, t.execs.end());
  EXPECT_EQ(sh->pid, child.pid());
  EXPECT_EQ(sh->ppid, ::getpid());
  EXPECT_EQ(sh->error, 0);
  EXPECT_EQ(sh->argv, (std::vector<std::string>{"sh", "-c", "exit 7"}));
  auto bad = std::find_if(t.execs.begin(), t.execs.end(),
                          [](const ExecRecord& e) { return e.path == "/nonexistent/prog"; });
  ASSERT_NE(bad, t.execs.end());
  EXPECT_EQ(bad->error, ENOENT);
  EXPECT_EQ(bad->argv, (std::vector<std::string>{"prog"}));

  const ProcessRecord* root = find_process(t, child.pid());
  ASSERT_NE(root, nullptr);
  EXPECT_EQ(root->exit_code, 7);
  EXPECT_EQ(root->comm, "sh");
  auto grandchild = std::find_if(t.processes.begin(), t.processes.end(),
                                 [&](const ProcessRecord& r) { return r.ppid == child.pid(); });
  ASSERT_NE(grandchild, t.processes.end());
  EXPECT_EQ(grandchild->exit_code, 3);

  EXPECT_TRUE(t.syscalls_recorded);
  for (const char* name : {"openat", "execve", "chdir", "getdents64", "readlink", "newfstatat", "access",
                           "exit_group", "wait4"}) {
    EXPECT_TRUE(has_syscall(t, name)) << name << " not in the syscall set";
  }
  EXPECT_TRUE(std::is_sorted(t.syscalls.begin(), t.syscalls.end()));
}

// The tracer hooks syscalls at their exit only. Some never get there or leave no number there, and
// a successful exec or chdir has changed what its arguments meant by then: each must still be
// recorded as made.
TEST_F(TracerBackendTest, EbpfRecordsWhatTheExitAloneCannotSee) {
  if (auto why = ebpf_skip_reason(); !why.empty()) GTEST_SKIP() << why;
  fs::create_directories(dir_ / "sub");
  write_file(dir_ / "sub/c.txt");
  fs::create_symlink("/bin/sh", dir_ / "mysh");
  const std::string dir = dir_.string();
  // The fexecve child's pid, passed back in shared memory.
  auto* shared = static_cast<pid_t*>(
      ::mmap(nullptr, sizeof(pid_t), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(shared, MAP_FAILED);
  pid_t& fexec_pid = *shared;

  auto tracer_r = st::make_ebpf_tracer(TracerOptions{});
  ASSERT_TRUE(tracer_r.ok()) << tracer_r.error().message;
  auto& tracer = *tracer_r;

  Child child([&]() -> int {
    allow_all_seccomp();
    // A handler returns through rt_sigreturn, which leaves orig_ax at -1.
    struct sigaction sa {};
    sa.sa_handler = [](int) {};
    if (::sigaction(SIGUSR1, &sa, nullptr) != 0 || ::raise(SIGUSR1) != 0) return 101;
    // Relative chdirs: the one that succeeds has moved the cwd by its exit.
    if (::chdir(dir.c_str()) != 0 || ::chdir("sub") != 0) return 102;
    if (::chdir("nope") == 0 || errno != ENOENT) return 103;
    int fd = ::open("c.txt", O_RDONLY);
    if (fd < 0) return 104;
    ::close(fd);
    // exit(2) itself never returns.
    pid_t quitter = ::fork();
    if (quitter == 0) ::syscall(SYS_exit, 0);
    if (quitter < 0 || ::waitpid(quitter, nullptr, 0) != quitter) return 105;
    // A syscall made once and still blocked when the process is killed.
    int ready[2];
    if (::pipe(ready) != 0) return 106;
    pid_t sleeper = ::fork();
    if (sleeper == 0) {
      if (::write(ready[1], "x", 1) != 1) ::_exit(1);
      ::syscall(SYS_pause);
      ::_exit(2);
    }
    char c = 0;
    if (sleeper < 0 || ::read(ready[0], &c, 1) != 1) return 107;
    ::usleep(100 * 1000);  // into pause(2)
    if (::kill(sleeper, SIGKILL) != 0 || ::waitpid(sleeper, nullptr, 0) != sleeper) return 108;
    // An exec of an fd: the kernel knows it by a /dev/fd/N name only.
    pid_t fexec = ::fork();
    if (fexec == 0) {
      int sh_fd = ::open("/bin/sh", O_PATH | O_CLOEXEC);
      char* const fargv[] = {const_cast<char*>("sh"), const_cast<char*>("-c"), const_cast<char*>("exit 0"),
                             nullptr};
      ::syscall(SYS_execveat, sh_fd, "", fargv, environ, AT_EMPTY_PATH);
      ::_exit(3);
    }
    int fstatus = 0;
    if (fexec < 0 || ::waitpid(fexec, &fstatus, 0) != fexec || !WIFEXITED(fstatus) ||
        WEXITSTATUS(fstatus) != 0)
      return 111;
    fexec_pid = fexec;
    // An exec by a relative path: the caller's copy of it is gone when the execve returns.
    if (::chdir("..") != 0) return 109;
    char* const argv[] = {const_cast<char*>("mysh"), const_cast<char*>("-c"), const_cast<char*>("exit 5"),
                          nullptr};
    ::execv("./mysh", argv);
    return 110;
  });
  ASSERT_GT(child.pid(), 0);
  ASSERT_TRUE(tracer->follow(child.pid()).ok());
  child.release();
  int status = child.wait({tracer.get()});
  ASSERT_TRUE(WIFEXITED(status));
  ASSERT_EQ(WEXITSTATUS(status), 5);

  Trace t;
  ASSERT_TRUE(tracer->finish(t).ok());
  EXPECT_EQ(t.dropped_events, 0u);
  for (const char* name : {"rt_sigreturn", "exit", "pause", "exit_group", "chdir", "execve", "kill"}) {
    EXPECT_TRUE(has_syscall(t, name)) << name << " not in the syscall set";
  }

  const FileAccess* sub = find(t, p("sub"));
  ASSERT_NE(sub, nullptr);
  EXPECT_TRUE(sub->found);
  EXPECT_TRUE(sub->ops & st::kOpChdir);
  EXPECT_EQ(find(t, p("sub/sub")), nullptr) << "the chdir's path was taken from the new cwd";
  const FileAccess* nope = find(t, p("sub/nope"));
  ASSERT_NE(nope, nullptr);
  EXPECT_FALSE(nope->found);
  EXPECT_EQ(nope->error, ENOENT);
  const FileAccess* c_txt = find(t, p("sub/c.txt"));
  ASSERT_NE(c_txt, nullptr);
  EXPECT_TRUE(c_txt->ops & st::kOpOpen);

  const FileAccess* mysh = find(t, p("mysh"));
  ASSERT_NE(mysh, nullptr) << "the exec'd path as the process named it";
  EXPECT_TRUE(mysh->ops & st::kOpExec);
  auto sh =
      std::find_if(t.execs.begin(), t.execs.end(), [&](const ExecRecord& e) { return e.path == p("mysh"); });
  ASSERT_NE(sh, t.execs.end());
  EXPECT_EQ(sh->pid, child.pid());
  EXPECT_EQ(sh->error, 0);
  EXPECT_EQ(sh->argv, (std::vector<std::string>{"mysh", "-c", "exit 5"}));

  auto fx =
      std::find_if(t.execs.begin(), t.execs.end(), [&](const ExecRecord& e) { return e.pid == fexec_pid; });
  ASSERT_NE(fx, t.execs.end());
  EXPECT_EQ(fx->path, fs::canonical("/bin/sh").string()) << "the file an fd named, not /dev/fd/N";
  EXPECT_EQ(fx->argv, (std::vector<std::string>{"sh", "-c", "exit 0"}));
  ::munmap(shared, sizeof(pid_t));
}

// Inside a chroot (as after pivot_root) paths are the process's own view, relative ones too.
TEST_F(TracerBackendTest, EbpfPathsAreRelativeToTheProcessRoot) {
  if (auto why = ebpf_skip_reason(); !why.empty()) GTEST_SKIP() << why;
  fs::create_directories(dir_ / "etc/conf.d");
  write_file(dir_ / "etc/conf.d/a.conf");
  const std::string root = dir_.string();

  auto tracer_r = st::make_ebpf_tracer(TracerOptions{});
  ASSERT_TRUE(tracer_r.ok()) << tracer_r.error().message;
  auto& tracer = *tracer_r;
  Child child([&]() -> int {
    if (::chroot(root.c_str()) != 0 || ::chdir("/etc") != 0) return 101;
    allow_all_seccomp();
    int fd = ::open("conf.d/a.conf", O_RDONLY);
    if (fd < 0) return 102;
    ::close(fd);
    if (::open("/etc/missing.conf", O_RDONLY) >= 0) return 103;
    return 0;
  });
  ASSERT_TRUE(tracer->follow(child.pid()).ok());
  child.release();
  int status = child.wait({tracer.get()});
  ASSERT_TRUE(WIFEXITED(status));
  ASSERT_EQ(WEXITSTATUS(status), 0);
  Trace t;
  ASSERT_TRUE(tracer->finish(t).ok());
  const FileAccess* f = find(t, "/etc/conf.d/a.conf");
  ASSERT_NE(f, nullptr);
  EXPECT_TRUE(f->found);
  const FileAccess* m = find(t, "/etc/missing.conf");
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(m->error, ENOENT);
  EXPECT_EQ(find(t, root + "/etc/conf.d/a.conf"), nullptr);
}

// A path string on a page the process never touched cannot be read at syscall entry (BPF may not
// fault); the tracer must still report it.
TEST_F(TracerBackendTest, EbpfPathsOnPagesNotYetFaultedIn) {
  if (auto why = ebpf_skip_reason(); !why.empty()) GTEST_SKIP() << why;
  write_file(dir_ / "cold.txt");
  const std::string cold = p("cold.txt"), missing = p("cold-missing.txt");
  write_file(dir_ / "names", cold + std::string(1, '\0') + missing + std::string(1, '\0'));
  const std::string names = p("names");

  auto tracer_r = st::make_ebpf_tracer(TracerOptions{});
  ASSERT_TRUE(tracer_r.ok()) << tracer_r.error().message;
  auto& tracer = *tracer_r;
  Child child([&]() -> int {
    allow_all_seccomp();
    int nfd = ::open(names.c_str(), O_RDONLY);
    if (nfd < 0) return 101;
    void* map = ::mmap(nullptr, 4096, PROT_READ, MAP_PRIVATE, nfd, 0);
    if (map == MAP_FAILED) return 102;
    const char* first = static_cast<const char*>(map);
    // No access from user space before the syscall: the page is not mapped in yet.
    int fd = ::open(first, O_RDONLY);
    if (fd < 0) return 103;
    ::close(fd);
    const char* second = first + cold.size() + 1;
    if (::open(second, O_RDONLY) >= 0) return 104;
    return 0;
  });
  ASSERT_TRUE(tracer->follow(child.pid()).ok());
  child.release();
  int status = child.wait({tracer.get()});
  ASSERT_TRUE(WIFEXITED(status));
  ASSERT_EQ(WEXITSTATUS(status), 0);
  Trace t;
  ASSERT_TRUE(tracer->finish(t).ok());
  ASSERT_NE(find(t, cold), nullptr);
  EXPECT_TRUE(find(t, cold)->found);
  ASSERT_NE(find(t, missing), nullptr);
  EXPECT_EQ(find(t, missing)->error, ENOENT);
}

// A burst of path syscalls is counted exactly, or the drops are reported: never silently lost.
TEST_F(TracerBackendTest, EbpfBurstIsCountedOrDropsAreReported) {
  if (auto why = ebpf_skip_reason(); !why.empty()) GTEST_SKIP() << why;
  write_file(dir_ / "hot.txt");
  const std::string hot = p("hot.txt");
  constexpr int kOpens = 200000;
  auto tracer_r = st::make_ebpf_tracer(TracerOptions{});
  ASSERT_TRUE(tracer_r.ok()) << tracer_r.error().message;
  auto& tracer = *tracer_r;
  Child child([&]() -> int {
    allow_all_seccomp();  // as the runtime does: only processes under the container's filter count
    for (int i = 0; i < kOpens; ++i) {
      int fd = ::open(hot.c_str(), O_RDONLY);
      if (fd < 0) return 101;
      ::close(fd);
    }
    return 0;
  });
  ASSERT_TRUE(tracer->follow(child.pid()).ok());
  child.release();
  int status = child.wait({tracer.get()});
  ASSERT_EQ(WEXITSTATUS(status), 0);
  Trace t;
  ASSERT_TRUE(tracer->finish(t).ok());
  const FileAccess* f = find(t, hot);
  ASSERT_NE(f, nullptr);
  std::fprintf(stderr, "burst: %llu of %d recorded, %llu dropped\n",
               static_cast<unsigned long long>(f->count), kOpens,
               static_cast<unsigned long long>(t.dropped_events));
  if (t.dropped_events == 0) {
    EXPECT_EQ(f->count, static_cast<uint64_t>(kOpens));
  } else {
    EXPECT_FALSE(t.limitations.empty());
  }
}

// Repeated identical lookups are sent once and counted in the kernel: the counts stay exact, a
// lookup whose outcome changes is reported again, and the same relative name in another directory
// (or after the directory was renamed) is a different path.
TEST_F(TracerBackendTest, EbpfRepeatedLookupsKeepCountsOutcomesAndDirectories) {
  if (auto why = ebpf_skip_reason(); !why.empty()) GTEST_SKIP() << why;
  ::mkdir((dir_ / "a").c_str(), 0755);
  ::mkdir((dir_ / "b").c_str(), 0755);
  write_file(dir_ / "a" / "same.txt");
  write_file(dir_ / "b" / "same.txt");
  const std::string later = p("later.txt"), a = p("a"), b = p("b"), c = p("c");
  constexpr int kRepeats = 1000;
  auto tracer_r = st::make_ebpf_tracer(TracerOptions{});
  ASSERT_TRUE(tracer_r.ok()) << tracer_r.error().message;
  auto& tracer = *tracer_r;
  Child child([&]() -> int {
    allow_all_seccomp();
    for (int i = 0; i < kRepeats; ++i) {  // fails, then succeeds once it exists
      if (i == kRepeats / 2) {
        int made = ::open(later.c_str(), O_WRONLY | O_CREAT, 0644);
        if (made < 0) return 101;
        ::close(made);
      }
      int fd = ::open(later.c_str(), O_RDONLY);
      if ((fd >= 0) != (i >= kRepeats / 2)) return 102;
      if (fd >= 0) ::close(fd);
    }
    for (const std::string& d : {a, b, a}) {  // one relative name, two directories
      if (::chdir(d.c_str()) != 0) return 103;
      for (int i = 0; i < 10; ++i) {
        int fd = ::open("same.txt", O_RDONLY);
        if (fd < 0) return 104;
        ::close(fd);
      }
    }
    // The cwd's directory renamed: relative lookups now resolve under the new name.
    if (::chdir(a.c_str()) != 0 || ::rename(a.c_str(), c.c_str()) != 0) return 105;
    int fd = ::open("same.txt", O_RDONLY);
    if (fd < 0) return 106;
    ::close(fd);
    return 0;
  });
  ASSERT_TRUE(tracer->follow(child.pid()).ok());
  child.release();
  int status = child.wait({tracer.get()});
  ASSERT_TRUE(WIFEXITED(status));
  ASSERT_EQ(WEXITSTATUS(status), 0);
  Trace t;
  ASSERT_TRUE(tracer->finish(t).ok());
  ASSERT_EQ(t.dropped_events, 0u);
  EXPECT_GT(t.repeated_lookups, 0u);
  const FileAccess* f = find(t, later);
  ASSERT_NE(f, nullptr);
  EXPECT_TRUE(f->found);
  EXPECT_EQ(f->error, ENOENT);
  EXPECT_TRUE(f->ops & st::kOpOpen);
  EXPECT_TRUE(f->failed_ops & st::kOpOpen);
  EXPECT_EQ(f->count, static_cast<uint64_t>(kRepeats + 1));  // + the O_CREAT open
  ASSERT_NE(find(t, p("a/same.txt")), nullptr);
  ASSERT_NE(find(t, p("b/same.txt")), nullptr);
  EXPECT_EQ(find(t, p("a/same.txt"))->count, 20u);
  EXPECT_EQ(find(t, p("b/same.txt"))->count, 10u);
  ASSERT_NE(find(t, p("c/same.txt")), nullptr);
  EXPECT_EQ(find(t, p("c/same.txt"))->count, 1u);
}

// The kernel side counts repeats per CPU: the same lookups made from every CPU, by one process
// that moves between them and by children on each, are each counted once, with every outcome.
TEST_F(TracerBackendTest, EbpfRepeatsMadeOnEveryCpuAreCountedOnce) {
  if (auto why = ebpf_skip_reason(); !why.empty()) GTEST_SKIP() << why;
  cpu_set_t allowed;
  ASSERT_EQ(::sched_getaffinity(0, sizeof allowed, &allowed), 0);
  std::vector<int> cpus;
  for (int c = 0; c < CPU_SETSIZE; ++c)
    if (CPU_ISSET(c, &allowed)) cpus.push_back(c);
  if (cpus.size() < 2) GTEST_SKIP() << "needs two CPUs to run on";
  write_file(dir_ / "shared.txt");
  const std::string shared = p("shared.txt"), absent = p("absent.txt");
  constexpr int kRounds = 200, kChildOpens = 50;
  auto tracer_r = st::make_ebpf_tracer(TracerOptions{});
  ASSERT_TRUE(tracer_r.ok()) << tracer_r.error().message;
  auto& tracer = *tracer_r;
  auto pin = [](int cpu) {
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    return ::sched_setaffinity(0, sizeof one, &one) == 0;
  };
  Child child([&]() -> int {
    allow_all_seccomp();
    for (int i = 0; i < kRounds; ++i) {
      if (!pin(cpus[static_cast<size_t>(i) % cpus.size()])) return 101;
      int fd = ::open(shared.c_str(), O_RDONLY);
      if (fd < 0) return 102;
      ::close(fd);
      if (::open(absent.c_str(), O_RDONLY) >= 0) return 103;
    }
    std::vector<pid_t> kids;
    for (int cpu : cpus) {
      pid_t kid = ::fork();
      if (kid < 0) return 104;
      if (kid == 0) {
        if (!pin(cpu)) _exit(1);
        for (int i = 0; i < kChildOpens; ++i) {
          int fd = ::open(shared.c_str(), O_RDONLY);
          if (fd < 0) _exit(2);
          ::close(fd);
        }
        _exit(0);
      }
      kids.push_back(kid);
    }
    for (pid_t kid : kids) {
      int st = 0;
      if (::waitpid(kid, &st, 0) != kid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) return 105;
    }
    return 0;
  });
  ASSERT_TRUE(tracer->follow(child.pid()).ok());
  child.release();
  int status = child.wait({tracer.get()});
  ASSERT_TRUE(WIFEXITED(status));
  ASSERT_EQ(WEXITSTATUS(status), 0);
  Trace t;
  ASSERT_TRUE(tracer->finish(t).ok());
  ASSERT_EQ(t.dropped_events, 0u);
  EXPECT_GT(t.repeated_lookups, 0u);
  const FileAccess* f = find(t, shared);
  ASSERT_NE(f, nullptr);
  EXPECT_TRUE(f->found);
  EXPECT_EQ(f->count, static_cast<uint64_t>(kRounds + kChildOpens * static_cast<int>(cpus.size())));
  const FileAccess* a = find(t, absent);
  ASSERT_NE(a, nullptr);
  EXPECT_FALSE(a->found);
  EXPECT_EQ(a->error, ENOENT);
  EXPECT_EQ(a->count, static_cast<uint64_t>(kRounds));
  EXPECT_EQ(t.processes.size(), 1u + cpus.size());
}

TEST_F(TracerBackendTest, EbpfConcurrentTracesDoNotSeeEachOther) {
  if (auto why = ebpf_skip_reason(); !why.empty()) GTEST_SKIP() << why;
  write_file(dir_ / "one.txt");
  write_file(dir_ / "two.txt");
  const std::string one = p("one.txt"), two = p("two.txt");
  auto t1r = st::make_ebpf_tracer(TracerOptions{});
  auto t2r = st::make_ebpf_tracer(TracerOptions{});
  ASSERT_TRUE(t1r.ok() && t2r.ok());
  auto opener = [](const std::string& path) {
    return [path]() -> int {
      allow_all_seccomp();
      for (int i = 0; i < 50; ++i) {
        int fd = ::open(path.c_str(), O_RDONLY);
        if (fd < 0) return 101;
        ::close(fd);
      }
      return 0;
    };
  };
  Child c1(opener(one));
  Child c2(opener(two));
  ASSERT_TRUE((*t1r)->follow(c1.pid()).ok());
  ASSERT_TRUE((*t2r)->follow(c2.pid()).ok());
  c1.release();
  c2.release();
  EXPECT_EQ(WEXITSTATUS(c1.wait({t1r->get(), t2r->get()})), 0);
  EXPECT_EQ(WEXITSTATUS(c2.wait({t1r->get(), t2r->get()})), 0);
  Trace t1, t2;
  ASSERT_TRUE((*t1r)->finish(t1).ok());
  ASSERT_TRUE((*t2r)->finish(t2).ok());
  ASSERT_NE(find(t1, one), nullptr);
  EXPECT_EQ(find(t1, one)->count, 50u);
  EXPECT_EQ(find(t1, two), nullptr);
  ASSERT_NE(find(t2, two), nullptr);
  EXPECT_EQ(find(t2, one), nullptr);
  ASSERT_EQ(t1.processes.size(), 1u);
  EXPECT_EQ(t1.processes[0].pid, c1.pid());
}

// finish() stops the programs at once and leaves closing them to another thread: a followed
// process may outlive its trace, and a trace started right after, in the same process and while
// the first one's programs are still being closed, records exactly its own.
TEST_F(TracerBackendTest, EbpfTraceStartedRightAfterFinishRecordsExactlyItsOwn) {
  if (auto why = ebpf_skip_reason(); !why.empty()) GTEST_SKIP() << why;
  write_file(dir_ / "first.txt");
  write_file(dir_ / "second.txt");
  const std::string first = p("first.txt"), second = p("second.txt");
  int halfway[2], resume[2];  // child -> test: 10 opens done; test -> child: do 10 more
  ASSERT_EQ(::pipe2(halfway, O_CLOEXEC), 0);
  ASSERT_EQ(::pipe2(resume, O_CLOEXEC), 0);
  auto opens = [](const std::string& path, int n) {
    for (int i = 0; i < n; ++i) {
      int fd = ::open(path.c_str(), O_RDONLY);
      if (fd < 0) return false;
      ::close(fd);
    }
    return true;
  };
  auto t1r = st::make_ebpf_tracer(TracerOptions{});
  ASSERT_TRUE(t1r.ok()) << t1r.error().message;
  Child outliving([&]() -> int {
    allow_all_seccomp();
    if (!opens(first, 10)) return 101;
    char c = 1;
    if (::write(halfway[1], &c, 1) != 1 || ::read(resume[0], &c, 1) != 1) return 102;
    return opens(first, 10) ? 0 : 103;
  });
  ASSERT_TRUE((*t1r)->follow(outliving.pid()).ok());
  outliving.release();
  char c = 0;
  ASSERT_EQ(::read(halfway[0], &c, 1), 1);
  Trace t1;
  ASSERT_TRUE((*t1r)->finish(t1).ok());
  ASSERT_NE(find(t1, first), nullptr);
  EXPECT_EQ(find(t1, first)->count, 10u);

  auto t2r = st::make_ebpf_tracer(TracerOptions{});
  ASSERT_TRUE(t2r.ok()) << t2r.error().message;
  Child next([&]() -> int {
    allow_all_seccomp();
    return opens(second, 20) ? 0 : 104;
  });
  ASSERT_TRUE((*t2r)->follow(next.pid()).ok());
  next.release();
  ASSERT_EQ(::write(resume[1], &c, 1), 1);  // the first child goes on, no longer traced
  EXPECT_EQ(WEXITSTATUS(next.wait({t2r->get()})), 0);
  EXPECT_EQ(WEXITSTATUS(outliving.wait({t2r->get()})), 0);
  Trace t2;
  ASSERT_TRUE((*t2r)->finish(t2).ok());
  ASSERT_NE(find(t2, second), nullptr);
  EXPECT_EQ(find(t2, second)->count, 20u);
  EXPECT_EQ(find(t2, first), nullptr);
  ASSERT_EQ(t2.processes.size(), 1u);
  EXPECT_EQ(t2.processes[0].pid, next.pid());
  for (int fd : {halfway[0], halfway[1], resume[0], resume[1]}) ::close(fd);
}

TEST_F(TracerBackendTest, FanotifyRecordsOpensAndExecsOnTheRootfs) {
  if (::geteuid() != 0) GTEST_SKIP() << "fanotify filesystem marks need root";
  const fs::path rootfs = dir_ / "rootfs";
  mount_tmpfs(rootfs);
  fs::create_directories(rootfs / "etc");
  fs::create_directories(rootfs / "bin");
  write_file(rootfs / "etc/app.conf");
  write_file(rootfs / "host.txt");
  fs::copy_file("/bin/true", rootfs / "bin/true");
  fs::permissions(rootfs / "bin/true", fs::perms::owner_all);

  auto tracer_r = st::make_fanotify_tracer(TracerOptions{rootfs, "/"});
  if (!tracer_r.ok()) GTEST_SKIP() << tracer_r.error().message;
  auto& tracer = *tracer_r;
  const std::string conf = (rootfs / "etc/app.conf").string();
  const std::string missing = (rootfs / "etc/missing.conf").string();
  const std::string bin = (rootfs / "bin/true").string();
  Child child([&]() -> int {
    int fd = ::open(conf.c_str(), O_RDONLY);
    if (fd < 0) return 101;
    ::close(fd);
    if (::open(missing.c_str(), O_RDONLY) >= 0) return 102;
    char* const argv[] = {const_cast<char*>("true"), nullptr};
    ::execv(bin.c_str(), argv);
    return 103;
  });
  ASSERT_TRUE(tracer->follow(child.pid()).ok());
  child.release();
  { std::ifstream host(rootfs / "host.txt"); }
  int status = child.wait({tracer.get()});
  ASSERT_TRUE(WIFEXITED(status));
  ASSERT_EQ(WEXITSTATUS(status), 0);
  Trace t;
  ASSERT_TRUE(tracer->finish(t).ok());
  EXPECT_EQ(t.tracer, "fanotify");
  const FileAccess* f = find(t, "/etc/app.conf");
  ASSERT_NE(f, nullptr);
  EXPECT_TRUE(f->ops & st::kOpOpen);
  const FileAccess* e = find(t, "/bin/true");
  ASSERT_NE(e, nullptr);
  EXPECT_TRUE(e->ops & st::kOpExec);
  EXPECT_EQ(find(t, "/host.txt"), nullptr) << "the host's own open was recorded";
  EXPECT_EQ(find(t, "/etc/missing.conf"), nullptr);
  EXPECT_FALSE(t.syscalls_recorded);
  EXPECT_NE(std::find(t.limitations.begin(), t.limitations.end(),
                      "fanotify: stat-only lookups, failed lookups and syscalls were not recorded"),
            t.limitations.end());
}

// The same under a real OCI runtime: busybox image, runc (or whatever works here), both tracers.
class ContainerTraceTest : public ::testing::TestWithParam<st::TracerKind> {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (runs containers under an OCI runtime)";
    auto rt = st::find_runtime("", work_.path() / "rt");
    if (!rt) GTEST_SKIP() << rt.error().message;
    if (GetParam() == st::TracerKind::Ebpf) {
      if (auto why = ebpf_skip_reason(); !why.empty()) GTEST_SKIP() << why;
    }
    using namespace slimtrace::testing;
    LayerSpec base;
    base.entries.push_back(dir("bin/"));
    base.entries.push_back(file("bin/busybox", read_file("/bin/busybox"), 0755));
    for (const char* applet : {"sh", "cat", "ls", "true", "stat"}) {
      base.entries.push_back(symlink(std::string("bin/") + applet, "busybox"));
    }
    base.entries.push_back(dir("etc/"));
    base.entries.push_back(file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"));
    base.entries.push_back(file("etc/group", "root:x:0:\n"));
    base.entries.push_back(file("etc/app.conf", "x\n"));
    base.entries.push_back(dir("tmp/", 01777));
    ImageSpec spec;
    spec.layers.push_back(base);
    spec.container_config = {{"Cmd", {"/bin/sh"}}};
    auto layout = work_.path() / "image";
    write_oci_layout(layout, spec);
    auto ref = slimtrace::image::parse_reference("oci:" + layout.string());
    ASSERT_TRUE(ref) << ref.error().message;
    auto img = slimtrace::image::open_image(*ref, {slimtrace::image::Platform{}, work_.path() / "open", {}});
    ASSERT_TRUE(img) << img.error().message;
    image_ = std::move(img).value();
    auto tree = slimtrace::image::flatten(image_);
    ASSERT_TRUE(tree) << tree.error().message;
    tree_ = std::move(tree).value();
  }

  slimtrace::testing::TempDir work_;
  slimtrace::image::SourceImage image_;
  slimtrace::image::FileTree tree_;
};

TEST_P(ContainerTraceTest, RecordsTheContainersPathsOnly) {
  st::RunSpec s;
  s.image = &image_;
  s.tree = &tree_;
  s.cmd = {"sh", "-c",
           "cat /etc/app.conf; ls /nonexistent; cd /etc && stat passwd >/dev/null; /bin/true; exit 3"};
  s.tracer = GetParam();
  s.work_dir = work_.path() / "run";
  s.stop_grace_seconds = 2;
  auto r = st::run_traced(s, [&](const st::RunningContainer&) -> slimtrace::Status {
    // host activity while the container runs
    std::ifstream host("/etc/hostname");
    return {};
  });
  ASSERT_TRUE(r) << r.error().message;
  const Trace& t = r->trace;
  auto dump = [&] {
    std::string out;
    for (const auto& [k, v] : t.files) out += "  " + k + (v.found ? "" : " (failed)") + "\n";
    return out;
  };
  const FileAccess* conf = find(t, "/etc/app.conf");
  ASSERT_NE(conf, nullptr) << dump();
  EXPECT_TRUE(conf->ops & st::kOpOpen);
  // both tracers see the file an exec really ran, after symlinks: /bin/true -> busybox
  const FileAccess* tru = find(t, "/bin/busybox");
  ASSERT_NE(tru, nullptr) << dump();
  EXPECT_TRUE(tru->ops & st::kOpExec);
  if (GetParam() == st::TracerKind::Ebpf) {
    ASSERT_NE(find(t, "/bin/true"), nullptr) << dump();
    EXPECT_TRUE(find(t, "/bin/true")->ops & st::kOpExec);
  }
  if (std::getenv("SLIMTRACE_TEST_TRACE")) std::fprintf(stderr, "%s", st::to_json(t).dump(1).c_str());
  for (const auto& [path, f] : t.files) {
    EXPECT_FALSE(path.starts_with(work_.path().string())) << "host path recorded: " << path;
  }
  if (GetParam() == st::TracerKind::Ebpf) {
    // the host read its /etc/hostname during the run; the container never did
    EXPECT_EQ(find(t, "/etc/hostname"), nullptr) << dump();
    const FileAccess* missing = find(t, "/nonexistent");
    ASSERT_NE(missing, nullptr) << dump();
    EXPECT_EQ(missing->error, ENOENT);
    const FileAccess* passwd = find(t, "/etc/passwd");
    ASSERT_NE(passwd, nullptr) << dump();
    EXPECT_TRUE(passwd->ops & st::kOpStat);
    auto sh =
        std::find_if(t.execs.begin(), t.execs.end(), [](const ExecRecord& e) { return e.path == "/bin/sh"; });
    ASSERT_NE(sh, t.execs.end());
    EXPECT_EQ(sh->argv, s.cmd);
    EXPECT_TRUE(t.syscalls_recorded);
    for (const char* name : {"execve", "exit_group", "newfstatat", "openat"}) {
      EXPECT_TRUE(has_syscall(t, name)) << name;
    }
    // runc's own set-up before the filter (mounts, pivot_root) is not part of the app's set
    EXPECT_FALSE(has_syscall(t, "pivot_root"));
    EXPECT_EQ(t.dropped_events, 0u);
  } else {
    EXPECT_FALSE(t.syscalls_recorded);
  }
}

INSTANTIATE_TEST_SUITE_P(Tracers, ContainerTraceTest,
                         ::testing::Values(st::TracerKind::Ebpf, st::TracerKind::Fanotify),
                         [](const auto& param_info) {
                           return param_info.param == st::TracerKind::Ebpf ? std::string("ebpf")
                                                                           : std::string("fanotify");
                         });

}  // namespace
