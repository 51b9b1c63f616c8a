import CLibSSH2
import FleetCore
import Logging

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// What an upload sends.
enum UploadSource {
  case bytes([UInt8])
  case file(path: String)
}

extension Session {
  /// Uploads atomically: temp file `.NAME.fleetsync-tmp.XXXX` in the target's directory, written in large
  /// chunks, mode (and owner/group) set, fsync'd, then renamed over the target. On failure the temp file
  /// is removed when the connection still works; the target is never left partial.
  func upload(
    _ source: UploadSource, to path: String, mode: Int, owner: String?, group: String?,
    control: OperationControl, deadline: Deadline
  ) throws {
    try checkUsable()
    guard !path.isEmpty, !path.hasSuffix("/") else {
      throw FleetError(.invalidInput, "upload target '\(path)' must be a file path")
    }
    let slash = path.lastIndex(of: "/")
    let directory = slash.map { String(path[..<$0]) } ?? ""
    let name = slash.map { String(path[path.index(after: $0)...]) } ?? path
    let suffix = String(UInt32.random(in: 0...UInt32.max), radix: 16)
    let temp = (slash == nil ? "" : directory + "/") + ".\(name).fleetsync-tmp.\(suffix)"
    let sftp = try sftp(control, deadline)
    let handle = try retryPointer(control, deadline, what: "creating \(temp)", code: .sshSFTP) {
      fleetsync_sftp_open(
        sftp, temp, UInt(LIBSSH2_FXF_WRITE | LIBSSH2_FXF_CREAT | LIBSSH2_FXF_EXCL), 0o600)
    }
    var handleOpen = true
    do {
      try write(source, to: handle, temp: temp, control: control, deadline: deadline)
      var attributes = LIBSSH2_SFTP_ATTRIBUTES()
      attributes.flags = UInt(LIBSSH2_SFTP_ATTR_PERMISSIONS)
      attributes.permissions = UInt(mode & 0o7777)
      try retry(control, deadline, what: "setting the mode of \(temp)", code: .sshSFTP) {
        fleetsync_sftp_fsetstat(handle, &attributes)
      }
      do {
        try retry(control, deadline, what: "fsync of \(temp)", code: .sshSFTP) { libssh2_sftp_fsync(handle) }
      } catch let error as FleetError where error.code == .sshSFTP {
        logger.debug("server has no fsync@openssh.com", metadata: ["host": "\(endpoint)"])
      }
      handleOpen = false
      try retry(control, deadline, what: "closing \(temp)", code: .sshSFTP) {
        libssh2_sftp_close_handle(handle)
      }
      if owner != nil || group != nil {
        let spec = (owner ?? "") + (group.map { ":" + $0 } ?? "")
        let (status, stderr) = try execPlain(
          "chown -- \(try ShellQuote.quote(spec)) \(try ShellQuote.path(temp))", control: control,
          deadline: deadline)
        guard status == 0 else {
          throw FleetError(.sshSFTP, "cannot set owner \(spec) of \(path) on \(endpoint): \(stderr)")
        }
      }
      try rename(temp, to: path, sftp: sftp, control: control, deadline: deadline)
    } catch {
      if handleOpen {
        _ = try? retry(control, Deadline(after: .seconds(2)), what: "closing \(temp)", code: .sshSFTP) {
          libssh2_sftp_close_handle(handle)
        }
      }
      removeTemp(temp, sftp: sftp)
      throw error
    }
    logger.debug("uploaded", metadata: ["host": "\(endpoint)", "path": "\(path)"])
  }

  /// Writes everything from `source`; each SFTP write gets up to 256 KiB, and after a short write the
  /// rest of the same, unchanged buffer is passed again.
  private func write(
    _ source: UploadSource, to handle: OpaquePointer, temp: String, control: OperationControl,
    deadline: Deadline
  ) throws {
    switch source {
    case .bytes(let bytes):
      try writeAll(bytes[...], to: handle, temp: temp, control: control, deadline: deadline)
    case .file(let localPath):
      let fd = open(localPath, O_RDONLY | O_CLOEXEC)
      guard fd >= 0 else {
        throw FleetError(.io, "cannot read \(localPath): \(String(cString: strerror(errno)))")
      }
      defer { close(fd) }
      var chunk = [UInt8](repeating: 0, count: 1 << 20)
      while true {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 {
          if errno == EINTR { continue }
          throw FleetError(.io, "cannot read \(localPath): \(String(cString: strerror(errno)))")
        }
        if n == 0 { return }
        try writeAll(chunk[0..<n], to: handle, temp: temp, control: control, deadline: deadline)
      }
    }
  }

  private func writeAll(
    _ bytes: ArraySlice<UInt8>, to handle: OpaquePointer, temp: String, control: OperationControl,
    deadline: Deadline
  ) throws {
    var offset = 0
    try bytes.withUnsafeBufferPointer { whole in
      try whole.withMemoryRebound(to: CChar.self) { p in
        while offset < p.count {
          let count = min(p.count - offset, 256 * 1024)
          let rc = libssh2_sftp_write(handle, p.baseAddress! + offset, count)
          if rc >= 0 {
            offset += rc
          } else if rc == Int(LIBSSH2_ERROR_EAGAIN) {
            try wait(control, deadline, what: "writing \(temp)")
          } else {
            throw sftpFailure(Int32(rc), what: "writing \(temp)")
          }
        }
      }
    }
  }

  /// Renames over the target. OpenSSH's sftp-server implements SFTP v3 rename with link()+unlink(), which
  /// refuses an existing target, so that case falls back to `mv -f` (one rename(2) in the same directory).
  private func rename(
    _ temp: String, to path: String, sftp: OpaquePointer, control: OperationControl, deadline: Deadline
  ) throws {
    do {
      try retry(control, deadline, what: "renaming \(temp) to \(path)", code: .sshSFTP) {
        fleetsync_sftp_rename(sftp, temp, path)
      }
      return
    } catch let error as FleetError where error.code == .sshSFTP {
      logger.debug("SFTP rename refused, using mv", metadata: ["host": "\(endpoint)"])
    }
    let (status, stderr) = try execPlain(
      "mv -f -- \(try ShellQuote.path(temp)) \(try ShellQuote.path(path))", control: control,
      deadline: deadline)
    guard status == 0 else {
      throw FleetError(.sshSFTP, "cannot rename the uploaded file to \(path) on \(endpoint): \(stderr)")
    }
  }

  /// Removes a leftover temp file if the connection still works.
  private func removeTemp(_ temp: String, sftp: OpaquePointer) {
    guard brokenReason == nil else { return }
    let control = OperationControl()
    _ = try? retry(control, Deadline(after: .seconds(3)), what: "removing \(temp)", code: .sshSFTP) {
      fleetsync_sftp_unlink(sftp, temp)
    }
  }

  /// An SFTP error with the server's status code in words.
  func sftpFailure(_ rc: Int32, what: String) -> FleetError {
    failure(rc, what: what, code: .sshSFTP)
  }

  /// Reads a whole (small) remote file; nil if it does not exist.
  func readFile(_ path: String, control: OperationControl, deadline: Deadline) throws -> [UInt8]? {
    try checkUsable()
    let sftp = try sftp(control, deadline)
    var handle: OpaquePointer?
    while handle == nil {
      handle = fleetsync_sftp_open(sftp, path, UInt(LIBSSH2_FXF_READ), 0)
      if handle != nil { break }
      let rc = libssh2_session_last_errno(raw)
      if rc == LIBSSH2_ERROR_EAGAIN {
        try wait(control, deadline, what: "opening \(path)")
      } else if rc == LIBSSH2_ERROR_SFTP_PROTOCOL {
        let status = libssh2_sftp_last_error(sftp)
        if status == UInt(LIBSSH2_FX_NO_SUCH_FILE) || status == UInt(LIBSSH2_FX_NO_SUCH_PATH) { return nil }
        throw FleetError(.sshSFTP, "cannot open \(path) on \(endpoint): \(Session.sftpStatusText(status))")
      } else {
        throw failure(rc, what: "opening \(path)", code: .sshSFTP)
      }
    }
    guard let handle else { return nil }
    defer {
      _ = try? retry(control, deadline, what: "closing \(path)", code: .sshSFTP) {
        libssh2_sftp_close_handle(handle)
      }
    }
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 64 * 1024)
    while true {
      let rc = buffer.withUnsafeMutableBufferPointer { p in
        p.withMemoryRebound(to: CChar.self) { libssh2_sftp_read(handle, $0.baseAddress, $0.count) }
      }
      if rc > 0 {
        bytes.append(contentsOf: buffer[0..<rc])
      } else if rc == 0 {
        return bytes
      } else if rc == Int(LIBSSH2_ERROR_EAGAIN) {
        try wait(control, deadline, what: "reading \(path)")
      } else {
        throw sftpFailure(Int32(rc), what: "reading \(path)")
      }
    }
  }

  static func sftpStatusText(_ status: UInt) -> String {
    switch status {
    case UInt(LIBSSH2_FX_NO_SUCH_FILE): return "no such file"
    case UInt(LIBSSH2_FX_PERMISSION_DENIED): return "permission denied"
    // OpenSSH's sftp-server (SFTP v3) reports every errno it has no status for as a bare failure.
    case UInt(LIBSSH2_FX_FAILURE):
      return "failure (the server gives no reason; e.g. no space left on the device, or the file exists)"
    case UInt(LIBSSH2_FX_NO_SUCH_PATH): return "no such directory"
    case UInt(LIBSSH2_FX_FILE_ALREADY_EXISTS): return "file already exists"
    case UInt(LIBSSH2_FX_WRITE_PROTECT): return "read-only file system"
    case UInt(LIBSSH2_FX_NO_SPACE_ON_FILESYSTEM): return "no space left on device"
    case UInt(LIBSSH2_FX_QUOTA_EXCEEDED): return "quota exceeded"
    case UInt(LIBSSH2_FX_OP_UNSUPPORTED): return "operation not supported by the server"
    default: return "SFTP status \(status)"
    }
  }
}
