#include "slimtrace/tracer/trace.hpp"

#include <array>
#include <utility>

namespace slimtrace::tracer {
using nlohmann::json;

namespace {
constexpr std::array<std::pair<FileOp, std::string_view>, 11> kOps = {{
    {kOpOpen, "open"},
    {kOpExec, "exec"},
    {kOpStat, "stat"},
    {kOpAccess, "access"},
    {kOpReadlink, "readlink"},
    {kOpList, "list"},
    {kOpChdir, "chdir"},
    {kOpMmap, "mmap"},
    {kOpConnect, "connect"},
    {kOpCreate, "create"},
    {kOpModify, "modify"},
}};

template <typename T>
Result<T> get_field(const json& j, const char* key, const T& fallback) {
  if (!j.contains(key)) return fallback;
  try {
    return j.at(key).get<T>();
  } catch (const json::exception&) {
    return Error{std::string("trace JSON: field '") + key + "' has the wrong type"};
  }
}
}  // namespace

std::vector<std::string> op_names(uint32_t ops) {
  std::vector<std::string> out;
  for (const auto& [bit, name] : kOps)
    if (ops & bit) out.emplace_back(name);
  return out;
}

uint32_t op_from_name(std::string_view name) {
  for (const auto& [bit, n] : kOps)
    if (n == name) return bit;
  return 0;
}

void Trace::add_access(const std::string& path, uint32_t op, int error) {
  auto& f = files[path];
  f.path = path;
  ++f.count;
  if (error == 0) {
    f.ops |= op;
    f.found = true;
  } else {
    f.failed_ops |= op;
    if (f.error == 0) f.error = error;
  }
}

json to_json(const Trace& t) {
  json files = json::array();
  for (const auto& [path, f] : t.files) {
    json jf = {{"path", f.path}, {"found", f.found}, {"count", f.count}};
    if (f.ops) jf["ops"] = op_names(f.ops);
    if (f.failed_ops) jf["failed_ops"] = op_names(f.failed_ops);
    if (f.error) jf["errno"] = f.error;
    files.push_back(std::move(jf));
  }
  json execs = json::array();
  for (const auto& e : t.execs) {
    json je = {{"pid", e.pid}, {"ppid", e.ppid}, {"path", e.path}, {"argv", e.argv}};
    if (e.error) je["errno"] = e.error;
    execs.push_back(std::move(je));
  }
  json procs = json::array();
  for (const auto& p : t.processes) {
    json jp = {{"pid", p.pid}, {"ppid", p.ppid}, {"comm", p.comm}};
    if (p.exit_code) jp["exit_code"] = *p.exit_code;
    procs.push_back(std::move(jp));
  }
  json j = {
      {"schema", kTraceSchema},
      {"schema_version", kTraceSchemaVersion},
      {"image", t.image},
      {"manifest_digest", t.manifest_digest},
      {"tracer", t.tracer},
      {"runtime", t.runtime},
      {"command", t.command},
      {"files", std::move(files)},
      {"execs", std::move(execs)},
      {"processes", std::move(procs)},
      {"syscalls", {{"recorded", t.syscalls_recorded}, {"arch", t.seccomp_arch}, {"names", t.syscalls}}},
      {"events", t.events},
      {"repeated_lookups", t.repeated_lookups},
      {"dropped_events", t.dropped_events},
      {"limitations", t.limitations},
      {"stopped_by_slimtrace", t.stopped_by_slimtrace},
      {"duration_seconds", t.duration_seconds},
  };
  j["exit_code"] = t.exit_code ? json(*t.exit_code) : json(nullptr);
  return j;
}

Result<Trace> trace_from_json(const json& j) {
  if (!j.is_object()) return Error{"trace JSON is not an object"};
  SLIMTRACE_ASSIGN_OR_RETURN(int version, get_field<int>(j, "schema_version", 0));
  if (version != kTraceSchemaVersion)
    return Error{"trace JSON has schema_version " + std::to_string(version) +
                 "; this slimtrace reads version " + std::to_string(kTraceSchemaVersion)};
  Trace t;
  SLIMTRACE_ASSIGN_OR_RETURN(t.image, get_field<std::string>(j, "image", ""));
  SLIMTRACE_ASSIGN_OR_RETURN(t.manifest_digest, get_field<std::string>(j, "manifest_digest", ""));
  SLIMTRACE_ASSIGN_OR_RETURN(t.tracer, get_field<std::string>(j, "tracer", ""));
  SLIMTRACE_ASSIGN_OR_RETURN(t.runtime, get_field<std::string>(j, "runtime", ""));
  SLIMTRACE_ASSIGN_OR_RETURN(t.command, get_field<std::vector<std::string>>(j, "command", {}));
  SLIMTRACE_ASSIGN_OR_RETURN(t.events, get_field<uint64_t>(j, "events", 0));
  SLIMTRACE_ASSIGN_OR_RETURN(t.repeated_lookups, get_field<uint64_t>(j, "repeated_lookups", 0));
  SLIMTRACE_ASSIGN_OR_RETURN(t.dropped_events, get_field<uint64_t>(j, "dropped_events", 0));
  SLIMTRACE_ASSIGN_OR_RETURN(t.limitations, get_field<std::vector<std::string>>(j, "limitations", {}));
  SLIMTRACE_ASSIGN_OR_RETURN(t.stopped_by_slimtrace, get_field<bool>(j, "stopped_by_slimtrace", false));
  SLIMTRACE_ASSIGN_OR_RETURN(t.duration_seconds, get_field<double>(j, "duration_seconds", 0.0));
  if (j.contains("exit_code") && j["exit_code"].is_number_integer()) t.exit_code = j["exit_code"].get<int>();
  if (j.contains("syscalls")) {
    const auto& s = j["syscalls"];
    if (!s.is_object()) return Error{"trace JSON: 'syscalls' is not an object"};
    SLIMTRACE_ASSIGN_OR_RETURN(t.syscalls_recorded, get_field<bool>(s, "recorded", false));
    SLIMTRACE_ASSIGN_OR_RETURN(t.seccomp_arch, get_field<std::string>(s, "arch", "SCMP_ARCH_X86_64"));
    SLIMTRACE_ASSIGN_OR_RETURN(t.syscalls, get_field<std::vector<std::string>>(s, "names", {}));
  }
  auto ops_of = [](const json& jf, const char* key) {
    uint32_t ops = 0;
    if (jf.contains(key) && jf[key].is_array())
      for (const auto& n : jf[key])
        if (n.is_string()) ops |= op_from_name(n.get<std::string>());
    return ops;
  };
  if (j.contains("files")) {
    if (!j["files"].is_array()) return Error{"trace JSON: 'files' is not an array"};
    for (const auto& jf : j["files"]) {
      if (!jf.is_object()) return Error{"trace JSON: a file record is not an object"};
      FileAccess f;
      SLIMTRACE_ASSIGN_OR_RETURN(f.path, get_field<std::string>(jf, "path", ""));
      if (f.path.empty() || f.path[0] != '/')
        return Error{"trace JSON: file path '" + f.path + "' is not absolute"};
      SLIMTRACE_ASSIGN_OR_RETURN(f.found, get_field<bool>(jf, "found", false));
      SLIMTRACE_ASSIGN_OR_RETURN(f.count, get_field<uint64_t>(jf, "count", 0));
      SLIMTRACE_ASSIGN_OR_RETURN(f.error, get_field<int>(jf, "errno", 0));
      f.ops = ops_of(jf, "ops");
      f.failed_ops = ops_of(jf, "failed_ops");
      t.files[f.path] = f;
    }
  }
  if (j.contains("execs")) {
    if (!j["execs"].is_array()) return Error{"trace JSON: 'execs' is not an array"};
    for (const auto& je : j["execs"]) {
      if (!je.is_object()) return Error{"trace JSON: an exec record is not an object"};
      ExecRecord e;
      SLIMTRACE_ASSIGN_OR_RETURN(e.pid, get_field<int>(je, "pid", 0));
      SLIMTRACE_ASSIGN_OR_RETURN(e.ppid, get_field<int>(je, "ppid", 0));
      SLIMTRACE_ASSIGN_OR_RETURN(e.path, get_field<std::string>(je, "path", ""));
      SLIMTRACE_ASSIGN_OR_RETURN(e.argv, get_field<std::vector<std::string>>(je, "argv", {}));
      SLIMTRACE_ASSIGN_OR_RETURN(e.error, get_field<int>(je, "errno", 0));
      t.execs.push_back(std::move(e));
    }
  }
  if (j.contains("processes")) {
    if (!j["processes"].is_array()) return Error{"trace JSON: 'processes' is not an array"};
    for (const auto& jp : j["processes"]) {
      if (!jp.is_object()) return Error{"trace JSON: a process record is not an object"};
      ProcessRecord p;
      SLIMTRACE_ASSIGN_OR_RETURN(p.pid, get_field<int>(jp, "pid", 0));
      SLIMTRACE_ASSIGN_OR_RETURN(p.ppid, get_field<int>(jp, "ppid", 0));
      SLIMTRACE_ASSIGN_OR_RETURN(p.comm, get_field<std::string>(jp, "comm", ""));
      if (jp.contains("exit_code") && jp["exit_code"].is_number_integer())
        p.exit_code = jp["exit_code"].get<int>();
      t.processes.push_back(std::move(p));
    }
  }
  return t;
}

}  // namespace slimtrace::tracer
