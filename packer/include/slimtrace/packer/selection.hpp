// What to keep of an image, and why: the closure of the traced paths over symlinks, parents,
// hardlinks, ELF dependencies, NSS, user rules and package metadata.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "slimtrace/image/file_tree.hpp"
#include "slimtrace/image/source.hpp"
#include "slimtrace/result.hpp"
#include "slimtrace/tracer/trace.hpp"

namespace slimtrace::packer {

enum class KeepReason { Traced, Symlink, Parent, Hardlink, ElfDep, Interpreter, Nss, Include, Metadata };
std::string_view reason_name(KeepReason r);

struct KeptEntry {
  KeepReason reason = KeepReason::Traced;
  std::string because_of;  // the path that pulled this one in ("" for traced/include)
};

struct IncludePath {
  std::string path;  // glob allowed ("**" matches across directories)
  std::optional<uint32_t> mode;
  std::optional<uint32_t> uid, gid;
};

struct SelectionRules {
  std::vector<IncludePath> include_paths;     // --include-path (whole subtrees for directories)
  std::vector<std::string> include_bins;      // --include-bin / --include-exe: file + ELF closure
  bool include_shell = false;                 // /bin/sh and its closure
  bool include_workdir = false;               // the image's WorkingDir subtree
  bool include_certs = false;                 // CA bundles (/etc/ssl/certs, ca-certificates)
  bool include_zoneinfo = false;              // /usr/share/zoneinfo
  std::vector<std::string> exclude_patterns;  // --exclude-pattern globs ("**" allowed)
  std::vector<std::string> preserve_paths;    // --preserve-path: kept as in the image, whole
};

struct Selection {
  std::map<std::string, KeptEntry> kept;  // path -> why
  // The pruned package databases to write instead of the image's (path -> new content).
  std::map<std::string, std::string> replaced_files;
  std::vector<std::string> warnings;
  int64_t traced_bytes = 0;  // lower bound: regular files the trace touched (+ interpreters)
  int64_t kept_bytes = 0;
  // Paths that were asked for (traced, included) but are not entries themselves because they lead
  // through a symlinked directory (e.g. /lib/x.so with /lib -> usr/lib); explain() walks them.
  std::map<std::string, KeptEntry> aliases;
  // --include-path mode/uid/gid to apply to the resolved path (the writer applies them).
  std::map<std::string, IncludePath> overrides;
  // "why is this here?" as one line per link of the chain, e.g. "/lib -> symlink of /lib/x.so".
  std::vector<std::string> explain(const std::string& path) const;
};

// Computes the selection. File contents (ELF headers, nsswitch.conf, ld.so.conf, dpkg status) are
// read from the image's layers by streaming them, never from the host.
Result<Selection> select(const image::SourceImage& image, const image::FileTree& tree,
                         const tracer::Trace& trace, const SelectionRules& rules);

}  // namespace slimtrace::packer
