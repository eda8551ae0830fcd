// validate_image: what a registry and a runtime would refuse, reported problem by problem.
#include "slimtrace/image/validate.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <functional>

#include "image_builder.hpp"
#include "slimtrace/image/reference.hpp"
#include "slimtrace/workdir.hpp"

namespace t = slimtrace::testing;
namespace fs = std::filesystem;
using namespace slimtrace::image;
using nlohmann::json;

namespace {

t::ImageSpec two_layers(t::LayerCompression c = t::LayerCompression::Gzip) {
  t::ImageSpec spec;
  t::LayerSpec a;
  a.compression = c;
  a.entries = {t::dir("etc/"), t::file("etc/hostname", "box\n"), t::file("big", std::string(100000, 'b'))};
  t::LayerSpec b;
  b.compression = c;
  b.entries = {t::whiteout("big"), t::file("etc/motd", "hi\n")};
  spec.layers = {a, b};
  return spec;
}

ValidationReport validate(const std::string& ref_text) {
  auto ref = parse_reference(ref_text);
  EXPECT_TRUE(ref.ok()) << ref.error().message;
  if (!ref.ok()) return {};
  auto w = slimtrace::WorkDir::create();
  return validate_image(*ref, OpenOptions{Platform{}, w->path()});
}

std::string all(const ValidationReport& r) {
  std::string s;
  for (const auto& p : r.problems) s += p + "\n";
  return s;
}

bool mentions(const ValidationReport& r, const std::string& a, const std::string& b = "") {
  for (const auto& p : r.problems)
    if (p.find(a) != std::string::npos && p.find(b) != std::string::npos) return true;
  return false;
}

// Stores `bytes` as a blob of the layout and returns its digest.
std::string put_blob(const fs::path& layout, const std::string& bytes) {
  std::string digest = "sha256:" + t::sha256_hex(bytes);
  t::write_file(t::blob_path(layout, digest), bytes);
  return digest;
}

// Edits the first manifest of a layout and re-links it from index.json, so only the edit is wrong.
void edit_manifest(const fs::path& layout, const std::function<void(json&)>& edit) {
  json index = json::parse(t::read_file(layout / "index.json"));
  json& desc = index["manifests"][0];
  json m = json::parse(t::read_file(t::blob_path(layout, desc["digest"])));
  edit(m);
  std::string bytes = m.dump();
  desc["digest"] = put_blob(layout, bytes);
  desc["size"] = bytes.size();
  t::write_file(layout / "index.json", index.dump());
}

}  // namespace

TEST(Validate, ImagesFromEveryTransportPass) {
  t::TempDir d;
  t::write_oci_layout(d / "oci", two_layers());
  auto r = validate("oci:" + (d / "oci").string());
  EXPECT_TRUE(r.ok()) << all(r);
  EXPECT_EQ(r.manifests, 1);
  EXPECT_EQ(r.layers, 2);

  t::write_oci_archive(d / "oci.tar", two_layers(t::LayerCompression::Zstd));
  r = validate("oci-archive:" + (d / "oci.tar").string());
  EXPECT_TRUE(r.ok()) << all(r);
  EXPECT_EQ(r.layers, 2);

  t::ImageSpec docker = two_layers(t::LayerCompression::None);
  docker.docker_media_types = true;
  t::write_docker_archive(d / "docker.tar",
                          {{docker, {"a:1"}}, {two_layers(t::LayerCompression::None), {"b:2"}}});
  r = validate("docker-archive:" + (d / "docker.tar").string());
  EXPECT_TRUE(r.ok()) << all(r);
  EXPECT_EQ(r.manifests, 2);
  EXPECT_EQ(r.layers, 4);
}

TEST(Validate, EveryManifestOfNestedIndexesIsChecked) {
  t::TempDir d;
  t::ImageSpec arm = two_layers();
  arm.architecture = "arm64";
  t::write_oci_index(d / "multi", {two_layers(), arm});
  auto r = validate("oci:" + (d / "multi").string());
  EXPECT_TRUE(r.ok()) << all(r);
  EXPECT_EQ(r.manifests, 2);
  EXPECT_EQ(r.layers, 4);
}

TEST(Validate, ReportsACorruptedLayerBlob) {
  t::TempDir d;
  auto built = t::write_oci_layout(d / "l", two_layers(t::LayerCompression::None));
  fs::path blob = t::blob_path(d / "l", built.layer_digests[0]);
  std::string bytes = t::read_file(blob);
  bytes[bytes.find("box")] = 'B';
  t::write_file(blob, bytes);
  auto r = validate("oci:" + (d / "l").string());
  EXPECT_FALSE(r.ok());
  EXPECT_TRUE(mentions(r, built.layer_digests[0].substr(0, 19), "digest mismatch")) << all(r);
  EXPECT_EQ(r.layers, 2) << "the other layer is still checked";
}

TEST(Validate, ReportsAWrongLayerSize) {
  t::TempDir d;
  auto built = t::write_oci_layout(d / "l", two_layers());
  edit_manifest(d / "l", [](json& m) { m["layers"][1]["size"] = m["layers"][1]["size"].get<int64_t>() + 7; });
  auto r = validate("oci:" + (d / "l").string());
  EXPECT_FALSE(r.ok());
  EXPECT_TRUE(mentions(r, "layer 1", "size")) << all(r);
}

TEST(Validate, ReportsMissingBlobs) {
  t::TempDir d;
  auto built = t::write_oci_layout(d / "l", two_layers());
  fs::remove(t::blob_path(d / "l", built.layer_digests[1]));
  fs::remove(t::blob_path(d / "l", built.config_digest));
  auto r = validate("oci:" + (d / "l").string());
  EXPECT_FALSE(r.ok());
  EXPECT_TRUE(mentions(r, built.layer_digests[1], "missing")) << all(r);
  EXPECT_TRUE(mentions(r, built.config_digest, "missing")) << all(r);

  t::TempDir d2;
  auto b2 = t::write_oci_layout(d2 / "l", two_layers());
  fs::remove(t::blob_path(d2 / "l", b2.manifest_digest));
  r = validate("oci:" + (d2 / "l").string());
  EXPECT_TRUE(mentions(r, "manifest " + b2.manifest_digest, "missing")) << all(r);
}

TEST(Validate, ReportsAWrongDiffId) {
  t::TempDir d;
  auto built = t::write_oci_layout(d / "l", two_layers());
  json config = json::parse(t::read_file(t::blob_path(d / "l", built.config_digest)));
  std::string bogus = "sha256:" + t::sha256_hex("not the layer");
  config["rootfs"]["diff_ids"][0] = bogus;
  std::string cbytes = config.dump();
  std::string cdigest = put_blob(d / "l", cbytes);
  edit_manifest(d / "l", [&](json& m) {
    m["config"]["digest"] = cdigest;
    m["config"]["size"] = cbytes.size();
  });
  auto r = validate("oci:" + (d / "l").string());
  EXPECT_FALSE(r.ok());
  EXPECT_TRUE(mentions(r, "diff_id mismatch", bogus)) << all(r);
  EXPECT_EQ(r.problems.size(), 1u) << all(r);
}

TEST(Validate, CollectsEveryProblemInsteadOfStoppingAtTheFirst) {
  t::TempDir d;
  auto built = t::write_oci_layout(d / "l", two_layers());
  edit_manifest(d / "l", [](json& m) {
    m["layers"][0]["mediaType"] = "application/x-unknown";
    m["layers"].push_back(m["layers"][1]);
  });
  fs::remove(t::blob_path(d / "l", built.layer_digests[1]));
  auto r = validate("oci:" + (d / "l").string());
  EXPECT_TRUE(mentions(r, "unknown media type", "application/x-unknown")) << all(r);
  EXPECT_TRUE(mentions(r, "3 layers but the config lists 2 diff_ids")) << all(r);
  EXPECT_TRUE(mentions(r, built.layer_digests[1], "missing")) << all(r);
  for (const auto& p : r.problems) EXPECT_EQ(p.find('\n'), std::string::npos);
}

TEST(Validate, ReportsAManifestWhoseBytesDoNotMatchItsDigest) {
  t::TempDir d;
  auto built = t::write_oci_layout(d / "l", two_layers());
  fs::path m = t::blob_path(d / "l", built.manifest_digest);
  t::write_file(m, t::read_file(m) + " ");
  auto r = validate("oci:" + (d / "l").string());
  EXPECT_TRUE(mentions(r, built.manifest_digest, "digest mismatch")) << all(r);
  EXPECT_TRUE(mentions(r, built.manifest_digest, "bytes, descriptor says")) << all(r);
}

TEST(Validate, TruncatedLayerIsUnreadable) {
  t::TempDir d;
  t::ImageSpec spec = two_layers(t::LayerCompression::None);
  spec.layers[0].end_of_archive = false;
  auto built = t::write_oci_layout(d / "l", spec);
  fs::path blob = t::blob_path(d / "l", built.layer_digests[0]);
  std::string bytes = t::read_file(blob);
  t::write_file(blob, bytes.substr(0, bytes.size() - 700));
  auto r = validate("oci:" + (d / "l").string());
  EXPECT_FALSE(r.ok());
  EXPECT_TRUE(mentions(r, "layer 0")) << all(r);
}
