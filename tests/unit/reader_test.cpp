// The image reader: references, transports, manifests and indexes, layer streams and digests.
#include <gtest/gtest.h>

#include "image_builder.hpp"
#include "slimtrace/image/digest.hpp"
#include "slimtrace/image/file_tree.hpp"
#include "slimtrace/image/layer_reader.hpp"
#include "slimtrace/image/reference.hpp"
#include "slimtrace/image/source.hpp"
#include "slimtrace/workdir.hpp"

namespace t = slimtrace::testing;
using namespace slimtrace::image;

namespace {

t::ImageSpec simple_spec(t::LayerCompression c = t::LayerCompression::Gzip) {
  t::ImageSpec spec;
  t::LayerSpec l1;
  l1.compression = c;
  l1.entries = {t::dir("etc/"), t::file("etc/hello", "hello world\n"), t::symlink("etc/link", "hello")};
  spec.layers.push_back(l1);
  spec.container_config = {{"Entrypoint", {"/bin/sh"}}};
  return spec;
}

struct Opened {
  slimtrace::WorkDir work;
  SourceImage image;
};

slimtrace::Result<Opened> open(const std::string& text, const Platform& p = {}) {
  auto ref = parse_reference(text);
  if (!ref) return ref.error();
  auto w = slimtrace::WorkDir::create();
  if (!w) return w.error();
  auto img = open_image(*ref, OpenOptions{p, w->path()});
  if (!img) return img.error();
  return Opened{std::move(w).value(), std::move(img).value()};
}

}  // namespace

TEST(Reference, ParsesTransports) {
  auto r = parse_reference("oci:/some/dir:v1", false);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->transport, Transport::OciLayout);
  EXPECT_EQ(r->path, "/some/dir");
  EXPECT_EQ(r->tag, "v1");

  r = parse_reference("oci-archive:/x.tar", false);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->transport, Transport::OciArchive);
  EXPECT_EQ(r->tag, "");

  r = parse_reference("docker-archive:/x.tar:busybox:1.36", false);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->transport, Transport::DockerArchive);
  EXPECT_EQ(r->path, "/x.tar");
  EXPECT_EQ(r->tag, "busybox:1.36");

  r = parse_reference("docker-archive:/x.tar:busybox", false);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->tag, "busybox:latest");

  r = parse_reference("docker-archive:/x.tar:@2", false);
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(r->index.has_value());
  EXPECT_EQ(*r->index, 2);
}

TEST(Reference, UnknownRefsAreClearErrors) {
  auto r = parse_reference("/definitely/not/here");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("/definitely/not/here"), std::string::npos);
  EXPECT_NE(r.error().message.find("no such file"), std::string::npos) << r.error().message;

  r = parse_reference("containers-storage:x");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("not supported"), std::string::npos);

  t::TempDir d;
  r = parse_reference(d.path().string());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("not an OCI image layout"), std::string::npos) << r.error().message;
}

TEST(Reference, BarePathsAreDetectedByContent) {
  t::TempDir d;
  t::write_oci_layout(d / "layout", simple_spec());
  t::write_oci_archive(d / "oci.tar", simple_spec());
  t::write_docker_archive(d / "docker.tar", {{simple_spec(), {"app:1"}}});
  auto r = parse_reference((d / "layout").string());
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->transport, Transport::OciLayout);
  r = parse_reference((d / "oci.tar").string());
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->transport, Transport::OciArchive);
  r = parse_reference((d / "docker.tar").string());
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->transport, Transport::DockerArchive);
}

TEST(Open, AllTransportsGiveTheSameImage) {
  t::TempDir d;
  auto spec = simple_spec();
  auto built = t::write_oci_layout(d / "layout", spec, "v1");
  t::write_oci_archive(d / "oci.tar", spec, "v1");
  t::write_docker_archive(d / "docker.tar", {{spec, {"app:v1"}}});
  for (const auto& ref : {"oci:" + (d / "layout").string() + ":v1", "oci-archive:" + (d / "oci.tar").string(),
                          "docker-archive:" + (d / "docker.tar").string() + ":app:v1"}) {
    auto o = open(ref);
    ASSERT_TRUE(o.ok()) << ref << ": " << o.error().message;
    EXPECT_EQ(o->image.config_digest, built.config_digest) << ref;
    ASSERT_EQ(o->image.layers.size(), 1u);
    EXPECT_EQ(o->image.layers[0].diff_id, built.diff_ids[0]);
    EXPECT_EQ(o->image.layers[0].created_by, "test layer");
    auto tree = flatten(o->image);
    ASSERT_TRUE(tree.ok()) << ref << ": " << tree.error().message;
    const auto* f = tree->find("/etc/hello");
    ASSERT_NE(f, nullptr);
    EXPECT_EQ(f->size, 12);
    EXPECT_EQ(tree->find("/etc/link")->link_target, "hello");
  }
}

TEST(Open, GzipZstdAndUncompressedLayers) {
  for (auto c : {t::LayerCompression::None, t::LayerCompression::Gzip, t::LayerCompression::Zstd}) {
    t::TempDir d;
    t::write_oci_layout(d / "l", simple_spec(c));
    auto o = open("oci:" + (d / "l").string());
    ASSERT_TRUE(o.ok()) << o.error().message;
    auto r = LayerReader::open(o->image.layers[0], 0);
    ASSERT_TRUE(r.ok()) << r.error().message;
    std::string content;
    for (;;) {
      auto e = r->next();
      ASSERT_TRUE(e.ok()) << e.error().message;
      if (!*e) break;
      if ((*e)->path == "/etc/hello") {
        char buf[64];
        auto n = r->read(buf);
        ASSERT_TRUE(n.ok());
        content.assign(buf, *n);
      }
    }
    EXPECT_EQ(content, "hello world\n");
    auto fin = r->finish();
    EXPECT_TRUE(fin.ok()) << fin.error().message;
    EXPECT_EQ(r->compression(), c == t::LayerCompression::None   ? Compression::None
                                : c == t::LayerCompression::Gzip ? Compression::Gzip
                                                                 : Compression::Zstd);
  }
}

TEST(Open, MultiMemberGzipIsOneStream) {
  t::TempDir d;
  auto spec = simple_spec(t::LayerCompression::None);
  auto built = t::write_oci_layout(d / "l", spec);
  // Re-compress the layer as two gzip members and rewrite the descriptors to match.
  auto tar = t::read_file(t::blob_path(d / "l", built.layer_digests[0]));
  auto gz = t::gzip_bytes(tar.substr(0, 512)) + t::gzip_bytes(tar.substr(512));
  SourceImage img;
  LayerDescriptor l;
  l.blob_path = d / "two-members.gz";
  t::write_file(l.blob_path, gz);
  l.digest = "sha256:" + t::sha256_hex(gz);
  l.size = static_cast<int64_t>(gz.size());
  l.diff_id = built.diff_ids[0];
  img.layers.push_back(l);
  auto tree = flatten(img);
  ASSERT_TRUE(tree.ok()) << tree.error().message;
  EXPECT_NE(tree->find("/etc/hello"), nullptr);
}

TEST(Open, PlatformSelectionFromIndex) {
  t::TempDir d;
  auto amd = simple_spec();
  auto arm = simple_spec();
  arm.architecture = "arm64";
  arm.layers[0].entries.push_back(t::file("arm-only", "x"));
  t::write_oci_index(d / "multi", {amd, arm});
  auto o = open("oci:" + (d / "multi").string());
  ASSERT_TRUE(o.ok()) << o.error().message;
  EXPECT_EQ(o->image.platform.architecture, "amd64");
  auto a = open("oci:" + (d / "multi").string(), Platform{"linux", "arm64", ""});
  ASSERT_TRUE(a.ok()) << a.error().message;
  auto tree = flatten(a->image);
  ASSERT_TRUE(tree.ok());
  EXPECT_NE(tree->find("/arm-only"), nullptr);
  auto none = open("oci:" + (d / "multi").string(), Platform{"linux", "s390x", ""});
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.error().message.find("linux/s390x not found"), std::string::npos) << none.error().message;
  EXPECT_NE(none.error().message.find("linux/arm64"), std::string::npos) << none.error().message;
}

TEST(Open, DockerArchiveWithSeveralImages) {
  t::TempDir d;
  auto a = simple_spec();
  auto b = simple_spec();
  b.layers[0].entries.push_back(t::file("only-in-b", "b"));
  t::write_docker_archive(d / "two.tar", {{a, {"alpha:1"}}, {b, {"beta:2", "beta:latest"}}});
  auto amb = open("docker-archive:" + (d / "two.tar").string());
  ASSERT_FALSE(amb.ok());
  EXPECT_NE(amb.error().message.find("holds 2 images"), std::string::npos) << amb.error().message;
  EXPECT_NE(amb.error().message.find("beta:2"), std::string::npos);

  auto byname = open("docker-archive:" + (d / "two.tar").string() + ":beta:2");
  ASSERT_TRUE(byname.ok()) << byname.error().message;
  auto tree = flatten(byname->image);
  ASSERT_TRUE(tree.ok());
  EXPECT_NE(tree->find("/only-in-b"), nullptr);

  auto byindex = open("docker-archive:" + (d / "two.tar").string() + ":@0");
  ASSERT_TRUE(byindex.ok()) << byindex.error().message;
  tree = flatten(byindex->image);
  ASSERT_TRUE(tree.ok());
  EXPECT_EQ(tree->find("/only-in-b"), nullptr);

  auto missing = open("docker-archive:" + (d / "two.tar").string() + ":gamma:1");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message.find("no image tagged 'gamma:1'"), std::string::npos)
      << missing.error().message;
}

TEST(Open, DockerMediaTypesAreRead) {
  t::TempDir d;
  auto spec = simple_spec();
  spec.docker_media_types = true;
  t::write_oci_layout(d / "l", spec);
  auto o = open("oci:" + (d / "l").string());
  ASSERT_TRUE(o.ok()) << o.error().message;
  EXPECT_EQ(o->image.manifest_media_type, kDockerManifest);
  EXPECT_TRUE(flatten(o->image).ok());
}

TEST(Open, TagSelectionAndAmbiguity) {
  t::TempDir d;
  t::write_oci_layout(d / "l", simple_spec(), "one");
  t::write_oci_layout(d / "l", simple_spec(), "two");
  auto amb = open("oci:" + (d / "l").string());
  ASSERT_FALSE(amb.ok());
  EXPECT_NE(amb.error().message.find("pick one"), std::string::npos) << amb.error().message;
  EXPECT_TRUE(open("oci:" + (d / "l").string() + ":two").ok());
  auto none = open("oci:" + (d / "l").string() + ":three");
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.error().message.find("tags: one, two"), std::string::npos) << none.error().message;
}

TEST(Digest, Sha256) {
  EXPECT_EQ(sha256_digest(""), "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_TRUE(digest_hex("sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855").ok());
  EXPECT_FALSE(digest_hex("sha512:abc").ok());
  EXPECT_FALSE(digest_hex("sha256:../../etc/passwd").ok());
}
