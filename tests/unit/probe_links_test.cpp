#include <gtest/gtest.h>

#include "slimtrace/probe/links.hpp"
#include "slimtrace/probe/netns.hpp"

using namespace slimtrace::probe;

TEST(ProbeLinks, HtmlHrefSrcAndInlineCss) {
  auto links = extract_html_links(
      R"X(<a href="/a.html">a</a><IMG SRC='img/x.png'><link rel=stylesheet href=site.css>)X"
      R"X(<div data-src="no"></div><div style="background: url('/bg.png')"></div><a href="/q?a=1&amp;b=2">)X");
  EXPECT_EQ(links, (std::vector<std::string>{"/a.html", "img/x.png", "site.css", "/q?a=1&b=2", "/bg.png"}));
}

TEST(ProbeLinks, CssUrlAndImport) {
  auto links = extract_css_links(
      R"(@import "base.css"; body { background: url( "../i/a.png" ) } .x{src:url(f.woff)})");
  EXPECT_EQ(links, (std::vector<std::string>{"base.css", "../i/a.png", "f.woff"}));
}

TEST(ProbeLinks, ExtractionIsBounded) {
  std::string html;
  for (int i = 0; i < 100; ++i) html += "<a href=\"/p" + std::to_string(i) + "\">";
  EXPECT_EQ(extract_html_links(html, 10).size(), 10u);
  EXPECT_EQ(extract_html_links("<a href=\"unterminated").size(), 0u);
}

TEST(ProbeLinks, SameOriginResolution) {
  Origin o{"http", 8080};
  EXPECT_EQ(same_origin_path("page2.html", "/dir/index.html", o), "/dir/page2.html");
  EXPECT_EQ(same_origin_path("../css/a.css", "/dir/sub/x.html", o), "/dir/css/a.css");
  EXPECT_EQ(same_origin_path("../../../../etc", "/a/b", o), "/etc");
  EXPECT_EQ(same_origin_path("/x#frag", "/", o), "/x");
  EXPECT_EQ(same_origin_path("?page=2", "/list?page=1", o), "/list?page=2");
  EXPECT_EQ(same_origin_path("http://127.0.0.1:8080/y", "/", o), "/y");
  EXPECT_EQ(same_origin_path("http://localhost:8080", "/", o), "/");
  EXPECT_EQ(same_origin_path("//localhost:8080/z", "/", o), "/z");
  EXPECT_EQ(same_origin_path("./", "/d/e", o), "/d/");
}

TEST(ProbeLinks, OtherOriginsAndSchemesAreDropped) {
  Origin o{"http", 8080};
  for (const char* link :
       {"http://example.com/x", "https://127.0.0.1:8080/x", "http://127.0.0.1:9090/",
        "//cdn.example.com/lib.js", "mailto:a@b", "javascript:void(0)", "data:image/png;base64,AA", "#top",
        "", "http://user@127.0.0.1:8080/", "http://127.0.0.1/"})
    EXPECT_FALSE(same_origin_path(link, "/", o).has_value()) << link;
  EXPECT_EQ(same_origin_path("https://127.0.0.1/a", "/", Origin{"https", 443}), "/a");
}

TEST(ProbeNetns, ParsesListeningSocketsOfProcNetTcp) {
  const char* tcp =
      "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
      "   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1\n"
      "   1: 0100007F:1B58 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1\n"
      "   2: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 3 1\n";
  auto s = parse_proc_net_tcp(tcp, false);
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[0].port, 8080);
  EXPECT_FALSE(s[0].loopback_only);
  EXPECT_EQ(s[1].port, 7000);
  EXPECT_TRUE(s[1].loopback_only);
  const char* tcp6 =
      "  sl  local_address                         remote_address                        st\n"
      "   0: 00000000000000000000000001000000:18EB 00000000000000000000000000000000:0000 0A 0 0 0\n"
      "   1: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 0 0 0\n";
  auto s6 = parse_proc_net_tcp(tcp6, true);
  ASSERT_EQ(s6.size(), 2u);
  EXPECT_TRUE(s6[0].v6_loopback);
  EXPECT_EQ(s6[0].port, 6379);
  s.insert(s.end(), s6.begin(), s6.end());
  EXPECT_EQ(listening_ports(s), (std::vector<int>{6379, 7000, 8080}));
  EXPECT_TRUE(parse_proc_net_tcp("", false).empty());
  EXPECT_TRUE(parse_proc_net_tcp("header\ngarbage line\n", false).empty());
}
