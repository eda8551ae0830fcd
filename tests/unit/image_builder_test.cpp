// The test image builder is itself checked against independent readers (GNU tar, gzip, zstd, umoci,
// skopeo), so that tests of the image library start from images other tools agree are valid.
#include "image_builder.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <zstd.h>

#include <array>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

namespace st = slimtrace::testing;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

struct CmdResult {
  int status = -1;
  std::string out;
};

// Runs a shell command, capturing stdout and stderr together.
CmdResult run(const std::string& cmd) {
  CmdResult r;
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (p == nullptr) return r;
  std::array<char, 4096> buf{};
  size_t n = 0;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  int st = pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

bool have(const std::string& tool) { return run("command -v " + tool).status == 0; }

std::string q(const fs::path& p) { return "'" + p.string() + "'"; }

st::ImageSpec two_layer_spec(st::LayerCompression c) {
  st::ImageSpec spec;
  st::LayerSpec l1;
  l1.compression = c;
  l1.created_by = "ADD rootfs /";
  l1.entries = {st::dir("etc/"), st::file("etc/hostname", "box\n"), st::dir("bin/"),
                st::file("bin/tool", "#!/bin/sh\necho hi\n", 0755), st::symlink("bin/sh", "tool")};
  st::LayerSpec l2;
  l2.compression = c;
  l2.created_by = "RUN rm /etc/hostname";
  l2.entries = {st::whiteout("etc/hostname"), st::file("etc/motd", "hello\n")};
  spec.layers = {l1, l2};
  spec.container_config = {{"Entrypoint", {"/bin/tool"}}};
  return spec;
}

}  // namespace

TEST(ImageBuilder, Sha256MatchesKnownVector) {
  EXPECT_EQ(st::sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(ImageBuilder, TarIsReadByGnuTar) {
  st::TempDir tmp;
  std::string long_name = "d/" + std::string(150, 'n');
  std::string long_target = std::string(120, 't');
  auto dev = st::RawEntry{};
  dev.name = "dev/null";
  dev.typeflag = '3';
  dev.mode = 0666;
  dev.dev_major = 1;
  dev.dev_minor = 3;
  auto xattr = st::file("bin/ping", "ELF", 04755);
  xattr.pax["SCHILY.xattr.security.capability"] = std::string("\x01\x00\x00\x02", 4);
  std::vector<st::RawEntry> entries = {
      st::dir("d/"),
      st::file("d/a.txt", "alpha\n"),
      st::file(long_name, "long\n"),
      st::symlink("d/link", long_target),
      st::hardlink("d/hard", "d/a.txt"),
      dev,
      xattr,
  };
  st::write_file(tmp / "x.tar", st::make_tar(entries));
  auto list = run("tar -tvf " + q(tmp / "x.tar"));
  ASSERT_EQ(list.status, 0) << list.out;
  EXPECT_NE(list.out.find("d/a.txt"), std::string::npos) << list.out;
  EXPECT_NE(list.out.find(long_name), std::string::npos) << list.out;
  EXPECT_NE(list.out.find("d/link -> " + long_target), std::string::npos) << list.out;
  EXPECT_NE(list.out.find("d/hard link to d/a.txt"), std::string::npos) << list.out;
  EXPECT_NE(list.out.find("crw-rw-rw-"), std::string::npos) << list.out;
  EXPECT_NE(list.out.find("-rwsr-xr-x"), std::string::npos) << list.out;
  EXPECT_EQ(list.out.find("PaxHeaders"), std::string::npos) << "pax headers must be consumed by tar";

  auto content = run("tar -xOf " + q(tmp / "x.tar") + " " + long_name);
  ASSERT_EQ(content.status, 0) << content.out;
  EXPECT_EQ(content.out, "long\n");
}

TEST(ImageBuilder, TarIsBlockAlignedAndHonoursEndOfArchive) {
  std::string with_end = st::make_tar({st::file("a", "x")});
  std::string without = st::make_tar({st::file("a", "x")}, false);
  EXPECT_EQ(with_end.size(), 4u * 512);
  EXPECT_EQ(without.size(), 2u * 512);
}

TEST(ImageBuilder, SizeFieldOverrideIsWrittenVerbatim) {
  auto e = st::file("big", "data");
  e.size_field = "77777777777";
  std::string tar = st::make_tar({e});
  EXPECT_EQ(tar.substr(124, 11), "77777777777");
  // The checksum still covers the overridden field, so readers reach the size check itself.
  unsigned sum = 0;
  for (size_t i = 0; i < 512; ++i) sum += (i >= 148 && i < 156) ? ' ' : static_cast<unsigned char>(tar[i]);
  EXPECT_EQ(std::stoul(tar.substr(148, 6), nullptr, 8), sum);
}

TEST(ImageBuilder, GzipIsDeterministicAndReadable) {
  st::TempDir tmp;
  std::string data(100000, 'z');
  std::string a = st::gzip_bytes(data);
  EXPECT_EQ(a, st::gzip_bytes(data));
  ASSERT_GE(a.size(), 10u);
  EXPECT_EQ(a.substr(4, 4), std::string(4, '\0')) << "gzip mtime must be 0";
  st::write_file(tmp / "d.gz", a);
  auto r = run("gzip -dc " + q(tmp / "d.gz"));
  ASSERT_EQ(r.status, 0);
  EXPECT_EQ(r.out, data);
}

TEST(ImageBuilder, ZstdRoundTrips) {
  std::string data = "hello zstd " + std::string(5000, 'q');
  std::string c = st::zstd_bytes(data);
  std::string back(data.size(), '\0');
  size_t n = ZSTD_decompress(back.data(), back.size(), c.data(), c.size());
  ASSERT_FALSE(ZSTD_isError(n));
  back.resize(n);
  EXPECT_EQ(back, data);
}

TEST(ImageBuilder, OciLayoutIsSelfConsistent) {
  st::TempDir tmp;
  auto built = st::write_oci_layout(tmp.path(), two_layer_spec(st::LayerCompression::Gzip), "v1");
  ASSERT_EQ(built.layer_digests.size(), 2u);
  EXPECT_TRUE(fs::exists(tmp / "oci-layout"));
  json index = json::parse(st::read_file(tmp / "index.json"));
  ASSERT_EQ(index["manifests"].size(), 1u);
  EXPECT_EQ(index["manifests"][0]["digest"], built.manifest_digest);
  EXPECT_EQ(index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"], "v1");
  std::string m = st::read_file(st::blob_path(tmp.path(), built.manifest_digest));
  EXPECT_EQ("sha256:" + st::sha256_hex(m), built.manifest_digest);
  json manifest = json::parse(m);
  EXPECT_EQ(manifest["mediaType"], "application/vnd.oci.image.manifest.v1+json");
  EXPECT_EQ(manifest["layers"][0]["mediaType"], "application/vnd.oci.image.layer.v1.tar+gzip");
  json config = json::parse(st::read_file(st::blob_path(tmp.path(), built.config_digest)));
  EXPECT_EQ(config["rootfs"]["diff_ids"], json(built.diff_ids));
  EXPECT_EQ(config["history"][1]["created_by"], "RUN rm /etc/hostname");
  EXPECT_EQ(config["config"]["Entrypoint"][0], "/bin/tool");

  // A second image appends to the same index.
  st::write_oci_layout(tmp.path(), two_layer_spec(st::LayerCompression::Zstd), "v2");
  index = json::parse(st::read_file(tmp / "index.json"));
  EXPECT_EQ(index["manifests"].size(), 2u);
}

TEST(ImageBuilder, SameSpecGivesSameDigests) {
  st::TempDir a, b;
  auto x = st::write_oci_layout(a.path(), two_layer_spec(st::LayerCompression::Gzip));
  auto y = st::write_oci_layout(b.path(), two_layer_spec(st::LayerCompression::Gzip));
  EXPECT_EQ(x.manifest_digest, y.manifest_digest);
}

TEST(ImageBuilder, OciLayoutPassesUmoci) {
  if (!have("umoci")) GTEST_SKIP() << "umoci not installed";
  st::TempDir tmp;
  for (auto c : {st::LayerCompression::Gzip, st::LayerCompression::None}) {
    fs::path layout = tmp / (c == st::LayerCompression::Gzip ? "gz" : "plain");
    st::write_oci_layout(layout, two_layer_spec(c), "latest");
    auto r = run("umoci stat --image " + q(layout) + ":latest");
    EXPECT_EQ(r.status, 0) << r.out;
    EXPECT_NE(r.out.find("RUN rm /etc/hostname"), std::string::npos) << r.out;
  }
}

TEST(ImageBuilder, OciLayoutPassesSkopeo) {
  if (!have("skopeo")) GTEST_SKIP() << "skopeo not installed";
  st::TempDir tmp;
  auto built = st::write_oci_layout(tmp.path(), two_layer_spec(st::LayerCompression::Gzip), "latest");
  auto r = run("skopeo inspect oci:" + q(tmp.path()) + ":latest");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find(built.layer_digests[1]), std::string::npos) << r.out;
}

// skopeo 1.9 only looks up OCI manifest media types by tag, so Docker types are checked by hand.
TEST(ImageBuilder, DockerMediaTypesInLayout) {
  st::TempDir tmp;
  auto spec = two_layer_spec(st::LayerCompression::Gzip);
  spec.docker_media_types = true;
  auto built = st::write_oci_layout(tmp.path(), spec, "latest");
  json index = json::parse(st::read_file(tmp / "index.json"));
  EXPECT_EQ(index["manifests"][0]["mediaType"], "application/vnd.docker.distribution.manifest.v2+json");
  json manifest = json::parse(st::read_file(st::blob_path(tmp.path(), built.manifest_digest)));
  EXPECT_EQ(manifest["mediaType"], "application/vnd.docker.distribution.manifest.v2+json");
  EXPECT_EQ(manifest["config"]["mediaType"], "application/vnd.docker.container.image.v1+json");
  EXPECT_EQ(manifest["layers"][0]["mediaType"], "application/vnd.docker.image.rootfs.diff.tar.gzip");
  EXPECT_EQ(manifest["layers"][0]["size"], fs::file_size(st::blob_path(tmp.path(), built.layer_digests[0])));
}

TEST(ImageBuilder, MultiPlatformIndexPassesSkopeo) {
  st::TempDir tmp;
  auto amd = two_layer_spec(st::LayerCompression::Gzip);
  auto arm = two_layer_spec(st::LayerCompression::Gzip);
  arm.architecture = "arm64";
  arm.layers[1].entries.push_back(st::file("etc/arch", "arm64\n"));
  auto built = st::write_oci_index(tmp.path(), {amd, arm}, "latest");
  ASSERT_EQ(built.size(), 2u);
  EXPECT_NE(built[0].manifest_digest, built[1].manifest_digest);
  if (!have("skopeo")) GTEST_SKIP() << "skopeo not installed";
  auto r = run("skopeo inspect --override-arch arm64 oci:" + q(tmp.path()) + ":latest");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find(built[1].layer_digests[1]), std::string::npos) << r.out;
}

TEST(ImageBuilder, DockerArchiveLooksLikeDockerSave) {
  st::TempDir tmp;
  auto spec = two_layer_spec(st::LayerCompression::Gzip);
  auto other = two_layer_spec(st::LayerCompression::None);
  other.layers[1].entries.push_back(st::file("extra", "x"));
  auto built =
      st::write_docker_archive(tmp / "img.tar", {{spec, {"example/app:1"}}, {other, {"other:latest"}}});
  ASSERT_EQ(built.size(), 2u);
  auto list = run("tar -tf " + q(tmp / "img.tar"));
  ASSERT_EQ(list.status, 0) << list.out;
  EXPECT_NE(list.out.find("manifest.json"), std::string::npos);
  EXPECT_NE(list.out.find("repositories"), std::string::npos);
  auto m = run("tar -xOf " + q(tmp / "img.tar") + " manifest.json");
  ASSERT_EQ(m.status, 0);
  json manifest = json::parse(m.out);
  ASSERT_EQ(manifest.size(), 2u);
  EXPECT_EQ(manifest[0]["RepoTags"][0], "example/app:1");
  EXPECT_EQ(manifest[0]["Config"], built[0].config_digest.substr(7) + ".json");
  EXPECT_EQ(manifest[0]["Layers"][1], built[0].diff_ids[1].substr(7) + "/layer.tar");
  // Identical first layers are stored once.
  EXPECT_EQ(manifest[0]["Layers"][0], manifest[1]["Layers"][0]);
  if (!have("skopeo")) return;
  auto r = run("skopeo inspect docker-archive:" + q(tmp / "img.tar") + ":other:latest");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find(built[1].diff_ids[1]), std::string::npos) << r.out;
}

TEST(ImageBuilder, OciArchivePassesSkopeo) {
  st::TempDir tmp;
  auto built = st::write_oci_archive(tmp / "img.tar", two_layer_spec(st::LayerCompression::Zstd), "latest");
  auto list = run("tar -tf " + q(tmp / "img.tar"));
  ASSERT_EQ(list.status, 0) << list.out;
  EXPECT_NE(list.out.find("index.json"), std::string::npos);
  EXPECT_NE(list.out.find("blobs/sha256/" + built.manifest_digest.substr(7)), std::string::npos);
  if (!have("skopeo")) GTEST_SKIP() << "skopeo not installed";
  auto r = run("skopeo inspect oci-archive:" + q(tmp / "img.tar") + ":latest");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find(built.layer_digests[0]), std::string::npos) << r.out;
}

TEST(ImageBuilder, TempDirIsRemovedEvenWhenLocked) {
  fs::path p;
  {
    st::TempDir tmp;
    p = tmp.path();
    st::write_file(tmp / "locked/inner/f", "x");
    ::chmod((tmp / "locked/inner").c_str(), 0);
    ::chmod((tmp / "locked").c_str(), 0500);
  }
  EXPECT_FALSE(fs::exists(p));
}
