#define _GNU_SOURCE
#include "CLandlock.h"

#include <errno.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

// From linux/ioprio.h (not every system has it), stable since Linux 2.6.13.
#define FLEET_IOPRIO_WHO_PROCESS 1
#define FLEET_IOPRIO_CLASS_BE 2
#define FLEET_IOPRIO_CLASS_SHIFT 13

int fleet_background_priority(pid_t pid) {
  int failed = 0;
  if (setpriority(PRIO_PROCESS, (id_t)pid, 10) != 0) failed = errno;
  int prio = (FLEET_IOPRIO_CLASS_BE << FLEET_IOPRIO_CLASS_SHIFT) | 7;
  if (syscall(SYS_ioprio_set, FLEET_IOPRIO_WHO_PROCESS, (int)pid, prio) != 0 && !failed) failed = errno;
  return failed;
}

int fleet_background_priority_this_thread(void) {
  return fleet_background_priority((pid_t)syscall(SYS_gettid));
}
