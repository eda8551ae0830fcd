// Hostile and broken images. Each must fail with a clear one-line error (naming the cause and,
// where there is one, the entry and the layer) at whichever stage catches it, and unpacking must
// write nothing outside the target: the target does not appear, no temp directory is left, and a
// sentinel directory next to it (which several images aim their symlinks at) is untouched.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "image_builder.hpp"
#include "slimtrace/image/file_tree.hpp"
#include "slimtrace/image/reference.hpp"
#include "slimtrace/image/rootfs.hpp"
#include "slimtrace/image/source.hpp"

namespace fs = std::filesystem;
namespace t = slimtrace::testing;
using json = nlohmann::json;
using namespace slimtrace::image;

namespace {

// Owners can only be kept by root; elsewhere the tree is made of the caller's files.
MaterializeOptions as_caller_can() {
  MaterializeOptions o;
  o.preserve_owner = ::geteuid() == 0;
  return o;
}

#define EXPECT_CONTAINS(haystack, needle) \
  EXPECT_NE(std::string(haystack).find(needle), std::string::npos) << "message: " << (haystack)

// A name no legitimate file on this machine has, so its appearance anywhere means an escape.
const std::string kCanaryName = "slimtrace-hostile-escape-" + std::to_string(::getpid());

struct Outcome {
  std::string stage;  // "open", "flatten", "materialize" or "ok"
  std::string message;
};

// --- editing a written OCI layout, keeping every digest consistent except what a test breaks ---

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

json read_json(const fs::path& p) { return json::parse(t::read_file(p)); }

std::string put_blob(const fs::path& layout, const std::string& bytes) {
  std::string hex = t::sha256_hex(bytes);
  t::write_file(layout / "blobs" / "sha256" / hex, bytes);
  return "sha256:" + hex;
}

void rewrite_manifest(const fs::path& layout, const std::function<void(json&)>& edit) {
  json index = read_json(layout / "index.json");
  json manifest = json::parse(t::read_file(t::blob_path(layout, index["manifests"][0]["digest"])));
  edit(manifest);
  std::string bytes = manifest.dump();
  index["manifests"][0]["digest"] = put_blob(layout, bytes);
  index["manifests"][0]["size"] = bytes.size();
  t::write_file(layout / "index.json", index.dump());
}

// Replaces the config blob with `bytes` (whatever they are) and points the manifest at it.
void replace_config(const fs::path& layout, const std::function<std::string(const std::string&)>& edit) {
  rewrite_manifest(layout, [&](json& m) {
    std::string old = t::read_file(t::blob_path(layout, m["config"]["digest"]));
    std::string bytes = edit(old);
    m["config"]["digest"] = put_blob(layout, bytes);
    m["config"]["size"] = bytes.size();
  });
}

// Replaces layer `i` with `blob`, with matching digest and size in the manifest and, when given,
// the diff_id in the config: the only thing wrong is then what the blob holds.
void replace_layer(const fs::path& layout, size_t i, const std::string& blob, const std::string& diff_id) {
  rewrite_manifest(layout, [&](json& m) {
    m["layers"][i]["digest"] = put_blob(layout, blob);
    m["layers"][i]["size"] = blob.size();
    std::string cfg = t::read_file(t::blob_path(layout, m["config"]["digest"]));
    json c = json::parse(cfg);
    c["rootfs"]["diff_ids"][i] = diff_id;
    std::string bytes = c.dump();
    m["config"]["digest"] = put_blob(layout, bytes);
    m["config"]["size"] = bytes.size();
  });
}

t::ImageSpec one_layer(std::vector<t::RawEntry> entries, t::LayerCompression c = t::LayerCompression::Gzip) {
  t::ImageSpec spec;
  t::LayerSpec l;
  l.entries = std::move(entries);
  l.compression = c;
  spec.layers.push_back(std::move(l));
  return spec;
}

t::ImageSpec layers(std::vector<std::vector<t::RawEntry>> per_layer) {
  t::ImageSpec spec;
  for (auto& entries : per_layer) {
    t::LayerSpec l;
    l.entries = std::move(entries);
    spec.layers.push_back(std::move(l));
  }
  return spec;
}

class Hostile : public ::testing::Test {
 protected:
  void SetUp() override {
    layout_ = tmp_ / "image";
    out_ = tmp_ / "out";
    target_ = out_ / "rootfs";
    sentinel_ = out_ / "sentinel";
    work_ = tmp_ / "work";
    fs::create_directories(sentinel_);
    fs::create_directories(work_);
    t::write_file(sentinel_ / "canary", "untouched");
    struct stat s {};
    ASSERT_EQ(::lstat(sentinel_.c_str(), &s), 0);
    sentinel_mtime_ = s.st_mtim;
  }

  void write(const t::ImageSpec& spec) { built_ = t::write_oci_layout(layout_, spec); }

  // The whole `slimtrace unpack` pipeline, stopping at the first stage that fails.
  Outcome unpack() {
    Outcome o = unpack_stages();
    // SLIMTRACE_TEST_VERBOSE=1 shows each error as a user would read it.
    if (std::getenv("SLIMTRACE_TEST_VERBOSE"))
      std::fprintf(stderr, "  [%s] %s\n", o.stage.c_str(), o.message.c_str());
    return o;
  }
  Outcome unpack_stages() {
    auto ref = parse_reference("oci:" + layout_.string());
    if (!ref) return {"open", ref.error().message};
    OpenOptions opts;
    opts.work_dir = work_;
    auto img = open_image(*ref, opts);
    if (!img) return {"open", img.error().message};
    auto tree = flatten(*img);
    if (!tree) return {"flatten", tree.error().message};
    auto st = materialize_rootfs(*img, *tree, target_, as_caller_can());
    if (!st) return {"materialize", st.error().message};
    return {"ok", ""};
  }

  // Materialises a hand-made tree, for checks flatten() would never let through.
  Outcome materialize(const FileTree& tree) {
    auto ref = parse_reference("oci:" + layout_.string());
    if (!ref) return {"open", ref.error().message};
    auto img = open_image(*ref, OpenOptions{});
    if (!img) return {"open", img.error().message};
    auto st = materialize_rootfs(*img, tree, target_, as_caller_can());
    if (!st) {
      if (std::getenv("SLIMTRACE_TEST_VERBOSE"))
        std::fprintf(stderr, "  [materialize] %s\n", st.error().message.c_str());
      return {"materialize", st.error().message};
    }
    return {"ok", ""};
  }

  // Nothing outside the target: no target, no leftover temp dir, sentinel as it was, no canary
  // name anywhere an escape would put it.
  void expect_nothing_written(bool target_may_exist = false) {
    if (!target_may_exist) {
      EXPECT_FALSE(fs::exists(fs::symlink_status(target_))) << "target appeared";
    }
    std::set<std::string> in_out;
    for (const auto& d : fs::directory_iterator(out_)) in_out.insert(d.path().filename().string());
    std::set<std::string> want{"sentinel"};
    if (target_may_exist) want.insert("rootfs");
    EXPECT_EQ(in_out, want) << "something appeared next to the target";
    std::set<std::string> in_tmp;
    for (const auto& d : fs::directory_iterator(tmp_.path())) in_tmp.insert(d.path().filename().string());
    EXPECT_EQ(in_tmp, (std::set<std::string>{"image", "out", "work"}));
    std::set<std::string> in_sentinel;
    for (const auto& d : fs::directory_iterator(sentinel_)) in_sentinel.insert(d.path().filename().string());
    EXPECT_EQ(in_sentinel, std::set<std::string>{"canary"});
    EXPECT_EQ(t::read_file(sentinel_ / "canary"), "untouched");
    struct stat s {};
    ASSERT_EQ(::lstat(sentinel_.c_str(), &s), 0);
    EXPECT_EQ(s.st_mtim.tv_sec, sentinel_mtime_.tv_sec);
    EXPECT_EQ(s.st_mtim.tv_nsec, sentinel_mtime_.tv_nsec);
    for (const fs::path& p : {fs::path("/"), fs::path("/tmp"), fs::path("/etc"), tmp_.path(), out_, layout_})
      EXPECT_FALSE(fs::exists(fs::symlink_status(p / kCanaryName))) << "escaped to " << p;
  }

  // The first layer's label as errors print it: "layer 0 (sha256:<12 hex>".
  std::string layer_label(size_t i) const {
    return "layer " + std::to_string(i) + " (" + built_.layer_digests[i].substr(0, 19);
  }

  t::TempDir tmp_;
  fs::path layout_, out_, target_, sentinel_, work_;
  struct timespec sentinel_mtime_ {};
  t::BuiltImage built_;
};

// ---------------------------------------------------------------------------------------------
// Path traversal in entry names

TEST_F(Hostile, DotDotEntryIsRejected) {
  write(one_layer({t::file("etc/ok", "fine"), t::file("../" + kCanaryName, "escaped")}));
  auto r = unpack();
  EXPECT_EQ(r.stage, "flatten");
  EXPECT_CONTAINS(r.message, layer_label(0));
  EXPECT_CONTAINS(r.message, "../" + kCanaryName);
  EXPECT_CONTAINS(r.message, "..");
  EXPECT_CONTAINS(r.message, "traversal");
  expect_nothing_written();
}

TEST_F(Hostile, DotDotInsideAPathIsRejected) {
  write(one_layer({t::dir("a/"), t::file("a/../../" + kCanaryName, "escaped")}));
  auto r = unpack();
  EXPECT_EQ(r.stage, "flatten");
  EXPECT_CONTAINS(r.message, layer_label(0));
  EXPECT_CONTAINS(r.message, "a/../../" + kCanaryName);
  EXPECT_CONTAINS(r.message, "traversal");
  expect_nothing_written();
}

TEST_F(Hostile, AbsoluteNameStaysInsideTheRoot) {
  // "/etc/x" in a tar means "<root>/etc/x": legitimate, and it must land inside the target.
  write(one_layer({t::file("/" + kCanaryName, "inside"), t::dir("/etc/"), t::file("/etc/passwd", "root")}));
  auto r = unpack();
  ASSERT_EQ(r.stage, "ok") << r.message;
  EXPECT_EQ(t::read_file(target_ / kCanaryName), "inside");
  EXPECT_EQ(t::read_file(target_ / "etc/passwd"), "root");
  expect_nothing_written(true);
}

TEST_F(Hostile, HardlinkWithDotDotTargetIsRejected) {
  write(one_layer(
      {t::dir("etc/"), t::file("etc/passwd", "root:x:0:0"), t::hardlink("stolen", "/../../etc/passwd")}));
  auto r = unpack();
  EXPECT_EQ(r.stage, "flatten");
  EXPECT_CONTAINS(r.message, layer_label(0));
  EXPECT_CONTAINS(r.message, "stolen");
  EXPECT_CONTAINS(r.message, "..");
  expect_nothing_written();
}

TEST_F(Hostile, EmptyNameIsRejected) {
  write(one_layer({t::file("ok", "fine"), t::file("", "nameless")}));
  auto r = unpack();
  EXPECT_EQ(r.stage, "flatten");
  EXPECT_CONTAINS(r.message, layer_label(0));
  EXPECT_CONTAINS(r.message, "empty name");
  expect_nothing_written();
}

// A NUL inside a pax path record. libarchive cuts the name at the NUL, so the entry arrives as
// "/inno" and the "../.." after it never reaches the tree. Ideally this would be an error (see
// the report: the reader cannot see the NUL); what must hold either way is that nothing escapes.
TEST_F(Hostile, NulInPaxPathNeverEscapes) {
  auto e = t::file("innocent", "x");
  e.pax["path"] = std::string("inno\0cent/../../", 16) + kCanaryName;
  write(one_layer({e}));
  auto r = unpack();
  if (r.stage == "ok") {
    std::set<std::string> names;
    for (const auto& d : fs::directory_iterator(target_)) names.insert(d.path().filename().string());
    EXPECT_EQ(names, std::set<std::string>{"inno"});
    expect_nothing_written(true);
  } else {
    EXPECT_CONTAINS(r.message, layer_label(0));
    EXPECT_CONTAINS(r.message, "NUL");
    expect_nothing_written();
  }
}

// ---------------------------------------------------------------------------------------------
// Symlinked parents: a symlink an earlier entry made, then an entry "through" it

TEST_F(Hostile, FileUnderAbsoluteSymlinkFromEarlierLayerIsRejected) {
  write(layers({{t::symlink("evil", sentinel_.string())}, {t::file("evil/" + kCanaryName, "pwned")}}));
  auto r = unpack();
  EXPECT_EQ(r.stage, "flatten");
  EXPECT_CONTAINS(r.message, layer_label(1));
  EXPECT_CONTAINS(r.message, "evil/" + kCanaryName);
  EXPECT_CONTAINS(r.message, "symlink");
  expect_nothing_written();
}

TEST_F(Hostile, FileUnderRootSymlinkIsRejected) {
  write(layers(
      {{t::symlink("evil", "/")}, {t::dir("evil/etc/"), t::file("evil/etc/" + kCanaryName, "pwned")}}));
  auto r = unpack();
  EXPECT_EQ(r.stage, "flatten");
  EXPECT_CONTAINS(r.message, layer_label(1));
  EXPECT_CONTAINS(r.message, "'/evil'");
  EXPECT_CONTAINS(r.message, "symlink");
  expect_nothing_written();
}

TEST_F(Hostile, FileUnderRelativeUpSymlinkIsRejected) {
  write(layers({{t::symlink("up", "../../..")}, {t::file("up/" + kCanaryName, "pwned")}}));
  auto r = unpack();
  EXPECT_EQ(r.stage, "flatten");
  EXPECT_CONTAINS(r.message, layer_label(1));
  EXPECT_CONTAINS(r.message, "up/" + kCanaryName);
  EXPECT_CONTAINS(r.message, "symlink");
  expect_nothing_written();
}

TEST_F(Hostile, SymlinkedParentInTheSameLayerIsRejected) {
  write(one_layer({t::symlink("side", "../sentinel"), t::file("side/" + kCanaryName, "pwned")}));
  auto r = unpack();
  EXPECT_EQ(r.stage, "flatten");
  EXPECT_CONTAINS(r.message, layer_label(0));
  EXPECT_CONTAINS(r.message, "symlink");
  expect_nothing_written();
}

// ---------------------------------------------------------------------------------------------
// Hardlinks

TEST_F(Hostile, HardlinkThroughRelativeSymlinkChainIsRejected) {
  // a -> b -> ../sentinel: "a/canary" resolves, on the host, to the sentinel's file.
  write(
      layers({{t::symlink("b", "../sentinel"), t::symlink("a", "b")}, {t::hardlink("stolen", "a/canary")}}));
  auto r = unpack();
  EXPECT_EQ(r.stage, "flatten");
  EXPECT_CONTAINS(r.message, layer_label(1));
  EXPECT_CONTAINS(r.message, "stolen");
  EXPECT_CONTAINS(r.message, "a/canary");
  expect_nothing_written();
}

TEST_F(Hostile, HardlinkThroughAbsoluteSymlinkIsRejected) {
  write(layers({{t::symlink("hostdir", sentinel_.string())}, {t::hardlink("stolen", "hostdir/canary")}}));
  auto r = unpack();
  EXPECT_EQ(r.stage, "flatten");
  EXPECT_CONTAINS(r.message, layer_label(1));
  EXPECT_CONTAINS(r.message, "hostdir/canary");
  expect_nothing_written();
}

TEST_F(Hostile, HardlinkToASymlinkToAHostFileIsRejected) {
  write(one_layer({t::symlink("s", (sentinel_ / "canary").string()), t::hardlink("stolen", "s")}));
  auto r = unpack();
  EXPECT_EQ(r.stage, "flatten");
  EXPECT_CONTAINS(r.message, layer_label(0));
  EXPECT_CONTAINS(r.message, "stolen");
  EXPECT_CONTAINS(r.message, "symlink");
  expect_nothing_written();
}

TEST_F(Hostile, HardlinkToMissingTargetIsRejected) {
  write(one_layer({t::file("present", "x"), t::hardlink("dangling", "absent")}));
  auto r = unpack();
  EXPECT_EQ(r.stage, "flatten");
  EXPECT_CONTAINS(r.message, layer_label(0));
  EXPECT_CONTAINS(r.message, "dangling");
  EXPECT_CONTAINS(r.message, "/absent");
  EXPECT_CONTAINS(r.message, "does not exist");
  expect_nothing_written();
}

TEST_F(Hostile, HardlinkToDirectoryIsRejected) {
  write(one_layer({t::dir("d/"), t::file("d/f", "x"), t::hardlink("dirlink", "d")}));
  auto r = unpack();
  EXPECT_EQ(r.stage, "flatten");
  EXPECT_CONTAINS(r.message, layer_label(0));
  EXPECT_CONTAINS(r.message, "dirlink");
  EXPECT_CONTAINS(r.message, "directory");
  expect_nothing_written();
}

// Legitimate absolute symlinks are kept as symlinks, and replacing one never writes through it.
TEST_F(Hostile, AbsoluteSymlinksAreKeptAndNeverFollowed) {
  write(layers(
      {{t::symlink("hostdir", sentinel_.string()), t::symlink("hostfile", (sentinel_ / "canary").string()),
        t::symlink("bin", "usr/bin"), t::symlink("etc", "/etc")},
       {t::file("hostfile", "replaced inside the rootfs")}}));
  auto r = unpack();
  ASSERT_EQ(r.stage, "ok") << r.message;
  EXPECT_EQ(fs::read_symlink(target_ / "hostdir"), sentinel_);
  EXPECT_EQ(fs::read_symlink(target_ / "etc"), "/etc");
  EXPECT_EQ(fs::read_symlink(target_ / "bin"), "usr/bin");
  EXPECT_TRUE(fs::is_regular_file(fs::symlink_status(target_ / "hostfile")));
  EXPECT_EQ(t::read_file(target_ / "hostfile"), "replaced inside the rootfs");
  expect_nothing_written(true);
}

// A target that is a symlink (say, planted to redirect the unpack) counts as existing: never followed.
TEST_F(Hostile, TargetThatIsASymlinkIsNotFollowed) {
  write(one_layer({t::file(kCanaryName, "x")}));
  fs::create_directory_symlink(sentinel_, target_);
  auto r = unpack();
  EXPECT_EQ(r.stage, "materialize");
  EXPECT_CONTAINS(r.message, "already exists");
  EXPECT_EQ(fs::read_symlink(target_), sentinel_);
  fs::remove(target_);
  expect_nothing_written();
}

// ---------------------------------------------------------------------------------------------
// Layer integrity

TEST_F(Hostile, LayerBlobDigestMismatchIsRejected) {
  auto spec = one_layer({t::file("data", std::string(4096, 'a'))}, t::LayerCompression::None);
  write(spec);
  fs::path blob = t::blob_path(layout_, built_.layer_digests[0]);
  std::string bytes = t::read_file(blob);
  bytes[600] = 'b';  // inside the file's data: still a valid tar, just not the blob the manifest names
  t::write_file(blob, bytes);
  auto r = unpack();
  EXPECT_NE(r.stage, "ok");
  EXPECT_CONTAINS(r.message, built_.layer_digests[0].substr(0, 19));
  EXPECT_CONTAINS(r.message, "digest");
  expect_nothing_written();
}

TEST_F(Hostile, DiffIdMismatchIsRejected) {
  write(one_layer({t::file("data", "content")}));
  replace_config(layout_, [](const std::string& cfg) {
    json c = json::parse(cfg);
    c["rootfs"]["diff_ids"][0] = "sha256:" + std::string(64, '0');
    return c.dump();
  });
  auto r = unpack();
  EXPECT_NE(r.stage, "ok");
  EXPECT_CONTAINS(r.message, layer_label(0));
  EXPECT_CONTAINS(r.message, "diff_id");
  expect_nothing_written();
}

TEST_F(Hostile, TruncatedGzipIsRejected) {
  std::string big(size_t{64} * 1024, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>((i * 7919u) >> 5);
  write(one_layer({t::file("big", big)}));
  std::string tar = t::make_tar({t::file("big", big)});
  std::string gz = t::gzip_bytes(tar);
  replace_layer(layout_, 0, gz.substr(0, gz.size() / 2), "sha256:" + t::sha256_hex(tar));
  auto r = unpack();
  EXPECT_EQ(r.stage, "flatten");
  EXPECT_CONTAINS(r.message, "layer 0 (");
  EXPECT_TRUE(lower(r.message).find("truncated") != std::string::npos ||
              lower(r.message).find("unexpected end") != std::string::npos)
      << r.message;
  expect_nothing_written();
}

TEST_F(Hostile, TruncatedTarIsRejected) {
  write(one_layer({t::file("small", "x")}));
  std::string tar = t::make_tar({t::file("first", "ok"), t::file("cut", std::string(5000, 'c'))}, false);
  tar.resize(tar.size() - 2048);  // ends in the middle of "cut"'s data
  std::string gz = t::gzip_bytes(tar);
  replace_layer(layout_, 0, gz, "sha256:" + t::sha256_hex(tar));
  auto r = unpack();
  EXPECT_NE(r.stage, "ok");
  EXPECT_NE(r.stage, "open");
  EXPECT_CONTAINS(r.message, "layer 0 (");
  EXPECT_TRUE(lower(r.message).find("truncated") != std::string::npos ||
              lower(r.message).find("unexpected end") != std::string::npos)
      << r.message;
  expect_nothing_written();
}

TEST_F(Hostile, AbsurdSizeInHeaderIsRejected) {
  auto e = t::file("huge", "tiny");
  e.size_field = "77777777777";  // 8 GiB claimed, 4 bytes present
  write(one_layer({e}));
  auto r = unpack();
  EXPECT_NE(r.stage, "ok");
  EXPECT_NE(r.stage, "open");
  EXPECT_CONTAINS(r.message, "layer 0 (");
  expect_nothing_written();
}

TEST_F(Hostile, DuplicateEntryInOneLayerIsRejected) {
  write(one_layer({t::file("twice", "first"), t::file("twice", "second")}));
  auto r = unpack();
  EXPECT_EQ(r.stage, "flatten");
  EXPECT_CONTAINS(r.message, layer_label(0));
  EXPECT_CONTAINS(r.message, "twice");
  EXPECT_CONTAINS(r.message, "duplicate");
  expect_nothing_written();
}

TEST_F(Hostile, WhiteoutOfMissingPathIsRejected) {
  write(layers({{t::file("here", "x")}, {t::whiteout("never-existed")}}));
  auto r = unpack();
  EXPECT_EQ(r.stage, "flatten");
  EXPECT_CONTAINS(r.message, layer_label(1));
  EXPECT_CONTAINS(r.message, "never-existed");
  EXPECT_CONTAINS(r.message, "whiteout");
  expect_nothing_written();
}

// ---------------------------------------------------------------------------------------------
// Manifests, configs, indexes

TEST_F(Hostile, BadJsonInIndexIsRejected) {
  write(one_layer({t::file("f", "x")}));
  t::write_file(layout_ / "index.json", "{\"schemaVersion\": 2, \"manifests\": [");
  auto r = unpack();
  EXPECT_EQ(r.stage, "open");
  EXPECT_CONTAINS(r.message, "index.json");
  expect_nothing_written();
}

TEST_F(Hostile, BadJsonInConfigIsRejected) {
  write(one_layer({t::file("f", "x")}));
  replace_config(layout_, [](const std::string&) { return std::string("{\"rootfs\": {\"diff_ids\": [}"); });
  auto r = unpack();
  EXPECT_EQ(r.stage, "open");
  EXPECT_CONTAINS(r.message, "config");
  expect_nothing_written();
}

TEST_F(Hostile, ConfigBlobDigestMismatchIsRejected) {
  write(one_layer({t::file("f", "x")}));
  fs::path cfg = t::blob_path(layout_, built_.config_digest);
  std::string bytes = t::read_file(cfg);
  bytes.replace(bytes.find("amd64"), 5, "arm64");
  t::write_file(cfg, bytes);
  auto r = unpack();
  EXPECT_EQ(r.stage, "open");
  EXPECT_CONTAINS(r.message, built_.config_digest.substr(0, 19));
  expect_nothing_written();
}

TEST_F(Hostile, ManifestNamingMissingLayerBlobIsRejected) {
  write(one_layer({t::file("f", "x")}));
  fs::remove(t::blob_path(layout_, built_.layer_digests[0]));
  auto r = unpack();
  EXPECT_NE(r.stage, "ok");
  EXPECT_CONTAINS(r.message, built_.layer_digests[0].substr(0, 19));
  expect_nothing_written();
}

TEST_F(Hostile, ManifestNamingMissingConfigBlobIsRejected) {
  write(one_layer({t::file("f", "x")}));
  fs::remove(t::blob_path(layout_, built_.config_digest));
  auto r = unpack();
  EXPECT_EQ(r.stage, "open");
  EXPECT_CONTAINS(r.message, built_.config_digest.substr(0, 19));
  expect_nothing_written();
}

TEST_F(Hostile, UnknownLayerMediaTypeIsRejected) {
  write(one_layer({t::file("f", "x")}));
  rewrite_manifest(layout_,
                   [](json& m) { m["layers"][0]["mediaType"] = "application/x-totally-not-a-layer"; });
  auto r = unpack();
  EXPECT_NE(r.stage, "ok");
  EXPECT_CONTAINS(r.message, "application/x-totally-not-a-layer");
  expect_nothing_written();
}

TEST_F(Hostile, UnknownManifestMediaTypeIsRejected) {
  write(one_layer({t::file("f", "x")}));
  json index = read_json(layout_ / "index.json");
  index["manifests"][0]["mediaType"] = "application/vnd.example.weird+json";
  t::write_file(layout_ / "index.json", index.dump());
  auto r = unpack();
  EXPECT_EQ(r.stage, "open");
  EXPECT_CONTAINS(r.message, "application/vnd.example.weird+json");
  expect_nothing_written();
}

TEST_F(Hostile, MoreLayersThanDiffIdsIsRejected) {
  write(layers({{t::file("a", "1")}, {t::file("b", "2")}}));
  replace_config(layout_, [](const std::string& cfg) {
    json c = json::parse(cfg);
    c["rootfs"]["diff_ids"].erase(1);
    return c.dump();
  });
  auto r = unpack();
  EXPECT_EQ(r.stage, "open");
  EXPECT_CONTAINS(r.message, "diff_id");
  expect_nothing_written();
}

// ---------------------------------------------------------------------------------------------
// Hand-made trees: materialize_rootfs() re-checks what flatten() guarantees, because FileTree is
// mutable and a later caller (or a bug) could hand it anything.

class HostileTree : public Hostile {
 protected:
  void SetUp() override {
    Hostile::SetUp();
    write(one_layer({t::file("f", "content")}));
  }
  FileEntry entry(const std::string& path, EntryType type, const std::string& link = {}) {
    FileEntry e;
    e.path = path;
    e.type = type;
    e.mode = type == EntryType::Directory ? 0755 : 0644;
    e.link_target = link;
    return e;
  }
};

TEST_F(HostileTree, DotDotPathInTreeIsRejectedBeforeWriting) {
  FileTree tree;
  tree.mutable_entries()["/../" + kCanaryName] = entry("/../" + kCanaryName, EntryType::Directory);
  auto r = materialize(tree);
  EXPECT_EQ(r.stage, "materialize");
  EXPECT_CONTAINS(r.message, "layer 0 (");
  EXPECT_CONTAINS(r.message, "/../" + kCanaryName);
  EXPECT_CONTAINS(r.message, "escapes root");
  expect_nothing_written();
}

TEST_F(HostileTree, EntryUnderSymlinkInTreeIsRejected) {
  FileTree tree;
  tree.mutable_entries()["/evil"] = entry("/evil", EntryType::Symlink, sentinel_.string());
  tree.mutable_entries()["/evil/" + kCanaryName] = entry("/evil/" + kCanaryName, EntryType::Directory);
  auto r = materialize(tree);
  EXPECT_EQ(r.stage, "materialize");
  EXPECT_CONTAINS(r.message, "'/evil/" + kCanaryName + "'");
  EXPECT_CONTAINS(r.message, "symlink");
  expect_nothing_written();
}

TEST_F(HostileTree, HardlinkEscapingRootInTreeIsRejected) {
  FileTree tree;
  tree.mutable_entries()["/stolen"] = entry("/stolen", EntryType::Hardlink, "/../out/sentinel/canary");
  auto r = materialize(tree);
  EXPECT_EQ(r.stage, "materialize");
  EXPECT_CONTAINS(r.message, "'/stolen'");
  EXPECT_CONTAINS(r.message, "escapes root");
  expect_nothing_written();
}

TEST_F(HostileTree, HardlinkToDirectoryInTreeIsRejected) {
  FileTree tree;
  tree.mutable_entries()["/d"] = entry("/d", EntryType::Directory);
  tree.mutable_entries()["/h"] = entry("/h", EntryType::Hardlink, "/d");
  auto r = materialize(tree);
  EXPECT_EQ(r.stage, "materialize");
  EXPECT_CONTAINS(r.message, "'/h'");
  EXPECT_CONTAINS(r.message, "directory");
  expect_nothing_written();
}

TEST_F(HostileTree, ContentMissingFromLayerLeavesNothingBehind) {
  // Directories get written first; the failure comes later and everything must still go.
  FileTree tree;
  tree.mutable_entries()["/d"] = entry("/d", EntryType::Directory);
  auto f = entry("/d/ghost", EntryType::Regular);
  f.layer_entry = 99;  // the layer has one entry
  f.size = 3;
  tree.mutable_entries()["/d/ghost"] = f;
  auto r = materialize(tree);
  EXPECT_EQ(r.stage, "materialize");
  EXPECT_CONTAINS(r.message, "'/d/ghost'");
  EXPECT_CONTAINS(r.message, "not found");
  expect_nothing_written();
}

TEST_F(HostileTree, WrongSizeInTreeIsRejected) {
  FileTree tree;
  auto f = entry("/f", EntryType::Regular);
  f.size = 1 << 20;
  tree.mutable_entries()["/f"] = f;
  auto r = materialize(tree);
  EXPECT_EQ(r.stage, "materialize");
  EXPECT_CONTAINS(r.message, "'/f'");
  expect_nothing_written();
}

}  // namespace
