// Small BPF programs for the benchmarks, loaded with bpf(2) directly: nothing outside tracer/ uses
// libbpf. hook_floor attaches empty ones to price the hooks; tracer_bench counts syscalls per CPU.
// Errors are thrown (not exit()ed) so that the owners' destructors detach what was attached.
#pragma once

#include <linux/bpf.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "slimtrace/fd.hpp"

namespace bench {

// Detaching a program is closing its link or perf event: UniqueFd does it on scope exit.
using Fd = slimtrace::UniqueFd;

[[noreturn]] inline void fail(const std::string& what) {
  throw std::runtime_error(what + ": " + std::strerror(errno));
}

inline long sys_bpf(int cmd, union bpf_attr* attr) { return syscall(SYS_bpf, cmd, attr, sizeof(*attr)); }

inline Fd load_program(bpf_prog_type type, const std::vector<bpf_insn>& insns) {
  static const char license[] = "GPL";
  union bpf_attr attr {};
  attr.prog_type = type;
  attr.insns = reinterpret_cast<__u64>(insns.data());
  attr.insn_cnt = static_cast<__u32>(insns.size());
  attr.license = reinterpret_cast<__u64>(license);
  int fd = static_cast<int>(sys_bpf(BPF_PROG_LOAD, &attr));
  if (fd < 0) fail("loading a BPF program");
  return Fd(fd);
}

// r0 = 0; exit
inline Fd load_empty_program(bpf_prog_type type) {
  return load_program(
      type, {
                {.code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = 0, .src_reg = 0, .off = 0, .imm = 0},
                {.code = BPF_JMP | BPF_EXIT, .dst_reg = 0, .src_reg = 0, .off = 0, .imm = 0},
            });
}

// A program attached to a raw tracepoint, attached while this is alive.
struct RawTracepointHook {
  Fd prog, link;
};

inline RawTracepointHook attach_raw_tracepoint(Fd prog, const char* name) {
  union bpf_attr attr {};
  attr.raw_tracepoint.name = reinterpret_cast<__u64>(name);
  attr.raw_tracepoint.prog_fd = static_cast<__u32>(prog.get());
  int fd = static_cast<int>(sys_bpf(BPF_RAW_TRACEPOINT_OPEN, &attr));
  if (fd < 0) fail(std::string("attaching to raw tracepoint ") + name);
  return {std::move(prog), Fd(fd)};
}

// The number of possible CPUs: the highest in /sys/devices/system/cpu/possible ("0-3" or "0"), + 1.
inline size_t possible_cpus() {
  std::ifstream in("/sys/devices/system/cpu/possible");
  std::string text;
  if (!(in >> text)) fail("reading /sys/devices/system/cpu/possible");
  size_t last = text.find_last_of("-,");
  return static_cast<size_t>(std::stoul(last == std::string::npos ? text : text.substr(last + 1))) + 1;
}

// Counts the syscalls made on each CPU, host-wide, while alive: a per-CPU counter bumped by a
// program on the sys_enter raw tracepoint (the program itself adds to the syscalls it counts, so
// it is for counting runs, not for timed ones).
class SyscallCounter {
 public:
  SyscallCounter() {
    union bpf_attr attr {};
    attr.map_type = BPF_MAP_TYPE_PERCPU_ARRAY;
    attr.key_size = 4;
    attr.value_size = 8;
    attr.max_entries = 1;
    int fd = static_cast<int>(sys_bpf(BPF_MAP_CREATE, &attr));
    if (fd < 0) fail("creating a per-CPU BPF counter");
    map_ = Fd(fd);
    const auto mapfd = static_cast<__s32>(map_.get());
    // *(u32 *)(fp - 4) = 0; r0 = lookup(map, fp - 4); if (r0) *(u64 *)r0 += 1; return 0
    std::vector<bpf_insn> insns = {
        {.code = BPF_ST | BPF_MEM | BPF_W, .dst_reg = 10, .src_reg = 0, .off = -4, .imm = 0},
        {.code = BPF_LD | BPF_DW | BPF_IMM,
         .dst_reg = 1,
         .src_reg = BPF_PSEUDO_MAP_FD,
         .off = 0,
         .imm = mapfd},
        {.code = 0, .dst_reg = 0, .src_reg = 0, .off = 0, .imm = 0},
        {.code = BPF_ALU64 | BPF_MOV | BPF_X, .dst_reg = 2, .src_reg = 10, .off = 0, .imm = 0},
        {.code = BPF_ALU64 | BPF_ADD | BPF_K, .dst_reg = 2, .src_reg = 0, .off = 0, .imm = -4},
        {.code = BPF_JMP | BPF_CALL, .dst_reg = 0, .src_reg = 0, .off = 0, .imm = BPF_FUNC_map_lookup_elem},
        {.code = BPF_JMP | BPF_JEQ | BPF_K, .dst_reg = 0, .src_reg = 0, .off = 3, .imm = 0},
        {.code = BPF_LDX | BPF_MEM | BPF_DW, .dst_reg = 1, .src_reg = 0, .off = 0, .imm = 0},
        {.code = BPF_ALU64 | BPF_ADD | BPF_K, .dst_reg = 1, .src_reg = 0, .off = 0, .imm = 1},
        {.code = BPF_STX | BPF_MEM | BPF_DW, .dst_reg = 0, .src_reg = 1, .off = 0, .imm = 0},
        {.code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = 0, .src_reg = 0, .off = 0, .imm = 0},
        {.code = BPF_JMP | BPF_EXIT, .dst_reg = 0, .src_reg = 0, .off = 0, .imm = 0},
    };
    hook_ = attach_raw_tracepoint(load_program(BPF_PROG_TYPE_RAW_TRACEPOINT, insns), "sys_enter");
  }

  // Syscalls so far, indexed by CPU.
  std::vector<unsigned long long> per_cpu() const {
    // The kernel copies one 8-byte value per possible CPU.
    std::vector<unsigned long long> values(possible_cpus());
    __u32 key = 0;
    union bpf_attr attr {};
    attr.map_fd = static_cast<__u32>(map_.get());
    attr.key = reinterpret_cast<__u64>(&key);
    attr.value = reinterpret_cast<__u64>(values.data());
    if (sys_bpf(BPF_MAP_LOOKUP_ELEM, &attr) != 0) fail("reading the per-CPU BPF counter");
    return values;
  }

 private:
  Fd map_;
  RawTracepointHook hook_;
};

}  // namespace bench
