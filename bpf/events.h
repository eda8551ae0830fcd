/* Events shared by bpf/trace.bpf.c and tracer/src/ebpf_tracer.cpp. Plain C, fixed-width fields;
 * the BPF side sees the types from vmlinux.h, user space from <linux/types.h>. */
#ifndef SLIMTRACE_BPF_EVENTS_H
#define SLIMTRACE_BPF_EVENTS_H

/* Values of the `tracked` map: a descendant of the root, or the root user space followed. Both
 * leave the map once they run in the container (under its seccomp filter). */
#define ST_TRACKED_CHILD 1
#define ST_TRACKED_ROOT 2

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

/* Size limits. The data area of a path event holds, one after the other: the user path (NUL
 * terminated), the base directory components (leaf first, each NUL terminated), and for execs the
 * argv strings (each NUL terminated). */
#define ST_PATH_MAX 2048     /* user path string, including NUL */
#define ST_NAME_MAX 256      /* one dentry name, including NUL */
#define ST_BASE_MAX 2048     /* all base components together */
#define ST_BASE_DEPTH 48     /* dentries + mount crossings walked */
#define ST_ARGV_MAX 16       /* argv entries recorded */
#define ST_ARG_LEN 256       /* bytes per argv entry, including NUL */
#define ST_ARGV_BYTES 2048   /* all argv entries together */
#define ST_DATA_SIZE 12288   /* bounds every masked write above */
#define ST_MAX_SYSCALLS 512  /* syscall numbers recorded in the `syscalls` map */
#define ST_PID_LIMIT (1u << 22) /* the kernel's PID_MAX_LIMIT */

/* The tracer's state of a pid: two bits in the pid_state array of trace.bpf.c's .bss, which user
 * space sets through the mmapped .bss when it follows a process. */
#define ST_PID_FOLLOWED 1ull /* the process or one of its ancestors was followed */
#define ST_PID_INSIDE 2ull   /* ... and it runs in the container (under its seccomp filter) */
#define ST_PID_STATE_WORDS (ST_PID_LIMIT / 32u) /* u64 words, 32 pids each */

/* Where a pid's two bits are: 32 pids a word, in pid order. */
static inline __u32 st_pid_word(__u32 pid) { return pid >> 5; }
static inline __u32 st_pid_shift(__u32 pid) { return (pid & 31u) << 1; }

/* Same values as slimtrace::tracer::FileOp (ebpf_tracer.cpp checks it). */
#define ST_OP_OPEN (1u << 0)
#define ST_OP_EXEC (1u << 1)
#define ST_OP_STAT (1u << 2)
#define ST_OP_ACCESS (1u << 3)
#define ST_OP_READLINK (1u << 4)
#define ST_OP_LIST (1u << 5)
#define ST_OP_CHDIR (1u << 6)
#define ST_OP_MMAP (1u << 7)
#define ST_OP_CONNECT (1u << 8)
#define ST_OP_CREATE (1u << 9)  /* mkdir, mknod, symlink, bind: the path was made */
#define ST_OP_MODIFY (1u << 10) /* unlink, rename, chmod, chown, truncate, utimes */

enum st_event_kind {
  ST_EV_PATH = 1,   /* a path syscall's lookup (st_path_event), sent at the syscall's exit; a
                     * successful exec's by sched_process_exec, just before its ST_EV_EXEC */
  ST_EV_RET = 2,    /* its outcome (st_ret_event), right after it, paired by tid */
  ST_EV_EXEC = 3,   /* an exec succeeded (st_exec_event); pairs with the PATH of old_tid */
  ST_EV_FORK = 4,   /* a followed process created a process (st_fork_event) */
  ST_EV_EXIT = 5,   /* a followed process ended, all its threads gone (st_exit_event) */
  ST_EV_EXEC_FILE = 6, /* the file an exec really runs, symlinks and #! resolved (st_path_event,
                        * base_kind ST_BASE_TARGET); follows the ST_EV_EXEC it belongs to */
};

/* What the base directory of a path event is. */
enum st_base_kind {
  ST_BASE_NONE = 0,     /* absolute user path: no base needed */
  ST_BASE_DIR = 1,      /* base is the directory the relative user path starts from */
  ST_BASE_TARGET = 2,   /* base is the file itself (fd-based syscall or AT_EMPTY_PATH) */
};

/* Base walk result flags. */
#define ST_BASE_OK 1u          /* the walk reached the task's root */
#define ST_BASE_TRUNCATED 2u   /* too deep or too long */
#define ST_BASE_UNREACHABLE 4u /* the file is outside the task's root (pipe, socket, memfd...) */
#define ST_BASE_NOFD 8u        /* the fd was not open */

struct st_hdr {
  __u32 kind;
  __u32 pid; /* tgid, host pid namespace */
  __u32 tid;
  __u32 nr;  /* syscall number (PATH/RET) */
};

/* Identity of a path lookup, see st_path_event.key. */
struct st_key {
  __u64 h1;
  __u64 h2;
};

struct st_path_event {
  struct st_hdr h;
  __u32 op;         /* FileOp bit (slimtrace::tracer::FileOp) */
  __s32 dirfd;
  __u32 base_kind;  /* enum st_base_kind */
  __u32 base_flags; /* ST_BASE_* */
  __u16 path_len;   /* bytes of the user path including NUL; 0: none */
  __u16 base_len;   /* bytes of the base components */
  __u16 argv_len;   /* bytes of argv strings */
  __u16 argc;
  __u32 pad;
  /* Identity of (op, user path, base directory or target): a later lookup with the same key and
   * outcome is not reported again, only counted (the `seen` map). {0, 0}: not deduplicated
   * (execs, paths read at exit). A 128-bit hash: two different lookups share a key with a
   * probability of about n^2 / 2^129 for n distinct lookups. */
  struct st_key key;
  char data[ST_DATA_SIZE];
};

struct st_ret_event {
  struct st_hdr h;
  __s64 ret;
  __u32 pad;
  __u32 repeat;   /* no PATH event preceded: the path is the one reported earlier with `key` */
  struct st_key key; /* the key of the PATH event (or of the earlier one when `repeat`) */
};

/* Value of the `seen` map, keyed by st_path_event.key. */
struct st_seen {
  __u32 outcomes; /* ST_OUTCOME_* already reported for the key */
  __u32 pad;
  __u64 repeats;  /* lookups not reported because their key and outcome were */
};
#define ST_OUTCOME_OK 1u
#define ST_OUTCOME_FAILED 2u

struct st_exec_event {
  struct st_hdr h;
  __u32 old_tid;
  __u32 ppid;
  char comm[16];
  char filename[256]; /* bprm->filename, used when the PATH event was lost */
};

struct st_fork_event {
  struct st_hdr h; /* pid: the child */
  __u32 ppid;
  __u32 pad;
  char comm[16];
};

struct st_exit_event {
  struct st_hdr h;
  __s32 exit_code; /* wait status as the kernel keeps it: (code << 8) | signal */
  __u32 pad;
  char comm[16];
};

#endif
