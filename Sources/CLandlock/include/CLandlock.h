// Landlock (Linux >= 5.13) and a confined spawn for fleetsync's rsync sender, and its priority; openat2
// for the tree walk.
// Swift's Glibc has no Landlock syscalls, and a ruleset must be applied in the child between fork and
// exec, where no Swift code may run.
#ifndef FLEET_CLANDLOCK_H
#define FLEET_CLANDLOCK_H

#include <stdint.h>
#include <sys/types.h>

/// Run a file with `execve` (the program, and the ELF interpreter it names).
static const uint64_t FLEET_LL_EXECUTE = 1ULL << 0;
/// Read a file.
static const uint64_t FLEET_LL_READ_FILE = 1ULL << 2;
/// List a directory.
static const uint64_t FLEET_LL_READ_DIR = 1ULL << 3;

/// The Landlock ABI version the running kernel offers, or -1 with errno set (ENOSYS: not built in,
/// EOPNOTSUPP: not enabled at boot).
int fleet_landlock_abi(void);

/// Every filesystem access right Landlock ABI `abi` knows.
uint64_t fleet_landlock_fs_rights(int abi);

/// A new ruleset that handles (denies unless a rule allows) the filesystem rights `handled`;
/// -1 with errno on failure. The descriptor is close-on-exec.
int fleet_landlock_ruleset(uint64_t handled);

/// Allows `access` on the file, or beneath the directory, that `fd` (an `O_PATH` descriptor) names.
/// 0, or -1 with errno.
int fleet_landlock_allow(int ruleset, int fd, uint64_t access);

/// `open(path, O_PATH | O_CLOEXEC)`: a descriptor naming the file (following symlinks) for a rule.
int fleet_open_path(const char *path);

/// `pipe2(fds, O_CLOEXEC)`: 0, or -1 with errno.
int fleet_pipe_cloexec(int fds[2]);

/// What failed in a child of `fleet_spawn` before its program ran.
enum fleet_spawn_step {
  FLEET_SPAWN_OK = 0,
  /// Setting up standard input, output or error.
  FLEET_SPAWN_STDIO = 1,
  /// `PR_SET_NO_NEW_PRIVS` or `landlock_restrict_self`.
  FLEET_SPAWN_CONFINE = 2,
  /// `execve`.
  FLEET_SPAWN_EXEC = 3,
};

/// Starts `path` with `argv` and `envp`, its standard streams on `in_fd`, `out_fd` and `err_fd`, every
/// signal at its default action and no other descriptor open. With `ruleset >= 0` the child sets
/// no-new-privileges and restricts itself to `ruleset` before `execve`; it never runs unconfined.
/// With `background` non-zero it takes `fleet_background_priority` before `execve` (best effort).
///
/// Returns 0 with `*pid` set, or an errno with `*step` saying what failed (the child is reaped).
int fleet_spawn(
    pid_t *pid, int *step, const char *path, char *const argv[], char *const envp[], int in_fd, int out_fd,
    int err_fd, int ruleset, int background);

/// `openat2(root_fd, path, {O_RDONLY | O_DIRECTORY | O_CLOEXEC, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
/// RESOLVE_NO_MAGICLINKS})` (Linux >= 5.6): the directory `path` beneath `root_fd`, reached without
/// following any symlink and without leaving it. A descriptor, or -1 with errno (ELOOP: a symlink on
/// the way, EXDEV: a way out, ENOSYS/EPERM: no openat2 here, EAGAIN: a rename raced the lookup).
int fleet_open_dir_beneath(int root_fd, const char *path);

/// Gives the calling thread a working directory of its own (`unshare(CLONE_FS)`), so that it may
/// `fchdir` without moving any other thread's. 0, or -1 with errno (EPERM under a seccomp filter).
int fleet_private_working_directory(void);

/// `openat(parent_fd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)`: a directory entry of
/// one component as a path descriptor (cheaper than a readable one; enough to `fchdir`, `fstat` and
/// open `.` from), never a symlink (ENOTDIR). A descriptor, or -1 with errno.
int fleet_open_subdirectory_path(int parent_fd, const char *name);

/// `fstatfs(fd).f_type`: the type of the filesystem `fd` is on, or 0 (with errno) when unknown.
long fleet_filesystem_type(int fd);

/// Lowers process `pid` (0: the calling thread) to background priority: nice 10, and the lowest level (7) of the best-effort
/// I/O class (`ioprio_set`, which Glibc does not wrap). The idle I/O class is not used: on a busy disk
/// it could hold a full sync back for good. 0, or an errno (of the first step that failed).
int fleet_background_priority(pid_t pid);

/// `fleet_background_priority` for the calling thread only.
int fleet_background_priority_this_thread(void);

#endif
