#define _GNU_SOURCE
#include "CLandlock.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

// The Landlock ABI, stable since Linux 5.13; declared here so that older kernel headers build too.
#ifndef SYS_landlock_create_ruleset
#define SYS_landlock_create_ruleset 444
#endif
#ifndef SYS_landlock_add_rule
#define SYS_landlock_add_rule 445
#endif
#ifndef SYS_landlock_restrict_self
#define SYS_landlock_restrict_self 446
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#define FLEET_LL_CREATE_RULESET_VERSION (1U << 0)
#define FLEET_LL_RULE_PATH_BENEATH 1
#define FLEET_CLOSE_RANGE_CLOEXEC (1U << 2)

struct fleet_ruleset_attr {
  uint64_t handled_access_fs;
};

struct fleet_path_beneath_attr {
  uint64_t allowed_access;
  int32_t parent_fd;
} __attribute__((packed));

int fleet_landlock_abi(void) {
  return (int)syscall(SYS_landlock_create_ruleset, NULL, 0, FLEET_LL_CREATE_RULESET_VERSION);
}

uint64_t fleet_landlock_fs_rights(int abi) {
  if (abi < 1) return 0;
  uint64_t rights = (1ULL << 13) - 1;  // ABI 1: execute ... make_sym
  if (abi >= 2) rights |= 1ULL << 13;  // refer
  if (abi >= 3) rights |= 1ULL << 14;  // truncate
  if (abi >= 5) rights |= 1ULL << 15;  // ioctl_dev
  return rights;
}

int fleet_landlock_ruleset(uint64_t handled) {
  struct fleet_ruleset_attr attr = {.handled_access_fs = handled};
  return (int)syscall(SYS_landlock_create_ruleset, &attr, sizeof attr, 0);
}

int fleet_landlock_allow(int ruleset, int fd, uint64_t access) {
  struct fleet_path_beneath_attr attr = {.allowed_access = access, .parent_fd = fd};
  return (int)syscall(SYS_landlock_add_rule, ruleset, FLEET_LL_RULE_PATH_BENEATH, &attr, 0);
}

int fleet_open_path(const char *path) { return open(path, O_PATH | O_CLOEXEC); }

int fleet_pipe_cloexec(int fds[2]) { return pipe2(fds, O_CLOEXEC); }

struct fleet_failure {
  int step;
  int error;
};

// Runs in the vfork child: async-signal-safe calls only, never returns.
static void fleet_child(
    int report, const char *path, char *const argv[], char *const envp[], int in_fd,
    int out_fd, int err_fd, int ruleset, int background) {
  struct fleet_failure failure = {FLEET_SPAWN_STDIO, 0};
  struct sigaction dfl;
  memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; sig++) (void)sigaction(sig, &dfl, NULL);
  int fds[3] = {in_fd, out_fd, err_fd};
  for (int target = 0; target < 3; target++) {
    int ok = fds[target] == target ? fcntl(target, F_SETFD, 0) : dup2(fds[target], target);
    if (ok < 0) goto fail;
  }
  if (ruleset >= 0) {
    failure.step = FLEET_SPAWN_CONFINE;
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) goto fail;
    if (syscall(SYS_landlock_restrict_self, ruleset, 0) != 0) goto fail;
  }
  // Before the program runs, so that nothing it starts runs at the watcher's priority.
  if (background) (void)fleet_background_priority(0);
  // Nothing but the standard streams reaches the program (best effort on kernels without close_range).
  (void)syscall(SYS_close_range, 3U, ~0U, FLEET_CLOSE_RANGE_CLOEXEC);
  // The program starts with no signal blocked, whatever the spawning thread blocked (the signals
  // libdispatch reads through a signalfd are blocked there): rsync must stop on SIGTERM.
  sigset_t none;
  sigemptyset(&none);
  (void)sigprocmask(SIG_SETMASK, &none, NULL);
  failure.step = FLEET_SPAWN_EXEC;
  execve(path, argv, envp);
fail:
  failure.error = errno;
  (void)!write(report, &failure, sizeof failure);
  _exit(127);
}

int fleet_spawn(
    pid_t *pid, int *step, const char *path, char *const argv[], char *const envp[], int in_fd, int out_fd,
    int err_fd, int ruleset, int background) {
  *step = FLEET_SPAWN_OK;
  int report[2];
  if (pipe2(report, O_CLOEXEC) != 0) return errno;
  // No signal handler may run in the child while it shares the parent's memory.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pid_t child = vfork();
  if (child == 0) fleet_child(report[1], path, argv, envp, in_fd, out_fd, err_fd, ruleset, background);
  int spawnError = errno;
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  close(report[1]);
  if (child < 0) {
    close(report[0]);
    return spawnError;
  }
  struct fleet_failure failure = {FLEET_SPAWN_OK, 0};
  ssize_t n;
  do {
    n = read(report[0], &failure, sizeof failure);
  } while (n < 0 && errno == EINTR);
  close(report[0]);
  if (n == (ssize_t)sizeof failure) {
    while (waitpid(child, NULL, 0) < 0 && errno == EINTR) {
    }
    *step = failure.step;
    return failure.error ? failure.error : EIO;
  }
  *pid = child;
  return 0;
}
