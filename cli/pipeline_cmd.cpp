#include "pipeline_cmd.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>

#include "slimtrace/fd.hpp"
#include "slimtrace/probe/probe.hpp"

namespace slimtrace::cli {
namespace {

// A job summary file collects the output of several steps, so it is appended to, never replaced.
Status append_to_file(const std::string& path, const std::string& text) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
  if (!fd.valid()) return Error::from_errno("open '" + path + "'");
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::write(fd.get(), text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Error::from_errno("write '" + path + "'");
    done += static_cast<size_t>(n);
  }
  return {};
}

}  // namespace

void add_pipeline_flags(CLI::App* sub, PipelineFlags& p, bool building) {
  sub->add_option("--report", p.report, "Where to write the JSON report (docs/report.md)")
      ->capture_default_str();
  sub->add_option("--report-format", p.report_format,
                  "json: the JSON report only; github: also a Markdown summary for a CI job summary, "
                  "appended to --summary, else to $GITHUB_STEP_SUMMARY when set, else printed on stdout")
      ->check(CLI::IsMember({"json", "github"}))
      ->capture_default_str();
  sub->add_option("--summary", p.summary,
                  "With --report-format github: the file the Markdown summary is appended to");
  sub->add_option("--seccomp-default-action", p.seccomp_default_action,
                  "What the profile does to syscalls the app never made: errno:EPERM, errno:ENOSYS, kill, "
                  "trap or log")
      ->capture_default_str();
  sub->add_flag("--no-verify", p.no_verify,
                building ? "Skip running the minified image again under its profile with the same probes"
                         : "Skip running the image again under the new profile with the same probes");
  if (building) {
    sub->add_flag("--keep-unverified", p.keep_unverified,
                  "Write the image and profile even when verification fails (the exit code still says so)");
    sub->add_option("--explain", p.explain, "Print why PATH is in the minified image; repeatable")
        ->allow_extra_args(false);
  }
}

int run_pipeline_command(const GlobalOptions& g, const RunFlags& run, const PipelineFlags& p,
                         pipeline::BuildOptions o) {
  auto spec = run_spec_from(run);
  if (!spec) {
    print_error(spec.error().message);
    return kExitUsage;
  }
  auto popts = probe_options_from(run);
  if (!popts) {
    print_error(popts.error().message);
    return kExitUsage;
  }
  o.seccomp.default_action = p.seccomp_default_action;
  o.verify = !p.no_verify;
  o.keep_unverified = p.keep_unverified;
  o.input_ref = run.image;
  o.run = *spec;
  o.probes = *popts;

  // Minutes of tracing and verifying are wasted if the registry then refuses the push.
  if (o.output) {
    if (auto st = image::check_output(*o.output, remote_options(g), o.compression); !st) {
      print_error(st.error().message);
      return kExitOutputFailed;
    }
  }

  auto t0 = std::chrono::steady_clock::now();
  auto progress = make_progress(g);
  auto opened = open_or_report(g, run.image, progress);
  if (!opened) return kExitBadInput;
  o.phases.push_back(
      {"read", std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), false});
  o.probes.image_ports = probe::exposed_tcp_ports(opened->image.config);
  o.work_dir = opened->work.path();
  o.remote = remote_options(g);
  o.progress = progress;
  if (!g.quiet) {
    auto notice = [](const std::string& line) {
      end_progress();
      std::fprintf(stderr, "slimtrace: %s\n", line.c_str());
    };
    o.notice = notice;
    o.probes.notice = notice;
  }

  auto res = pipeline::build(opened->image, opened->tree, std::move(o));
  end_progress();
  if (!res) {
    print_error(res.error().message);
    return exit_code_for_run_error(res.error());
  }
  if (!p.report.empty()) {
    auto st = write_file_atomically(p.report, res->report.dump(2) + "\n");
    if (!st) {
      print_error(st.error().message);
      return kExitInternal;
    }
  }
  if (p.report_format == "github") {
    std::string md = pipeline::summary_markdown(res->report);
    std::string target = p.summary;
    if (target.empty())
      if (const char* env = std::getenv("GITHUB_STEP_SUMMARY"); env && *env) target = env;
    if (target.empty() || target == "-") {
      std::fwrite(md.data(), 1, md.size(), stdout);
    } else if (auto st = append_to_file(target, md); !st) {
      // The job summary is a convenience; the build's own outcome decides the exit code.
      std::fprintf(stderr, "slimtrace: warning: job summary not written: %s\n", st.error().message.c_str());
    }
  }
  for (const auto& path : p.explain) {
    auto lines = res->selection.explain(path);
    std::printf("%s:\n", path.c_str());
    for (const auto& l : lines) std::printf("  %s\n", l.c_str());
  }
  if (!g.quiet) {
    for (const auto& w : res->warnings) std::fprintf(stderr, "slimtrace: warning: %s\n", w.c_str());
    std::string summary = pipeline::summary_text(res->report);
    size_t pos = 0;
    while (pos < summary.size()) {
      size_t nl = summary.find('\n', pos);
      std::fprintf(stderr, "slimtrace: %s\n", summary.substr(pos, nl - pos).c_str());
      if (nl == std::string::npos) break;
      pos = nl + 1;
    }
    if (!p.report.empty()) std::fprintf(stderr, "slimtrace: report: %s\n", p.report.c_str());
  }
  switch (res->outcome) {
    case pipeline::BuildOutcome::Ok:
      return kExitOk;
    case pipeline::BuildOutcome::ProbeFailed:
      print_error(res->message);
      return kExitProbeFailed;
    case pipeline::BuildOutcome::WriteFailed:
      print_error(res->message);
      return kExitOutputFailed;
    case pipeline::BuildOutcome::VerifyFailed:
      print_error(res->message +
                  (p.keep_unverified ? "" : "\nnothing was written (--keep-unverified writes it anyway)"));
      return kExitVerifyFailed;
  }
  return kExitInternal;
}

}  // namespace slimtrace::cli
