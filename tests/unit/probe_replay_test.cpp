// The verify step: run_probes() in replay mode sends the original run's requests again, and
// compare_reports() tells what the minified image does differently. The server runs in a network
// namespace of its own (no container); the exec replay uses a fake exec.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>

#include "loopback_netns.hpp"
#include "slimtrace/probe/probe.hpp"
#include "slimtrace/probe/verify.hpp"

using namespace slimtrace::probe;

namespace {

// HTTP on 8080 and a bare TCP service on 7000 inside a fresh network namespace. Pages can change
// between runs; "/counter" answers differently to every request.
class ReplayServer {
 public:
  std::atomic<int> tid{0};
  std::atomic<bool> ready{false}, stop{false}, failed{false};

  void set_pages(std::map<std::string, std::string> p) {
    std::lock_guard lock(mu_);
    pages_ = std::move(p);
  }
  // "METHOD path" of every HTTP request since the last call.
  std::vector<std::string> take_requests() {
    std::lock_guard lock(mu_);
    return std::exchange(requests_, {});
  }
  void start() {
    th_ = std::thread([this] { run(); });
    while (!ready && !failed) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  std::string netns() const { return "/proc/self/task/" + std::to_string(tid) + "/ns/net"; }
  ~ReplayServer() {
    stop = true;
    if (th_.joinable()) th_.join();
  }

 private:
  void serve(int c) {
    std::string req;
    char buf[4096];
    while (req.find("\r\n\r\n") == std::string::npos) {
      ssize_t n = ::read(c, buf, sizeof buf);
      if (n <= 0) break;
      req.append(buf, static_cast<size_t>(n));
    }
    auto sp = req.find(' ');
    if (sp == std::string::npos) return;
    std::string method = req.substr(0, sp);
    std::string path = req.substr(sp + 1, req.find(' ', sp + 1) - sp - 1);
    std::string body, status = "200 OK";
    {
      std::lock_guard lock(mu_);
      requests_.push_back(method + " " + path);
      if (path == "/counter") {
        body = "hit " + std::to_string(++hits_);
      } else if (auto it = pages_.find(path); it != pages_.end()) {
        body = it->second;
      } else {
        body = "missing";
        status = "404 Not Found";
      }
    }
    std::string resp =
        "HTTP/1.1 " + status +
        "\r\nContent-Type: text/html\r\nConnection: close\r\nContent-Length: " + std::to_string(body.size()) +
        "\r\n\r\n" + body;
    (void)!::write(c, resp.data(), resp.size());
  }
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
      if (p[1].revents & POLLIN) ::close(::accept(tcp, nullptr, nullptr));
      if (p[0].revents & POLLIN) {
        int c = ::accept(http, nullptr, nullptr);
        serve(c);
        ::close(c);
      }
    }
    ::close(http);
    ::close(tcp);
  }

  std::mutex mu_;
  std::map<std::string, std::string> pages_;
  std::vector<std::string> requests_;
  int hits_ = 0;
  std::thread th_;
};

const std::map<std::string, std::string> kSite = {
    {"/", "<a href=\"/a.html\">a</a> <a href=\"/b.html\">b</a> <a href=\"/counter\">n</a>"},
    {"/a.html", "page a"},
    {"/b.html", "page b"},
};

ProbeTarget target_of(const ReplayServer& srv) {
  ProbeTarget t;
  t.pid = srv.tid;
  t.netns = srv.netns();
  t.exited = [] { return false; };
  return t;
}

const ProbeResult* find(const ProbeReport& r, const std::string& target) {
  for (const auto& x : r.results)
    if (x.target == target) return &x;
  return nullptr;
}

}  // namespace

TEST(ProbeReplay, SameServerSameResults) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root for a network namespace";
  ReplayServer srv;
  srv.set_pages(kSite);
  srv.start();
  if (srv.failed) GTEST_SKIP() << "cannot create a network namespace here";
  ProbeTarget t = target_of(srv);

  ProbeOptions o;
  o.image_ports = {8080};
  auto post = parse_http_probe("POST :8080/a.html").value();
  post.headers = {"Content-Type: text/plain"};
  post.body = "hello";
  o.http_probes = {post};
  o.host_commands = {"echo \"$SLIMTRACE_TARGET_HOST $SLIMTRACE_PORTS\""};
  const ProbeReport original = run_probes(t, o);
  ASSERT_TRUE(original.ready) << original.error;
  ASSERT_EQ(original.failed(), 0u);
  ASSERT_NE(find(original, "http://127.0.0.1:8080/counter"), nullptr);
  EXPECT_EQ(find(original, "http://127.0.0.1:8080/counter")->stable, false);
  ASSERT_NE(find(original, "127.0.0.1:7000"), nullptr);
  srv.take_requests();

  ProbeOptions again;
  again.image_ports = {8080};
  again.replay = &original;
  const ProbeReport replayed = run_probes(t, again);
  EXPECT_TRUE(replayed.ready);
  EXPECT_EQ(replayed.expected_ports, std::vector<int>{8080});
  EXPECT_EQ(replayed.ports, original.ports);
  EXPECT_EQ(replayed.continue_after, "probe");

  // Exactly the recorded HTTP requests, in order, once each: no detection, no second request, no crawl.
  std::vector<std::string> sent;
  for (const auto& x : original.results)
    if (x.kind == "http") sent.push_back(x.method + " " + x.path);
  EXPECT_EQ(srv.take_requests(), sent);

  ASSERT_EQ(replayed.results.size(), original.results.size());
  for (size_t i = 0; i < original.results.size(); ++i) {
    const auto &a = original.results[i], &b = replayed.results[i];
    EXPECT_EQ(b.kind, a.kind);
    EXPECT_EQ(b.origin, a.origin);
    EXPECT_EQ(b.target, a.target);
    EXPECT_EQ(b.expected, a.expected);
    EXPECT_EQ(b.status, a.status) << a.target;
    EXPECT_EQ(b.exit_code, a.exit_code) << a.target;
    EXPECT_TRUE(b.met) << a.target << ": " << b.error;
    if (a.kind == "host-cmd") {
      EXPECT_EQ(b.stdout_digest, a.stdout_digest);  // same environment: same ports
    }
  }
  auto post_result = find(replayed, "http://127.0.0.1:8080/a.html");
  ASSERT_NE(post_result, nullptr);
  EXPECT_EQ(post_result->method, "POST");
  EXPECT_EQ(post_result->request_body, "hello");
  auto diffs = compare_reports(original, replayed);
  for (const auto& d : diffs) ADD_FAILURE() << describe(d);
}

TEST(ProbeReplay, ChangedPagesAreTheDifferences) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root for a network namespace";
  ReplayServer srv;
  srv.set_pages(kSite);
  srv.start();
  if (srv.failed) GTEST_SKIP() << "cannot create a network namespace here";
  ProbeTarget t = target_of(srv);
  ProbeOptions o;
  o.image_ports = {8080};
  const ProbeReport original = run_probes(t, o);
  ASSERT_TRUE(original.ready) << original.error;
  ASSERT_EQ(find(original, "http://127.0.0.1:8080/b.html")->stable, true);

  // The "minified" site: a.html is gone, b.html says something else, /counter keeps counting.
  auto site = kSite;
  site.erase("/a.html");
  site["/b.html"] = "page b, broken";
  srv.set_pages(site);
  ProbeOptions again;
  again.replay = &original;
  const ProbeReport replayed = run_probes(t, again);
  ASSERT_EQ(replayed.results.size(), original.results.size());
  EXPECT_NE(find(replayed, "http://127.0.0.1:8080/counter")->body_digest,
            find(original, "http://127.0.0.1:8080/counter")->body_digest);

  auto diffs = compare_reports(original, replayed);
  ASSERT_EQ(diffs.size(), 2u);
  EXPECT_EQ(describe(diffs[0]), "http GET :8080/a.html: status 200 originally, 404 in the minified image");
  EXPECT_EQ(diffs[1].probe, "http GET :8080/b.html");
  EXPECT_EQ(diffs[1].original, "body " + find(original, "http://127.0.0.1:8080/b.html")->body_digest);
  EXPECT_EQ(diffs[1].minified, "body " + find(replayed, "http://127.0.0.1:8080/b.html")->body_digest);
  EXPECT_EQ(to_json(diffs[0])["minified"], "status 404");
}

TEST(ProbeReplay, ReadinessIsComparedFirst) {
  // The original listened on 8080; the "minified" one never does (no such process).
  ProbeReport original;
  original.ports = {8080};
  original.ready = true;
  original.continue_after = "probe";
  ProbeResult root;
  root.kind = "http";
  root.origin = "default";
  root.target = "http://127.0.0.1:8080/";
  root.method = "GET";
  root.port = 8080;
  root.path = "/";
  root.status = 200;
  root.met = true;
  original.results = {root};
  ProbeTarget t;
  t.netns = "/nonexistent";
  t.exited = [] { return false; };
  ProbeOptions o;
  o.ready_timeout = 0.3;
  o.replay = &original;
  ProbeReport minified = run_probes(t, o);
  EXPECT_FALSE(minified.ready);
  EXPECT_TRUE(minified.results.empty());
  auto diffs = compare_reports(original, minified);
  ASSERT_EQ(diffs.size(), 1u);
  EXPECT_EQ(diffs[0].probe, "readiness");
  EXPECT_NE(diffs[0].minified.find("did not listen on port(s) 8080"), std::string::npos) << diffs[0].minified;
}

TEST(ProbeReplay, ComparesHandBuiltReports) {
  ProbeResult page;
  page.kind = "http";
  page.origin = "crawl";
  page.target = "http://127.0.0.1:80/x";
  page.method = "GET";
  page.port = 80;
  page.path = "/x";
  page.status = 200;
  page.body_digest = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
  page.stable = false;
  page.expected = "any HTTP response";
  page.met = true;
  ProbeResult tcp;
  tcp.kind = "tcp";
  tcp.origin = "default";
  tcp.target = "127.0.0.1:6379";
  tcp.port = 6379;
  tcp.expected = "a TCP connection";
  tcp.met = true;
  ProbeResult cmd;
  cmd.kind = "host-cmd";
  cmd.origin = "user";
  cmd.target = "./run-tests.sh";
  cmd.exit_code = 0;
  cmd.stdout_digest = "sha256:aa";
  cmd.expected = "exit 0";
  cmd.met = true;

  ProbeReport original;
  original.ready = true;
  original.container_exit_code = 0;
  original.container_stdout_digest =
      "sha256:2222222222222222222222222222222222222222222222222222222222222222";
  original.results = {page, tcp, cmd};

  // Same outcomes; an unstable body and a command's stdout that differ do not count.
  ProbeReport same = original;
  same.results[0].body_digest = "sha256:other";
  same.results[2].stdout_digest = "sha256:bb";
  EXPECT_TRUE(compare_reports(original, same).empty());

  ProbeReport worse = original;
  worse.container_exit_code = 1;
  worse.container_stdout_digest = "sha256:3333333333333333333333333333333333333333333333333333333333333333";
  worse.results[0].status.reset();
  worse.results[0].error = "Connection refused";
  worse.results[0].met = false;
  worse.results[1].met = false;
  worse.results[1].error = "connect: Connection refused";
  worse.results[2].exit_code = 1;
  worse.results[2].met = false;
  auto diffs = compare_reports(original, worse);
  std::vector<std::string> lines;
  for (const auto& d : diffs) lines.push_back(describe(d));
  EXPECT_EQ(
      lines,
      (std::vector<std::string>{
          "http GET :80/x: status 200 originally, no response (Connection refused) in the minified image",
          "tcp :6379: a TCP connection originally, not met: connect: Connection refused in the minified "
          "image",
          "host-cmd './run-tests.sh': exit code 0 originally, 1 in the minified image",
          "container exit code: 0 originally, 1 in the minified image",
          "container stdout: sha256:222222222222 originally, sha256:333333333333 in the minified image",
      }));

  // A batch job that no longer exits by itself, and probes that were never run.
  ProbeReport cut = original;
  cut.container_exit_code.reset();
  cut.container_stdout_digest.clear();
  cut.results.resize(1);
  diffs = compare_reports(original, cut);
  ASSERT_EQ(diffs.size(), 4u);
  EXPECT_EQ(describe(diffs[0]), "tcp :6379: run originally, not run in the minified image");
  EXPECT_EQ(diffs[1].probe, "host-cmd './run-tests.sh'");
  EXPECT_EQ(diffs[2].minified, "none (the container did not exit by itself)");
  EXPECT_EQ(diffs[3].minified, "none");

  // Reports that do not pair up.
  ProbeReport other = original;
  other.results[1].target = "127.0.0.1:6380";
  diffs = compare_reports(original, other);
  ASSERT_EQ(diffs.size(), 1u);
  EXPECT_EQ(diffs[0].probe, "tcp :6379");
}

TEST(ProbeReplay, ExecProbesAreReplayedThroughTargetExec) {
  ProbeReport original;
  original.ready = true;
  original.continue_after = "probe";
  for (const char* c : {"cat /etc/app.conf", "test -x /bin/app"}) {
    ProbeResult r;
    r.kind = "exec";
    r.origin = "user";
    r.target = c;
    r.exit_code = 0;
    r.stdout_digest = "sha256:x";
    r.expected = "exit 0";
    r.met = true;
    original.results.push_back(r);
  }
  std::vector<std::vector<std::string>> calls;
  int fail_code = 0;
  ProbeTarget t;
  t.netns = "/nonexistent";
  t.exited = [] { return false; };
  t.exec = [&](const std::vector<std::string>& argv, int) -> slimtrace::Result<ExecOutput> {
    calls.push_back(argv);
    ExecOutput out;
    out.exit_code = argv.back() == "test -x /bin/app" ? fail_code : 0;
    out.out = "conf";
    return out;
  };
  ProbeOptions o;
  o.replay = &original;
  ProbeReport same = run_probes(t, o);
  EXPECT_TRUE(same.ready);
  EXPECT_EQ(same.continue_after, "probe");
  EXPECT_EQ(calls, (std::vector<std::vector<std::string>>{{"/bin/sh", "-c", "cat /etc/app.conf"},
                                                          {"/bin/sh", "-c", "test -x /bin/app"}}));
  ASSERT_EQ(same.results.size(), 2u);
  EXPECT_TRUE(same.results[1].met);
  EXPECT_TRUE(compare_reports(original, same).empty());

  // The minified image lost /bin/app; --continue-after given for the verify run wins over the original's.
  fail_code = 1;
  o.continue_after = ContinueAfter{ContinueMode::Timeout, 0};
  ProbeReport worse = run_probes(t, o);
  EXPECT_EQ(worse.continue_after, "timeout:0");
  auto diffs = compare_reports(original, worse);
  ASSERT_EQ(diffs.size(), 1u);
  EXPECT_EQ(describe(diffs[0]), "exec 'test -x /bin/app': exit code 0 originally, 1 in the minified image");
}
