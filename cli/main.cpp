// slimtrace: makes container images small and safe by watching them run.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>

#include "common.hpp"
#include "slimtrace/workdir.hpp"

int main(int argc, char** argv) {
  using namespace slimtrace::cli;
  CLI::App app{"slimtrace: minify container images by tracing what they use, and report on them"};
  app.set_version_flag("--version", "slimtrace 0.1.0");
  app.require_subcommand(1);
  app.fallthrough();

  GlobalOptions g;
  app.add_option("--work-dir", g.work_dir,
                 "Scratch directory (default: $TMPDIR or /tmp); cleaned up on exit");
  app.add_option("--platform", g.platform, "Platform to pick from an image index, os/arch[/variant]")
      ->capture_default_str();
  app.add_option("--creds", g.creds,
                 "USER:PASS for docker:// registries (default: the auth file's entry for the registry)");
  app.add_flag("--tls-verify", g.tls_verify,
               "docker://: verify the registry's TLS certificate; --tls-verify=false also allows plain http")
      ->capture_default_str();
  app.add_option("--auth-file", g.auth_file,
                 "docker://: auth file with \"auths\" (default: $REGISTRY_AUTH_FILE, "
                 "$DOCKER_CONFIG/config.json or ~/.docker/config.json)");
  app.add_option("--upload-chunk-size", g.upload_chunk_size,
                 "docker://: upload blobs in chunks of this many bytes (default 0: one request per blob)");
  app.add_flag("-q,--quiet", g.quiet, "No progress and no summary on stderr");
  app.add_flag("-v,--verbose", g.verbose, "More log output (repeat for debug)");

  Runner runner;
  add_xray(app, g, runner);
  add_validate(app, g, runner);
  add_squash(app, g, runner);
  add_unpack(app, g, runner);
  add_trace(app, g, runner);
  add_build(app, g, runner);
  add_profile(app, g, runner);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : kExitUsage;
  }

  auto logger = spdlog::stderr_color_mt("slimtrace");
  logger->set_pattern("slimtrace: %^%l%$: %v");
  spdlog::set_default_logger(logger);
  spdlog::set_level(g.verbose >= 2   ? spdlog::level::debug
                    : g.verbose == 1 ? spdlog::level::info
                    : g.quiet        ? spdlog::level::err
                                     : spdlog::level::warn);

  slimtrace::install_interrupt_cleanup();
  if (!runner) return kExitUsage;
  try {
    return runner();
  } catch (const std::exception& e) {
    print_error(std::string("internal error: ") + e.what());
    return kExitInternal;
  }
}
