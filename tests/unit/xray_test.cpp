// `slimtrace xray`: the report a user reads to decide what to fix, on images the tests make.
#include "slimtrace/image/xray.hpp"

#include <gtest/gtest.h>

#include <algorithm>

#include "image_builder.hpp"
#include "slimtrace/image/file_tree.hpp"
#include "slimtrace/image/reference.hpp"
#include "slimtrace/image/source.hpp"
#include "slimtrace/workdir.hpp"

namespace t = slimtrace::testing;
using namespace slimtrace::image;

namespace {

struct Xrayed {
  t::BuiltImage built;
  XrayReport report;
};

Xrayed run_xray(const t::TempDir& tmp, const t::ImageSpec& spec, XrayOptions options = {}) {
  Xrayed out;
  out.built = t::write_oci_layout(tmp / "layout", spec);
  auto ref = parse_reference("oci:" + (tmp / "layout").string());
  EXPECT_TRUE(ref.ok()) << ref.error().message;
  auto work = slimtrace::WorkDir::create();
  EXPECT_TRUE(work.ok());
  auto img = open_image(*ref, OpenOptions{Platform{}, work->path()});
  EXPECT_TRUE(img.ok()) << img.error().message;
  if (!img.ok()) return out;
  auto tree = flatten(*img);
  EXPECT_TRUE(tree.ok()) << tree.error().message;
  if (!tree.ok()) return out;
  auto r = xray(*img, *tree, options);
  EXPECT_TRUE(r.ok()) << r.error().message;
  if (r.ok()) out.report = std::move(r).value();
  return out;
}

std::vector<const Finding*> find_all(const XrayReport& r, const std::string& id) {
  std::vector<const Finding*> out;
  for (const auto& f : r.findings) {
    if (f.id == id) out.push_back(&f);
  }
  return out;
}

const Finding* find_with_path(const XrayReport& r, const std::string& id, const std::string& path) {
  for (const auto* f : find_all(r, id)) {
    if (std::find(f->paths.begin(), f->paths.end(), path) != f->paths.end()) return f;
  }
  return nullptr;
}

bool mentions(const XrayReport& r, const std::string& path) {
  for (const auto& f : r.findings) {
    if (std::find(f.paths.begin(), f.paths.end(), path) != f.paths.end()) return true;
  }
  return false;
}

const std::string kPrivateKey =
    "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n-----END OPENSSH "
    "PRIVATE KEY-----\n";
const std::string kCertificate =
    "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----\n";

// The deliberate waste of the issue's example image: a compiler, an apt cache, secrets, a file
// deleted in a later layer, root and no healthcheck.
t::ImageSpec dirty_spec() {
  t::ImageSpec spec;
  t::LayerSpec base;
  base.created_by = "/bin/sh -c apt-get update && apt-get install -y gcc make";
  base.entries = {
      t::dir("usr/"),
      t::dir("usr/bin/"),
      t::file("usr/bin/x86_64-linux-gnu-gcc-12", std::string(1000, 'g'), 0755),
      t::symlink("usr/bin/gcc", "x86_64-linux-gnu-gcc-12"),
      t::file("usr/bin/make", std::string(300, 'm'), 0755),
      t::file("usr/bin/apt-get", std::string(100, 'a'), 0755),
      t::file("usr/bin/busybox", std::string(700, 'b'), 0755),
      t::file("usr/lib/gcc/x86_64-linux-gnu/12/cc1", std::string(2000, 'c'), 0755),
      t::file("var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_InRelease", std::string(4000, 'l')),
      t::file("var/lib/apt/lists/lock", ""),
  };
  t::LayerSpec app;
  app.created_by = "COPY . /app";
  app.entries = {
      t::dir("app/"),
      t::file("app/.env", "DB_PASSWORD=hunter2\n"),
      t::file("app/.env.example", "DB_PASSWORD=\n"),
      t::dir("app/.git/"),
      t::file("app/.git/config", std::string(50, 'x')),
      t::file("app/.git/HEAD", "ref: refs/heads/main\n"),
      t::file("app/cert.pem", kCertificate),
      t::file("app/secret.key", kPrivateKey, 0600),
      t::file("app/big.tmp", std::string(500, 't')),
      t::file("root/.ssh/id_rsa", kPrivateKey, 0600),
      t::file("root/.npmrc", "//registry.npmjs.org/:_authToken=npm_abcdef\n"),
      t::file("home/dev/.npmrc", "registry=https://registry.npmjs.org/\n"),
  };
  t::LayerSpec cleanup;
  cleanup.created_by = "RUN rm /app/big.tmp /app/secret.key";
  cleanup.entries = {t::whiteout("app/big.tmp"), t::whiteout("app/secret.key")};
  spec.layers = {base, app, cleanup};
  spec.container_config = {{"Entrypoint", {"/app/server"}}};
  return spec;
}

}  // namespace

TEST(Xray, ReportsEachKindOfWasteWithItsPathsAndBytes) {
  t::TempDir tmp;
  auto x = run_xray(tmp, dirty_spec());
  const auto& r = x.report;

  ASSERT_EQ(r.layers.size(), 3u);
  EXPECT_EQ(r.layers[0].created_by, "/bin/sh -c apt-get update && apt-get install -y gcc make");
  EXPECT_EQ(r.layers[2].created_by, "RUN rm /app/big.tmp /app/secret.key");
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(r.layers[i].digest, x.built.layer_digests[i]);
    EXPECT_EQ(r.layers[i].diff_id, x.built.diff_ids[i]);
    EXPECT_EQ(
        r.layers[i].compressed_size,
        static_cast<int64_t>(t::read_file(t::blob_path(tmp / "layout", x.built.layer_digests[i])).size()));
    EXPECT_GT(r.layers[i].uncompressed_size, 0);
  }

  const auto* tooling = find_with_path(r, "build-tooling", "/usr/bin/x86_64-linux-gnu-gcc-12");
  ASSERT_NE(tooling, nullptr);
  EXPECT_EQ(tooling->severity, Severity::High);
  EXPECT_EQ(tooling->paths_total, 4);  // gcc-12, the gcc symlink, make, cc1
  EXPECT_EQ(tooling->bytes, 1000 + 300 + 2000);
  EXPECT_EQ(tooling->paths.front(), "/usr/lib/gcc/x86_64-linux-gnu/12/cc1");  // biggest first
  EXPECT_NE(std::find(tooling->paths.begin(), tooling->paths.end(), "/usr/bin/gcc"), tooling->paths.end());
  EXPECT_NE(std::find(tooling->paths.begin(), tooling->paths.end(), "/usr/bin/make"), tooling->paths.end());
  EXPECT_FALSE(mentions(r, "/usr/bin/busybox"));

  const auto* managers = find_with_path(r, "package-manager", "/usr/bin/apt-get");
  ASSERT_NE(managers, nullptr);
  EXPECT_LE(managers->severity, Severity::Low);
  EXPECT_NE(managers->advice.find("distroless"), std::string::npos);

  const auto* cache = find_with_path(r, "package-cache", "/var/lib/apt/lists");
  ASSERT_NE(cache, nullptr);
  EXPECT_EQ(cache->severity, Severity::Medium);
  EXPECT_EQ(cache->paths_total, 1);
  EXPECT_EQ(cache->bytes, 4000);

  const auto* env = find_with_path(r, "secret", "/app/.env");
  ASSERT_NE(env, nullptr);
  EXPECT_GE(env->severity, Severity::High);
  EXPECT_EQ(env->bytes, 20);
  EXPECT_FALSE(mentions(r, "/app/.env.example"));

  const auto* key = find_with_path(r, "secret", "/root/.ssh/id_rsa");
  ASSERT_NE(key, nullptr);
  EXPECT_EQ(key->severity, Severity::Critical);
  EXPECT_EQ(key->bytes, static_cast<int64_t>(kPrivateKey.size()));
  EXPECT_FALSE(mentions(r, "/app/cert.pem"));  // a certificate is not a private key

  const auto* git = find_with_path(r, "secret", "/app/.git");
  ASSERT_NE(git, nullptr);
  EXPECT_GE(git->severity, Severity::High);
  EXPECT_EQ(git->bytes, 50 + 21);

  const auto* npmrc = find_with_path(r, "secret", "/root/.npmrc");
  ASSERT_NE(npmrc, nullptr);
  EXPECT_EQ(npmrc->severity, Severity::Critical);
  EXPECT_FALSE(mentions(r, "/home/dev/.npmrc"));  // no token in it

  // Deleted, yet still in layer 1's blob.
  const auto* hidden = find_with_path(r, "secret", "/app/secret.key");
  ASSERT_NE(hidden, nullptr);
  EXPECT_EQ(hidden->severity, Severity::Critical);
  EXPECT_NE(hidden->title.find("still present in layer 1 though deleted in layer 2"), std::string::npos)
      << hidden->title;
  EXPECT_EQ(hidden->bytes, static_cast<int64_t>(kPrivateKey.size()));

  ASSERT_EQ(find_all(r, "root-user").size(), 1u);
  EXPECT_EQ(find_all(r, "root-user")[0]->severity, Severity::Medium);
  ASSERT_EQ(find_all(r, "no-healthcheck").size(), 1u);
  EXPECT_EQ(find_all(r, "no-healthcheck")[0]->severity, Severity::Low);

  const int64_t wasted = 500 + static_cast<int64_t>(kPrivateKey.size());
  EXPECT_EQ(r.wasted_bytes, wasted);
  const auto* waste = find_with_path(r, "wasted-space", "/app/big.tmp");
  ASSERT_NE(waste, nullptr);
  EXPECT_EQ(waste->bytes, wasted);
  EXPECT_EQ(waste->paths.front(), "/app/big.tmp");

  EXPECT_EQ(r.max_severity(), Severity::Critical);
  // Most severe first, so a reader sees what matters at the top.
  for (size_t i = 1; i < r.findings.size(); ++i)
    EXPECT_GE(r.findings[i - 1].severity, r.findings[i].severity);
}

TEST(Xray, CleanImageHasNothingAboveInfo) {
  t::TempDir tmp;
  t::ImageSpec spec;
  t::LayerSpec l;
  l.entries = {t::dir("app/"), t::file("app/server", std::string(4096, 's'), 0755),
               t::file("etc/passwd", "app:x:1000:1000::/app:/sbin/nologin\n")};
  spec.layers = {l};
  spec.container_config = {{"User", "1000:1000"},
                           {"Entrypoint", {"/app/server"}},
                           {"Healthcheck", {{"Test", {"CMD", "/app/server", "--health"}}}}};
  auto x = run_xray(tmp, spec);
  auto worst = x.report.max_severity();
  EXPECT_TRUE(!worst || *worst <= Severity::Info) << x.report.findings.front().id;
  EXPECT_EQ(x.report.wasted_bytes, 0);
  EXPECT_DOUBLE_EQ(x.report.efficiency, 1.0);
  EXPECT_EQ(x.report.total_bytes, 4096 + 36);
}

TEST(Xray, RootUserSpellings) {
  for (std::string user : {"root", "0", "0:0", "root:root"}) {
    t::TempDir tmp;
    t::ImageSpec spec;
    t::LayerSpec l;
    l.entries = {t::file("app", "x")};
    spec.layers = {l};
    spec.container_config = {{"User", user}, {"Healthcheck", {{"Test", {"CMD", "true"}}}}};
    auto x = run_xray(tmp, spec);
    EXPECT_EQ(find_all(x.report, "root-user").size(), 1u) << user;
    EXPECT_TRUE(find_all(x.report, "no-healthcheck").empty());
  }
}

// Worked example, as dive computes it: /data/a is 100 bytes, then overwritten with 30; /data/b
// (50 bytes) is deleted. Per path: a: min 30 of 130; b: min 0 of 50 (dive sizes a file's whiteout
// as 0). Efficiency 30/180; wasted: the 100-byte version and the deleted 50.
TEST(Xray, WastedBytesAndEfficiencyAsDive) {
  t::TempDir tmp;
  t::ImageSpec spec;
  t::LayerSpec l0, l1, l2;
  l0.entries = {t::file("data/a", std::string(100, 'a')), t::file("data/b", std::string(50, 'b'))};
  l1.entries = {t::file("data/a", std::string(30, 'A'))};
  l2.entries = {t::whiteout("data/b")};
  spec.layers = {l0, l1, l2};
  auto x = run_xray(tmp, spec);
  const auto& r = x.report;
  EXPECT_EQ(r.wasted_bytes, 150);
  EXPECT_NEAR(r.efficiency, 30.0 / 180.0, 1e-9);
  EXPECT_EQ(r.total_bytes, 30);
  ASSERT_EQ(r.layers.size(), 3u);
  EXPECT_EQ(r.layers[1].stats.bytes_removed, 100);
  EXPECT_EQ(r.layers[2].stats.bytes_removed, 50);
  const auto* waste = find_with_path(r, "wasted-space", "/data/a");
  ASSERT_NE(waste, nullptr);
  EXPECT_EQ(waste->bytes, 150);
  EXPECT_EQ(waste->paths, (std::vector<std::string>{"/data/a", "/data/b"}));
}

TEST(Xray, LargestFilesAndDirectories) {
  t::TempDir tmp;
  t::ImageSpec spec;
  t::LayerSpec l;
  // "/d-e" sorts between "/d" and "/d/..." in a path-ordered map: directory sums must not rely on
  // children being contiguous.
  l.entries = {t::file("d/x", std::string(10, 'x')), t::file("d-e/y", std::string(20, 'y')),
               t::file("d/sub/z", std::string(5, 'z')), t::file("top", std::string(1, 't'))};
  spec.layers = {l};
  auto x = run_xray(tmp, spec, XrayOptions{3});
  const auto& r = x.report;
  ASSERT_EQ(r.largest_files.size(), 3u);
  EXPECT_EQ(r.largest_files[0].path, "/d-e/y");
  EXPECT_EQ(r.largest_files[0].bytes, 20);
  EXPECT_EQ(r.largest_files[1].path, "/d/x");
  EXPECT_EQ(r.largest_files[2].path, "/d/sub/z");
  ASSERT_EQ(r.largest_dirs.size(), 3u);
  EXPECT_EQ(r.largest_dirs[0].path, "/d-e");
  EXPECT_EQ(r.largest_dirs[0].bytes, 20);
  EXPECT_EQ(r.largest_dirs[1].path, "/d");
  EXPECT_EQ(r.largest_dirs[1].bytes, 15);
  EXPECT_EQ(r.largest_dirs[2].path, "/d/sub");
  EXPECT_EQ(r.largest_dirs[2].bytes, 5);
}

TEST(Xray, LargestDirectoriesSkipSingleChildChains) {
  t::TempDir tmp;
  t::ImageSpec spec;
  t::LayerSpec l;
  l.entries = {t::file("var/lib/apt/lists/a", std::string(40, 'a')),
               t::file("var/log/x", std::string(2, 'x')), t::file("opt/p/q", "q")};
  spec.layers = {l};
  auto x = run_xray(tmp, spec);
  std::vector<std::string> dirs;
  for (const auto& d : x.report.largest_dirs) dirs.push_back(d.path);
  EXPECT_EQ(dirs, (std::vector<std::string>{"/var", "/var/lib/apt/lists", "/var/log", "/opt/p"}));
}

TEST(Xray, ToolchainsAndCachesAreReportedPerTree) {
  t::TempDir tmp;
  t::ImageSpec spec;
  t::LayerSpec l;
  l.entries = {t::file("usr/local/go/bin/go", std::string(300, 'g'), 0755),
               t::file("usr/local/go/src/fmt/print.go", std::string(200, 'p')),
               t::file("root/.cache/pip/http/ab/cd", std::string(64, 'p')),
               t::file("home/node/.npm/_cacache/index", std::string(32, 'n')),
               t::file("tmp/build.tar", std::string(2 * 1024 * 1024, 'z')),
               t::file("tmp/small", "x"),
               t::file("usr/local/lib/node_modules/npm/bin/npm-cli.js", std::string(40, 'j')),
               t::symlink("usr/local/bin/npm", "../lib/node_modules/npm/bin/npm-cli.js")};
  for (int i = 0; i < 60; ++i)
    l.entries.push_back(t::file("usr/include/h" + std::to_string(i) + ".h", "int x;\n"));
  spec.layers = {l};
  spec.container_config = {{"User", "node"}, {"Healthcheck", {{"Test", {"NONE"}}}}};
  auto x = run_xray(tmp, spec);
  const auto& r = x.report;

  const auto* go = find_with_path(r, "build-tooling", "/usr/local/go");
  ASSERT_NE(go, nullptr);
  EXPECT_TRUE(mentions(r, "/usr/include"));
  EXPECT_FALSE(mentions(r, "/usr/local/go/bin/go"));  // one path for the whole toolchain
  EXPECT_EQ(go->bytes, 300 + 200 + 60 * 7);

  const auto* cache = find_with_path(r, "package-cache", "/root/.cache/pip");
  ASSERT_NE(cache, nullptr);
  EXPECT_TRUE(mentions(r, "/home/node/.npm"));
  EXPECT_TRUE(mentions(r, "/tmp/build.tar"));
  EXPECT_FALSE(mentions(r, "/tmp/small"));
  EXPECT_EQ(cache->bytes, 64 + 32 + 2 * 1024 * 1024);

  EXPECT_TRUE(mentions(r, "/usr/local/lib/node_modules/npm"));
  EXPECT_TRUE(mentions(r, "/usr/local/bin/npm"));

  EXPECT_TRUE(find_all(r, "root-user").empty());
  ASSERT_EQ(find_all(r, "no-healthcheck").size(), 1u);
  EXPECT_EQ(find_all(r, "no-healthcheck")[0]->severity, Severity::Info);
}

TEST(Xray, SecretsOverwrittenOrInCloudCredentialFiles) {
  t::TempDir tmp;
  t::ImageSpec spec;
  t::LayerSpec l0, l1;
  l0.entries = {t::file("app/.env", "TOKEN=abc\n"),
                t::file("root/.aws/credentials", "[default]\naws_secret_access_key=xyz\n"),
                t::file("root/.docker/config.json", R"({"auths":{"r.example":{"auth":"dXNlcjpwYXNz"}}})"),
                t::file("home/u/.docker/config.json", R"({"credsStore":"desktop"})"),
                t::file("root/.pypirc", "[pypi]\nusername = __token__\npassword = pypi-abc\n")};
  l1.entries = {t::file("app/.env", "TOKEN=\n")};
  spec.layers = {l0, l1};
  auto x = run_xray(tmp, spec);
  const auto& r = x.report;
  const auto* over = find_with_path(r, "secret", "/app/.env");
  ASSERT_NE(over, nullptr);
  EXPECT_TRUE(mentions(r, "/root/.aws/credentials"));
  EXPECT_TRUE(mentions(r, "/root/.docker/config.json"));
  EXPECT_FALSE(mentions(r, "/home/u/.docker/config.json"));
  EXPECT_TRUE(mentions(r, "/root/.pypirc"));
  bool hidden_found = false;
  for (const auto* f : find_all(r, "secret")) {
    if (f->title.find("still present in layer 0 though overwritten in layer 1") != std::string::npos) {
      hidden_found = true;
      EXPECT_EQ(f->paths, std::vector<std::string>{"/app/.env"});
      EXPECT_EQ(f->bytes, 10);
    }
  }
  EXPECT_TRUE(hidden_found);
}

TEST(Xray, PathListsAreCapped) {
  t::TempDir tmp;
  t::ImageSpec spec;
  t::LayerSpec l;
  for (int i = 0; i < 30; ++i)
    l.entries.push_back(t::file("srv/s" + std::to_string(i) + "/.env", "A=" + std::to_string(i)));
  spec.layers = {l};
  auto x = run_xray(tmp, spec);
  const auto* env = find_with_path(x.report, "secret", "/srv/s10/.env");
  ASSERT_NE(env, nullptr);
  EXPECT_EQ(env->paths_total, 30);
  EXPECT_LT(env->paths.size(), 30u);
  EXPECT_EQ(env->paths.size(), env->path_bytes.size());
}

TEST(Xray, JsonHasTheDocumentedKeys) {
  t::TempDir tmp;
  auto x = run_xray(tmp, dirty_spec());
  auto j = to_json(x.report);
  EXPECT_EQ(j["schema"], "slimtrace.xray/v1");
  for (const char* k : {"reference", "manifest_digest", "config_digest", "platform", "layers", "totals",
                        "largest_files", "largest_dirs", "findings", "max_severity"}) {
    EXPECT_TRUE(j.contains(k)) << k;
  }
  EXPECT_EQ(j["manifest_digest"], x.built.manifest_digest);
  EXPECT_EQ(j["platform"], "linux/amd64");
  EXPECT_EQ(j["max_severity"], "critical");
  for (const char* k : {"files", "bytes", "layer_bytes", "compressed_bytes", "wasted_bytes", "efficiency"}) {
    EXPECT_TRUE(j["totals"].contains(k)) << k;
  }
  ASSERT_EQ(j["layers"].size(), 3u);
  for (const char* k : {"index", "digest", "diff_id", "compressed_size", "uncompressed_size", "created_by"}) {
    EXPECT_TRUE(j["layers"][0].contains(k)) << k;
  }
  ASSERT_FALSE(j["findings"].empty());
  for (const auto& f : j["findings"]) {
    for (const char* k : {"id", "severity", "title", "paths", "paths_total", "bytes", "advice"}) {
      EXPECT_TRUE(f.contains(k)) << k;
    }
    EXPECT_TRUE(parse_severity(f["severity"].get<std::string>()).has_value());
  }
  EXPECT_EQ(j["totals"]["wasted_bytes"], x.report.wasted_bytes);
}

TEST(Xray, TextReportShowsLayersTotalsAndFindings) {
  t::TempDir tmp;
  auto x = run_xray(tmp, dirty_spec());
  std::string text = to_text(x.report);
  for (const char* s :
       {"Layers", "COMPRESSED", "apt-get update", "efficiency", "%", "Largest files", "Largest directories",
        "CRITICAL", "HIGH", "MEDIUM", "LOW", "/root/.ssh/id_rsa", "/var/lib/apt/lists", "advice:", "KiB"}) {
    EXPECT_NE(text.find(s), std::string::npos) << s << "\n" << text;
  }
}

TEST(Xray, FailOnSemantics) {
  EXPECT_EQ(parse_severity("high"), Severity::High);
  EXPECT_EQ(parse_severity("CRITICAL"), Severity::Critical);
  EXPECT_EQ(parse_severity("Info"), Severity::Info);
  EXPECT_FALSE(parse_severity("severe").has_value());
  for (Severity s : {Severity::Info, Severity::Low, Severity::Medium, Severity::High, Severity::Critical}) {
    EXPECT_EQ(parse_severity(severity_name(s)), s);
  }

  XrayReport r;
  EXPECT_FALSE(r.max_severity().has_value());  // nothing found: no --fail-on level trips
  r.findings.push_back(Finding{"no-healthcheck", Severity::Low, "no HEALTHCHECK", {}, {}, 0, 0, ""});
  r.findings.push_back(Finding{"root-user", Severity::Medium, "root", {}, {}, 0, 0, ""});
  ASSERT_TRUE(r.max_severity().has_value());
  EXPECT_EQ(*r.max_severity(), Severity::Medium);
  // --fail-on X trips when max_severity >= X.
  EXPECT_TRUE(*r.max_severity() >= Severity::Low);
  EXPECT_TRUE(*r.max_severity() >= Severity::Medium);
  EXPECT_FALSE(*r.max_severity() >= Severity::High);
}

// docker save archives give no blob sizes; the report still has them.
TEST(Xray, DockerArchiveLayersHaveSizes) {
  t::TempDir tmp;
  t::ImageSpec spec;
  t::LayerSpec l;
  l.compression = t::LayerCompression::None;
  l.entries = {t::file("app/server", std::string(3000, 's'), 0755)};
  spec.layers = {l};
  spec.docker_media_types = true;
  spec.container_config = {{"User", "app"}, {"Healthcheck", {{"Test", {"CMD", "true"}}}}};
  t::write_docker_archive(tmp / "img.tar", {{spec, {"example/app:1"}}});
  auto ref = parse_reference("docker-archive:" + (tmp / "img.tar").string());
  ASSERT_TRUE(ref.ok()) << ref.error().message;
  auto work = slimtrace::WorkDir::create();
  ASSERT_TRUE(work.ok());
  auto img = open_image(*ref, OpenOptions{Platform{}, work->path()});
  ASSERT_TRUE(img.ok()) << img.error().message;
  auto tree = flatten(*img);
  ASSERT_TRUE(tree.ok()) << tree.error().message;
  auto r = xray(*img, *tree);
  ASSERT_TRUE(r.ok()) << r.error().message;
  ASSERT_EQ(r->layers.size(), 1u);
  EXPECT_GE(r->layers[0].compressed_size, 3000);
  EXPECT_EQ(r->compressed_bytes, r->layers[0].compressed_size);
  EXPECT_TRUE(r->findings.empty());
}
