// Writing single-layer images: round trips through every transport, determinism, crash safety.
#include "slimtrace/image/writer.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <set>

#include "image_builder.hpp"
#include "slimtrace/image/file_tree.hpp"
#include "slimtrace/image/layer_reader.hpp"
#include "slimtrace/image/reference.hpp"
#include "slimtrace/image/validate.hpp"
#include "slimtrace/workdir.hpp"

namespace t = slimtrace::testing;
namespace fs = std::filesystem;
using namespace slimtrace::image;
using nlohmann::json;

namespace {

// A capability blob as setcap writes it: binary, with NUL bytes.
const std::string kCap =
    std::string("\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00", 20);

t::ImageSpec rich_spec() {
  t::ImageSpec spec;
  t::LayerSpec l0;
  l0.compression = t::LayerCompression::Gzip;
  auto ping = t::file("usr/bin/ping", "ping-binary", 04755);
  ping.pax["SCHILY.xattr.security.capability"] = kCap;
  auto fifo = t::RawEntry{};
  fifo.name = "run/fifo";
  fifo.typeflag = '6';
  fifo.mode = 0600;
  auto tmp = t::dir("tmp/", 01777);
  tmp.mtime = 1600000000;
  auto owned = t::file("srv/data/owned", "www", 0640);
  owned.uid = 33;
  owned.gid = 33;
  owned.mtime = 1234567890;
  std::string long_dir = "opt/" + std::string(60, 'd') + "/" + std::string(50, 'e') + "/";
  l0.entries = {t::dir("etc/"),
                t::file("etc/passwd", "root:x:0:0::/root:/bin/sh\n"),
                t::dir("usr/"),
                t::dir("usr/bin/"),
                ping,
                t::file("usr/bin/tool", std::string(300000, 'x') + "end"),
                t::hardlink("usr/bin/tool2", "usr/bin/tool"),
                t::symlink("bin", "usr/bin"),
                t::dir("run/"),
                fifo,
                tmp,
                t::dir("old/"),
                t::file("old/gone", "deleted later"),
                t::dir("opq/"),
                t::file("opq/a", "hidden by opaque"),
                t::dir("srv/"),
                t::dir("srv/data/", 0770),
                owned,
                t::dir("opt/"),
                t::dir("opt/" + std::string(60, 'd') + "/"),
                t::dir(long_dir),
                t::file(long_dir + "long-file-name", "long"),
                t::symlink("opt/longlink", "/" + long_dir + "long-file-name")};
  auto null_dev = t::RawEntry{};
  null_dev.name = "dev/null";
  null_dev.typeflag = '3';
  null_dev.mode = 0666;
  null_dev.dev_major = 1;
  null_dev.dev_minor = 3;
  // An id too large for the ustar field travels in a pax record.
  auto big_uid = t::file("srv/nobody-big", "n");
  big_uid.pax["uid"] = "3000000";
  l0.entries.push_back(t::dir("dev/"));
  l0.entries.push_back(null_dev);
  l0.entries.push_back(big_uid);
  t::LayerSpec l1;
  l1.compression = t::LayerCompression::Zstd;
  auto sgid = t::file("usr/bin/wall", "wall", 02755);
  sgid.gid = 5;
  l1.entries = {t::whiteout("old/gone"),
                t::opaque("opq"),
                t::dir("opq/"),
                t::file("opq/b", "new b"),
                t::file("etc/passwd", "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/app:/bin/sh\n"),
                sgid,
                t::file("empty", "")};
  t::LayerSpec l2;
  l2.compression = t::LayerCompression::None;
  l2.entries = {t::file("z/target", "group content"), t::hardlink("z/u-link", "z/target")};
  spec.layers = {l0, l1, l2};
  spec.container_config = {{"Entrypoint", {"/usr/bin/tool"}},
                           {"Cmd", {"--serve"}},
                           {"Env", {"PATH=/usr/bin", "A=1"}},
                           {"WorkingDir", "/srv"},
                           {"User", "1000"},
                           {"ExposedPorts", {{"8080/tcp", json::object()}}},
                           {"Labels", {{"org.example", "yes"}}},
                           {"StopSignal", "SIGQUIT"},
                           {"Healthcheck", {{"Test", {"CMD", "/usr/bin/tool", "--health"}}}},
                           {"OnBuild", {"RUN x"}}};
  return spec;
}

struct Opened {
  slimtrace::WorkDir work;
  SourceImage image;
  FileTree tree;
};

Opened open_and_flatten(const std::string& ref_text) {
  auto ref = parse_reference(ref_text);
  EXPECT_TRUE(ref.ok()) << ref.error().message;
  auto w = slimtrace::WorkDir::create();
  EXPECT_TRUE(w.ok());
  auto img = open_image(*ref, OpenOptions{Platform{}, w->path()});
  EXPECT_TRUE(img.ok()) << ref_text << ": " << img.error().message;
  auto tree = flatten(*img);
  EXPECT_TRUE(tree.ok()) << ref_text << ": " << tree.error().message;
  return Opened{std::move(w).value(), std::move(img).value(), std::move(tree).value()};
}

// The last content each path had in the layers, read straight from the blobs.
std::map<std::string, std::string> contents(const SourceImage& img) {
  std::map<std::string, std::string> out;
  for (size_t i = 0; i < img.layers.size(); ++i) {
    auto r = LayerReader::open(img.layers[i], static_cast<int>(i));
    EXPECT_TRUE(r.ok()) << r.error().message;
    for (;;) {
      auto e = r->next();
      EXPECT_TRUE(e.ok()) << e.error().message;
      if (!e.ok() || !*e) break;
      if ((*e)->type != EntryType::Regular) continue;
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
    auto st = r->finish();
    EXPECT_TRUE(st.ok()) << st.error().message;
  }
  return out;
}

std::string describe(const FileEntry& e) {
  std::string x;
  for (const auto& a : e.xattrs) x += a.name + "=" + t::sha256_hex(a.value).substr(0, 8) + ";";
  return std::string(entry_type_name(e.type)) + " mode=" + std::to_string(e.mode) +
         " uid=" + std::to_string(e.uid) + " gid=" + std::to_string(e.gid) +
         " mtime=" + std::to_string(e.mtime) + " size=" + std::to_string(e.size) + " link=" + e.link_target +
         " dev=" + std::to_string(e.dev_major) + ":" + std::to_string(e.dev_minor) + " xattrs=" + x +
         " explicit=" + std::to_string(e.explicit_entry);
}

// What a user compares: every path with its metadata, and every file's bytes.
void expect_same_view(const Opened& in, const Opened& out) {
  std::map<std::string, std::string> a, b;
  for (const auto& [p, e] : in.tree.entries()) a[p] = describe(e);
  for (const auto& [p, e] : out.tree.entries()) b[p] = describe(e);
  EXPECT_EQ(a, b);
  auto ca = contents(in.image);
  auto cb = contents(out.image);
  for (const auto& [p, e] : in.tree.entries()) {
    if (e.type != EntryType::Regular) continue;
    EXPECT_EQ(ca[p], cb[p]) << p;
  }
}

Opened write_and_reopen(const Opened& in, const std::string& out_ref, Compression c = Compression::Gzip,
                        WrittenImage* written = nullptr) {
  auto ref = parse_reference(out_ref, false);
  EXPECT_TRUE(ref.ok()) << ref.error().message;
  WriteOptions wo;
  wo.output = *ref;
  wo.compression = c;
  wo.created_by = "writer test";
  wo.work_dir = in.work.path();
  auto w = write_image(in.image, in.tree, select_all(in.tree), wo);
  EXPECT_TRUE(w.ok()) << w.error().message;
  if (written && w.ok()) *written = *w;
  auto report = validate_image(*ref, OpenOptions{Platform{}, in.work.path()});
  EXPECT_TRUE(report.ok()) << out_ref << ": " << (report.problems.empty() ? "" : report.problems[0]);
  EXPECT_EQ(report.manifests, 1);
  EXPECT_EQ(report.layers, 1);
  return open_and_flatten(out_ref);
}

std::map<std::string, std::string> dir_bytes(const fs::path& root) {
  std::map<std::string, std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(root))
    if (e.is_regular_file()) out[fs::relative(e.path(), root).string()] = t::read_file(e.path());
  return out;
}

}  // namespace

TEST(Writer, RoundTripOciLayoutKeepsEveryEntry) {
  t::TempDir d;
  t::write_oci_layout(d / "in", rich_spec());
  auto in = open_and_flatten("oci:" + (d / "in").string());
  ASSERT_NE(in.tree.find("/usr/bin/ping"), nullptr);
  ASSERT_EQ(in.tree.find("/old/gone"), nullptr);
  WrittenImage w;
  auto out = write_and_reopen(in, "oci:" + (d / "out").string() + ":slim", Compression::Gzip, &w);
  expect_same_view(in, out);
  const FileEntry* ping = out.tree.find("/usr/bin/ping");
  ASSERT_NE(ping, nullptr);
  EXPECT_EQ(ping->mode, 04755u);
  ASSERT_EQ(ping->xattrs.size(), 1u);
  EXPECT_EQ(ping->xattrs[0].name, "security.capability");
  EXPECT_EQ(ping->xattrs[0].value, kCap);
  ASSERT_NE(out.tree.find("/dev/null"), nullptr);
  EXPECT_EQ(out.tree.find("/dev/null")->type, EntryType::CharDevice);
  EXPECT_EQ(out.tree.find("/dev/null")->dev_minor, 3u);
  ASSERT_NE(out.tree.find("/srv/nobody-big"), nullptr);
  EXPECT_EQ(out.tree.find("/srv/nobody-big")->uid, 3000000u);
  EXPECT_EQ(out.image.layers.size(), 1u);
  EXPECT_EQ(out.image.layers[0].media_type, kOciLayerGzip);
  EXPECT_EQ(out.image.manifest_digest, w.manifest_digest);
  EXPECT_EQ(w.diff_id, out.image.layers[0].diff_id);
  EXPECT_GT(w.files, 5);
  // The gzip header carries no time and no name.
  std::string blob = t::read_file(t::blob_path(d / "out", w.layer_digest));
  ASSERT_GE(blob.size(), 10u);
  EXPECT_EQ(blob.substr(0, 3), std::string("\x1f\x8b\x08", 3));
  EXPECT_EQ(blob.substr(3, 5), std::string(5, '\0'));
}

TEST(Writer, ConfigManifestAndIndexSayWhatMadeThem) {
  t::TempDir d;
  t::write_oci_layout(d / "in", rich_spec());
  auto in = open_and_flatten("oci:" + (d / "in").string());
  auto out = write_and_reopen(in, "oci:" + (d / "out").string() + ":v1");
  const json& c = out.image.config;
  EXPECT_EQ(c["architecture"], "amd64");
  EXPECT_EQ(c["os"], "linux");
  EXPECT_EQ(c["config"]["Entrypoint"], json({"/usr/bin/tool"}));
  EXPECT_EQ(c["config"]["Cmd"], json({"--serve"}));
  EXPECT_EQ(c["config"]["WorkingDir"], "/srv");
  EXPECT_EQ(c["config"]["User"], "1000");
  EXPECT_EQ(c["config"]["StopSignal"], "SIGQUIT");
  EXPECT_TRUE(c["config"].contains("Healthcheck"));
  EXPECT_TRUE(c["config"].contains("ExposedPorts"));
  EXPECT_EQ(c["config"]["Labels"]["org.example"], "yes");
  EXPECT_FALSE(c["config"].contains("OnBuild")) << "only the listed settings are carried over";
  EXPECT_EQ(c["created"], in.image.config["created"]);
  ASSERT_EQ(c["history"].size(), 1u);
  EXPECT_EQ(c["history"][0]["created_by"], "writer test");
  EXPECT_EQ(c["history"][0]["comment"], "minified from " + in.image.manifest_digest);
  EXPECT_EQ(c["rootfs"]["diff_ids"].size(), 1u);
  const json& m = out.image.manifest;
  EXPECT_EQ(m["mediaType"], kOciManifest);
  EXPECT_EQ(m["annotations"]["io.slimtrace.source.digest"], in.image.manifest_digest);
  EXPECT_EQ(m["annotations"]["org.opencontainers.image.base.name"], "scratch");
  json index = json::parse(t::read_file(d / "out" / "index.json"));
  ASSERT_EQ(index["manifests"].size(), 1u);
  EXPECT_EQ(index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"], "v1");
  EXPECT_EQ(json::parse(t::read_file(d / "out" / "oci-layout"))["imageLayoutVersion"], "1.0.0");
}

TEST(Writer, SameInputGivesIdenticalBytes) {
  t::TempDir d;
  t::write_oci_layout(d / "in", rich_spec());
  auto in = open_and_flatten("oci:" + (d / "in").string());
  for (Compression c : {Compression::Gzip, Compression::Zstd, Compression::None}) {
    std::string tag = std::to_string(static_cast<int>(c));
    WrittenImage a, b;
    write_and_reopen(in, "oci:" + (d / ("a" + tag)).string(), c, &a);
    write_and_reopen(in, "oci:" + (d / ("b" + tag)).string(), c, &b);
    EXPECT_EQ(a.manifest_digest, b.manifest_digest);
    EXPECT_EQ(a.layer_digest, b.layer_digest);
    EXPECT_EQ(dir_bytes(d / ("a" + tag)), dir_bytes(d / ("b" + tag)));
  }
  // Archives too, byte for byte.
  for (std::string transport : {"oci-archive:", "docker-archive:"}) {
    std::string a = (d / ("x-" + transport.substr(0, 3) + ".tar")).string();
    std::string b = (d / ("y-" + transport.substr(0, 3) + ".tar")).string();
    write_and_reopen(in, transport + a);
    write_and_reopen(in, transport + b);
    EXPECT_EQ(t::read_file(a), t::read_file(b)) << transport;
  }
}

TEST(Writer, OciArchiveRoundTrip) {
  t::TempDir d;
  t::write_oci_layout(d / "in", rich_spec());
  auto in = open_and_flatten("oci:" + (d / "in").string());
  auto out = write_and_reopen(in, "oci-archive:" + (d / "out.tar").string() + ":slim");
  expect_same_view(in, out);
  for (const auto& e : fs::directory_iterator(d.path()))
    EXPECT_EQ(e.path().filename().string().find(".tmp-"), std::string::npos) << e.path();
}

TEST(Writer, DockerArchiveRoundTripWithRepoTag) {
  t::TempDir d;
  t::write_oci_layout(d / "in", rich_spec());
  auto in = open_and_flatten("oci:" + (d / "in").string());
  auto out = write_and_reopen(in, "docker-archive:" + (d / "out.tar").string() + ":example/slim:1.0");
  expect_same_view(in, out);
  // What `docker load` reads: manifest.json naming the config and the layer inside the archive.
  t::TempDir x;
  ASSERT_EQ(
      std::system(("tar -xf '" + (d / "out.tar").string() + "' -C '" + x.path().string() + "'").c_str()), 0);
  json m = json::parse(t::read_file(x / "manifest.json"));
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(m[0]["RepoTags"], json({"example/slim:1.0"}));
  EXPECT_TRUE(fs::exists(x / m[0]["Config"].get<std::string>()));
  ASSERT_EQ(m[0]["Layers"].size(), 1u);
  EXPECT_TRUE(fs::exists(x / m[0]["Layers"][0].get<std::string>()));
  EXPECT_TRUE(fs::exists(x / "oci-layout"));
  EXPECT_TRUE(fs::exists(x / "index.json"));
}

TEST(Writer, ZstdAndUncompressedRoundTrip) {
  t::TempDir d;
  t::write_oci_layout(d / "in", rich_spec());
  auto in = open_and_flatten("oci:" + (d / "in").string());
  auto z = write_and_reopen(in, "oci:" + (d / "z").string(), Compression::Zstd);
  expect_same_view(in, z);
  EXPECT_EQ(z.image.layers[0].media_type, kOciLayerZstd);
  std::string zb = t::read_file(z.image.layers[0].blob_path);
  EXPECT_EQ(zb.substr(0, 4), std::string("\x28\xb5\x2f\xfd", 4));
  WrittenImage w;
  auto n = write_and_reopen(in, "oci:" + (d / "n").string(), Compression::None, &w);
  expect_same_view(in, n);
  EXPECT_EQ(n.image.layers[0].media_type, kOciLayerTar);
  EXPECT_EQ(w.layer_digest, w.diff_id);
}

TEST(Writer, AddsToAnExistingLayoutAndReplacesTheSameTag) {
  t::TempDir d;
  t::write_oci_layout(d / "in", rich_spec());
  t::write_oci_layout(d / "out", rich_spec(), "original");
  auto in = open_and_flatten("oci:" + (d / "in").string());
  // The original has 3 layers, each write 1.
  auto ref = parse_reference("oci:" + (d / "out").string());
  ASSERT_TRUE(ref.ok());
  for (Compression c : {Compression::Gzip, Compression::Zstd}) {
    auto r = parse_reference("oci:" + (d / "out").string() + ":slim", false);
    ASSERT_TRUE(r.ok());
    WriteOptions wo;
    wo.output = *r;
    wo.compression = c;
    wo.work_dir = in.work.path();
    auto w = write_image(in.image, in.tree, select_all(in.tree), wo);
    ASSERT_TRUE(w.ok()) << w.error().message;
  }
  json index = json::parse(t::read_file(d / "out" / "index.json"));
  ASSERT_EQ(index["manifests"].size(), 2u);
  EXPECT_EQ(index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"], "original");
  EXPECT_EQ(index["manifests"][1]["annotations"]["org.opencontainers.image.ref.name"], "slim");
  auto slim = open_and_flatten("oci:" + (d / "out").string() + ":slim");
  EXPECT_EQ(slim.image.layers[0].media_type, kOciLayerZstd);
  auto report = validate_image(*ref, OpenOptions{Platform{}, in.work.path()});
  EXPECT_TRUE(report.ok()) << report.problems[0];
  EXPECT_EQ(report.manifests, 2);
  EXPECT_EQ(report.layers, 3 + 1);
}

TEST(Writer, FailedWriteLeavesExistingLayoutUntouched) {
  t::TempDir d;
  t::ImageSpec spec = rich_spec();
  for (auto& l : spec.layers) l.compression = t::LayerCompression::None;
  auto built = t::write_oci_layout(d / "in", spec);
  t::write_oci_layout(d / "out", rich_spec(), "original");
  auto before = dir_bytes(d / "out");
  auto in = open_and_flatten("oci:" + (d / "in").string());
  // The source changes under us after it was read: its digest no longer matches.
  fs::path blob = t::blob_path(d / "in", built.layer_digests[0]);
  std::string bytes = t::read_file(blob);
  auto pos = bytes.find("ping-binary");
  ASSERT_NE(pos, std::string::npos);
  bytes[pos] = 'P';
  t::write_file(blob, bytes);

  auto ref = parse_reference("oci:" + (d / "out").string() + ":slim", false);
  ASSERT_TRUE(ref.ok());
  WriteOptions wo;
  wo.output = *ref;
  wo.work_dir = in.work.path();
  auto w = write_image(in.image, in.tree, select_all(in.tree), wo);
  ASSERT_FALSE(w.ok());
  EXPECT_NE(w.error().message.find("digest mismatch"), std::string::npos) << w.error().message;
  EXPECT_EQ(dir_bytes(d / "out"), before) << "nothing may change, not even a stray temp file";

  // The same for a layout that did not exist: nothing appears.
  wo.output.path = d / "new";
  EXPECT_FALSE(write_image(in.image, in.tree, select_all(in.tree), wo).ok());
  for (const auto& e : fs::directory_iterator(d.path()))
    EXPECT_TRUE(e.path().filename() == "in" || e.path().filename() == "out") << e.path();
}

TEST(Writer, HardlinkGroupsKeepContentWhenTheTargetIsLeftOut) {
  t::TempDir d;
  t::ImageSpec spec;
  t::LayerSpec l;
  l.entries = {t::dir("d/"), t::file("d/target", "shared"), t::hardlink("d/x-link", "d/target"),
               t::hardlink("d/y-link", "d/target")};
  spec.layers = {l};
  t::write_oci_layout(d / "in", spec);
  auto in = open_and_flatten("oci:" + (d / "in").string());
  auto ref = parse_reference("oci:" + (d / "out").string(), false);
  ASSERT_TRUE(ref.ok());
  WriteOptions wo;
  wo.output = *ref;
  wo.work_dir = in.work.path();
  auto w = write_image(in.image, in.tree, {"/d", "/d/x-link", "/d/y-link"}, wo);
  ASSERT_TRUE(w.ok()) << w.error().message;
  auto out = open_and_flatten("oci:" + (d / "out").string());
  const FileEntry* x = out.tree.find("/d/x-link");
  const FileEntry* y = out.tree.find("/d/y-link");
  ASSERT_NE(x, nullptr);
  ASSERT_NE(y, nullptr);
  EXPECT_EQ(out.tree.find("/d/target"), nullptr);
  EXPECT_EQ(x->type, EntryType::Regular);
  EXPECT_EQ(x->size, 6);
  EXPECT_EQ(y->type, EntryType::Hardlink);
  EXPECT_EQ(y->link_target, "/d/x-link");
  EXPECT_EQ(contents(out.image)["/d/x-link"], "shared");
}

TEST(Writer, HardlinkSortedBeforeItsTargetBecomesTheFile) {
  t::TempDir d;
  t::ImageSpec spec;
  t::LayerSpec l;
  l.entries = {t::file("z", "zz"), t::hardlink("a", "z")};
  spec.layers = {l};
  t::write_oci_layout(d / "in", spec);
  auto in = open_and_flatten("oci:" + (d / "in").string());
  auto out = write_and_reopen(in, "oci:" + (d / "out").string());
  // Tar readers need the file before its links; the group stays one inode with the same bytes.
  ASSERT_NE(out.tree.find("/a"), nullptr);
  ASSERT_NE(out.tree.find("/z"), nullptr);
  EXPECT_EQ(out.tree.find("/a")->type, EntryType::Regular);
  EXPECT_EQ(out.tree.find("/z")->type, EntryType::Hardlink);
  EXPECT_EQ(out.tree.find("/z")->link_target, "/a");
  EXPECT_EQ(contents(out.image)["/a"], "zz");
}

TEST(Writer, SelectionMustNameTreePaths) {
  t::TempDir d;
  t::ImageSpec spec;
  t::LayerSpec l;
  l.entries = {t::file("a", "1")};
  spec.layers = {l};
  t::write_oci_layout(d / "in", spec);
  auto in = open_and_flatten("oci:" + (d / "in").string());
  auto ref = parse_reference("oci:" + (d / "out").string(), false);
  ASSERT_TRUE(ref.ok());
  WriteOptions wo;
  wo.output = *ref;
  wo.work_dir = in.work.path();
  auto w = write_image(in.image, in.tree, {"/a", "/missing"}, wo);
  ASSERT_FALSE(w.ok());
  EXPECT_NE(w.error().message.find("'/missing'"), std::string::npos) << w.error().message;
  EXPECT_FALSE(fs::exists(d / "out"));
}

TEST(Writer, ReadsBackDockerArchiveInputs) {
  t::TempDir d;
  t::write_docker_archive(d / "in.tar", {{rich_spec(), {"example/in:latest"}}});
  auto in = open_and_flatten("docker-archive:" + (d / "in.tar").string());
  auto out = write_and_reopen(in, "oci:" + (d / "out").string());
  expect_same_view(in, out);
  // No manifest blob in a docker archive: the image ID names the source.
  EXPECT_EQ(out.image.manifest["annotations"]["io.slimtrace.source.digest"],
            in.image.manifest_digest.empty() ? in.image.config_digest : in.image.manifest_digest);
}

// ---- replaced contents and metadata overrides (what `slimtrace build` writes) ----

namespace {

t::ImageSpec metadata_spec() {
  t::ImageSpec spec;
  t::LayerSpec l;
  l.compression = t::LayerCompression::None;
  auto owned = t::file("app/server", "server-binary", 0755);
  owned.uid = 1000;
  owned.gid = 1000;
  l.entries = {t::dir("app/"),
               owned,
               t::file("app/config", "config"),
               t::dir("var/"),
               t::dir("var/lib/"),
               t::dir("var/lib/dpkg/"),
               t::file("var/lib/dpkg/status", "Package: ORIGINAL-PACKAGE-DB\n" + std::string(2000, 'o')),
               t::symlink("app/link", "server"),
               t::dir("grp/"),
               t::file("grp/a", "shared-original", 0750),
               t::hardlink("grp/b", "grp/a"),
               t::hardlink("grp/c", "grp/a")};
  spec.layers = {l};
  spec.container_config = {{"Entrypoint", {"/app/server"}}};
  return spec;
}

// Writes `selection` (all paths when empty) with the options `edit` sets; checks the output validates.
slimtrace::Result<WrittenImage> write_edited(const Opened& in, const std::string& out_ref,
                                             const std::function<void(WriteOptions&)>& edit,
                                             std::set<std::string> selection = {},
                                             Compression c = Compression::None) {
  auto ref = parse_reference(out_ref, false);
  EXPECT_TRUE(ref.ok()) << ref.error().message;
  WriteOptions wo;
  wo.output = *ref;
  wo.compression = c;
  wo.work_dir = in.work.path();
  edit(wo);
  if (selection.empty()) selection = select_all(in.tree);
  auto w = write_image(in.image, in.tree, selection, wo);
  if (w.ok()) {
    auto report = validate_image(*ref, OpenOptions{Platform{}, in.work.path()});
    EXPECT_TRUE(report.ok()) << out_ref << ": " << (report.problems.empty() ? "" : report.problems[0]);
  }
  return w;
}

}  // namespace

TEST(Writer, ReplacedContentIsWrittenInsteadOfTheTreesBytes) {
  t::TempDir d;
  t::write_oci_layout(d / "in", metadata_spec());
  auto in = open_and_flatten("oci:" + (d / "in").string());
  const std::string pruned = "Package: libc6\nStatus: install ok installed\n";
  auto plain = write_edited(in, "oci:" + (d / "plain").string(), [](WriteOptions&) {});
  ASSERT_TRUE(plain.ok()) << plain.error().message;
  auto w = write_edited(in, "oci:" + (d / "out").string(),
                        [&](WriteOptions& wo) { wo.replaced_contents["/var/lib/dpkg/status"] = pruned; });
  ASSERT_TRUE(w.ok()) << w.error().message;
  auto out = open_and_flatten("oci:" + (d / "out").string());
  const FileEntry* st = out.tree.find("/var/lib/dpkg/status");
  ASSERT_NE(st, nullptr);
  EXPECT_EQ(st->type, EntryType::Regular);
  EXPECT_EQ(st->size, static_cast<int64_t>(pruned.size()));
  EXPECT_EQ(st->mode, 0644u);
  EXPECT_EQ(st->mtime, in.tree.find("/var/lib/dpkg/status")->mtime);
  auto c = contents(out.image);
  EXPECT_EQ(c["/var/lib/dpkg/status"], pruned);
  EXPECT_EQ(c["/app/server"], "server-binary");
  // The original bytes never reach the layer (uncompressed here, so a plain search finds them).
  std::string blob = t::read_file(out.image.layers[0].blob_path);
  EXPECT_EQ(blob.find("ORIGINAL-PACKAGE-DB"), std::string::npos);
  EXPECT_NE(blob.find(pruned), std::string::npos);
  // Sizes count the new content: 2029 original bytes took 4 blocks, the pruned 44 take 1.
  int64_t original = in.tree.find("/var/lib/dpkg/status")->size;
  EXPECT_EQ(w->files, plain->files);
  EXPECT_EQ(w->file_bytes, plain->file_bytes - original + static_cast<int64_t>(pruned.size()));
  EXPECT_EQ(w->uncompressed_size, static_cast<int64_t>(blob.size()));
  EXPECT_EQ(plain->uncompressed_size - w->uncompressed_size, 3 * 512);
  EXPECT_EQ(w->diff_id, out.image.layers[0].diff_id);
  ASSERT_EQ(out.image.config["rootfs"]["diff_ids"].size(), 1u);
  EXPECT_EQ(out.image.config["rootfs"]["diff_ids"][0], w->diff_id);
}

TEST(Writer, ReplacedContentCanBeEmptyAndCompressed) {
  t::TempDir d;
  t::write_oci_layout(d / "in", metadata_spec());
  auto in = open_and_flatten("oci:" + (d / "in").string());
  std::string big(3 * 1024 * 1024 + 7, 'n');  // more than one compressor chunk
  auto w = write_edited(
      in, "oci:" + (d / "out").string(),
      [&](WriteOptions& wo) {
        wo.replaced_contents["/var/lib/dpkg/status"] = "";
        wo.replaced_contents["/app/config"] = big;
      },
      {}, Compression::Zstd);
  ASSERT_TRUE(w.ok()) << w.error().message;
  auto out = open_and_flatten("oci:" + (d / "out").string());
  EXPECT_EQ(out.tree.find("/var/lib/dpkg/status")->size, 0);
  auto c = contents(out.image);
  EXPECT_EQ(c["/var/lib/dpkg/status"], "");
  EXPECT_EQ(c["/app/config"], big);
}

TEST(Writer, ReplacingTheFileOfAHardlinkGroupKeepsTheOthersLinked) {
  t::TempDir d;
  t::write_oci_layout(d / "in", metadata_spec());
  auto in = open_and_flatten("oci:" + (d / "in").string());
  auto w = write_edited(in, "oci:" + (d / "out").string(),
                        [](WriteOptions& wo) { wo.replaced_contents["/grp/a"] = "new a"; });
  ASSERT_TRUE(w.ok()) << w.error().message;
  auto out = open_and_flatten("oci:" + (d / "out").string());
  const FileEntry* a = out.tree.find("/grp/a");
  const FileEntry* b = out.tree.find("/grp/b");
  const FileEntry* cc = out.tree.find("/grp/c");
  ASSERT_TRUE(a && b && cc);
  // /grp/a stands alone with its new bytes; the next member carries the group's original bytes.
  EXPECT_EQ(a->type, EntryType::Regular);
  EXPECT_EQ(a->mode, 0750u);
  EXPECT_EQ(b->type, EntryType::Regular);
  EXPECT_EQ(b->mode, 0750u);
  EXPECT_EQ(cc->type, EntryType::Hardlink);
  EXPECT_EQ(cc->link_target, "/grp/b");
  auto c = contents(out.image);
  EXPECT_EQ(c["/grp/a"], "new a");
  EXPECT_EQ(c["/grp/b"], "shared-original");
}

TEST(Writer, ReplacingALinkOfAHardlinkGroupMakesItAFileOfItsOwn) {
  t::TempDir d;
  t::write_oci_layout(d / "in", metadata_spec());
  auto in = open_and_flatten("oci:" + (d / "in").string());
  auto w = write_edited(in, "oci:" + (d / "out").string(),
                        [](WriteOptions& wo) { wo.replaced_contents["/grp/b"] = "new b"; });
  ASSERT_TRUE(w.ok()) << w.error().message;
  auto out = open_and_flatten("oci:" + (d / "out").string());
  ASSERT_NE(out.tree.find("/grp/b"), nullptr);
  ASSERT_NE(out.tree.find("/grp/c"), nullptr);
  EXPECT_EQ(out.tree.find("/grp/a")->type, EntryType::Regular);
  EXPECT_EQ(out.tree.find("/grp/b")->type, EntryType::Regular);
  EXPECT_EQ(out.tree.find("/grp/b")->mode, 0750u);
  EXPECT_EQ(out.tree.find("/grp/c")->type, EntryType::Hardlink);
  EXPECT_EQ(out.tree.find("/grp/c")->link_target, "/grp/a");
  auto c = contents(out.image);
  EXPECT_EQ(c["/grp/a"], "shared-original");
  EXPECT_EQ(c["/grp/b"], "new b");
  EXPECT_EQ(w->file_bytes, in.tree.total_bytes() + 5);  // one more file of 5 bytes
}

TEST(Writer, ReplacingEveryMemberOfAGroupLeavesNoLinks) {
  t::TempDir d;
  t::write_oci_layout(d / "in", metadata_spec());
  auto in = open_and_flatten("oci:" + (d / "in").string());
  auto w = write_edited(in, "oci:" + (d / "out").string(),
                        [](WriteOptions& wo) {
                          wo.replaced_contents["/grp/b"] = "B";
                          wo.replaced_contents["/grp/c"] = "C";
                        },
                        {"/grp", "/grp/b", "/grp/c"});
  ASSERT_TRUE(w.ok()) << w.error().message;
  auto out = open_and_flatten("oci:" + (d / "out").string());
  EXPECT_EQ(out.tree.find("/grp/a"), nullptr);
  EXPECT_EQ(out.tree.find("/grp/b")->type, EntryType::Regular);
  EXPECT_EQ(out.tree.find("/grp/c")->type, EntryType::Regular);
  std::string blob = t::read_file(out.image.layers[0].blob_path);
  EXPECT_EQ(blob.find("shared-original"), std::string::npos);
  EXPECT_EQ(w->file_bytes, 2);
}

TEST(Writer, OverridesChangeModeAndOwners) {
  t::TempDir d;
  t::write_oci_layout(d / "in", metadata_spec());
  auto in = open_and_flatten("oci:" + (d / "in").string());
  auto w = write_edited(in, "oci:" + (d / "out").string(), [](WriteOptions& wo) {
    wo.overrides["/app/server"] = MetadataOverride{04755, std::nullopt, std::nullopt};  // setuid, owners kept
    wo.overrides["/app/config"] = MetadataOverride{std::nullopt, 33, 44};
    wo.overrides["/app"] = MetadataOverride{01770, 0, 1000};
    wo.overrides["/var/lib/dpkg/status"] = MetadataOverride{0600, 7, 8};
    wo.replaced_contents["/var/lib/dpkg/status"] = "pruned";
  });
  ASSERT_TRUE(w.ok()) << w.error().message;
  auto out = open_and_flatten("oci:" + (d / "out").string());
  const FileEntry* server = out.tree.find("/app/server");
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(server->mode, 04755u);
  EXPECT_EQ(server->uid, 1000u);
  EXPECT_EQ(server->gid, 1000u);
  const FileEntry* config = out.tree.find("/app/config");
  EXPECT_EQ(config->mode, 0644u);
  EXPECT_EQ(config->uid, 33u);
  EXPECT_EQ(config->gid, 44u);
  const FileEntry* app = out.tree.find("/app");
  EXPECT_EQ(app->type, EntryType::Directory);
  EXPECT_EQ(app->mode, 01770u);
  EXPECT_EQ(app->gid, 1000u);
  const FileEntry* st = out.tree.find("/var/lib/dpkg/status");
  EXPECT_EQ(st->mode, 0600u);
  EXPECT_EQ(st->uid, 7u);
  EXPECT_EQ(st->gid, 8u);
  EXPECT_EQ(contents(out.image)["/var/lib/dpkg/status"], "pruned");
  // What a container runtime sees: the setuid bit in the extracted tar.
  t::TempDir x;
  ASSERT_EQ(
      std::system(("tar -xpf '" + out.image.layers[0].blob_path.string() + "' -C '" + x.path().string() + "'")
                      .c_str()),
      0);
  EXPECT_EQ(fs::status(x / "app/server").permissions() & fs::perms::set_uid, fs::perms::set_uid);
  // Entries without an override are as in the tree.
  EXPECT_EQ(out.tree.find("/grp/a")->mode, 0750u);
}

TEST(Writer, OverrideOnOneHardlinkMemberIsTheWholeGroups) {
  t::TempDir d;
  t::write_oci_layout(d / "in", metadata_spec());
  auto in = open_and_flatten("oci:" + (d / "in").string());
  auto w = write_edited(in, "oci:" + (d / "out").string(), [](WriteOptions& wo) {
    wo.overrides["/grp/c"] = MetadataOverride{02711, 5, std::nullopt};
  });
  ASSERT_TRUE(w.ok()) << w.error().message;
  auto out = open_and_flatten("oci:" + (d / "out").string());
  // One inode: extracting gives every name the new metadata.
  t::TempDir x;
  ASSERT_EQ(
      std::system(("tar -xpf '" + out.image.layers[0].blob_path.string() + "' -C '" + x.path().string() + "'")
                      .c_str()),
      0);
  for (const char* p : {"grp/a", "grp/b", "grp/c"}) {
    struct stat st {};
    ASSERT_EQ(::stat((x / p).c_str(), &st), 0) << p;
    EXPECT_EQ(st.st_mode & 07777, 02711u) << p;
    EXPECT_EQ(st.st_uid, 5u) << p;
    EXPECT_EQ(st.st_nlink, 3u) << p;
  }
  EXPECT_EQ(out.tree.find("/grp/a")->mode, 02711u);
  EXPECT_EQ(out.tree.find("/grp/a")->uid, 5u);
}

TEST(Writer, ReplacedOrOverriddenPathsMustBeSelectedFiles) {
  t::TempDir d;
  t::write_oci_layout(d / "in", metadata_spec());
  auto in = open_and_flatten("oci:" + (d / "in").string());
  struct Case {
    std::function<void(WriteOptions&)> edit;
    std::string path;
    std::string why;
  };
  std::vector<Case> cases = {
      {[](WriteOptions& wo) { wo.replaced_contents["/app"] = "x"; }, "'/app'", "directory"},
      {[](WriteOptions& wo) { wo.replaced_contents["/app/link"] = "x"; }, "'/app/link'", "symlink"},
      {[](WriteOptions& wo) { wo.replaced_contents["/app/config"] = "x"; }, "'/app/config'", "not selected"},
      {[](WriteOptions& wo) { wo.replaced_contents["/nowhere"] = "x"; }, "'/nowhere'", "not selected"},
      {[](WriteOptions& wo) {
         wo.overrides["/app/config"] = {0600, {}, {}};
       },
       "'/app/config'", "not selected"},
      {[](WriteOptions& wo) {
         wo.overrides["/app/server"] = {0100755, {}, {}};
       },
       "'/app/server'", "07777"},
  };
  std::set<std::string> selection = select_all(in.tree);
  selection.erase("/app/config");
  for (size_t i = 0; i < cases.size(); ++i) {
    fs::path out = d / ("out" + std::to_string(i));
    auto w = write_edited(in, "oci:" + out.string(), cases[i].edit, selection);
    ASSERT_FALSE(w.ok()) << cases[i].path;
    EXPECT_NE(w.error().message.find(cases[i].path), std::string::npos) << w.error().message;
    EXPECT_NE(w.error().message.find(cases[i].why), std::string::npos) << w.error().message;
    EXPECT_FALSE(fs::exists(out)) << "nothing is written on a bad request";
  }
}

TEST(Writer, ReplacedContentsAndOverridesAreDeterministic) {
  t::TempDir d;
  t::write_oci_layout(d / "in", metadata_spec());
  auto in = open_and_flatten("oci:" + (d / "in").string());
  auto edit = [](WriteOptions& wo) {
    wo.replaced_contents["/var/lib/dpkg/status"] = "Package: x\n";
    wo.replaced_contents["/grp/a"] = "A";
    wo.overrides["/app/server"] = MetadataOverride{04755, 0, 0};
    wo.overrides["/grp/b"] = MetadataOverride{0700, {}, {}};
  };
  for (Compression c : {Compression::Gzip, Compression::Zstd}) {
    std::string tag = std::to_string(static_cast<int>(c));
    auto a = write_edited(in, "oci:" + (d / ("a" + tag)).string(), edit, {}, c);
    auto b = write_edited(in, "oci:" + (d / ("b" + tag)).string(), edit, {}, c);
    ASSERT_TRUE(a.ok() && b.ok());
    EXPECT_EQ(a->manifest_digest, b->manifest_digest);
    EXPECT_EQ(dir_bytes(d / ("a" + tag)), dir_bytes(d / ("b" + tag)));
  }
  for (std::string transport : {"oci-archive:", "docker-archive:"}) {
    std::string a = (d / ("x-" + transport.substr(0, 3) + ".tar")).string();
    std::string b = (d / ("y-" + transport.substr(0, 3) + ".tar")).string();
    ASSERT_TRUE(write_edited(in, transport + a, edit).ok());
    ASSERT_TRUE(write_edited(in, transport + b, edit).ok());
    EXPECT_EQ(t::read_file(a), t::read_file(b)) << transport;
  }
}
