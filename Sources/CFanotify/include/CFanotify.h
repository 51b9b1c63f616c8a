// fanotify (Linux >= 5.9 for directory file handles with names) for fleetsync's watcher: one
// filesystem mark instead of a watch per directory, and the file handles its events carry turned
// back into paths. Glibc's Swift module exports none of these.
#ifndef FLEET_CFANOTIFY_H
#define FLEET_CFANOTIFY_H

#include <stdint.h>
#include <sys/types.h>

/// The events the watcher asks for: entries created, deleted, moved in or out; files written and
/// closed, modified, or whose attributes changed; directories too (`FAN_ONDIR`); a directory
/// deleted or moved itself.
extern const uint64_t FLEET_FAN_EVENTS;
extern const uint64_t FLEET_FAN_CREATE;
extern const uint64_t FLEET_FAN_DELETE;
extern const uint64_t FLEET_FAN_MOVED_FROM;
extern const uint64_t FLEET_FAN_MOVED_TO;
extern const uint64_t FLEET_FAN_CLOSE_WRITE;
extern const uint64_t FLEET_FAN_MODIFY;
extern const uint64_t FLEET_FAN_ATTRIB;
extern const uint64_t FLEET_FAN_DELETE_SELF;
extern const uint64_t FLEET_FAN_MOVE_SELF;
extern const uint64_t FLEET_FAN_ONDIR;
extern const uint64_t FLEET_FAN_Q_OVERFLOW;
/// `FAN_EVENT_INFO_TYPE_DFID_NAME`: a record with the directory's handle and the entry's name.
extern const uint8_t FLEET_FAN_INFO_DFID_NAME;
/// `FAN_EVENT_INFO_TYPE_DFID`: a record with a directory's handle and no name.
extern const uint8_t FLEET_FAN_INFO_DFID;

/// What failed in `fleet_fanotify_open`.
enum fleet_fanotify_step {
  FLEET_FANOTIFY_OK = 0,
  /// `fanotify_init` (ENOSYS: no fanotify; EPERM: no CAP_SYS_ADMIN; EINVAL: older than 5.9).
  FLEET_FANOTIFY_INIT = 1,
  /// `fanotify_mark` of the filesystem (EPERM; EXDEV/EOPNOTSUPP/ENODEV: no file handles there).
  FLEET_FANOTIFY_MARK = 2,
};

/// A non-blocking, close-on-exec fanotify descriptor reporting directory handles and names
/// (`FAN_REPORT_DFID_NAME`), with the filesystem holding `path` marked for `FLEET_FAN_EVENTS`.
/// The descriptor, or -1 with errno and `*step` saying what failed.
int fleet_fanotify_open(const char *path, int *step);

/// Stores the file handle of `path` (not following a last symlink) in `out` as fanotify reports one:
/// `handle_bytes` (u32), `handle_type` (i32), then the bytes. Its length, or -1 with errno.
int fleet_handle_of(const char *path, unsigned char *out, int capacity);

/// Opens the file a handle (as `fleet_handle_of` stores one, `length` bytes) names, `O_PATH`,
/// through the filesystem `mount_fd` is on. A descriptor, or -1 with errno (ESTALE: it is gone).
int fleet_open_handle(int mount_fd, const unsigned char *handle, int length);

#endif
