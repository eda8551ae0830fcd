// `slimtrace profile IMAGE -o profile.json`: the seccomp profile of what the image does under the
// probes, and the report, without writing an image (for security teams).
#include <memory>
#include <string>

#include "common.hpp"
#include "pipeline_cmd.hpp"

namespace slimtrace::cli {
namespace {

struct ProfileArgs {
  RunFlags run;
  PipelineFlags pipeline;
  std::string output;
};

}  // namespace

void add_profile(CLI::App& app, const GlobalOptions& g, Runner& runner) {
  auto a = std::make_shared<ProfileArgs>();
  auto* sub = app.add_subcommand(
      "profile",
      "Run an image under probes and write a seccomp profile (Docker/OCI JSON) allowing only the syscalls it "
      "made, verified by running it again under that profile");
  add_run_flags(sub, a->run);
  sub->add_option("-o,--output", a->output, "Seccomp profile to write")->required();
  add_pipeline_flags(sub, a->pipeline, false);
  sub->callback([&runner, &g, a, sub] {
    finish_run_flags(sub, a->run);
    runner = [&g, a] {
      if (a->run.tracer == "fanotify") {
        print_error(
            "--tracer fanotify records no syscalls, so it cannot make a seccomp profile; use --tracer ebpf");
        return static_cast<int>(kExitUsage);
      }
      pipeline::BuildOptions o;
      o.seccomp_out = a->output;
      return run_pipeline_command(g, a->run, a->pipeline, std::move(o));
    };
  });
}

}  // namespace slimtrace::cli
