#define _GNU_SOURCE
#include "CFanotify.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fanotify.h>
#include <unistd.h>

const uint64_t FLEET_FAN_CREATE = FAN_CREATE;
const uint64_t FLEET_FAN_DELETE = FAN_DELETE;
const uint64_t FLEET_FAN_MOVED_FROM = FAN_MOVED_FROM;
const uint64_t FLEET_FAN_MOVED_TO = FAN_MOVED_TO;
const uint64_t FLEET_FAN_CLOSE_WRITE = FAN_CLOSE_WRITE;
const uint64_t FLEET_FAN_MODIFY = FAN_MODIFY;
const uint64_t FLEET_FAN_ATTRIB = FAN_ATTRIB;
const uint64_t FLEET_FAN_DELETE_SELF = FAN_DELETE_SELF;
const uint64_t FLEET_FAN_MOVE_SELF = FAN_MOVE_SELF;
const uint64_t FLEET_FAN_ONDIR = FAN_ONDIR;
const uint64_t FLEET_FAN_Q_OVERFLOW = FAN_Q_OVERFLOW;
const uint64_t FLEET_FAN_EVENTS = FAN_CREATE | FAN_DELETE | FAN_MOVED_FROM | FAN_MOVED_TO | FAN_CLOSE_WRITE |
                                  FAN_MODIFY | FAN_ATTRIB | FAN_DELETE_SELF | FAN_MOVE_SELF | FAN_ONDIR;
const uint8_t FLEET_FAN_INFO_DFID_NAME = FAN_EVENT_INFO_TYPE_DFID_NAME;
const uint8_t FLEET_FAN_INFO_DFID = FAN_EVENT_INFO_TYPE_DFID;

int fleet_fanotify_open(const char *path, int *step) {
  *step = FLEET_FANOTIFY_OK;
  int fd = fanotify_init(FAN_CLASS_NOTIF | FAN_CLOEXEC | FAN_NONBLOCK | FAN_REPORT_DFID_NAME, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    *step = FLEET_FANOTIFY_INIT;
    return -1;
  }
  if (fanotify_mark(fd, FAN_MARK_ADD | FAN_MARK_FILESYSTEM, FLEET_FAN_EVENTS, AT_FDCWD, path) != 0) {
    int e = errno;
    close(fd);
    errno = e;
    *step = FLEET_FANOTIFY_MARK;
    return -1;
  }
  return fd;
}

int fleet_handle_of(const char *path, unsigned char *out, int capacity) {
  unsigned char buffer[sizeof(struct file_handle) + MAX_HANDLE_SZ];
  struct file_handle *fh = (struct file_handle *)buffer;
  fh->handle_bytes = MAX_HANDLE_SZ;
  int mount_id;
  if (name_to_handle_at(AT_FDCWD, path, fh, &mount_id, 0) != 0) return -1;
  int length = (int)(sizeof(struct file_handle) + fh->handle_bytes);
  if (length > capacity) {
    errno = EOVERFLOW;
    return -1;
  }
  memcpy(out, buffer, (size_t)length);
  return length;
}

int fleet_open_handle(int mount_fd, const unsigned char *handle, int length) {
  if (length < (int)sizeof(struct file_handle)) {
    errno = EINVAL;
    return -1;
  }
  // The record in the event buffer may not be aligned for struct file_handle: copy it.
  unsigned char buffer[sizeof(struct file_handle) + MAX_HANDLE_SZ];
  if (length > (int)sizeof buffer) {
    errno = EINVAL;
    return -1;
  }
  memcpy(buffer, handle, (size_t)length);
  struct file_handle *fh = (struct file_handle *)buffer;
  if ((int)(sizeof(struct file_handle) + fh->handle_bytes) > length) {
    errno = EINVAL;
    return -1;
  }
  return open_by_handle_at(mount_fd, fh, O_PATH | O_CLOEXEC);
}
