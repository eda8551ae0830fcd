#include "slimtrace/pipeline/build.hpp"

#include <algorithm>
#include <chrono>
#include <set>

#include "report_internal.hpp"
#include "slimtrace/image/xray.hpp"
#include "slimtrace/packer/pack.hpp"
#include "slimtrace/pipeline/probed_run.hpp"
#include "slimtrace/write_file.hpp"

namespace slimtrace::pipeline {
namespace {

using Clock = std::chrono::steady_clock;

class PhaseTimer {
 public:
  PhaseTimer(std::vector<Phase>& phases, const std::function<void(const std::string&)>& notice)
      : phases_(phases), notice_(notice) {}
  void start(const std::string& name, const std::string& what, bool probing = false) {
    stop();
    phases_.push_back({name, 0, probing});
    t0_ = Clock::now();
    running_ = true;
    if (notice_) notice_(what);
  }
  void stop() {
    if (!running_) return;
    phases_.back().seconds = std::chrono::duration<double>(Clock::now() - t0_).count();
    running_ = false;
  }

 private:
  std::vector<Phase>& phases_;
  const std::function<void(const std::string&)>& notice_;
  Clock::time_point t0_;
  bool running_ = false;
};

std::string image_arch(const image::SourceImage& img) {
  if (img.config.contains("architecture") && img.config["architecture"].is_string())
    return img.config["architecture"].get<std::string>();
  return img.platform.architecture.empty() ? "amd64" : img.platform.architecture;
}

// Paths the original run found that the minified run looked for and did not find: what the
// minifier left out that the app needed (or a lookup that differs between runs, which is rare).
std::vector<std::string> missing_paths(const tracer::Trace& original, const tracer::Trace& minified) {
  std::vector<std::string> out;
  for (const auto& [path, f] : minified.files) {
    if (f.found || f.failed_ops == 0) continue;
    auto it = original.files.find(path);
    if (it != original.files.end() && it->second.found) out.push_back(path);
  }
  return out;
}

}  // namespace

std::string_view outcome_name(BuildOutcome o) {
  switch (o) {
    case BuildOutcome::Ok:
      return "ok";
    case BuildOutcome::ProbeFailed:
      return "probe-failed";
    case BuildOutcome::VerifyFailed:
      return "verify-failed";
    case BuildOutcome::WriteFailed:
      return "write-failed";
  }
  return "ok";
}

Result<BuildResult> build(const image::SourceImage& input, const image::FileTree& tree, BuildOptions o) {
  BuildResult res;
  ReportBuilder report(o, input);
  PhaseTimer phase(o.phases, o.notice);

  phase.start("xray", "looking at the image");
  SLIMTRACE_ASSIGN_OR_RETURN(image::XrayReport xr, image::xray(input, tree, {}, o.progress));
  report.set_input(xr);

  // --- the original run ---
  phase.start("trace", "running " + o.input_ref + " under the probes, traced", true);
  tracer::RunSpec spec = o.run;
  spec.image = &input;
  spec.tree = &tree;
  spec.work_dir = o.work_dir / "run-original";
  spec.seccomp.reset();
  spec.progress = o.progress;
  SLIMTRACE_ASSIGN_OR_RETURN(ProbedRun original, run_probed(spec, o.probes));
  phase.stop();
  report.set_original(original);
  if (original.trace.dropped_events > 0)
    res.warnings.push_back(std::to_string(original.trace.dropped_events) +
                           " events were dropped while tracing; the selection may miss files");
  if (!original.probes.error.empty() || original.probes.failed() > 0) {
    res.outcome = BuildOutcome::ProbeFailed;
    res.message =
        "the original image failed its probes, so there is nothing to compare a minified one "
        "with: " +
        probe_failure_message(original.probes);
    res.report = report.finish(res, o.phases);
    return res;
  }

  // --- what to keep ---
  phase.start("select", "selecting what the app used");
  SLIMTRACE_ASSIGN_OR_RETURN(res.selection, packer::select(input, tree, original.trace, o.rules));
  for (const auto& w : res.selection.warnings) res.warnings.push_back(w);

  phase.start("seccomp", "making the seccomp profile");
  if (original.trace.syscalls_recorded) {
    SLIMTRACE_ASSIGN_OR_RETURN(auto profile,
                               packer::make_seccomp_profile(original.trace, {image_arch(input)}, o.seccomp));
    for (const auto& w : profile.warnings) res.warnings.push_back(w);
    res.profile = std::move(profile);
  } else if (!o.output) {
    // `profile` exists for this one file; without syscalls there is nothing honest to write.
    return Error{"seccomp profile: the " + original.trace.tracer +
                 " tracer does not record syscalls; use --tracer ebpf (needs BPF) to make a profile"};
  } else {
    res.warnings.push_back("no seccomp profile: the " + original.trace.tracer +
                           " tracer does not record syscalls; the image is verified without one");
  }
  report.set_selection(tree, res.selection, res.profile);

  // --- pack into a staging layout and verify from it; `profile` verifies the input under it ---
  std::optional<image::SourceImage> staged;
  std::optional<image::FileTree> staged_tree;
  image::WriteOptions wo;
  wo.compression = o.compression;
  wo.work_dir = o.work_dir;
  wo.remote = o.remote;
  std::optional<image::WrittenImage> staged_written;
  wo.tag = !o.tag.empty() ? o.tag : (o.output && !o.output->tag.empty() ? o.output->tag : "latest");
  if (o.verify) {
    const image::SourceImage* vimage = &input;
    const image::FileTree* vtree = &tree;
    if (o.output) {
      phase.start("pack", "packing the minified image");
      wo.output = image::ImageRef{};
      wo.output.transport = image::Transport::OciLayout;
      wo.output.path = o.work_dir / "staged";
      wo.output.tag = wo.tag;
      SLIMTRACE_ASSIGN_OR_RETURN(staged_written, packer::pack(input, tree, res.selection, wo, o.progress));
      image::OpenOptions oo;
      oo.platform = input.platform;
      oo.work_dir = o.work_dir;
      SLIMTRACE_ASSIGN_OR_RETURN(image::SourceImage s, image::open_image(wo.output, oo));
      staged = std::move(s);
      SLIMTRACE_ASSIGN_OR_RETURN(image::FileTree t, image::flatten(*staged));
      staged_tree = std::move(t);
      vimage = &*staged;
      vtree = &*staged_tree;
    }
    phase.start("verify",
                o.output ? "verifying: the minified image under its seccomp profile, same probes"
                         : "verifying: the image under the new seccomp profile, same probes",
                true);
    Verification v;
    v.ran = true;
    tracer::RunSpec vspec = o.run;
    vspec.image = vimage;
    vspec.tree = vtree;
    vspec.work_dir = o.work_dir / "run-minified";
    vspec.progress = o.progress;
    if (res.profile) vspec.seccomp = res.profile->json;
    probe::ProbeOptions vprobes = o.probes;
    vprobes.replay = &original.probes;
    // Waiting for a person again would stall a verification nobody is watching: stop once the
    // recorded probes are replayed (or when the container exits, as the original did).
    if (o.probes.continue_after && (o.probes.continue_after->mode == probe::ContinueMode::Signal ||
                                    o.probes.continue_after->mode == probe::ContinueMode::Enter))
      vprobes.continue_after = probe::ContinueAfter{
          original.probes.ports.empty() ? probe::ContinueMode::Exit : probe::ContinueMode::Probe, 0};
    auto minified = run_probed(vspec, vprobes);
    phase.stop();
    if (!minified) {
      v.error = "the minified image did not run: " + minified.error().message;
    } else {
      v.probes = minified->probes;
      v.dropped_events = minified->trace.dropped_events;
      v.differences = probe::compare_reports(original.probes, minified->probes);
      v.missing_paths = missing_paths(original.trace, minified->trace);
      if (!minified->probes.error.empty() && original.probes.error.empty())
        v.error = "probing the minified image failed: " + minified->probes.error;
    }
    v.passed = v.error.empty() && v.differences.empty();
    if (!v.passed) {
      res.outcome = BuildOutcome::VerifyFailed;
      std::string msg = o.output
                            ? "verification failed: the minified image does not behave like the original"
                            : "verification failed: the image does not behave the same under the profile";
      if (!v.error.empty()) msg += "\n  " + v.error;
      for (const auto& d : v.differences) msg += "\n  " + probe::describe(d);
      if (!v.missing_paths.empty()) {
        msg += "\n  paths the original run found and the minified run did not:";
        size_t shown = 0;
        for (const auto& p : v.missing_paths) {
          if (++shown > 20) {
            msg += "\n    ... and " + std::to_string(v.missing_paths.size() - 20) + " more (see the report)";
            break;
          }
          msg += "\n    " + p;
        }
      }
      if (minified && !minified->probes.log_tail.empty()) msg += "\n" + minified->probes.log_tail;
      while (!msg.empty() && msg.back() == '\n') msg.pop_back();
      res.message = msg;
    }
    report.set_verification(v);
  }

  // --- the outputs ---
  bool write_outputs = res.outcome == BuildOutcome::Ok || o.keep_unverified;
  if (write_outputs) {
    phase.start("write", o.output ? "writing " + o.output->to_string() : "writing the seccomp profile");
    // A refused push or an engine gone away must not cost the verified profile and the report.
    auto write_failed = [&](const Error& e) {
      if (res.outcome != BuildOutcome::Ok) {  // --keep-unverified: the failed verification comes first
        res.message += "\n" + e.message;
        return;
      }
      res.outcome = BuildOutcome::WriteFailed;
      res.message = e.message;
    };
    if (o.output && o.output->is_remote() && staged_written) {
      // The registry or engine gets exactly the bytes that were verified.
      if (auto st = image::publish_layout(o.work_dir / "staged", *o.output, o.remote, o.progress); !st)
        write_failed(st.error());
      else
        res.written = staged_written;
    } else if (o.output) {
      wo.output = *o.output;
      if (auto w = packer::pack(input, tree, res.selection, wo, o.progress); !w)
        write_failed(w.error());
      else
        res.written = *w;
    }
    if (res.profile && !o.seccomp_out.empty()) {
      SLIMTRACE_TRY(write_file_atomically(o.seccomp_out, res.profile->json.dump(2) + "\n"));
      res.seccomp_written = true;
    }
    phase.stop();
  }
  phase.stop();
  res.report = report.finish(res, o.phases);
  return res;
}

image::ImageRef default_output_for(const image::ImageRef& input) {
  image::ImageRef out;
  if (input.transport == image::Transport::DockerDaemon) {
    // Back into the same engine, as NAME.slim:TAG (an image ID gives its short form as the name).
    out.transport = image::Transport::DockerDaemon;
    out.repository = input.repository.empty() ? input.digest.substr(7, 12) : input.repository;
    out.repository += ".slim";
    out.tag = input.tag.empty() ? "latest" : input.tag;
    return out;
  }
  if (input.transport == image::Transport::Registry) {
    // Never pushed anywhere unasked: an OCI layout in the current directory, named after it.
    std::string last = input.repository.substr(input.repository.rfind('/') + 1);
    out.transport = image::Transport::OciLayout;
    out.path = last + ".slim";
    out.tag = input.tag.empty() ? "latest" : input.tag;
    return out;
  }
  out.transport = image::Transport::OciLayout;
  std::filesystem::path p = input.path;
  while (!p.empty() && !p.has_filename()) p = p.parent_path();  // "dir/" -> "dir"
  std::string name = p.filename().string();
  if (input.transport != image::Transport::OciLayout) {
    for (const char* ext : {".tar.gz", ".tgz", ".tar"})
      if (name.size() > std::string_view(ext).size() && name.ends_with(ext)) {
        name.resize(name.size() - std::string_view(ext).size());
        break;
      }
  }
  out.path = p.parent_path() / (name + ".slim");
  std::string tag = input.tag;
  if (input.transport == image::Transport::DockerArchive) {
    // "name:tag" -> "tag"
    auto colon = tag.rfind(':');
    tag = colon == std::string::npos ? std::string() : tag.substr(colon + 1);
  }
  out.tag = tag.empty() ? "latest" : tag;
  return out;
}

std::filesystem::path default_seccomp_path_for(const image::ImageRef& output) {
  if (output.is_remote()) {
    // In the current directory, named after the image: "web.slim:1" -> "web.slim_1.seccomp.json".
    std::string name = output.repository.empty() ? output.digest.substr(7, 12) : output.repository;
    name = name.substr(name.rfind('/') + 1);
    if (!output.tag.empty()) name += "_" + output.tag;
    return std::filesystem::path(name + ".seccomp.json");
  }
  std::filesystem::path p = output.path;
  while (!p.empty() && !p.has_filename()) p = p.parent_path();
  return p.parent_path() / (p.filename().string() + ".seccomp.json");
}

}  // namespace slimtrace::pipeline
