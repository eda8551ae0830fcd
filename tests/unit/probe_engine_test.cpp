// run_probes() against a tiny HTTP server and a TCP-only service in a network namespace of their own
// (no container): readiness, http/tcp detection, crawl bounds, user probes, host command probe.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <thread>

#include "loopback_netns.hpp"
#include "slimtrace/probe/probe.hpp"

using namespace slimtrace::probe;

namespace {

class NsServer {
 public:
  std::map<std::string, std::string> pages;
  std::atomic<int> tid{0};
  std::atomic<bool> ready{false}, stop{false}, failed{false};
  std::thread th;

  void start() {
    th = std::thread([this] { run(); });
    while (!ready && !failed) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ~NsServer() {
    stop = true;
    if (th.joinable()) th.join();
  }

 private:
  void run() {
    if (!slimtrace::testing::enter_new_netns_with_loopback()) {
      failed = true;
      return;
    }
    int http = slimtrace::testing::listen_on_loopback(8080),
        tcp = slimtrace::testing::listen_on_loopback(7000);
    if (http < 0 || tcp < 0) {
      failed = true;
      return;
    }
    tid = static_cast<int>(::syscall(SYS_gettid));
    ready = true;
    while (!stop) {
      pollfd p[2] = {{http, POLLIN, 0}, {tcp, POLLIN, 0}};
      if (::poll(p, 2, 50) <= 0) continue;
      if (p[1].revents & POLLIN) {
        int c = ::accept(tcp, nullptr, nullptr);
        (void)!::write(c, "+PONG\r\n", 7);
        ::close(c);
      }
      if (p[0].revents & POLLIN) {
        int c = ::accept(http, nullptr, nullptr);
        std::string req;
        char buf[4096];
        while (req.find("\r\n\r\n") == std::string::npos) {
          ssize_t n = ::read(c, buf, sizeof buf);
          if (n <= 0) break;
          req.append(buf, static_cast<size_t>(n));
        }
        auto sp = req.find(' ');
        std::string path = req.substr(sp + 1, req.find(' ', sp + 1) - sp - 1);
        auto it = pages.find(path);
        std::string body = it == pages.end() ? "missing" : it->second;
        std::string status = it == pages.end() ? "404 Not Found" : "200 OK";
        std::string type =
            path.size() > 4 && path.substr(path.size() - 4) == ".css" ? "text/css" : "text/html";
        std::string resp = "HTTP/1.1 " + status + "\r\nContent-Type: " + type +
                           "\r\nConnection: close\r\nContent-Length: " + std::to_string(body.size()) +
                           "\r\n\r\n" + body;
        (void)!::write(c, resp.data(), resp.size());
        ::close(c);
      }
    }
    ::close(http);
    ::close(tcp);
  }
};

}  // namespace

TEST(ProbeEngine, ProbesHttpAndTcpInsideTheNamespace) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root for a network namespace";
  NsServer srv;
  srv.pages = {{"/", "<a href=\"/a.html\">a</a><a href=\"http://example.com/\">x</a><link href=\"s.css\">"},
               {"/a.html", "<a href=\"b.html\">b</a>"},
               {"/b.html", "<a href=\"c.html\">c</a>"},
               {"/c.html", "c"},
               {"/s.css", "body{background:url(img.png)}"},
               {"/img.png", "PNG"}};
  srv.start();
  if (srv.failed) GTEST_SKIP() << "cannot create a network namespace here";

  ProbeTarget t;
  t.pid = srv.tid;
  t.netns = "/proc/self/task/" + std::to_string(srv.tid) + "/ns/net";
  t.exited = [] { return false; };
  ProbeOptions o;
  o.image_ports = {8080};
  o.crawl_depth = 2;
  o.http_probes = {parse_http_probe("GET /nothere").value(), parse_http_probe("GET :8080/a.html").value()};
  o.http_probes.back().expect_status = {201};
  o.host_commands = {"echo \"$SLIMTRACE_TARGET_HOST $SLIMTRACE_PORTS\""};
  ProbeReport r = run_probes(t, o);

  EXPECT_TRUE(r.ready);
  EXPECT_EQ(r.ports, (std::vector<int>{7000, 8080}));
  EXPECT_EQ(r.continue_after, "probe");
  std::map<std::string, const ProbeResult*> by_target;
  for (const auto& x : r.results) by_target[x.origin + " " + x.target] = &x;
  ASSERT_TRUE(by_target.count("default 127.0.0.1:7000"));
  EXPECT_EQ(by_target["default 127.0.0.1:7000"]->kind, "tcp");
  EXPECT_TRUE(by_target["default 127.0.0.1:7000"]->met);
  ASSERT_TRUE(by_target.count("default http://127.0.0.1:8080/"));
  EXPECT_EQ(by_target["default http://127.0.0.1:8080/"]->status, 200);
  EXPECT_EQ(by_target["default http://127.0.0.1:8080/"]->stable, true);
  // Depth 2: /a.html (1), /b.html (2); /c.html is one link too deep. The CSS asset is followed.
  EXPECT_TRUE(by_target.count("crawl http://127.0.0.1:8080/b.html"));
  EXPECT_TRUE(by_target.count("crawl http://127.0.0.1:8080/s.css"));
  EXPECT_TRUE(by_target.count("crawl http://127.0.0.1:8080/img.png"));
  EXPECT_FALSE(by_target.count("crawl http://127.0.0.1:8080/c.html"));
  // A user probe: 404 meets "below 500"; an explicit expectation that is not met fails.
  ASSERT_TRUE(by_target.count("user http://127.0.0.1:8080/nothere"));
  EXPECT_TRUE(by_target["user http://127.0.0.1:8080/nothere"]->met);
  ASSERT_TRUE(by_target.count("user http://127.0.0.1:8080/a.html"));
  EXPECT_FALSE(by_target["user http://127.0.0.1:8080/a.html"]->met);
  EXPECT_EQ(r.failed(), 1u);
  ASSERT_EQ(r.results.back().kind, "host-cmd");
  EXPECT_TRUE(r.results.back().met);
  EXPECT_EQ(r.results.back().exit_code, 0);
  for (const auto& x : r.results)
    if (!x.met) {
      EXPECT_EQ(x.target, "http://127.0.0.1:8080/a.html") << x.error;
    }
  for (const auto& x : r.results) EXPECT_EQ(x.target.find("example.com"), std::string::npos);

  auto host = run_host_command(t.netns, "echo \"$SLIMTRACE_TARGET_HOST\"; cat /proc/net/tcp | grep -c ' 0A '",
                               {"SLIMTRACE_TARGET_HOST=127.0.0.1"}, 10000);
  ASSERT_TRUE(host.ok()) << host.error().message;
  EXPECT_EQ(host->exit_code, 0);
  // Inside the namespace the command sees exactly the two listening sockets of the server.
  EXPECT_EQ(host->out, "127.0.0.1\n2\n");

  // Crawl bounded by page count: "/" plus one page.
  o.http_probes.clear();
  o.host_commands.clear();
  o.crawl_depth = 5;
  o.crawl_max_pages = 2;
  r = run_probes(t, o);
  size_t crawled = 0;
  for (const auto& x : r.results) crawled += x.origin == "crawl";
  EXPECT_EQ(crawled, 1u);
}

TEST(ProbeEngine, TimeoutAndExitedContainer) {
  ProbeTarget t;
  t.pid = 0;
  t.netns = "/nonexistent";
  bool gone = false;
  t.exited = [&gone] { return gone; };
  ProbeOptions o;
  o.image_ports = {8080};
  o.ready_timeout = 0.3;
  ProbeReport r = run_probes(t, o);
  EXPECT_FALSE(r.ready);
  EXPECT_NE(r.error.find("did not listen on port(s) 8080"), std::string::npos) << r.error;
  EXPECT_FALSE(r.log_tail.empty());

  // No ports and an explicit timeout: the overall probe timeout fires and says so.
  o.image_ports.clear();
  o.probe_timeout = 0.3;
  r = run_probes(t, o);
  EXPECT_TRUE(r.timed_out);
  EXPECT_EQ(r.continue_after, "exit");

  gone = true;
  r = run_probes(t, o);
  EXPECT_TRUE(r.ready);
  EXPECT_FALSE(r.timed_out);
  EXPECT_EQ(r.continue_after, "exit");
}

// The default probe tries http, then https with any certificate: a self-signed TLS server in the
// namespace must be recorded as an https service, not as a bare TCP port.
TEST(ProbeEngine, SelfSignedHttpsIsProbed) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root for a network namespace";
  if (::access("/usr/bin/openssl", X_OK) != 0) GTEST_SKIP() << "needs /usr/bin/openssl to serve TLS";
  NsServer srv;
  srv.pages = {{"/", "plain"}};
  srv.start();
  if (srv.failed) GTEST_SKIP() << "cannot create a network namespace here";
  char dir_tmpl[] = "/tmp/slimtrace-tls-XXXXXX";
  ASSERT_NE(::mkdtemp(dir_tmpl), nullptr);
  const std::string dir = dir_tmpl, key = dir + "/key.pem", cert = dir + "/cert.pem";
  const std::string gen = "openssl req -x509 -newkey rsa:2048 -nodes -keyout " + key + " -out " + cert +
                          " -subj /CN=localhost -days 1 >/dev/null 2>&1";
  ASSERT_EQ(std::system(gen.c_str()), 0);
  const std::string netns = "/proc/self/task/" + std::to_string(srv.tid) + "/ns/net";
  int nsfd = ::open(netns.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(nsfd, 0);
  pid_t pid = ::fork();
  if (pid == 0) {
    if (::setns(nsfd, CLONE_NEWNET) != 0) ::_exit(126);
    int null = ::open("/dev/null", O_RDWR);
    ::dup2(null, 0);
    ::dup2(null, 1);
    ::dup2(null, 2);
    ::execl("/usr/bin/openssl", "openssl", "s_server", "-accept", "8443", "-www", "-quiet", "-cert",
            cert.c_str(), "-key", key.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::close(nsfd);
  ASSERT_GT(pid, 0);

  ProbeTarget t;
  t.pid = srv.tid;
  t.netns = netns;
  t.exited = [] { return false; };
  ProbeOptions o;
  o.image_ports = {8443};
  o.crawl = false;
  ProbeReport r = run_probes(t, o);
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  std::filesystem::remove_all(dir);

  EXPECT_TRUE(r.ready);
  const ProbeResult* https = nullptr;
  for (const auto& x : r.results)
    if (x.target.find(":8443") != std::string::npos) https = &x;
  ASSERT_NE(https, nullptr) << "no result for port 8443";
  EXPECT_EQ(https->kind, "https") << https->target << " " << https->error;
  EXPECT_EQ(https->status, 200);
  EXPECT_TRUE(https->met);
}
