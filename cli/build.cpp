// `slimtrace build IMAGE [-o OUTPUT_REF]`: run the image under probes, keep what it used, write a
// minified image and its seccomp profile, verified by running the result the same way.
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "common.hpp"
#include "pipeline_cmd.hpp"
#include "slimtrace/image/reference.hpp"

namespace slimtrace::cli {
namespace {

struct BuildArgs {
  RunFlags run;
  PipelineFlags pipeline;
  std::string output;
  std::string tag;
  std::string seccomp_out;
  std::string compression = "gzip";
  std::vector<std::string> include_paths, include_path_files;
  std::vector<std::string> include_bins, include_bin_files;
  std::vector<std::string> exclude_patterns, exclude_pattern_files;
  std::vector<std::string> preserve_paths, preserve_path_files;
  bool include_shell = false, include_workdir = false, include_certs = false, include_zoneinfo = false;
};

// One entry per line; blank lines and lines starting with '#' are skipped.
Result<std::vector<std::string>> lines_of(const std::string& file, const std::string& flag) {
  std::ifstream in(file);
  if (!in) return Error::from_errno(flag + " '" + file + "'");
  std::vector<std::string> out;
  std::string line;
  while (std::getline(in, line)) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t'))
      line.pop_back();
    size_t start = line.find_first_not_of(" \t");
    if (start == std::string::npos || line[start] == '#') continue;
    out.push_back(line.substr(start));
  }
  return out;
}

Result<std::vector<std::string>> merged(const std::vector<std::string>& given,
                                        const std::vector<std::string>& files, const std::string& flag) {
  std::vector<std::string> out = given;
  for (const auto& f : files) {
    SLIMTRACE_ASSIGN_OR_RETURN(auto more, lines_of(f, flag));
    out.insert(out.end(), more.begin(), more.end());
  }
  return out;
}

Result<uint32_t> parse_number(const std::string& s, int base, const std::string& what) {
  if (s.empty()) return Error{what + ": empty"};
  size_t used = 0;
  unsigned long v = 0;
  try {
    v = std::stoul(s, &used, base);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != s.size() || v > 0xffffffffUL) return Error{what + " '" + s + "': not a number"};
  return static_cast<uint32_t>(v);
}

// PATH, PATH:MODE or PATH:MODE:UID:GID (mode in octal).
Result<packer::IncludePath> parse_include_path(const std::string& text) {
  packer::IncludePath ip;
  std::vector<std::string> parts;
  size_t pos = 0;
  while (true) {
    size_t c = text.find(':', pos);
    parts.push_back(text.substr(pos, c == std::string::npos ? std::string::npos : c - pos));
    if (c == std::string::npos) break;
    pos = c + 1;
  }
  if (parts.size() != 1 && parts.size() != 2 && parts.size() != 4)
    return Error{"--include-path '" + text + "': expected PATH, PATH:MODE or PATH:MODE:UID:GID"};
  ip.path = parts[0];
  if (ip.path.empty() || ip.path[0] != '/')
    return Error{"--include-path '" + text + "': the path must be absolute"};
  if (parts.size() >= 2) {
    SLIMTRACE_ASSIGN_OR_RETURN(uint32_t mode,
                               parse_number(parts[1], 8, "--include-path '" + text + "' mode"));
    if (mode > 07777) return Error{"--include-path '" + text + "': mode must be at most 7777"};
    ip.mode = mode;
  }
  if (parts.size() == 4) {
    SLIMTRACE_ASSIGN_OR_RETURN(ip.uid, parse_number(parts[2], 10, "--include-path '" + text + "' uid"));
    SLIMTRACE_ASSIGN_OR_RETURN(ip.gid, parse_number(parts[3], 10, "--include-path '" + text + "' gid"));
  }
  return ip;
}

Result<pipeline::BuildOptions> build_options(const BuildArgs& a) {
  pipeline::BuildOptions o;
  SLIMTRACE_ASSIGN_OR_RETURN(image::ImageRef input, image::parse_reference(a.run.image));
  if (a.output.empty()) {
    o.output = pipeline::default_output_for(input);
  } else {
    SLIMTRACE_ASSIGN_OR_RETURN(image::ImageRef out, image::parse_reference(a.output, /*must_exist=*/false));
    o.output = out;
  }
  if (!a.tag.empty()) o.output->tag = a.tag;
  if (o.output->tag.empty()) o.output->tag = "latest";
  o.tag = o.output->tag;
  o.seccomp_out = a.seccomp_out.empty() ? pipeline::default_seccomp_path_for(*o.output)
                                        : std::filesystem::path(a.seccomp_out);
  if (a.compression == "gzip")
    o.compression = image::Compression::Gzip;
  else if (a.compression == "zstd")
    o.compression = image::Compression::Zstd;
  else if (a.compression == "none")
    o.compression = image::Compression::None;
  else
    return Error{"--compression '" + a.compression + "': expected gzip, zstd or none"};

  auto& r = o.rules;
  SLIMTRACE_ASSIGN_OR_RETURN(auto paths,
                             merged(a.include_paths, a.include_path_files, "--include-path-file"));
  for (const auto& p : paths) {
    SLIMTRACE_ASSIGN_OR_RETURN(auto ip, parse_include_path(p));
    r.include_paths.push_back(std::move(ip));
  }
  SLIMTRACE_ASSIGN_OR_RETURN(r.include_bins,
                             merged(a.include_bins, a.include_bin_files, "--include-bin-file"));
  SLIMTRACE_ASSIGN_OR_RETURN(r.exclude_patterns,
                             merged(a.exclude_patterns, a.exclude_pattern_files, "--exclude-pattern-file"));
  SLIMTRACE_ASSIGN_OR_RETURN(r.preserve_paths,
                             merged(a.preserve_paths, a.preserve_path_files, "--preserve-path-file"));
  for (const auto& list : {r.include_bins, r.preserve_paths})
    for (const auto& p : list)
      if (p.empty() || p[0] != '/')
        return Error{"'" + p + "': paths given to --include-bin and --preserve-path must be absolute"};
  r.include_shell = a.include_shell;
  r.include_workdir = a.include_workdir;
  r.include_certs = a.include_certs;
  r.include_zoneinfo = a.include_zoneinfo;
  return o;
}

}  // namespace

void add_build(CLI::App& app, const GlobalOptions& g, Runner& runner) {
  auto a = std::make_shared<BuildArgs>();
  auto* sub = app.add_subcommand(
      "build",
      "Run an image under probes, keep only what it used, and write a minified image and a seccomp "
      "profile, both verified by running the result again with the same probes");
  add_run_flags(sub, a->run);
  sub->add_option(
      "-o,--output", a->output,
      "Output image reference, any transport (default: an OCI layout beside the input, named after it "
      "with .slim; for docker-daemon:NAME:TAG input, NAME.slim:TAG loaded into the same engine; for "
      "docker:// input, ./NAME.slim)");
  sub->add_option("--tag", a->tag, "Tag of the output image (default: the input's, or latest)");
  sub->add_option("--seccomp-out", a->seccomp_out,
                  "Seccomp profile to write (default: OUTPUT.seccomp.json; for docker-daemon: and docker:// "
                  "outputs NAME_TAG.seccomp.json in the current directory)");
  sub->add_option("--compression", a->compression, "Layer compression: gzip, zstd or none")
      ->capture_default_str();
  add_pipeline_flags(sub, a->pipeline, true);
  auto* rules = "Keeping more than was traced";
  sub->add_option("--include-path", a->include_paths,
                  "Keep PATH (a directory with everything under it; globs with ** allowed), optionally "
                  "with a new mode and owner: PATH[:MODE[:UID:GID]]; repeatable")
      ->group(rules)
      ->allow_extra_args(false);
  sub->add_option("--include-path-file", a->include_path_files,
                  "File of --include-path entries, one per line")
      ->group(rules)
      ->allow_extra_args(false);
  sub->add_option("--include-bin,--include-exe", a->include_bins,
                  "Keep an executable or library and its ELF dependencies; repeatable")
      ->group(rules)
      ->allow_extra_args(false);
  sub->add_option("--include-bin-file,--include-exe-file", a->include_bin_files,
                  "File of --include-bin entries, one per line")
      ->group(rules)
      ->allow_extra_args(false);
  sub->add_flag("--include-shell", a->include_shell, "Keep /bin/sh and what it needs (for docker exec)")
      ->group(rules);
  sub->add_flag("--include-workdir", a->include_workdir,
                "Keep the image's WorkingDir with everything under it")
      ->group(rules);
  sub->add_flag("--include-certs", a->include_certs, "Keep the CA certificate bundles")->group(rules);
  sub->add_flag("--include-zoneinfo", a->include_zoneinfo, "Keep /usr/share/zoneinfo")->group(rules);
  sub->add_option("--exclude-pattern", a->exclude_patterns,
                  "Drop paths matching GLOB (** crosses directories), even if traced; repeatable")
      ->group(rules)
      ->allow_extra_args(false);
  sub->add_option("--exclude-pattern-file", a->exclude_pattern_files, "File of --exclude-pattern globs")
      ->group(rules)
      ->allow_extra_args(false);
  sub->add_option("--preserve-path", a->preserve_paths,
                  "Keep PATH exactly as in the image, whole, whatever the trace says; repeatable")
      ->group(rules)
      ->allow_extra_args(false);
  sub->add_option("--preserve-path-file", a->preserve_path_files, "File of --preserve-path entries")
      ->group(rules)
      ->allow_extra_args(false);
  sub->callback([&runner, &g, a, sub] {
    finish_run_flags(sub, a->run);
    runner = [&g, a] {
      auto o = build_options(*a);
      if (!o) {
        print_error(o.error().message);
        return static_cast<int>(kExitUsage);
      }
      return run_pipeline_command(g, a->run, a->pipeline, std::move(*o));
    };
  });
}

}  // namespace slimtrace::cli
