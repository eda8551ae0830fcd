// `slimtrace trace IMAGE [-- CMD...] -o trace.json`: runs the image as a container under an OCI
// runtime and records every file, exec and syscall it uses.
#include "slimtrace/tracer/trace.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "common.hpp"
#include "slimtrace/fd.hpp"
#include "slimtrace/tracer/runner.hpp"
#include "slimtrace/workdir.hpp"

namespace slimtrace::cli {
namespace {

struct TraceArgs {
  std::string image;
  std::vector<std::string> cmd;
  std::string entrypoint;
  bool entrypoint_given = false;
  std::vector<std::string> env;
  std::vector<std::string> mounts;
  std::string runtime;
  std::string tracer = "ebpf";
  double duration = 0;
  bool duration_given = false;
  double stop_grace = 10;
  bool show_logs = false;
  std::string output;
};

Status write_file_atomically(const std::filesystem::path& target, const std::string& data) {
  std::filesystem::path dir =
      target.parent_path().empty() ? std::filesystem::path(".") : target.parent_path();
  std::string tmpl = (dir / ("." + target.filename().string() + ".tmp-XXXXXX")).string();
  int raw = ::mkstemp(tmpl.data());
  if (raw < 0) return Error::from_errno("create temp file for '" + target.string() + "'");
  UniqueFd fd(raw);
  std::filesystem::path tmp = tmpl;
  register_cleanup_path(tmp);
  auto fail = [&](const std::string& what) {
    int e = errno;
    ::unlink(tmp.c_str());
    unregister_cleanup_path(tmp);
    return Error::from_errno(what, e);
  };
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd.get(), data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail("write '" + tmp.string() + "'");
    }
    done += static_cast<size_t>(n);
  }
  if (::fchmod(fd.get(), 0644) != 0 || ::fsync(fd.get()) != 0) return fail("write '" + tmp.string() + "'");
  fd.reset();
  if (::rename(tmp.c_str(), target.c_str()) != 0) return fail("rename to '" + target.string() + "'");
  unregister_cleanup_path(tmp);
  return {};
}

int exit_code_for(const Error& e) {
  switch (tracer::classify_run_error(e)) {
    case tracer::RunFailure::BadImage:
    case tracer::RunFailure::ContainerFailed:
      return kExitBadInput;
    case tracer::RunFailure::RuntimeUnavailable:
    case tracer::RunFailure::TracerUnavailable:
      return kExitRuntimeUnavailable;
    case tracer::RunFailure::Other:
      break;
  }
  return kExitInternal;
}

int run_trace(const GlobalOptions& g, const TraceArgs& a) {
  tracer::RunSpec spec;
  for (const auto& m : a.mounts) {
    auto hm = tracer::HostMount::parse(m);
    if (!hm) {
      print_error(hm.error().message);
      return kExitUsage;
    }
    spec.mounts.push_back(*hm);
  }
  if (a.tracer == "fanotify")
    spec.tracer = tracer::TracerKind::Fanotify;
  else if (a.tracer != "ebpf") {
    print_error("--tracer '" + a.tracer + "': expected ebpf or fanotify");
    return kExitUsage;
  }

  auto opened = open_or_report(g, a.image);
  if (!opened) return kExitBadInput;
  auto progress = make_progress(g);
  auto tree = image::flatten(opened->image, progress);
  end_progress();
  if (!tree) {
    print_error(tree.error().message);
    return kExitBadInput;
  }

  spec.image = &opened->image;
  spec.tree = &*tree;
  if (a.entrypoint_given) spec.entrypoint = std::vector<std::string>{a.entrypoint};
  spec.cmd = a.cmd;
  spec.env = a.env;
  spec.runtime = a.runtime;
  if (a.duration_given) spec.duration = a.duration;
  spec.stop_grace_seconds = a.stop_grace;
  spec.show_logs = a.show_logs;
  spec.work_dir = opened->work.path() / "run";
  spec.progress = progress;

  auto run = tracer::run_traced(spec);
  end_progress();
  if (!run) {
    print_error(run.error().message);
    return exit_code_for(run.error());
  }
  tracer::Trace& trace = run->trace;
  trace.image = a.image;

  std::filesystem::path out = a.output;
  if (auto st = write_file_atomically(out, tracer::to_json(trace).dump(2) + "\n"); !st) {
    print_error(st.error().message);
    return kExitInternal;
  }
  // The container's own output, kept next to the trace: it explains what the trace shows.
  for (const auto& [log, suffix] :
       {std::pair{run->stdout_log, ".stdout.log"}, std::pair{run->stderr_log, ".stderr.log"}}) {
    std::error_code ec;
    std::filesystem::copy_file(log, out.string() + suffix, std::filesystem::copy_options::overwrite_existing,
                               ec);
    if (ec) {
      print_error("copy container log to '" + out.string() + suffix + "': " + ec.message());
      return kExitInternal;
    }
  }

  if (!g.quiet) {
    size_t failed = 0;
    for (const auto& [path, f] : trace.files)
      if (f.failed_ops != 0 && !f.found) ++failed;
    std::string ended = trace.exit_code ? "exit code " + std::to_string(*trace.exit_code)
                                        : std::string("stopped by slimtrace");
    std::string syscalls =
        trace.syscalls_recorded ? std::to_string(trace.syscalls.size()) : std::string("no");
    std::fprintf(stderr,
                 "slimtrace: traced %s with %s: %zu files (%zu failed lookups), %zu execs, %s syscalls, %llu "
                 "dropped events, %s -> %s\n",
                 a.image.c_str(), trace.tracer.c_str(), trace.files.size(), failed, trace.execs.size(),
                 syscalls.c_str(), static_cast<unsigned long long>(trace.dropped_events), ended.c_str(),
                 out.c_str());
    if (trace.dropped_events > 0)
      std::fprintf(stderr, "slimtrace: warning: %llu events were dropped; the trace is incomplete\n",
                   static_cast<unsigned long long>(trace.dropped_events));
  }
  return kExitOk;
}

}  // namespace

void add_trace(CLI::App& app, const GlobalOptions& g, Runner& runner) {
  auto a = std::make_shared<TraceArgs>();
  auto* sub = app.add_subcommand(
      "trace", "Run an image as a container and record the files, execs and syscalls it uses");
  sub->add_option("IMAGE", a->image,
                  "Image reference (oci:DIR[:TAG], oci-archive:FILE, docker-archive:FILE, path)")
      ->required();
  sub->add_option("CMD", a->cmd, "Command replacing the image's Cmd (after --)");
  sub->add_option("--entrypoint", a->entrypoint,
                  "Executable replacing the image's Entrypoint (clears its Cmd)");
  sub->add_option("-e,--env", a->env,
                  "Environment variable KEY=VALUE (or KEY, from this environment); repeatable")
      ->allow_extra_args(false);
  sub->add_option("--mount", a->mounts, "Bind-mount a host path, SRC:DST[:ro]; repeatable")
      ->allow_extra_args(false);
  sub->add_option("--runtime", a->runtime,
                  "OCI runtime name or path (default: the first of runc, crun that works)");
  sub->add_option("--tracer", a->tracer, "ebpf, or fanotify where BPF cannot be loaded (files only)")
      ->capture_default_str();
  sub->add_option("--duration", a->duration,
                  "Stop the container after SECONDS (default: wait for it to exit)")
      ->check(CLI::NonNegativeNumber);
  sub->add_option("--stop-grace", a->stop_grace, "Seconds between the stop signal and SIGKILL")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  sub->add_flag("--show-logs", a->show_logs, "Stream the container's stdout/stderr to stderr");
  sub->add_option("-o,--output", a->output, "Trace JSON to write")->required();
  sub->callback([&runner, &g, a, sub] {
    a->entrypoint_given = sub->count("--entrypoint") > 0;
    a->duration_given = sub->count("--duration") > 0;
    runner = [&g, a] { return run_trace(g, *a); };
  });
}

}  // namespace slimtrace::cli
