#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#elseif canImport(Darwin)
  import Darwin
#endif

/// Local files written all-or-nothing: a temp file beside the target, fsync, rename, fsync dir.
public enum AtomicFile {
  /// Writes `bytes` to `path` with `mode`, replacing any existing file atomically.
  ///
  /// On any failure the temp file is removed and the target is left as it was.
  public static func write(_ bytes: [UInt8], to path: String, mode: mode_t = 0o644) throws {
    let dir = directory(of: path)
    let temp = "\(dir)/.\(basename(of: path)).fleetsync-tmp.\(getpid()).\(UInt32.random(in: 0...UInt32.max))"
    let fd = open(temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
    guard fd >= 0 else { throw posixError("cannot create \(temp)") }
    var ok = false
    defer {
      if !ok { unlink(temp) }
    }
    do {
      defer { close(fd) }
      _ = fchmod(fd, mode)  // open's mode is filtered by umask; set it exactly.
      var offset = 0
      while offset < bytes.count {
        let n = bytes[offset...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        if n < 0 {
          if errno == EINTR { continue }
          throw posixError("cannot write \(temp)")
        }
        offset += n
      }
      guard fsync(fd) == 0 else { throw posixError("cannot fsync \(temp)") }
    }
    guard rename(temp, path) == 0 else { throw posixError("cannot rename \(temp) to \(path)") }
    ok = true
    let dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    if dfd >= 0 {
      _ = fsync(dfd)
      close(dfd)
    }
  }

  static func directory(of path: String) -> String {
    guard let slash = path.lastIndex(of: "/") else { return "." }
    let dir = String(path[..<slash])
    return dir.isEmpty ? "/" : dir
  }

  static func basename(of path: String) -> String {
    guard let slash = path.lastIndex(of: "/") else { return path }
    return String(path[path.index(after: slash)...])
  }

  static func posixError(_ what: String) -> FleetError {
    let code = errno
    return FleetError(.io, "\(what): \(String(cString: strerror(code)))")
  }
}
