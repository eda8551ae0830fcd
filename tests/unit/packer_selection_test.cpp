// What select() keeps of an image, and why, for hand-made images and traces.
#include <gtest/gtest.h>

#include "image_builder.hpp"
#include "slimtrace/image/file_tree.hpp"
#include "slimtrace/image/reference.hpp"
#include "slimtrace/packer/selection.hpp"
#include "slimtrace/workdir.hpp"

namespace t = slimtrace::testing;
using namespace slimtrace;
using packer::KeepReason;

std::string make_elf(const std::string& interp, const std::vector<std::string>& needed,
                     const std::string& runpath = "",
                     const std::string& rpath = "");  // packer_elf_test.cpp

namespace {

struct Img {
  t::TempDir dir;
  std::optional<WorkDir> work;
  image::SourceImage src;
  image::FileTree tree;
};

std::unique_ptr<Img> build(const std::vector<std::vector<t::RawEntry>>& layers, nlohmann::json config = {}) {
  auto img = std::make_unique<Img>();
  t::ImageSpec spec;
  for (const auto& l : layers) spec.layers.push_back(t::LayerSpec{l});
  if (!config.is_null()) spec.container_config = config;
  t::write_oci_layout(img->dir / "l", spec);
  auto ref = image::parse_reference("oci:" + (img->dir / "l").string());
  EXPECT_TRUE(ref.ok());
  auto w = WorkDir::create();
  EXPECT_TRUE(w.ok());
  auto src = image::open_image(*ref, image::OpenOptions{image::Platform{}, w->path()});
  EXPECT_TRUE(src.ok()) << src.error().message;
  img->src = *src;
  auto tree = image::flatten(img->src);
  EXPECT_TRUE(tree.ok()) << tree.error().message;
  img->tree = *tree;
  img->work.emplace(std::move(*w));
  return img;
}

void traced(tracer::Trace& tr, const std::string& p, uint32_t op = tracer::kOpOpen, bool found = true) {
  auto& f = tr.files[p];
  f.path = p;
  if (found) {
    f.ops |= op;
  } else {
    f.failed_ops |= op;
    f.error = 2;
  }
  f.found = f.found || found;
}

std::vector<t::RawEntry> base_layer() {
  const std::string ld = make_elf("", {});
  return {
      t::dir("usr/"),
      t::dir("usr/lib/"),
      t::dir("usr/lib/x86_64-linux-gnu/"),
      t::dir("usr/lib64/"),
      t::dir("usr/bin/"),
      t::symlink("lib", "usr/lib"),
      t::symlink("lib64", "usr/lib64"),
      t::symlink("bin", "usr/bin"),
      t::file("usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", ld, 0755),
      t::symlink("usr/lib64/ld-linux-x86-64.so.2", "../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"),
      t::file("usr/lib/x86_64-linux-gnu/libc.so.6", make_elf("/lib64/ld-linux-x86-64.so.2", {}), 0755),
      t::file("usr/lib/x86_64-linux-gnu/libunused.so.1", make_elf("", {"libc.so.6"})),
      t::file("usr/lib/x86_64-linux-gnu/libz.so.1.2.13", make_elf("", {"libc.so.6"})),
      t::symlink("usr/lib/x86_64-linux-gnu/libz.so.1", "libz.so.1.2.13"),
      t::file("usr/lib/x86_64-linux-gnu/libnss_files.so.2", make_elf("", {"libc.so.6"})),
      t::file("usr/lib/x86_64-linux-gnu/libnss_dns.so.2", make_elf("", {"libc.so.6"})),
      t::file("usr/bin/dash", make_elf("/lib64/ld-linux-x86-64.so.2", {"libc.so.6"}), 0755),
      t::symlink("usr/bin/sh", "dash"),
      t::file("usr/bin/python3.11", make_elf("/lib64/ld-linux-x86-64.so.2", {"libc.so.6"}), 0755),
      t::dir("etc/"),
      t::dir("etc/alternatives/"),
      t::dir("etc/ld.so.conf.d/"),
      t::symlink("usr/bin/python3", "/etc/alternatives/python3"),
      t::symlink("etc/alternatives/python3", "/usr/bin/python3.11"),
      t::file("etc/ld.so.conf", "include /etc/ld.so.conf.d/*.conf\n"),
      t::file("etc/ld.so.conf.d/custom.conf", "# custom\n/opt/custom\n"),
      t::file("etc/nsswitch.conf", "passwd: files systemd\nhosts: files [NOTFOUND=return] dns\n"),
      t::file("etc/passwd", "root:x:0:0::/root:/bin/sh\n"),
      t::file("etc/group", "root:x:0:\n"),
      t::file("etc/hosts", "127.0.0.1 localhost\n"),
      t::symlink("etc/os-release", "../usr/lib/os-release"),
      t::file("usr/lib/os-release", "ID=debian\n"),
      t::dir("opt/"),
      t::dir("opt/custom/"),
      t::file("opt/custom/libcustom.so", make_elf("", {})),
      t::dir("app/"),
      t::dir("app/bin/"),
      t::dir("app/lib/"),
      t::dir("app/static/"),
      t::file("app/bin/server",
              make_elf("/lib64/ld-linux-x86-64.so.2", {"libapp.so", "libc.so.6", "libcustom.so"},
                       "$ORIGIN/../lib"),
              0755),
      t::file("app/lib/libapp.so", make_elf("", {"libz.so.1"})),
      t::file("app/run.sh", "#!/bin/sh\nexec /app/bin/server\n", 0755),
      t::file("app/static/index.html", "<html>"),
      t::file("app/static/other.html", "<html>other"),
      t::dir("var/"),
      t::dir("var/log/"),
      t::dir("var/log/nginx/"),
      t::symlink("var/log/nginx/access.log", "/dev/stdout"),
      t::file("usr/bin/perl", "perl-binary"),
      t::hardlink("usr/bin/perl5.36", "usr/bin/perl"),
      t::dir("usr/share/"),
      t::dir("usr/share/zoneinfo/"),
      t::file("usr/share/zoneinfo/UTC", "TZif"),
      t::dir("etc/ssl/"),
      t::dir("etc/ssl/certs/"),
      t::file("etc/ssl/certs/ca.pem", "PEM"),
      t::dir("data/"),
      t::dir("data/a/"),
      t::file("data/a/x.json", "{}"),
      t::file("data/a/y.txt", "y"),
      t::dir("data/cache/"),
      t::file("data/cache/big.bin", "0123456789"),
      t::dir("usr/share/doc/"),
      t::dir("usr/share/doc/unused/"),
      t::file("usr/share/doc/unused/README", "r"),
      t::dir("var/lib/"),
      t::dir("var/lib/dpkg/"),
      t::dir("var/lib/dpkg/info/"),
      t::file("var/lib/dpkg/status",
              "Package: libc6\nStatus: install ok installed\nArchitecture: amd64\nMulti-Arch: same\nVersion: "
              "2.36\n\n"
              "Package: unusedpkg\nStatus: install ok installed\nArchitecture: all\nVersion: 1\n"),
      t::file(
          "var/lib/dpkg/info/libc6:amd64.list",
          "/.\n/usr\n/usr/lib\n/lib/x86_64-linux-gnu/libc.so.6\n/usr/lib/x86_64-linux-gnu/libunused.so.1\n"),
      t::file("var/lib/dpkg/info/unusedpkg.list",
              "/.\n/usr\n/usr/share\n/usr/share/doc\n/usr/share/doc/unused/README\n"),
  };
}

tracer::Trace base_trace() {
  tracer::Trace tr;
  traced(tr, "/app/run.sh", tracer::kOpExec);
  traced(tr, "/app/bin/server", tracer::kOpExec);
  traced(tr, "/lib/x86_64-linux-gnu/libc.so.6", tracer::kOpOpen | tracer::kOpMmap);
  traced(tr, "/usr/bin/python3", tracer::kOpExec);
  traced(tr, "/var/log/nginx/access.log");
  traced(tr, "/app/static", tracer::kOpList);
  traced(tr, "/app/static/index.html");
  traced(tr, "/nonexistent/x", tracer::kOpOpen, false);
  traced(tr, "/usr/lib/x86_64-linux-gnu/libunused.so.1", tracer::kOpOpen, false);
  traced(tr, "/proc/self/maps");
  traced(tr, "/usr/bin/perl5.36");
  return tr;
}

void expect_kept(const packer::Selection& s, const std::string& p, KeepReason r,
                 const std::string& because = "*") {
  auto it = s.kept.find(p);
  ASSERT_NE(it, s.kept.end()) << p << " not kept";
  EXPECT_EQ(packer::reason_name(it->second.reason), packer::reason_name(r)) << p;
  if (because != "*") {
    EXPECT_EQ(it->second.because_of, because) << p;
  }
}

}  // namespace

TEST(PackerSelection, ClosureOfATrace) {
  auto img = build({base_layer()});
  auto tr = base_trace();
  auto sel = packer::select(img->src, img->tree, tr, {});
  ASSERT_TRUE(sel.ok()) << sel.error().message;
  const auto& s = *sel;
  for (const auto& w : s.warnings) ADD_FAILURE() << "warning: " << w;
  // merged /usr
  expect_kept(s, "/lib", KeepReason::Symlink, "/lib/x86_64-linux-gnu/libc.so.6");
  expect_kept(s, "/usr/lib/x86_64-linux-gnu/libc.so.6", KeepReason::Traced,
              "/lib/x86_64-linux-gnu/libc.so.6");
  // alternatives chain
  expect_kept(s, "/usr/bin/python3", KeepReason::Traced, "");
  expect_kept(s, "/etc/alternatives/python3", KeepReason::Symlink, "/usr/bin/python3");
  expect_kept(s, "/usr/bin/python3.11", KeepReason::Traced, "/usr/bin/python3");
  // log link kept as a link, its /dev target ignored
  expect_kept(s, "/var/log/nginx/access.log", KeepReason::Traced, "");
  EXPECT_EQ(s.kept.count("/dev/stdout"), 0u);
  EXPECT_EQ(s.kept.count("/dev"), 0u);
  // directory listed: itself and the opened child only
  expect_kept(s, "/app/static", KeepReason::Traced);
  expect_kept(s, "/app/static/index.html", KeepReason::Traced);
  EXPECT_EQ(s.kept.count("/app/static/other.html"), 0u);
  // failed lookups and /proc
  EXPECT_EQ(s.kept.count("/nonexistent/x"), 0u);
  EXPECT_EQ(s.kept.count("/usr/lib/x86_64-linux-gnu/libunused.so.1"), 0u);
  EXPECT_EQ(s.kept.count("/proc/self/maps"), 0u);
  // ELF closure: interpreter through /lib64 and a relative symlink, RUNPATH $ORIGIN, ld.so.conf.d
  expect_kept(s, "/lib64", KeepReason::Symlink);
  expect_kept(s, "/usr/lib64/ld-linux-x86-64.so.2", KeepReason::Symlink, "/lib64/ld-linux-x86-64.so.2");
  expect_kept(s, "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", KeepReason::Interpreter);
  expect_kept(s, "/app/lib/libapp.so", KeepReason::ElfDep, "/app/bin/server");
  expect_kept(s, "/opt/custom/libcustom.so", KeepReason::ElfDep, "/app/bin/server");
  expect_kept(s, "/usr/lib/x86_64-linux-gnu/libz.so.1", KeepReason::Symlink,
              "/lib/x86_64-linux-gnu/libz.so.1");
  expect_kept(s, "/usr/lib/x86_64-linux-gnu/libz.so.1.2.13", KeepReason::ElfDep,
              "/lib/x86_64-linux-gnu/libz.so.1");
  // #! interpreter and its closure
  expect_kept(s, "/bin", KeepReason::Symlink, "/bin/sh");
  expect_kept(s, "/usr/bin/sh", KeepReason::Symlink, "/bin/sh");
  expect_kept(s, "/usr/bin/dash", KeepReason::Interpreter, "/bin/sh");
  // NSS
  expect_kept(s, "/etc/passwd", KeepReason::Nss);
  expect_kept(s, "/etc/group", KeepReason::Nss);
  expect_kept(s, "/etc/hosts", KeepReason::Nss);
  expect_kept(s, "/etc/nsswitch.conf", KeepReason::Nss);
  expect_kept(s, "/usr/lib/x86_64-linux-gnu/libnss_files.so.2", KeepReason::Nss,
              "/lib/x86_64-linux-gnu/libnss_files.so.2");
  EXPECT_EQ(s.explain("/usr/lib/x86_64-linux-gnu/libnss_files.so.2").back(), "/etc/nsswitch.conf: nss");
  expect_kept(s, "/usr/lib/x86_64-linux-gnu/libnss_dns.so.2", KeepReason::Nss,
              "/lib/x86_64-linux-gnu/libnss_dns.so.2");
  EXPECT_EQ(s.explain("/usr/lib/x86_64-linux-gnu/libnss_dns.so.2").back(), "/etc/nsswitch.conf: nss");
  // hardlink
  expect_kept(s, "/usr/bin/perl5.36", KeepReason::Traced);
  expect_kept(s, "/usr/bin/perl", KeepReason::Hardlink, "/usr/bin/perl5.36");
  // parents
  expect_kept(s, "/app", KeepReason::Parent);
  expect_kept(s, "/usr/lib/x86_64-linux-gnu", KeepReason::Parent);
  expect_kept(s, "/", KeepReason::Parent);
  // metadata
  expect_kept(s, "/etc/os-release", KeepReason::Metadata, "");
  expect_kept(s, "/usr/lib/os-release", KeepReason::Metadata, "/etc/os-release");
  // not needed
  for (const char* p :
       {"/usr/share/zoneinfo/UTC", "/etc/ssl/certs/ca.pem", "/data/a/x.json", "/app/static/other.html",
        "/usr/share/doc/unused/README", "/var/lib/dpkg/info/unusedpkg.list"})
    EXPECT_EQ(s.kept.count(p), 0u) << p;
  // bytes
  EXPECT_GT(s.traced_bytes, 0);
  EXPECT_GE(s.kept_bytes, s.traced_bytes);
  // explain walks to the traced root
  auto ex = s.explain("/usr/lib/x86_64-linux-gnu/libz.so.1.2.13");
  ASSERT_EQ(ex.size(), 4u) << ::testing::PrintToString(ex);
  EXPECT_EQ(ex[0], "/usr/lib/x86_64-linux-gnu/libz.so.1.2.13: elf-dep of /lib/x86_64-linux-gnu/libz.so.1");
  EXPECT_EQ(ex[1], "/lib/x86_64-linux-gnu/libz.so.1: elf-dep of /app/lib/libapp.so");
  EXPECT_EQ(ex[3], "/app/bin/server: traced");
  auto ex2 = s.explain("/lib");
  ASSERT_EQ(ex2.size(), 2u) << ::testing::PrintToString(ex2);
  EXPECT_EQ(ex2[1], "/lib/x86_64-linux-gnu/libc.so.6: traced");
}

TEST(PackerSelection, DpkgStatusIsPruned) {
  auto img = build({base_layer()});
  auto tr = base_trace();
  auto sel = packer::select(img->src, img->tree, tr, {});
  ASSERT_TRUE(sel.ok()) << sel.error().message;
  const auto& s = *sel;
  ASSERT_EQ(s.replaced_files.count("/var/lib/dpkg/status"), 1u);
  EXPECT_EQ(
      s.replaced_files.at("/var/lib/dpkg/status"),
      "Package: libc6\nStatus: install ok installed\nArchitecture: amd64\nMulti-Arch: same\nVersion: 2.36\n");
  expect_kept(s, "/var/lib/dpkg/status", KeepReason::Metadata);
  expect_kept(s, "/var/lib/dpkg/info/libc6:amd64.list", KeepReason::Metadata, "/var/lib/dpkg/status");
  EXPECT_EQ(s.replaced_files.at("/var/lib/dpkg/info/libc6:amd64.list"),
            "/.\n/usr\n/usr/lib\n/lib/x86_64-linux-gnu/libc.so.6\n");
  EXPECT_EQ(s.replaced_files.count("/var/lib/dpkg/info/unusedpkg.list"), 0u);
  EXPECT_EQ(s.kept.count("/var/lib/dpkg/info/unusedpkg.list"), 0u);
}

TEST(PackerSelection, Rules) {
  auto img = build({base_layer()}, {{"WorkingDir", "/data/a"}, {"Env", {"PATH=/usr/bin:/bin"}}});
  tracer::Trace tr;
  packer::SelectionRules r;
  r.include_paths.push_back({"/data/**/*.json", std::nullopt, std::nullopt, std::nullopt});
  r.include_paths.push_back({"/data/cache", 0700, 1000, std::nullopt});
  r.include_bins.push_back("python3");
  r.include_shell = true;
  r.include_certs = true;
  r.include_zoneinfo = true;
  r.exclude_patterns.push_back("/data/cache/*.bin");
  r.exclude_patterns.push_back("/etc/hosts");
  auto sel = packer::select(img->src, img->tree, tr, r);
  ASSERT_TRUE(sel.ok()) << sel.error().message;
  const auto& s = *sel;
  expect_kept(s, "/data/a/x.json", KeepReason::Include, "");
  EXPECT_EQ(s.kept.count("/data/a/y.txt"), 0u);
  expect_kept(s, "/data/cache", KeepReason::Include, "");
  EXPECT_EQ(s.kept.count("/data/cache/big.bin"), 0u) << "excluded";
  ASSERT_EQ(s.overrides.count("/data/cache"), 1u);
  EXPECT_EQ(*s.overrides.at("/data/cache").mode, 0700u);
  expect_kept(s, "/usr/bin/python3.11", KeepReason::Include, "/usr/bin/python3");
  expect_kept(s, "/usr/lib/x86_64-linux-gnu/libc.so.6", KeepReason::ElfDep,
              "/lib/x86_64-linux-gnu/libc.so.6");
  expect_kept(s, "/lib", KeepReason::Symlink);
  expect_kept(s, "/usr/bin/dash", KeepReason::Include, "/bin/sh");
  expect_kept(s, "/etc/ssl/certs/ca.pem", KeepReason::Include);
  expect_kept(s, "/usr/share/zoneinfo/UTC", KeepReason::Include);
  EXPECT_EQ(s.kept.count("/etc/hosts"), 0u) << "excluded";
  EXPECT_EQ(s.kept.count("/app/bin/server"), 0u);

  packer::SelectionRules r2;
  r2.include_workdir = true;
  r2.preserve_paths.push_back("/data/cache");
  r2.exclude_patterns.push_back("/data/**");
  auto sel2 = packer::select(img->src, img->tree, tr, r2);
  ASSERT_TRUE(sel2.ok()) << sel2.error().message;
  EXPECT_EQ(sel2->kept.count("/data/a/y.txt"), 0u) << "workdir excluded by the pattern";
  expect_kept(*sel2, "/data/cache/big.bin", KeepReason::Include);
  expect_kept(*sel2, "/data", KeepReason::Parent);
}

// nginx makes /var/lib/nginx/body at start and redis renames its dump in /data: a minified image
// without those directories cannot start, although no file in them was ever opened.
TEST(PackerSelection, DirectoriesPathsAreMadeInAreKept) {
  auto img =
      build({{t::dir("var"), t::dir("var/lib"), t::dir("var/lib/nginx"), t::file("var/lib/nginx/README", "x"),
              t::dir("data"), t::dir("cache"), t::dir("cache/app"), t::file("cache/app/old", "y"),
              t::dir("etc"), t::file("etc/secret", "z")}});
  tracer::Trace tr;
  traced(tr, "/var/lib/nginx/body", tracer::kOpCreate);        // mkdir succeeded
  traced(tr, "/data/dump.rdb.tmp/x", tracer::kOpOpen, false);  // ENOENT deep below /data
  auto& eexist = tr.files["/cache/app"];                       // mkdir -p of an existing dir
  eexist.path = "/cache/app";
  eexist.failed_ops = tracer::kOpCreate;
  eexist.error = EEXIST;
  auto& eacces = tr.files["/etc/secret"];
  eacces.path = "/etc/secret";
  eacces.failed_ops = tracer::kOpOpen;
  eacces.error = EACCES;
  auto sel = packer::select(img->src, img->tree, tr, {});
  ASSERT_TRUE(sel.ok()) << sel.error().message;
  expect_kept(*sel, "/var/lib/nginx", KeepReason::Parent, "/var/lib/nginx/body");
  EXPECT_EQ(sel->kept.count("/var/lib/nginx/README"), 0u);
  expect_kept(*sel, "/data", KeepReason::Parent, "/data/dump.rdb.tmp/x");
  expect_kept(*sel, "/cache/app", KeepReason::Traced);
  EXPECT_EQ(sel->kept.count("/cache/app/old"), 0u);
  expect_kept(*sel, "/etc/secret", KeepReason::Traced);
}
