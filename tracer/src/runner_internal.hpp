// Internal: run_traced with the tracer backend chosen by the caller, so integration tests can run
// containers with a backend of their own.
#pragma once

#include <functional>
#include <memory>

#include "slimtrace/tracer/runner.hpp"
#include "tracer_backend.hpp"

namespace slimtrace::tracer {

using TracerFactory = std::function<Result<std::unique_ptr<TracerBackend>>(TracerKind, const TracerOptions&)>;

Result<RunResult> run_traced_with(const RunSpec& spec, const WhileRunning& while_running,
                                  const TracerFactory& make_tracer);

}  // namespace slimtrace::tracer
