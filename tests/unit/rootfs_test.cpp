// materialize_rootfs(): a multi-layer image written out as a directory must match its flattened
// tree exactly (types, modes incl. setuid/sticky, owners, mtimes, xattrs, links, content).
#include "slimtrace/image/rootfs.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <set>
#include <string>

#include "image_builder.hpp"
#include "slimtrace/image/file_tree.hpp"
#include "slimtrace/image/source.hpp"

namespace fs = std::filesystem;
namespace t = slimtrace::testing;
using namespace slimtrace::image;

namespace {

// Owners can only be kept by root; elsewhere the tree is made of the caller's files.
MaterializeOptions as_caller_can() {
  MaterializeOptions o;
  o.preserve_owner = ::geteuid() == 0;
  return o;
}

// VFS_CAP_REVISION_2 | effective, permitted = CAP_NET_RAW: what `setcap cap_net_raw+ep ping` writes.
std::string net_raw_capability() {
  std::string v(20, '\0');
  auto put32 = [&](size_t off, uint32_t x) {
    for (int i = 0; i < 4; ++i) v[off + static_cast<size_t>(i)] = static_cast<char>((x >> (8 * i)) & 0xff);
  };
  put32(0, 0x02000001);
  put32(4, 1u << 13);
  return v;
}

t::RawEntry with_owner(t::RawEntry e, uint32_t uid, uint32_t gid) {
  e.uid = uid;
  e.gid = gid;
  return e;
}

t::RawEntry with_mtime(t::RawEntry e, int64_t mtime) {
  e.mtime = mtime;
  return e;
}

t::ImageSpec sample_spec() {
  t::ImageSpec spec;
  t::LayerSpec l0;
  auto ping = t::file("usr/bin/ping", "PING-BINARY", 0755);
  ping.pax["SCHILY.xattr.security.capability"] = net_raw_capability();
  auto noted = t::file("etc/noted", "has a user xattr\n");
  noted.pax["SCHILY.xattr.user.origin"] = "layer0";
  l0.entries = {
      t::dir("etc/", 0755),
      t::file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"),
      noted,
      t::dir("bin/", 0755),
      t::file("bin/busybox", "BUSYBOX", 0755),
      t::dir("usr/", 0755),
      t::dir("usr/bin/", 0755),
      ping,
      t::file("usr/bin/su", "SU", 04755),
      t::file("usr/bin/wall", "WALL", 02755),
      with_mtime(t::dir("tmp/", 01777), 1600000000),
      with_owner(t::dir("var/", 0755), 0, 0),
      with_owner(t::dir("var/cache/", 0750), 33, 33),
      with_owner(t::file("var/cache/item", "cached", 0640), 33, 33),
      t::dir("locked/", 0500),
      t::file("locked/inside", "in a read-only dir", 0400),
      t::dir("sealed/", 0),
      t::file("sealed/x", "behind mode 0"),
      t::dir("old/", 0755),
      t::file("old/a", "a"),
      t::file("old/b", "b"),
      t::file("gone.txt", "deleted later"),
      t::dir("opq/", 0755),
      t::file("opq/lower", "hidden by opaque"),
      t::dir("opq/sub/", 0755),
      t::file("opq/sub/deep", "also hidden"),
      t::file("overwritten", "version 1"),
  };
  t::LayerSpec l1;
  l1.compression = t::LayerCompression::None;
  auto devnull = t::RawEntry{};
  devnull.name = "dev/null";
  devnull.typeflag = '3';
  devnull.mode = 0666;
  devnull.dev_major = 1;
  devnull.dev_minor = 3;
  auto fifo = t::RawEntry{};
  fifo.name = "run/initctl";
  fifo.typeflag = '6';
  fifo.mode = 0600;
  l1.entries = {
      t::whiteout("gone.txt"),
      t::opaque("opq/"),
      t::file("opq/upper", "kept"),
      t::hardlink("bin/sh", "bin/busybox"),
      t::symlink("bin/ls", "busybox"),
      t::symlink("lib", "/usr/lib"),                             // absolute, dangling
      t::symlink("etc/localtime", "../usr/share/zoneinfo/UTC"),  // relative, dangling
      t::symlink("etc/host-escape", "../../../../etc/shadow"),   // points out, stays a link
      t::symlink("etc/root", "/"),
      t::dir("dev/", 0755),
      devnull,
      t::dir("run/", 0755),
      fifo,
      t::file("etc/passwd", "root:x:0:0:root:/root:/bin/ash\nwww:x:33:33::/:/bin/false\n"),
      t::file("overwritten", "version 2, longer"),
  };
  t::LayerSpec l2;
  l2.compression = t::LayerCompression::Zstd;
  l2.entries = {
      t::whiteout("old"),
      t::hardlink("etc/passwd.link", "etc/passwd"),
      t::file("secret", "nobody may read me", 0),
      with_owner(t::file("www-owned", "www data", 0640), 33, 33),
      t::file("empty", ""),
  };
  spec.layers = {l0, l1, l2};
  return spec;
}

struct Unpacked {
  t::TempDir tmp;
  SourceImage image;
  FileTree tree;
  fs::path root;
};

void open_and_flatten(const fs::path& layout, SourceImage& image, FileTree& tree) {
  ImageRef ref;
  ref.transport = Transport::OciLayout;
  ref.path = layout;
  auto img = open_image(ref, OpenOptions{});
  ASSERT_TRUE(img.ok()) << img.error().message;
  image = std::move(img).value();
  auto ft = flatten(image);
  ASSERT_TRUE(ft.ok()) << ft.error().message;
  tree = std::move(ft).value();
}

std::string read_all(const fs::path& p) { return t::read_file(p); }

std::string get_xattr(const fs::path& p, const std::string& name) {
  char buf[256];
  ssize_t n = ::lgetxattr(p.c_str(), name.c_str(), buf, sizeof buf);
  return n < 0 ? std::string("<") + std::strerror(errno) + ">" : std::string(buf, static_cast<size_t>(n));
}

// Every path on disk, without following symlinks.
std::set<std::string> disk_paths(const fs::path& root) {
  std::set<std::string> out;
  for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator(); ++it)
    out.insert(it->path().string().substr(root.string().size()));  // lexical: never resolve links
  return out;
}

mode_t type_bits(EntryType t) {
  switch (t) {
    case EntryType::Regular:
    case EntryType::Hardlink:
      return S_IFREG;
    case EntryType::Directory:
      return S_IFDIR;
    case EntryType::Symlink:
      return S_IFLNK;
    case EntryType::CharDevice:
      return S_IFCHR;
    case EntryType::BlockDevice:
      return S_IFBLK;
    case EntryType::Fifo:
      return S_IFIFO;
  }
  return 0;
}

class RootfsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    layout_ = tmp_ / "image";
    t::write_oci_layout(layout_, sample_spec());
    open_and_flatten(layout_, image_, tree_);
    target_ = tmp_ / "rootfs";
  }
  t::TempDir tmp_;
  fs::path layout_, target_;
  SourceImage image_;
  FileTree tree_;
};

TEST_F(RootfsTest, MaterialisedTreeMatchesFlattenedTreeExactly) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root: ownership, setuid and security.capability are checked";
  auto st = materialize_rootfs(image_, tree_, target_, as_caller_can());
  ASSERT_TRUE(st.ok()) << st.error().message;

  std::set<std::string> expected;
  for (const auto& [p, e] : tree_.entries())
    if (p != "/") expected.insert(p);
  EXPECT_EQ(disk_paths(target_), expected);

  for (const auto& [p, e] : tree_.entries()) {
    SCOPED_TRACE(p);
    fs::path on_disk = p == "/" ? target_ : target_ / p.substr(1);
    struct stat s {};
    ASSERT_EQ(::lstat(on_disk.c_str(), &s), 0) << std::strerror(errno);
    EXPECT_EQ(s.st_mode & S_IFMT, type_bits(e.type));
    const FileEntry* meta = &e;
    if (e.type == EntryType::Hardlink) {
      meta = tree_.find(e.link_target);
      ASSERT_NE(meta, nullptr);
      struct stat ts {};
      ASSERT_EQ(::lstat((target_ / e.link_target.substr(1)).c_str(), &ts), 0);
      EXPECT_EQ(s.st_ino, ts.st_ino) << "hardlink must share the inode of " << e.link_target;
    }
    if (e.type != EntryType::Symlink) {
      EXPECT_EQ(s.st_mode & 07777, meta->mode & 07777);
    }
    EXPECT_EQ(s.st_uid, meta->uid);
    EXPECT_EQ(s.st_gid, meta->gid);
    EXPECT_EQ(s.st_mtim.tv_sec, meta->mtime);
    if (e.type == EntryType::Regular) {
      EXPECT_EQ(s.st_size, e.size);
    }
    if (e.type == EntryType::Symlink) {
      EXPECT_EQ(fs::read_symlink(on_disk).string(), e.link_target);
    }
    if (e.type == EntryType::CharDevice || e.type == EntryType::BlockDevice) {
      EXPECT_EQ(major(s.st_rdev), e.dev_major);
      EXPECT_EQ(minor(s.st_rdev), e.dev_minor);
    }
    for (const auto& x : meta->xattrs) EXPECT_EQ(get_xattr(on_disk, x.name), x.value) << x.name;
  }

  // What a user would check by hand.
  EXPECT_EQ(read_all(target_ / "etc/passwd"), "root:x:0:0:root:/root:/bin/ash\nwww:x:33:33::/:/bin/false\n");
  EXPECT_EQ(read_all(target_ / "etc/passwd.link"), read_all(target_ / "etc/passwd"));
  EXPECT_EQ(read_all(target_ / "bin/sh"), "BUSYBOX");
  EXPECT_EQ(read_all(target_ / "overwritten"), "version 2, longer");
  EXPECT_EQ(read_all(target_ / "opq/upper"), "kept");
  EXPECT_FALSE(fs::exists(fs::symlink_status(target_ / "gone.txt")));
  EXPECT_FALSE(fs::exists(fs::symlink_status(target_ / "opq/lower")));
  EXPECT_FALSE(fs::exists(fs::symlink_status(target_ / "opq/sub")));
  EXPECT_FALSE(fs::exists(fs::symlink_status(target_ / "old")));
  EXPECT_EQ(get_xattr(target_ / "usr/bin/ping", "security.capability"), net_raw_capability());
  EXPECT_EQ(get_xattr(target_ / "etc/noted", "user.origin"), "layer0");
  struct stat s {};
  ASSERT_EQ(::lstat((target_ / "usr/bin/su").c_str(), &s), 0);
  EXPECT_EQ(s.st_mode & 07777, 04755u);
  ASSERT_EQ(::lstat((target_ / "usr/bin/wall").c_str(), &s), 0);
  EXPECT_EQ(s.st_mode & 07777, 02755u);
  ASSERT_EQ(::lstat((target_ / "tmp").c_str(), &s), 0);
  EXPECT_EQ(s.st_mode & 07777, 01777u);
  EXPECT_EQ(s.st_mtim.tv_sec, 1600000000);
  ASSERT_EQ(::lstat((target_ / "var/cache/item").c_str(), &s), 0);
  EXPECT_EQ(s.st_uid, 33u);
  ASSERT_EQ(::lstat((target_ / "secret").c_str(), &s), 0);
  EXPECT_EQ(s.st_mode & 07777, 0u);
  EXPECT_EQ(fs::read_symlink(target_ / "lib"), "/usr/lib");
  EXPECT_EQ(fs::read_symlink(target_ / "etc/root"), "/");
  EXPECT_TRUE(fs::is_fifo(fs::symlink_status(target_ / "run/initctl")));
  EXPECT_TRUE(fs::is_character_file(fs::symlink_status(target_ / "dev/null")));
  // Nothing but the target next to it: the temp directory was renamed away.
  for (const auto& d : fs::directory_iterator(tmp_.path()))
    EXPECT_TRUE(d.path() == layout_ || d.path() == target_) << d.path();
}

TEST_F(RootfsTest, WithoutOwnersFilesBelongToTheCaller) {
  MaterializeOptions o;
  o.preserve_owner = false;
  auto st = materialize_rootfs(image_, tree_, target_, o);
  ASSERT_TRUE(st.ok()) << st.error().message;
  struct stat s {};
  ASSERT_EQ(::lstat((target_ / "www-owned").c_str(), &s), 0);
  EXPECT_EQ(s.st_uid, ::geteuid());
  EXPECT_EQ(s.st_mode & 07777, 0640u);
  EXPECT_EQ(read_all(target_ / "www-owned"), "www data");
}

TEST_F(RootfsTest, ExistingTargetIsAnErrorAndLeftAlone) {
  fs::create_directory(target_);
  t::write_file(target_ / "mine", "keep");
  auto st = materialize_rootfs(image_, tree_, target_, as_caller_can());
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("already exists"), std::string::npos) << st.error().message;
  EXPECT_EQ(read_all(target_ / "mine"), "keep");
  EXPECT_EQ(std::distance(fs::directory_iterator(target_), fs::directory_iterator()), 1);
  EXPECT_EQ(std::distance(fs::directory_iterator(tmp_.path()), fs::directory_iterator()), 2);
}

TEST_F(RootfsTest, MissingParentOfTargetIsAnError) {
  auto st = materialize_rootfs(image_, tree_, tmp_ / "no" / "such" / "rootfs");
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("No such file"), std::string::npos) << st.error().message;
  EXPECT_FALSE(fs::exists(tmp_ / "no"));
}

TEST_F(RootfsTest, ReportsProgressInBytes) {
  int64_t last = 0, total = 0;
  auto st = materialize_rootfs(image_, tree_, target_, as_caller_can(),
                               [&](std::string_view, int64_t done, int64_t tot) {
                                 EXPECT_GE(done, last);
                                 last = done;
                                 total = tot;
                               });
  ASSERT_TRUE(st.ok()) << st.error().message;
  EXPECT_EQ(last, tree_.total_bytes());
  EXPECT_EQ(total, tree_.total_bytes());
}

// A hardlink's file deleted by a later layer: the link keeps the content.
TEST(Rootfs, HardlinkSurvivesDeletionOfItsFile) {
  t::TempDir tmp;
  t::ImageSpec spec;
  t::LayerSpec l0, l1;
  l0.entries = {t::file("orig", "shared content"), t::hardlink("link1", "orig"),
                t::hardlink("link2", "orig")};
  l1.entries = {t::whiteout("orig")};
  spec.layers = {l0, l1};
  t::write_oci_layout(tmp / "img", spec);
  SourceImage image;
  FileTree tree;
  ASSERT_NO_FATAL_FAILURE(open_and_flatten(tmp / "img", image, tree));
  auto st = materialize_rootfs(image, tree, tmp / "rootfs", as_caller_can());
  ASSERT_TRUE(st.ok()) << st.error().message;
  EXPECT_FALSE(fs::exists(tmp / "rootfs/orig"));
  EXPECT_EQ(t::read_file(tmp / "rootfs/link1"), "shared content");
  EXPECT_EQ(t::read_file(tmp / "rootfs/link2"), "shared content");
  struct stat a {
  }, b{};
  ASSERT_EQ(::lstat((tmp / "rootfs/link1").c_str(), &a), 0);
  ASSERT_EQ(::lstat((tmp / "rootfs/link2").c_str(), &b), 0);
  EXPECT_EQ(a.st_ino, b.st_ino);
}

// A large file crosses many read buffers and comes out byte for byte.
TEST(Rootfs, LargeFileStreamsIntact) {
  t::TempDir tmp;
  std::string big(3 * 1024 * 1024 + 123, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>((i * 2654435761u) >> 13);
  t::ImageSpec spec;
  t::LayerSpec l0;
  l0.entries = {t::file("big.bin", big)};
  spec.layers = {l0};
  t::write_oci_layout(tmp / "img", spec);
  SourceImage image;
  FileTree tree;
  ASSERT_NO_FATAL_FAILURE(open_and_flatten(tmp / "img", image, tree));
  auto st = materialize_rootfs(image, tree, tmp / "rootfs", as_caller_can());
  ASSERT_TRUE(st.ok()) << st.error().message;
  EXPECT_TRUE(t::read_file(tmp / "rootfs/big.bin") == big);
}

}  // namespace
