// Flattening layers into the view a container sees.
#include <gtest/gtest.h>

#include "image_builder.hpp"
#include "slimtrace/image/file_tree.hpp"
#include "slimtrace/image/reference.hpp"
#include "slimtrace/workdir.hpp"

namespace t = slimtrace::testing;
using namespace slimtrace::image;

namespace {

slimtrace::Result<FileTree> flatten_layers(const std::vector<std::vector<t::RawEntry>>& layers) {
  t::TempDir d;
  t::ImageSpec spec;
  for (const auto& l : layers) {
    t::LayerSpec ls;
    ls.entries = l;
    spec.layers.push_back(ls);
  }
  t::write_oci_layout(d / "l", spec);
  auto ref = parse_reference("oci:" + (d / "l").string());
  if (!ref) return ref.error();
  auto w = slimtrace::WorkDir::create();
  auto img = open_image(*ref, OpenOptions{Platform{}, w->path()});
  if (!img) return img.error();
  return flatten(*img);
}

}  // namespace

TEST(Flatten, WhiteoutsRemoveFilesAndDirectories) {
  auto tree = flatten_layers({
      {t::dir("a/"), t::file("a/keep", "k"), t::file("a/gone", "12345"), t::dir("d/"), t::file("d/x", "xx"),
       t::dir("d/sub/"), t::file("d/sub/y", "yyy")},
      {t::whiteout("a/gone"), t::whiteout("d")},
  });
  ASSERT_TRUE(tree.ok()) << tree.error().message;
  EXPECT_NE(tree->find("/a/keep"), nullptr);
  EXPECT_EQ(tree->find("/a/gone"), nullptr);
  EXPECT_EQ(tree->find("/d"), nullptr);
  EXPECT_EQ(tree->find("/d/sub/y"), nullptr);
  EXPECT_EQ(tree->layer_stats()[1].whiteouts, 2);
  EXPECT_EQ(tree->layer_stats()[1].bytes_removed, 5 + 2 + 3);
  // Whiteout markers never appear in the flattened view.
  for (const auto& [p, e] : tree->entries()) EXPECT_EQ(p.find(".wh."), std::string::npos) << p;
}

TEST(Flatten, OpaqueDirectoryHidesLowerContentOnly) {
  auto tree = flatten_layers({
      {t::dir("etc/"), t::file("etc/old", "o"), t::dir("etc/deep/"), t::file("etc/deep/z", "z")},
      {t::dir("etc/"), t::file("etc/new", "n"), t::opaque("etc")},
  });
  ASSERT_TRUE(tree.ok()) << tree.error().message;
  EXPECT_EQ(tree->find("/etc/old"), nullptr);
  EXPECT_EQ(tree->find("/etc/deep/z"), nullptr);
  EXPECT_NE(tree->find("/etc/new"), nullptr) << "the opaque marker must not hide its own layer's files";
}

TEST(Flatten, OverwriteKeepsTheLatestAndCountsWaste) {
  auto tree = flatten_layers({
      {t::file("bin", "0123456789")},
      {t::file("bin", "abc")},
  });
  ASSERT_TRUE(tree.ok()) << tree.error().message;
  EXPECT_EQ(tree->find("/bin")->size, 3);
  EXPECT_EQ(tree->find("/bin")->layer, 1);
  ASSERT_EQ(tree->shadowed().size(), 1u);
  EXPECT_EQ(tree->shadowed()[0].size, 10);
  EXPECT_FALSE(tree->shadowed()[0].deleted);
  // dive: min 3 / cumulative 13.
  EXPECT_NEAR(tree->efficiency(), 3.0 / 13.0, 1e-9);
}

TEST(Flatten, MetadataIsKept) {
  auto setuid = t::file("usr/bin/su", "su", 04755);
  setuid.uid = 0;
  auto owned = t::file("var/cache/x", "x", 0640);
  owned.uid = 33;
  owned.gid = 33;
  owned.mtime = 1234567890;
  auto ping = t::file("bin/ping", "ping", 0755);
  ping.pax["SCHILY.xattr.security.capability"] = std::string("\x01\x00\x00\x02\x00\x20\x00\x00", 8);
  auto sticky = t::dir("tmp/", 01777);
  t::RawEntry fifo;
  fifo.name = "run/fifo";
  fifo.typeflag = '6';
  t::RawEntry dev;
  dev.name = "dev/null";
  dev.typeflag = '3';
  dev.dev_major = 1;
  dev.dev_minor = 3;
  auto tree =
      flatten_layers({{setuid, owned, ping, sticky, fifo, dev, t::hardlink("usr/bin/su2", "usr/bin/su")}});
  ASSERT_TRUE(tree.ok()) << tree.error().message;
  EXPECT_EQ(tree->find("/usr/bin/su")->mode, 04755u);
  EXPECT_EQ(tree->find("/var/cache/x")->uid, 33u);
  EXPECT_EQ(tree->find("/var/cache/x")->mode, 0640u);
  EXPECT_EQ(tree->find("/var/cache/x")->mtime, 1234567890);
  ASSERT_EQ(tree->find("/bin/ping")->xattrs.size(), 1u);
  EXPECT_EQ(tree->find("/bin/ping")->xattrs[0].name, "security.capability");
  EXPECT_EQ(tree->find("/bin/ping")->xattrs[0].value.size(), 8u);
  EXPECT_EQ(tree->find("/tmp")->mode, 01777u);
  EXPECT_EQ(tree->find("/run/fifo")->type, EntryType::Fifo);
  EXPECT_EQ(tree->find("/dev/null")->type, EntryType::CharDevice);
  EXPECT_EQ(tree->find("/dev/null")->dev_minor, 3u);
  EXPECT_EQ(tree->find("/usr/bin/su2")->type, EntryType::Hardlink);
  EXPECT_EQ(tree->find("/usr/bin/su2")->link_target, "/usr/bin/su");
  // Implied parents exist as directories.
  EXPECT_EQ(tree->find("/usr/bin")->type, EntryType::Directory);
}

TEST(Flatten, HardlinkSurvivesReplacementOfItsTarget) {
  auto tree = flatten_layers({
      {t::file("a", "original"), t::hardlink("b", "a")},
      {t::file("a", "new")},
  });
  ASSERT_TRUE(tree.ok()) << tree.error().message;
  const auto* b = tree->find("/b");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->type, EntryType::Regular) << "b keeps the old inode's content";
  EXPECT_EQ(b->size, 8);
  EXPECT_EQ(b->layer, 0);
  EXPECT_EQ(tree->find("/a")->size, 3);
}

TEST(Flatten, ResolveFollowsSymlinksInsideTheTree) {
  auto tree = flatten_layers(
      {{t::dir("usr/"), t::dir("usr/lib/"), t::file("usr/lib/libc.so.6", "elf"), t::symlink("lib", "usr/lib"),
        t::symlink("etc/alt", "/lib/libc.so.6"), t::symlink("up", "../../../../usr")}});
  ASSERT_TRUE(tree.ok()) << tree.error().message;
  std::vector<std::string> via;
  auto r = tree->resolve("/etc/alt", &via);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, "/usr/lib/libc.so.6");
  EXPECT_EQ(via, (std::vector<std::string>{"/etc/alt", "/lib"}));
  // ".." above the root stays at the root, as in the kernel.
  r = tree->resolve("/up/lib");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, "/usr/lib");
}

TEST(Flatten, SymlinkLoopIsAnError) {
  auto tree = flatten_layers({{t::symlink("a", "b"), t::symlink("b", "a")}});
  ASSERT_TRUE(tree.ok());
  EXPECT_FALSE(tree->resolve("/a").ok());
}

TEST(Flatten, EntriesUnderASymlinkAreRejected) {
  auto tree = flatten_layers({{t::symlink("evil", "/etc")}, {t::file("evil/passwd", "x")}});
  ASSERT_FALSE(tree.ok());
  EXPECT_NE(tree.error().message.find("layer 1"), std::string::npos) << tree.error().message;
  EXPECT_NE(tree.error().message.find("evil/passwd"), std::string::npos) << tree.error().message;
  EXPECT_NE(tree.error().message.find("symlink"), std::string::npos) << tree.error().message;
}

TEST(Flatten, DirectoryReplacedByFile) {
  auto tree = flatten_layers({{t::dir("x/"), t::file("x/y", "yy")}, {t::file("x", "now a file")}});
  ASSERT_TRUE(tree.ok()) << tree.error().message;
  EXPECT_EQ(tree->find("/x")->type, EntryType::Regular);
  EXPECT_EQ(tree->find("/x/y"), nullptr);
}

TEST(Flatten, ChildrenListsDirectEntries) {
  auto tree = flatten_layers(
      {{t::dir("a/"), t::file("a/1", ""), t::dir("a/b/"), t::file("a/b/2", ""), t::file("a-c", "")}});
  ASSERT_TRUE(tree.ok());
  auto kids = tree->children("/a");
  ASSERT_EQ(kids.size(), 2u);
  EXPECT_EQ(kids[0]->path, "/a/1");
  EXPECT_EQ(kids[1]->path, "/a/b");
}
