import FleetCore

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// The on-disk list of accepted changes that are not yet replicated.
///
/// Records are paths relative to the source, each ended by a NUL byte, appended and
/// `fdatasync`ed per batch of events before the events count as accepted. Replicated paths are
/// dropped by rewriting the file atomically with what is still outstanding (or truncating it when
/// nothing is). After a crash, ``replay(path:)`` returns every path that may not have arrived.
final class Journal {
  let path: String
  private var fd: Int32
  private(set) var size: Int

  /// Opens (creating if needed) the journal at `path` for appending.
  init(path: String) throws {
    self.path = path
    fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o600)
    guard fd >= 0 else { throw Self.error("cannot open the journal \(path)") }
    var st = stat()
    size = fstat(fd, &st) == 0 ? Int(st.st_size) : 0
  }

  deinit { close(fd) }

  /// Appends `paths` and makes them durable.
  func append(_ paths: [[UInt8]]) throws {
    guard !paths.isEmpty else { return }
    var buf: [UInt8] = []
    buf.reserveCapacity(paths.reduce(0) { $0 + $1.count + 1 })
    for p in paths {
      buf.append(contentsOf: p)
      buf.append(0)
    }
    try writeAll(buf)
    guard fdatasync(fd) == 0 else { throw Self.error("cannot sync the journal \(path)") }
    size += buf.count
  }

  /// Replaces the journal's content with `paths`, atomically.
  func rewrite(_ paths: some Collection<[UInt8]>) throws {
    if paths.isEmpty {
      guard ftruncate(fd, 0) == 0, fdatasync(fd) == 0 else {
        throw Self.error("cannot truncate the journal \(path)")
      }
      size = 0
      return
    }
    var buf: [UInt8] = []
    for p in paths {
      buf.append(contentsOf: p)
      buf.append(0)
    }
    try AtomicFile.write(buf, to: path, mode: 0o600)
    let newFD = open(path, O_WRONLY | O_APPEND | O_CLOEXEC)
    guard newFD >= 0 else { throw Self.error("cannot reopen the journal \(path)") }
    close(fd)
    fd = newFD
    size = buf.count
  }

  private func writeAll(_ buf: [UInt8]) throws {
    var offset = 0
    while offset < buf.count {
      let n = buf[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
      if n < 0 {
        if errno == EINTR { continue }
        throw Self.error("cannot write the journal \(path)")
      }
      offset += n
    }
  }

  /// Reads the paths recorded at `path`, de-duplicated, in first-seen order.
  ///
  /// A torn last record (no NUL) and unsafe paths (absolute, `..`) are skipped.
  static func replay(path: String) throws -> [[UInt8]] {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    if fd < 0 {
      if errno == ENOENT { return [] }
      throw error("cannot read the journal \(path)")
    }
    defer { close(fd) }
    var data: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 1 << 16)
    while true {
      let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
      if n < 0 {
        if errno == EINTR { continue }
        throw error("cannot read the journal \(path)")
      }
      if n == 0 { break }
      data.append(contentsOf: chunk[0..<n])
    }
    var seen = Set<[UInt8]>()
    var out: [[UInt8]] = []
    var start = 0
    for i in data.indices where data[i] == 0 {
      let p = Array(data[start..<i])
      start = i + 1
      guard isSafeRelativePath(p), seen.insert(p).inserted else { continue }
      out.append(p)
    }
    return out
  }

  private static func error(_ what: String) -> FleetError {
    let code = errno
    return FleetError(.watchState, "\(what): \(String(cString: strerror(code)))")
  }
}

/// Whether `p` is a non-empty relative path without `.`/`..` components or empty components
/// (one trailing `/` marks a directory tree and is allowed), or ``ChangeQueue/root``.
func isSafeRelativePath(_ path: [UInt8]) -> Bool {
  if path == ChangeQueue.root { return true }
  let p = ChangeQueue.base(path)
  if p.isEmpty || p.first == UInt8(ascii: "/") || p.last == UInt8(ascii: "/") { return false }
  for comp in p.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false) {
    if comp.isEmpty || comp.elementsEqual([UInt8(ascii: ".")])
      || comp.elementsEqual([UInt8(ascii: "."), UInt8(ascii: ".")])
    {
      return false
    }
  }
  return true
}
