#include "slimtrace/packer/pack.hpp"

#include <set>
#include <string>
#include <utility>

namespace slimtrace::packer {

Result<image::WrittenImage> pack(const image::SourceImage& source, const image::FileTree& tree,
                                 const Selection& selection, image::WriteOptions options,
                                 const image::ProgressFn& progress) {
  std::set<std::string> paths;
  for (const auto& [path, why] : selection.kept)
    if (tree.find(path)) paths.insert(path);

  for (const auto& [path, bytes] : selection.replaced_files) {
    // The database may be reached through a symlink; the content belongs to the file it names.
    std::string target = path;
    const image::FileEntry* e = tree.find(path);
    if (!e || e->type == image::EntryType::Symlink) {
      auto resolved = tree.resolve(path);
      if (!resolved) continue;
      target = *resolved;
    }
    if (paths.count(target)) options.replaced_contents.emplace(target, bytes);
  }
  for (const auto& [path, rule] : selection.overrides) {
    if (!rule.mode && !rule.uid && !rule.gid) continue;
    if (!paths.count(path)) continue;
    options.overrides.emplace(path, image::MetadataOverride{rule.mode, rule.uid, rule.gid});
  }
  return image::write_image(source, tree, paths, options, progress);
}

}  // namespace slimtrace::packer
