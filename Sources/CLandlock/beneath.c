// openat2(2) for the watcher's tree walk (Linux >= 5.6). Swift's Glibc has neither the syscall nor
// `struct open_how`; both are declared here so that older kernel headers build too.
#define _GNU_SOURCE
#include "CLandlock.h"

#include <fcntl.h>
#include <sched.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <unistd.h>

#ifndef SYS_openat2
#define SYS_openat2 437
#endif
#define FLEET_RESOLVE_NO_MAGICLINKS 0x02
#define FLEET_RESOLVE_NO_SYMLINKS 0x04
#define FLEET_RESOLVE_BENEATH 0x08

struct fleet_open_how {
  uint64_t flags;
  uint64_t mode;
  uint64_t resolve;
};

int fleet_open_dir_beneath(int root_fd, const char *path) {
  struct fleet_open_how how = {
      .flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC,
      .mode = 0,
      .resolve = FLEET_RESOLVE_BENEATH | FLEET_RESOLVE_NO_SYMLINKS | FLEET_RESOLVE_NO_MAGICLINKS,
  };
  return (int)syscall(SYS_openat2, root_fd, path, &how, sizeof(how));
}

int fleet_private_working_directory(void) { return unshare(CLONE_FS); }

long fleet_filesystem_type(int fd) {
  struct statfs fs;
  return fstatfs(fd, &fs) == 0 ? (long)fs.f_type : 0;
}

int fleet_open_subdirectory_path(int parent_fd, const char *name) {
  return openat(parent_fd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
}
