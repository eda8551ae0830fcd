// SPDX-License-Identifier: GPL-2.0
/* slimtrace's tracer: follows one container's process tree (seeded by user space with the
 * container init's host pid) and reports the paths its syscalls look up, its execs, forks and
 * exits, and the set of syscall numbers it makes once a seccomp filter is active.
 *
 * Only tracepoints are used (tp_btf sys_exit and sched_*): fentry, kprobes and BPF-LSM are
 * unavailable on many hosts.
 *
 * Cost: any syscall tracepoint in use sends every syscall on the host down the kernel's slow path
 * and through the tracepoint, so the tracer hooks one: the exit. There a syscall's number, its
 * arguments (the saved user registers) and its result are all known, so one program run per
 * syscall records the syscall set and, for path syscalls, the path with its outcome; an entry hook
 * as well would cost every host syscall more (bench/hook_floor measures both). Processes that are
 * not followed leave after one bit test in a pid bitmap. Two syscalls never return: exit and
 * exit_group are recorded by sched_process_exit, and rt_sigreturn, which restores orig_ax to -1,
 * is told by that. A lookup repeated with the same path, op and outcome (a web server opening the
 * file it serves) is reported once and then only counted in the `seen` map. */
#include "vmlinux.h"

#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "events.h"

char LICENSE[] SEC("license") = "GPL";

#define AT_FDCWD -100
#define AT_EMPTY_PATH 0x1000
#define MAP_ANONYMOUS 0x20
#define AF_UNIX 1
#define SECCOMP_MODE_FILTER 2

/* x86_64 syscall numbers of the path syscalls. */
#define NR_open 2
#define NR_stat 4
#define NR_lstat 6
#define NR_mmap 9
#define NR_access 21
#define NR_connect 42
#define NR_execve 59
#define NR_chdir 80
#define NR_fchdir 81
#define NR_creat 85
#define NR_readlink 89
#define NR_getdents64 217
#define NR_openat 257
#define NR_newfstatat 262
#define NR_readlinkat 267
#define NR_faccessat 269
#define NR_execveat 322
#define NR_statx 332
#define NR_openat2 437
#define NR_faccessat2 439
#define NR_truncate 76
#define NR_rename 82
#define NR_mkdir 83
#define NR_rmdir 84
#define NR_link 86
#define NR_unlink 87
#define NR_symlink 88
#define NR_chmod 90
#define NR_chown 92
#define NR_lchown 94
#define NR_mknod 133
#define NR_bind 49
#define NR_mkdirat 258
#define NR_mknodat 259
#define NR_fchownat 260
#define NR_unlinkat 263
#define NR_renameat 264
#define NR_linkat 265
#define NR_symlinkat 266
#define NR_fchmodat 268
#define NR_utimensat 280
#define NR_renameat2 316
#define NR_rt_sigreturn 15
#define NR_exit 60
#define NR_exit_group 231
#define ENOSYS 38
/* "/dev/fd/" as a little-endian word: the name the kernel gives an exec of an fd */
#define ST_DEV_FD_PREFIX 0x2f64662f7665642full

struct {
  __uint(type, BPF_MAP_TYPE_RINGBUF);
  __uint(max_entries, 8 << 20);
} events SEC(".maps");

/* Followed processes (tgid, host pid namespace) not yet inside the container: the root and the
 * runtime's helpers. Per skeleton instance, so concurrent traces never share it. */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 16384);
  __type(key, __u32);
  __type(value, __u32);
} tracked SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct st_path_event);
} scratch SEC(".maps");

/* Syscall numbers made under an active seccomp filter: one byte each, no event per syscall. */
struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, ST_MAX_SYSCALLS);
  __type(key, __u32);
  __type(value, __u8);
} syscalls SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, __u64);
} dropped SEC(".maps");

/* Path lookups already reported, by st_path_event.key. Not LRU: user space adds the repeats
 * counted here to the files' counts at the end, so an entry must not vanish; when the map is full,
 * new keys are simply reported every time. Allocated as used; user space caps the entries so that
 * the per-CPU values stay small. Per CPU because a server repeats the same lookups on every CPU:
 * one shared counter moved between the CPUs' caches on each of them (about 100 ns here). A key is
 * then reported once per CPU and outcome, and user space counts those like any other lookup. */
struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_HASH);
  __uint(max_entries, 65536);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, struct st_key);
  __type(value, struct st_seen);
} seen SEC(".maps");

/* Two bits per pid (ST_PID_FOLLOWED, ST_PID_INSIDE, at st_pid_word/st_pid_shift): the first test of
 * every syscall on the host, one load. User space sets ST_PID_FOLLOWED through the mmapped .bss. */
__u64 pid_state[ST_PID_STATE_WORDS];

/* The mask loses nothing (pids stay below ST_PID_LIMIT); it is what the verifier accepts as a
 * bound (clang moves a comparison away from the access). */
static __always_inline __u64 *pid_word(__u32 pid) {
  return &pid_state[st_pid_word(pid) & (ST_PID_STATE_WORDS - 1)];
}

static __always_inline __u64 state_of(__u32 pid) { return (*pid_word(pid) >> st_pid_shift(pid)) & 3; }

static __always_inline void set_state(__u32 pid, __u64 bits) {
  __sync_fetch_and_or(pid_word(pid), bits << st_pid_shift(pid));
}

static __always_inline void clear_state(__u32 pid) {
  __sync_fetch_and_and(pid_word(pid), ~(3ull << st_pid_shift(pid)));
}

static __always_inline void count_drop(void) {
  __u32 zero = 0;
  __u64 *n = bpf_map_lookup_elem(&dropped, &zero);
  if (n) *n += 1;
}

/* Waking the reader on every event costs the traced process an irq_work per syscall; the reader
 * polls with a timeout anyway, so wake it only once a good part of the buffer is filled. */
static __always_inline __u64 wakeup_flags(void) {
  return bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) > (1 << 20) ? BPF_RB_FORCE_WAKEUP
                                                                  : BPF_RB_NO_WAKEUP;
}


/* The seccomp filter the followed root had when it was first seen. The root is the runtime's
 * `create` process, followed before it execs; a task belongs to the container once its filter
 * differs from this one, i.e. from the moment the runtime successfully loaded the container's
 * filter (runc's probing seccomp calls fail and load nothing). Comparing pointers rather than
 * checking "mode == filter" also works when slimtrace itself runs under a seccomp filter. */
struct root_filter {
  __u64 ptr;
  __u32 set;
  __u32 pad;
};

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct root_filter);
} baseline SEC(".maps");

static __always_inline void note_root(struct task_struct *task, __u32 tgid) {
  __u32 *v = bpf_map_lookup_elem(&tracked, &tgid);
  if (!v || *v != ST_TRACKED_ROOT) return;
  __u32 zero = 0;
  struct root_filter *b = bpf_map_lookup_elem(&baseline, &zero);
  if (!b || b->set) return;
  b->ptr = (__u64)BPF_CORE_READ(task, seccomp.filter);
  b->set = 1;
}

static __always_inline int filter_in_container(__u64 f) {
  __u32 zero = 0;
  struct root_filter *b = bpf_map_lookup_elem(&baseline, &zero);
  if (!b || !b->set) return 0;
  return f != 0 && f != b->ptr;
}

static __always_inline int in_container(struct task_struct *task) {
  return filter_in_container((__u64)BPF_CORE_READ(task, seccomp.filter));
}

/* Followed, but not yet known to be inside: the runtime before it loads the container's filter. */
static __noinline int followed_slow(__u32 tgid) {
  __u32 *v = bpf_map_lookup_elem(&tracked, &tgid);
  if (!v) return 0;
  struct task_struct *task = (struct task_struct *)bpf_get_current_task();
  note_root(task, tgid);
  if (!in_container(task)) return 0;
  /* From here on the inside bit says it all; without an entry, exit has no hash delete to do
   * (for a forking server, that delete was a third of the exit program's time). */
  set_state(tgid, ST_PID_INSIDE);
  bpf_map_delete_elem(&tracked, &tgid);
  return 1;
}

/* The hot path of every syscall on the host: a bit test, and a second one for followed processes.
 * Whether a process runs in the container is remembered (a filter can never be removed, and by
 * sched_process_exit the kernel has already dropped it), so the filter is compared only until
 * the process is inside. */
static __always_inline int followed_in_container(__u32 tgid) {
  __u64 state = state_of(tgid);
  if (!state) return 0;
  if (state & ST_PID_INSIDE) return 1;
  return followed_slow(tgid);
}

/* Called only for tasks in_container(). */
static __always_inline void record_syscall(long nr) {
  if (nr < 0 || nr >= ST_MAX_SYSCALLS) return;
  __u32 key = (__u32)nr;
  __u8 *seen = bpf_map_lookup_elem(&syscalls, &key);
  if (seen && !*seen) *seen = 1;
}

static __always_inline int is_path_syscall(long nr) {
  switch (nr) {
    case NR_open: case NR_stat: case NR_lstat: case NR_mmap: case NR_access: case NR_connect:
    case NR_execve: case NR_chdir: case NR_fchdir: case NR_creat: case NR_readlink:
    case NR_getdents64: case NR_openat: case NR_newfstatat: case NR_readlinkat:
    case NR_faccessat: case NR_execveat: case NR_statx: case NR_openat2: case NR_faccessat2:
    case NR_truncate: case NR_rename: case NR_mkdir: case NR_rmdir: case NR_link: case NR_unlink:
    case NR_symlink: case NR_chmod: case NR_chown: case NR_lchown: case NR_mknod: case NR_bind:
    case NR_mkdirat: case NR_mknodat: case NR_fchownat: case NR_unlinkat: case NR_renameat:
    case NR_linkat: case NR_symlinkat: case NR_fchmodat: case NR_utimensat: case NR_renameat2:
      return 1;
    default:
      return 0;
  }
}

static __always_inline struct file *fd_file(struct task_struct *task, int fd) {
  if (fd < 0) return 0;
  struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
  if (!fdt) return 0;
  unsigned int max = BPF_CORE_READ(fdt, max_fds);
  if ((unsigned int)fd >= max) return 0;
  struct file **fds = BPF_CORE_READ(fdt, fd);
  struct file *f = 0;
  bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]);
  return f;
}

/* Writes the names from `dentry` up to the task's root, leaf first, each NUL terminated, crossing
 * mount points the way d_path does; sets e->base_flags and e->base_len. Returns the new write
 * position. A global function so the verifier checks the loop once, not once per caller path;
 * kernel pointers travel as scalars because they come from probe reads. */
__noinline int walk_path(struct st_path_event *e, __u32 pos, __u64 dentry_ptr, __u64 vfsmnt_ptr) {
  if (!e) return 0;
  struct task_struct *task = (struct task_struct *)bpf_get_current_task();
  struct dentry *dentry = (struct dentry *)dentry_ptr;
  struct vfsmount *vfsmnt = (struct vfsmount *)vfsmnt_ptr;
  struct path root = {};
  BPF_CORE_READ_INTO(&root, task, fs, root);
  __u64 mnt_off = bpf_core_field_offset(struct mount, mnt);
  __u32 start = pos & 4095;
  pos = start;

  for (int i = 0; i < ST_BASE_DEPTH; i++) {
    if (dentry == root.dentry && vfsmnt == root.mnt) {
      e->base_flags |= ST_BASE_OK;
      goto out;
    }
    struct dentry *mnt_root = BPF_CORE_READ(vfsmnt, mnt_root);
    if (dentry == mnt_root) {
      struct mount *mnt = (struct mount *)((char *)vfsmnt - mnt_off);
      struct mount *parent = BPF_CORE_READ(mnt, mnt_parent);
      if (!parent || parent == mnt) {
        e->base_flags |= ST_BASE_UNREACHABLE;
        goto out;
      }
      dentry = BPF_CORE_READ(mnt, mnt_mountpoint);
      vfsmnt = (struct vfsmount *)((char *)parent + mnt_off);
      continue;
    }
    struct dentry *up = BPF_CORE_READ(dentry, d_parent);
    if (!up || up == dentry) {
      e->base_flags |= ST_BASE_UNREACHABLE;
      goto out;
    }
    if (pos - start > ST_BASE_MAX - ST_NAME_MAX) break;
    const unsigned char *name = BPF_CORE_READ(dentry, d_name.name);
    long n = bpf_probe_read_kernel_str(&e->data[pos & 4095], ST_NAME_MAX, name);
    if (n <= 0) break;
    pos += (__u32)n;
    dentry = up;
  }
  e->base_flags |= ST_BASE_TRUNCATED;
out:
  e->base_len = (__u16)(pos - start);
  return (int)pos;
}

/* Appends up to ST_ARGV_MAX argv strings; sets e->argc and e->argv_len. */
__noinline int read_argv(struct st_path_event *e, __u32 pos, __u64 argv_ptr) {
  if (!e) return 0;
  const char *const *argv = (const char *const *)argv_ptr;
  __u32 start = pos & 8191;
  pos = start;
  e->argc = 0;
  for (int i = 0; i < ST_ARGV_MAX && argv; i++) {
    const char *arg = 0;
    if (bpf_probe_read_user(&arg, sizeof(arg), &argv[i]) || !arg) break;
    if (pos - start > ST_ARGV_BYTES - ST_ARG_LEN) break;
    long n = bpf_probe_read_user_str(&e->data[pos & 8191], ST_ARG_LEN, arg);
    if (n <= 0) break;
    pos += (__u32)n;
    e->argc++;
  }
  e->argv_len = (__u16)(pos - start);
  return (int)pos;
}

/* Hashes the user path (len bytes at e->data, NUL included) with two seeds into e->key. Reads
 * whole words: bytes past the string are left over from earlier events and masked out. */
__noinline int hash_key(struct st_path_event *e, __u32 len, __u64 s1, __u64 s2) {
  if (!e) return 0;
  __u64 h1 = s1 ^ 0x9e3779b97f4a7c15ull, h2 = s2 ^ 0xc2b2ae3d27d4eb4full;
  if (len > ST_PATH_MAX) len = ST_PATH_MAX;
  for (__u32 i = 0; i < ST_PATH_MAX / 8; i++) {
    __u32 off = i * 8;
    if (off >= len) break;
    __u64 w = *(__u64 *)&e->data[off & (ST_PATH_MAX - 8)];
    __u32 left = len - off;
    if (left < 8) w &= (1ull << (left * 8)) - 1;
    h1 = (h1 ^ w) * 0xff51afd7ed558ccdull;
    h1 ^= h1 >> 32;
    h2 = (h2 + w) * 0xc4ceb9fe1a85ec53ull;
    h2 = (h2 << 27) | (h2 >> 37);
  }
  h1 ^= len;
  h2 ^= (__u64)len << 32;
  /* murmur3's finaliser on each */
  h1 ^= h1 >> 33; h1 *= 0xff51afd7ed558ccdull; h1 ^= h1 >> 33; h1 *= 0xc4ceb9fe1a85ec53ull; h1 ^= h1 >> 33;
  h2 ^= h2 >> 33; h2 *= 0xc4ceb9fe1a85ec53ull; h2 ^= h2 >> 33; h2 *= 0xff51afd7ed558ccdull; h2 ^= h2 >> 33;
  e->key.h1 = h1;
  e->key.h2 = h2 | 1; /* never {0, 0} */
  return 0;
}

static __always_inline __u64 mix64(__u64 x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  return x;
}

/* The dentry's parent and name hash, for the key: one read where they are neighbours, as in every
 * kernel so far (d_parent, then d_name). */
static __always_inline void dentry_identity(struct dentry *d, __u64 *parent, __u64 *name) {
  if (bpf_core_field_offset(struct dentry, d_name) == bpf_core_field_offset(struct dentry, d_parent) + 8) {
    __u64 both[2] = {};
    bpf_core_read(both, sizeof(both), &d->d_parent);
    *parent = both[0];
    *name = both[1];
  } else {
    *parent = (__u64)BPF_CORE_READ(d, d_parent);
    *name = BPF_CORE_READ(d, d_name.hash_len);
  }
}

/* fstat(2) as glibc makes it since 2.33: newfstatat(fd, "", AT_EMPTY_PATH) (statx likewise, and
 * with a NULL path since 6.11). That looks nothing up: the file was found when the fd was opened,
 * which was recorded then, so it is left out like fstat(2) itself. A server does it for each file it
 * serves, which made it a third of nginx's path syscalls per request. One byte is read to tell. */
static __always_inline int stats_the_fd_itself(const char *upath, unsigned long at_flags) {
  if (!(at_flags & AT_EMPTY_PATH)) return 0;
  char first = 0;
  if (!upath) return 1;
  if (bpf_probe_read_user(&first, 1, upath)) return 0; /* unreadable: left to the path read */
  return first == 0;
}

/* A path event's fixed part, nothing in its data area yet. */
static __always_inline void start_path_event(struct st_path_event *e, __u32 kind, __u32 tgid, __u32 tid,
                                             __u32 nr, __u32 op, int dirfd, __u32 base_kind) {
  e->h.kind = kind;
  e->h.pid = tgid;
  e->h.tid = tid;
  e->h.nr = nr;
  e->op = op;
  e->dirfd = dirfd;
  e->base_kind = base_kind;
  e->base_flags = 0;
  e->path_len = 0;
  e->base_len = 0;
  e->argv_len = 0;
  e->argc = 0;
  e->pad = 0;
  e->key.h1 = 0;
  e->key.h2 = 0;
}

/* Interrupted syscalls (the container was stopped while one blocked) did find their path; user
 * space counts them as successes too. */
static __always_inline __u32 outcome_of(long ret) {
  if (ret >= 0 || ret < -4095 || ret == -4 /* EINTR */ || (ret <= -512 && ret >= -516))
    return ST_OUTCOME_OK;
  return ST_OUTCOME_FAILED;
}

/* The outcome of a lookup: after its PATH event (repeat 0), or alone for a known key with an
 * outcome not reported before (repeat 1: user space has the path under the key). */
static __always_inline int send_ret(__u32 tgid, __u32 tid, long nr, long ret, struct st_key *key,
                                    __u32 repeat) {
  struct st_ret_event *r = bpf_ringbuf_reserve(&events, sizeof(*r), 0);
  if (!r) {
    count_drop();
    return -1;
  }
  r->h.kind = ST_EV_RET;
  r->h.pid = tgid;
  r->h.tid = tid;
  r->h.nr = (__u32)nr;
  r->ret = ret;
  r->pad = 0;
  r->repeat = repeat;
  r->key = *key;
  bpf_ringbuf_submit(r, wakeup_flags());
  return 0;
}

/* A path syscall of a followed process has returned: its arguments are still in the saved user
 * registers and its path in the caller's memory (the kernel has just read it, so the page is
 * there), and its outcome is known. The lookup is sent with its outcome, or only counted when the
 * same lookup with the same outcome was sent before. */
static __always_inline void path_syscall(struct pt_regs *regs, long nr, long ret, __u32 tgid, __u32 tid) {
  /* a successful exec is reported by sched_process_exec: the caller's memory is gone by now */
  if ((nr == NR_execve || nr == NR_execveat) && ret == 0) return;
  struct task_struct *task = bpf_get_current_task_btf();

  unsigned long a0 = regs->di, a1 = regs->si;
  __u32 op = 0;
  int dirfd = AT_FDCWD;
  int target_fd = -1; /* fd-based syscall: the fd's file is the path */
  int target_cwd = 0; /* the new working directory is the path */
  const char *upath = 0;
  const char *const *argv = 0;
  unsigned long at_flags = 0;
  char sun_path_ok = 0;

  switch (nr) {
    case NR_open: case NR_creat: op = ST_OP_OPEN; upath = (const char *)a0; break;
    case NR_openat: case NR_openat2: op = ST_OP_OPEN; dirfd = (int)a0; upath = (const char *)a1; break;
    case NR_execve:
      op = ST_OP_EXEC; upath = (const char *)a0; argv = (const char *const *)a1; break;
    case NR_execveat:
      op = ST_OP_EXEC; dirfd = (int)a0; upath = (const char *)a1;
      argv = (const char *const *)regs->dx;
      at_flags = regs->r8;
      break;
    case NR_stat: case NR_lstat: op = ST_OP_STAT; upath = (const char *)a0; break;
    case NR_newfstatat:
      op = ST_OP_STAT; dirfd = (int)a0; upath = (const char *)a1; at_flags = regs->r10;
      if (stats_the_fd_itself(upath, at_flags)) return;
      break;
    case NR_statx:
      op = ST_OP_STAT; dirfd = (int)a0; upath = (const char *)a1; at_flags = regs->dx;
      if (stats_the_fd_itself(upath, at_flags)) return;
      break;
    case NR_access: op = ST_OP_ACCESS; upath = (const char *)a0; break;
    case NR_faccessat: op = ST_OP_ACCESS; dirfd = (int)a0; upath = (const char *)a1; break;
    case NR_faccessat2:
      op = ST_OP_ACCESS; dirfd = (int)a0; upath = (const char *)a1; at_flags = regs->r10;
      break;
    case NR_readlink: op = ST_OP_READLINK; upath = (const char *)a0; break;
    /* readlinkat with an empty path reads the link the fd refers to */
    case NR_readlinkat:
      op = ST_OP_READLINK; dirfd = (int)a0; upath = (const char *)a1; at_flags = AT_EMPTY_PATH; break;
    case NR_chdir:
      op = ST_OP_CHDIR;
      /* done, it moved the directory a relative path started from: the new one is the path */
      if (ret == 0) target_cwd = 1;
      else upath = (const char *)a0;
      break;
    case NR_fchdir: op = ST_OP_CHDIR; target_fd = (int)a0; break;
    case NR_getdents64: op = ST_OP_LIST; target_fd = (int)a0; break;
    case NR_mmap: {
      unsigned long flags = regs->r10;
      int fd = (int)regs->r8;
      if ((flags & MAP_ANONYMOUS) || fd < 0) return;
      op = ST_OP_MMAP; target_fd = fd;
      break;
    }
    /* Paths made: their directory must exist in the minified image (mkdir of a cache dir at start). */
    case NR_mkdir: case NR_mknod: op = ST_OP_CREATE; upath = (const char *)a0; break;
    case NR_mkdirat: case NR_mknodat: op = ST_OP_CREATE; dirfd = (int)a0; upath = (const char *)a1; break;
    case NR_symlink: op = ST_OP_CREATE; upath = (const char *)a1; break;
    case NR_symlinkat: op = ST_OP_CREATE; dirfd = (int)a1; upath = (const char *)regs->dx; break;
    /* Paths changed: they existed, so they are needed (for rename and link the source; the target
     * usually sits in the same directory). */
    case NR_truncate: case NR_rename: case NR_rmdir: case NR_link: case NR_unlink: case NR_chmod:
    case NR_chown: case NR_lchown:
      op = ST_OP_MODIFY; upath = (const char *)a0; break;
    case NR_fchownat: case NR_unlinkat: case NR_renameat: case NR_linkat: case NR_fchmodat:
    case NR_renameat2:
      op = ST_OP_MODIFY; dirfd = (int)a0; upath = (const char *)a1; break;
    case NR_utimensat:
      if (!a1) return; /* NULL path: the fd itself (futimens) */
      op = ST_OP_MODIFY; dirfd = (int)a0; upath = (const char *)a1; break;
    case NR_bind: {
      __u16 family = 0;
      char first = 0;
      if (!a1 || bpf_probe_read_user(&family, sizeof(family), (void *)a1) || family != AF_UNIX) return;
      if (bpf_probe_read_user(&first, 1, (char *)a1 + 2) || first == 0) return;
      op = ST_OP_CREATE; upath = (const char *)a1 + 2; sun_path_ok = 1;
      break;
    }
    case NR_connect: {
      __u16 family = 0;
      char first = 0;
      if (!a1 || bpf_probe_read_user(&family, sizeof(family), (void *)a1) || family != AF_UNIX) return;
      /* abstract sockets (leading NUL) are not files */
      if (bpf_probe_read_user(&first, 1, (char *)a1 + 2) || first == 0) return;
      op = ST_OP_CONNECT; upath = (const char *)a1 + 2; sun_path_ok = 1;
      break;
    }
    default:
      return;
  }

  __u32 zero = 0;
  struct st_path_event *e = bpf_map_lookup_elem(&scratch, &zero);
  if (!e) return;
  start_path_event(e, ST_EV_PATH, tgid, tid, (__u32)nr, op, dirfd, ST_BASE_NONE);

  __u32 pos = 0;
  e->data[0] = 0;
  if (upath) {
    /* sun_path is at most 108 bytes and need not be NUL terminated */
    long n = bpf_probe_read_user_str(e->data, sun_path_ok ? 108 : ST_PATH_MAX, upath);
    if (n <= 0) {
      /* The kernel could not read it either (EFAULT: nothing was looked up), or it was unmapped
       * since: then a lookup is missing from the trace, and says so. */
      if (outcome_of(ret) == ST_OUTCOME_OK) count_drop();
      return;
    }
    pos = (__u32)n;
    e->path_len = (__u16)n;
  }

  struct path base = {};
  int want_base = 0;
  if (target_fd >= 0) {
    struct file *f = fd_file(task, target_fd);
    if (!f) return; /* EBADF: nothing was looked up */
    BPF_CORE_READ_INTO(&base, f, f_path);
    e->base_kind = ST_BASE_TARGET;
    want_base = 1;
  } else if (target_cwd || e->data[0] != '/') {
    int empty = e->data[0] == 0;
    e->base_kind = (target_cwd || (empty && (at_flags & AT_EMPTY_PATH))) ? ST_BASE_TARGET : ST_BASE_DIR;
    if (target_cwd || dirfd == AT_FDCWD) {
      struct fs_struct *fs = task->fs;
      bpf_core_read(&base, sizeof(base), &fs->pwd);
    } else {
      struct file *f = fd_file(task, dirfd);
      if (!f) {
        e->base_flags |= ST_BASE_NOFD;
      } else {
        BPF_CORE_READ_INTO(&base, f, f_path);
      }
    }
    want_base = base.dentry != 0;
  }

  __u32 outcome = outcome_of(ret);
  /* Execs are all reported (argv, process tree). */
  if (op != ST_OP_EXEC) {
    /* The base enters the key by identity: the dentry and mount, and the dentry's parent and
     * name, so that a dentry freed and reused elsewhere does not pass for the old one. */
    __u64 parent = 0, name = 0;
    if (want_base) dentry_identity(base.dentry, &parent, &name);
    __u64 s1 = mix64(((__u64)op << 8 | e->base_kind | (__u64)e->base_flags << 32) ^ (__u64)base.dentry);
    __u64 s2 = mix64((__u64)base.mnt ^ mix64(parent ^ mix64(name)));
    hash_key(e, e->path_len, s1, s2);
    struct st_seen *s = bpf_map_lookup_elem(&seen, &e->key);
    if (s) {
      if (s->outcomes & outcome) {
        __sync_fetch_and_add(&s->repeats, 1);
        return;
      }
      if (send_ret(tgid, tid, nr, ret, &e->key, 1) == 0) __sync_fetch_and_or(&s->outcomes, outcome);
      return;
    }
  }
  if (want_base) pos = (__u32)walk_path(e, pos, (__u64)base.dentry, (__u64)base.mnt);
  if (argv) pos = (__u32)read_argv(e, pos, (__u64)argv);

  if (bpf_ringbuf_output(&events, e, offsetof(struct st_path_event, data) + (pos & 8191), wakeup_flags())) {
    count_drop();
    return;
  }
  if (send_ret(tgid, tid, nr, ret, &e->key, 0) != 0 || op == ST_OP_EXEC) return;
  /* Only what user space has received may be left out next time. */
  struct st_seen fresh = {.outcomes = outcome};
  if (bpf_map_update_elem(&seen, &e->key, &fresh, BPF_NOEXIST) != 0) {
    struct st_seen *s = bpf_map_lookup_elem(&seen, &e->key); /* raced, or the map is full */
    if (s) __sync_fetch_and_or(&s->outcomes, outcome);
  }
}

/* The one syscall hook: every syscall on the host runs it on its way back to user space. */
SEC("tp_btf/sys_exit")
int BPF_PROG(on_sys_exit, struct pt_regs *regs, long ret) {
  __u64 id = bpf_get_current_pid_tgid();
  __u32 tgid = id >> 32;
  if (!followed_in_container(tgid)) return 0;
  long nr = regs->orig_ax;
  /* rt_sigreturn restores the interrupted user frame, and with it orig_ax = -1; no other syscall
   * returns with that (a tracer that skips a call sets it too, so then it counts as rt_sigreturn) */
  if (nr == -1) nr = NR_rt_sigreturn;
  record_syscall(nr);
  if (is_path_syscall(nr)) path_syscall(regs, nr, ret, tgid, (__u32)id);
  return 0;
}

/* exit and exit_group never return to sys_exit. A task that ends in one still has its syscall
 * frame: orig_ax the number and ax the -ENOSYS the entry put there (a task ending from an
 * exception's frame has the user's ax, and maybe an error code in orig_ax). */
static __always_inline void record_exit_call(struct task_struct *p) {
  struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(p);
  if (!regs) return;
  long nr = regs->orig_ax;
  if ((nr == NR_exit || nr == NR_exit_group) && (long)regs->ax == -ENOSYS) record_syscall(nr);
}

/* The path an exec was asked for, sent as the PATH event of the execve that the EXEC event ends
 * (user space pairs them by the old tid). The exit of a successful execve cannot send it: the
 * caller's memory is gone by then; the kernel's copy of the name is not. An execveat relative to a
 * directory fd has only a /dev/fd/N name, which is no file of the image: then the file executed
 * (ST_EV_EXEC_FILE) alone says what ran. */
static __always_inline void send_exec_path(struct st_path_event *f, struct task_struct *p, __u32 tgid,
                                           __u32 old_tid, struct linux_binprm *bprm) {
  start_path_event(f, ST_EV_PATH, tgid, old_tid, NR_execve, ST_OP_EXEC, AT_FDCWD, ST_BASE_NONE);
  long n = bpf_probe_read_kernel_str(f->data, ST_PATH_MAX, BPF_CORE_READ(bprm, filename));
  if (n <= 0) return;
  if (n > 8 && *(__u64 *)f->data == ST_DEV_FD_PREFIX) return;
  __u32 pos = (__u32)n;
  f->path_len = (__u16)n;
  if (f->data[0] != '/') {
    struct path base = {};
    bpf_core_read(&base, sizeof(base), &p->fs->pwd);
    f->base_kind = ST_BASE_DIR;
    if (base.dentry) pos = (__u32)walk_path(f, pos, (__u64)base.dentry, (__u64)base.mnt);
  }
  if (bpf_ringbuf_output(&events, f, offsetof(struct st_path_event, data) + (pos & 8191), wakeup_flags()))
    count_drop();
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(on_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm) {
  __u32 tgid = p->tgid;
  __u64 state = state_of(tgid);
  if (!state) return 0;
  if (!(state & ST_PID_INSIDE) && !filter_in_container((__u64)p->seccomp.filter)) return 0;
  __u32 zero = 0;
  struct st_path_event *f = bpf_map_lookup_elem(&scratch, &zero);
  if (!f) return 0;
  send_exec_path(f, p, tgid, (__u32)old_pid, bprm);

  struct st_exec_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
  if (!e) {
    count_drop();
    return 0;
  }
  e->h.kind = ST_EV_EXEC;
  e->h.pid = tgid;
  e->h.tid = BPF_CORE_READ(p, pid);
  e->h.nr = 0;
  e->old_tid = (__u32)old_pid;
  e->ppid = BPF_CORE_READ(p, real_parent, tgid);
  bpf_probe_read_kernel_str(e->comm, sizeof(e->comm), p->comm);
  const char *filename = BPF_CORE_READ(bprm, filename);
  if (bpf_probe_read_kernel_str(e->filename, sizeof(e->filename), filename) < 0) e->filename[0] = 0;
  bpf_ringbuf_submit(e, wakeup_flags());

  /* The file really executed: the execve path may be a symlink, /proc/self/exe or a #! script
   * whose interpreter the kernel opened without a syscall. */
  struct file *file = BPF_CORE_READ(bprm, file);
  if (!file) return 0;
  struct path fp = {};
  BPF_CORE_READ_INTO(&fp, file, f_path);
  start_path_event(f, ST_EV_EXEC_FILE, tgid, BPF_CORE_READ(p, pid), 0, ST_OP_EXEC, AT_FDCWD, ST_BASE_TARGET);
  __u32 pos = (__u32)walk_path(f, 0, (__u64)fp.dentry, (__u64)fp.mnt);
  /* argv as the new image got it: the kernel has just copied the strings to mm->arg_start, so these
   * pages are present, unlike the caller's strings at execve entry, which a forked child may not
   * have touched yet (a read there fails without faulting them in). */
  __u32 start = pos & 8191;
  struct mm_struct *mm = BPF_CORE_READ(p, mm);
  __u64 as = mm ? BPF_CORE_READ(mm, arg_start) : 0, ae = mm ? BPF_CORE_READ(mm, arg_end) : 0;
  __u64 len = ae > as ? ae - as : 0;
  if (len > ST_ARGV_BYTES - 1) len = ST_ARGV_BYTES - 1;
  if (len && bpf_probe_read_user(&f->data[start], len & (ST_ARGV_BYTES - 1), (const void *)as) == 0) {
    f->argv_len = (__u16)len;
  } else {
    len = 0;
  }
  __u64 end = start + len;
  if (end > ST_DATA_SIZE) end = ST_DATA_SIZE;
  if (bpf_ringbuf_output(&events, f, offsetof(struct st_path_event, data) + end, wakeup_flags()))
    count_drop();
  return 0;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(on_fork, struct task_struct *parent, struct task_struct *child) {
  __u32 ptgid = parent->tgid;
  __u64 pstate = state_of(ptgid);
  if (!pstate) return 0;
  __u32 ctgid = child->tgid;
  if (child->pid != (int)ctgid) return 0; /* a thread of a followed process */
  /* The runtime's own helper processes are followed (they become the container) but not reported.
   * Only those need a `tracked` entry: inside is for good, and the pid state says it. */
  int inside = (pstate & ST_PID_INSIDE) || filter_in_container((__u64)child->seccomp.filter);
  if (!inside) {
    __u32 state = ST_TRACKED_CHILD;
    bpf_map_update_elem(&tracked, &ctgid, &state, BPF_ANY);
  }
  set_state(ctgid, inside ? ST_PID_FOLLOWED | ST_PID_INSIDE : ST_PID_FOLLOWED);
  if (!inside) return 0;

  struct st_fork_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
  if (!e) {
    count_drop();
    return 0;
  }
  e->h.kind = ST_EV_FORK;
  e->h.pid = ctgid;
  e->h.tid = ctgid;
  e->h.nr = 0;
  e->ppid = child->real_parent->tgid;
  e->pad = 0;
  __builtin_memcpy(e->comm, child->comm, sizeof(e->comm));
  bpf_ringbuf_submit(e, wakeup_flags());
  return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(on_exit, struct task_struct *p) {
  __u32 tgid = p->tgid;
  __u64 state = state_of(tgid);
  if (!state) return 0;
  __u32 tid = p->pid;
  if (state & ST_PID_INSIDE) record_exit_call(p);
  /* signal->live drops to zero when the last thread of the process exits */
  if (p->signal->live.counter != 0) return 0;
  int inside = (state & ST_PID_INSIDE) != 0;
  clear_state(tgid);
  if (!inside) {
    bpf_map_delete_elem(&tracked, &tgid); /* processes inside have no entry */
    return 0;
  }

  struct st_exit_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
  if (!e) {
    count_drop();
    return 0;
  }
  e->h.kind = ST_EV_EXIT;
  e->h.pid = tgid;
  e->h.tid = tid;
  e->h.nr = 0;
  e->exit_code = p->exit_code;
  e->pad = 0;
  /* comm is always NUL terminated; copied as two words, without a helper call */
  __builtin_memcpy(e->comm, p->comm, sizeof(e->comm));
  bpf_ringbuf_submit(e, wakeup_flags());
  return 0;
}
