// pack(): the image a Selection describes, read back as a user would.
#include "slimtrace/packer/pack.hpp"

#include <gtest/gtest.h>

#include <map>
#include <optional>
#include <span>

#include "image_builder.hpp"
#include "slimtrace/image/file_tree.hpp"
#include "slimtrace/image/layer_reader.hpp"
#include "slimtrace/image/reference.hpp"
#include "slimtrace/image/validate.hpp"
#include "slimtrace/packer/selection.hpp"
#include "slimtrace/workdir.hpp"

namespace t = slimtrace::testing;
using namespace slimtrace;
using nlohmann::json;

std::string make_elf(const std::string& interp, const std::vector<std::string>& needed,
                     const std::string& runpath = "",
                     const std::string& rpath = "");  // packer_elf_test.cpp

namespace {

const char* kStatus =
    "Package: libc6\nStatus: install ok installed\nArchitecture: amd64\nVersion: 2.36\n\n"
    "Package: docs\nStatus: install ok installed\nArchitecture: all\nVersion: 1\n";

t::ImageSpec spec() {
  t::LayerSpec base;
  base.entries = {
      t::dir("usr/"),
      t::dir("usr/lib/"),
      t::dir("usr/lib/x86_64-linux-gnu/"),
      t::dir("usr/lib64/"),
      t::dir("usr/bin/"),
      t::symlink("lib", "usr/lib"),
      t::symlink("lib64", "usr/lib64"),
      t::file("usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", make_elf("", {}), 0755),
      t::symlink("usr/lib64/ld-linux-x86-64.so.2", "../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"),
      t::file("usr/lib/x86_64-linux-gnu/libc.so.6", make_elf("/lib64/ld-linux-x86-64.so.2", {}), 0755),
      t::file("usr/lib/x86_64-linux-gnu/libunused.so.1", make_elf("", {"libc.so.6"})),
      t::dir("etc/"),
      t::file("etc/passwd", "root:x:0:0::/root:/bin/sh\n"),
      t::file("etc/group", "root:x:0:\n"),
      t::file("etc/os-release", "ID=debian\n"),
      t::dir("usr/share/"),
      t::dir("usr/share/doc/"),
      t::file("usr/share/doc/README", "docs nobody reads"),
      t::dir("var/"),
      t::dir("var/lib/"),
      t::dir("var/lib/dpkg/"),
      t::dir("var/lib/dpkg/info/"),
      t::file("var/lib/dpkg/status", kStatus),
      t::file(
          "var/lib/dpkg/info/libc6:amd64.list",
          "/.\n/usr\n/usr/lib\n/lib/x86_64-linux-gnu/libc.so.6\n/usr/lib/x86_64-linux-gnu/libunused.so.1\n"),
      t::file("var/lib/dpkg/info/docs.list", "/.\n/usr\n/usr/share\n/usr/share/doc\n/usr/share/doc/README\n"),
  };
  t::LayerSpec app;
  app.compression = t::LayerCompression::Zstd;
  app.entries = {
      t::dir("app/"),
      t::file("app/server", make_elf("/lib64/ld-linux-x86-64.so.2", {"libc.so.6"}), 0755),
      t::file("app/data.txt", "served data"),
      t::file("app/unused.txt", "never opened"),
      t::file("app/helper", "#!/nothing\n", 0700),
  };
  t::ImageSpec s;
  s.layers = {base, app};
  s.container_config = {{"Entrypoint", {"/app/server"}},
                        {"Cmd", {"--port", "8080"}},
                        {"Env", {"PATH=/usr/bin", "MODE=prod"}},
                        {"WorkingDir", "/app"},
                        {"User", "1000:1000"},
                        {"ExposedPorts", {{"8080/tcp", json::object()}}},
                        {"Labels", {{"org.example.team", "web"}}}};
  return s;
}

void traced(tracer::Trace& tr, const std::string& p, uint32_t op) {
  auto& f = tr.files[p];
  f.path = p;
  f.ops |= op;
  f.found = true;
}

tracer::Trace trace() {
  tracer::Trace tr;
  traced(tr, "/app/server", tracer::kOpExec);
  traced(tr, "/lib/x86_64-linux-gnu/libc.so.6", tracer::kOpOpen | tracer::kOpMmap);
  traced(tr, "/app/data.txt", tracer::kOpOpen);
  return tr;
}

struct Opened {
  WorkDir work;
  image::SourceImage image;
  image::FileTree tree;
};

std::optional<Opened> open(const std::string& ref_text) {
  auto ref = image::parse_reference(ref_text);
  EXPECT_TRUE(ref.ok()) << ref.error().message;
  auto w = WorkDir::create();
  EXPECT_TRUE(w.ok());
  if (!ref.ok() || !w.ok()) return std::nullopt;
  auto img = image::open_image(*ref, image::OpenOptions{image::Platform{}, w->path()});
  EXPECT_TRUE(img.ok()) << ref_text << ": " << img.error().message;
  if (!img.ok()) return std::nullopt;
  auto tree = image::flatten(*img);
  EXPECT_TRUE(tree.ok()) << ref_text << ": " << tree.error().message;
  if (!tree.ok()) return std::nullopt;
  return Opened{std::move(w).value(), std::move(img).value(), std::move(tree).value()};
}

std::map<std::string, std::string> contents(const image::SourceImage& img) {
  std::map<std::string, std::string> out;
  for (size_t i = 0; i < img.layers.size(); ++i) {
    auto r = image::LayerReader::open(img.layers[i], static_cast<int>(i));
    EXPECT_TRUE(r.ok()) << r.error().message;
    if (!r.ok()) return out;
    for (;;) {
      auto e = r->next();
      EXPECT_TRUE(e.ok()) << e.error().message;
      if (!e.ok() || !*e) break;
      if ((*e)->type != image::EntryType::Regular) continue;
      std::string data;
      char buf[65536];
      for (;;) {
        auto n = r->read(std::span<char>(buf, sizeof buf));
        EXPECT_TRUE(n.ok());
        if (!n.ok() || *n == 0) break;
        data.append(buf, *n);
      }
      out[(*e)->path] = data;
    }
    EXPECT_TRUE(r->finish().ok());
  }
  return out;
}

image::WriteOptions options_for(const std::string& ref_text, const Opened& in) {
  image::WriteOptions wo;
  auto ref = image::parse_reference(ref_text, false);
  EXPECT_TRUE(ref.ok()) << ref.error().message;
  if (ref.ok()) wo.output = *ref;
  wo.work_dir = in.work.path();
  return wo;
}

}  // namespace

TEST(PackerPack, WritesTheSelectionWithPrunedPackagesAndTheSourceConfig) {
  t::TempDir d;
  t::write_oci_layout(d / "in", spec());
  auto in = open("oci:" + (d / "in").string());
  ASSERT_TRUE(in);
  packer::SelectionRules rules;
  rules.include_paths.push_back(packer::IncludePath{"/app/helper", 04755, 0, 0});
  auto sel = packer::select(in->image, in->tree, trace(), rules);
  ASSERT_TRUE(sel.ok()) << sel.error().message;
  ASSERT_EQ(sel->replaced_files.count("/var/lib/dpkg/status"), 1u);
  ASSERT_FALSE(sel->aliases.empty()) << "the test means to show that aliases are not written";

  std::string out_ref = "oci:" + (d / "out").string() + ":slim";
  auto w = packer::pack(in->image, in->tree, *sel, options_for(out_ref, *in));
  ASSERT_TRUE(w.ok()) << w.error().message;
  auto report = image::validate_image(*image::parse_reference(out_ref),
                                      image::OpenOptions{image::Platform{}, in->work.path()});
  EXPECT_TRUE(report.ok()) << (report.problems.empty() ? "" : report.problems[0]);

  auto out = open(out_ref);
  ASSERT_TRUE(out);
  auto c = contents(out->image);
  auto orig = contents(in->image);
  // What the app used is there, with its bytes; what it did not use is gone.
  for (const char* p : {"/app/server", "/app/data.txt", "/usr/lib/x86_64-linux-gnu/libc.so.6",
                        "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", "/etc/passwd", "/etc/os-release"}) {
    ASSERT_NE(out->tree.find(p), nullptr) << p;
    EXPECT_EQ(c[p], orig[p]) << p;
  }
  for (const char* p : {"/lib", "/lib64", "/usr/lib64/ld-linux-x86-64.so.2"}) {
    ASSERT_NE(out->tree.find(p), nullptr) << p;
    EXPECT_EQ(out->tree.find(p)->type, image::EntryType::Symlink) << p;
  }
  for (const char* p : {"/app/unused.txt", "/usr/lib/x86_64-linux-gnu/libunused.so.1",
                        "/usr/share/doc/README", "/var/lib/dpkg/info/docs.list"})
    EXPECT_EQ(out->tree.find(p), nullptr) << p;
  // Everything written is kept, and everything kept that is an entry is written.
  for (const auto& [p, e] : out->tree.entries())
    if (e.explicit_entry) {
      EXPECT_EQ(sel->kept.count(p), 1u) << p;
    }
  for (const auto& [p, k] : sel->kept)
    if (in->tree.find(p)) {
      EXPECT_NE(out->tree.find(p), nullptr) << p;
    }

  // A scanner finds the OS and only the package that still has files, with its list trimmed.
  EXPECT_EQ(c["/var/lib/dpkg/status"], sel->replaced_files.at("/var/lib/dpkg/status"));
  EXPECT_NE(c["/var/lib/dpkg/status"].find("Package: libc6"), std::string::npos);
  EXPECT_EQ(c["/var/lib/dpkg/status"].find("Package: docs"), std::string::npos);
  EXPECT_EQ(c["/var/lib/dpkg/info/libc6:amd64.list"],
            sel->replaced_files.at("/var/lib/dpkg/info/libc6:amd64.list"));
  EXPECT_EQ(c["/var/lib/dpkg/info/libc6:amd64.list"].find("libunused"), std::string::npos);
  EXPECT_EQ(out->tree.find("/var/lib/dpkg/status")->size,
            static_cast<int64_t>(sel->replaced_files.at("/var/lib/dpkg/status").size()));

  // --include-path with mode and owners.
  const image::FileEntry* helper = out->tree.find("/app/helper");
  ASSERT_NE(helper, nullptr);
  EXPECT_EQ(helper->mode, 04755u);
  EXPECT_EQ(helper->uid, 0u);

  // The source's settings, and a rootfs naming the one layer.
  const json& cfg = out->image.config;
  const json& src = in->image.config["config"];
  for (const char* k : {"Entrypoint", "Cmd", "Env", "WorkingDir", "User", "ExposedPorts", "Labels"})
    EXPECT_EQ(cfg["config"][k], src[k]) << k;
  ASSERT_EQ(out->image.layers.size(), 1u);
  EXPECT_EQ(cfg["rootfs"]["diff_ids"], json::array({w->diff_id}));
  EXPECT_EQ(out->image.layers[0].diff_id, w->diff_id);
  EXPECT_EQ(out->image.layers[0].digest, w->layer_digest);

  // Sizes: the files written, with the pruned databases' sizes.
  int64_t bytes = 0, files = 0;
  for (const auto& [p, e] : out->tree.entries())
    if (e.type == image::EntryType::Regular) {
      bytes += e.size;
      ++files;
    }
  EXPECT_EQ(w->file_bytes, bytes);
  EXPECT_EQ(w->files, files);
  EXPECT_LT(w->file_bytes, in->tree.total_bytes());

  // Same selection, same bytes.
  auto again =
      packer::pack(in->image, in->tree, *sel, options_for("oci:" + (d / "again").string() + ":slim", *in));
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_EQ(again->manifest_digest, w->manifest_digest);
}

TEST(PackerPack, ExcludedPackageDatabaseIsNotWritten) {
  t::TempDir d;
  t::write_oci_layout(d / "in", spec());
  auto in = open("oci:" + (d / "in").string());
  ASSERT_TRUE(in);
  packer::SelectionRules rules;
  rules.exclude_patterns = {"/var/lib/dpkg"};
  rules.include_paths.push_back(packer::IncludePath{"/app/helper", std::nullopt, std::nullopt, std::nullopt});
  auto sel = packer::select(in->image, in->tree, trace(), rules);
  ASSERT_TRUE(sel.ok()) << sel.error().message;
  std::string out_ref = "oci:" + (d / "out").string();
  auto w = packer::pack(in->image, in->tree, *sel, options_for(out_ref, *in));
  ASSERT_TRUE(w.ok()) << w.error().message;
  auto out = open(out_ref);
  ASSERT_TRUE(out);
  EXPECT_EQ(out->tree.find("/var/lib/dpkg/status"), nullptr);
  EXPECT_NE(out->tree.find("/app/server"), nullptr);
  ASSERT_NE(out->tree.find("/app/helper"), nullptr);
  EXPECT_EQ(out->tree.find("/app/helper")->mode, 0700u) << "an include without mode keeps the image's";
}
