#ifndef FLEETSYNC_CLIBSSH2_SHIM_H
#define FLEETSYNC_CLIBSSH2_SHIM_H

#include <libssh2.h>
#include <libssh2_sftp.h>
#include <string.h>
#include <sys/eventfd.h>

/* Swift cannot import libssh2's function-like macros; these inline shims stand in for them. */

static inline LIBSSH2_SESSION *fleetsync_session_init(void) {
  return libssh2_session_init_ex(NULL, NULL, NULL, NULL);
}

static inline int fleetsync_session_disconnect(LIBSSH2_SESSION *session, const char *description) {
  return libssh2_session_disconnect_ex(session, SSH_DISCONNECT_BY_APPLICATION, description, "");
}

static inline LIBSSH2_CHANNEL *fleetsync_channel_open_session(LIBSSH2_SESSION *session) {
  return libssh2_channel_open_session(session);
}

static inline int fleetsync_channel_exec(LIBSSH2_CHANNEL *channel, const char *command) {
  return libssh2_channel_process_startup(channel, "exec", sizeof("exec") - 1, command,
                                         (unsigned int)strlen(command));
}

static inline ssize_t fleetsync_channel_read(LIBSSH2_CHANNEL *channel, int stream, char *buf,
                                             size_t buflen) {
  return libssh2_channel_read_ex(channel, stream, buf, buflen);
}

static inline ssize_t fleetsync_channel_write(LIBSSH2_CHANNEL *channel, const char *buf,
                                              size_t buflen) {
  return libssh2_channel_write_ex(channel, 0, buf, buflen);
}

static inline LIBSSH2_SFTP_HANDLE *fleetsync_sftp_open(LIBSSH2_SFTP *sftp, const char *path,
                                                       unsigned long flags, long mode) {
  return libssh2_sftp_open_ex(sftp, path, (unsigned int)strlen(path), flags, mode,
                              LIBSSH2_SFTP_OPENFILE);
}

static inline int fleetsync_sftp_rename(LIBSSH2_SFTP *sftp, const char *from, const char *to) {
  return libssh2_sftp_rename_ex(sftp, from, (unsigned int)strlen(from), to, (unsigned int)strlen(to),
                                LIBSSH2_SFTP_RENAME_OVERWRITE | LIBSSH2_SFTP_RENAME_ATOMIC |
                                    LIBSSH2_SFTP_RENAME_NATIVE);
}

static inline int fleetsync_sftp_unlink(LIBSSH2_SFTP *sftp, const char *path) {
  return libssh2_sftp_unlink_ex(sftp, path, (unsigned int)strlen(path));
}

static inline int fleetsync_sftp_fsetstat(LIBSSH2_SFTP_HANDLE *handle, LIBSSH2_SFTP_ATTRIBUTES *attrs) {
  return libssh2_sftp_fstat_ex(handle, attrs, 1);
}

static inline int fleetsync_sftp_stat(LIBSSH2_SFTP *sftp, const char *path, LIBSSH2_SFTP_ATTRIBUTES *attrs) {
  return libssh2_sftp_stat_ex(sftp, path, (unsigned int)strlen(path), LIBSSH2_SFTP_STAT, attrs);
}

/* An eventfd (close-on-exec, non-blocking) that wakes a poll() when an operation is cancelled. */
static inline int fleetsync_cancel_eventfd(void) { return eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK); }

#endif
