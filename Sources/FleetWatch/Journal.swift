import FleetCore
import Synchronization

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// The on-disk list of accepted changes that are not yet replicated.
///
/// Records are ``SyncPath/journalRecord`` bytes, each ended by a NUL byte, appended and
/// `fdatasync`ed per batch of events before the events count as accepted. A path that arrived is
/// marked done by a record of its own, `/` and the path's record (no relative path starts with
/// `/`), appended without a sync: a done record lost in a crash only replays a path that had
/// arrived. Replicated paths are dropped by a compaction: the file is replaced by one holding what
/// is still outstanding (or truncated when nothing is). A compaction writes and syncs the new file
/// while appends go on; only the final rename waits for them. After a crash, ``replay(path:)``
/// returns every path that may not have arrived: accepted, and not done since. Thread-safe.
final class Journal: Sendable {
  let path: String
  private let file: Mutex<File>
  /// Called once a compaction's new file is written and synced, before it replaces the journal.
  private let compactionHook: (@Sendable () -> Void)?

  private struct File {
    var fd: Int32
    var size: Int
    /// While a compaction runs: the records appended since it began, for the new file.
    var appendedDuringCompaction: [UInt8]?
  }

  /// Opens (creating if needed) the journal at `path` for appending.
  ///
  /// `compactionHook` is for tests, which block in it to hold a compaction in progress.
  init(path: String, compactionHook: (@Sendable () -> Void)? = nil) throws {
    self.path = path
    self.compactionHook = compactionHook
    let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o600)
    guard fd >= 0 else { throw Self.error("cannot open the journal \(path)") }
    var st = stat()
    file = Mutex(File(fd: fd, size: fstat(fd, &st) == 0 ? Int(st.st_size) : 0))
  }

  deinit { file.withLock { _ = close($0.fd) } }

  /// The journal's size in bytes.
  var size: Int { file.withLock { $0.size } }

  /// Appends `paths` and makes them durable.
  func append(_ paths: [SyncPath]) throws {
    guard !paths.isEmpty else { return }
    let buf = Self.encode(paths)
    try file.withLock { f in
      try Self.writeAll(f.fd, buf, what: "cannot write the journal \(path)")
      guard fdatasync(f.fd) == 0 else { throw Self.error("cannot sync the journal \(path)") }
      f.size += buf.count
      f.appendedDuringCompaction?.append(contentsOf: buf)
    }
  }

  /// Records that `paths` arrived, without waiting for the disk (see the type's notes). Only paths
  /// that are not outstanding (not changed again meanwhile) may be marked: call it under the lock
  /// that orders accepts, so no accept of the same path comes between.
  func markDone(_ paths: [SyncPath]) throws {
    guard !paths.isEmpty else { return }
    var buf: [UInt8] = []
    for p in paths {
      buf.append(Self.doneMark)
      buf.append(contentsOf: p.journalRecord)
      buf.append(0)
    }
    try file.withLock { f in
      try Self.writeAll(f.fd, buf, what: "cannot write the journal \(path)")
      f.size += buf.count
      f.appendedDuringCompaction?.append(contentsOf: buf)
    }
  }

  /// The first byte of a done record.
  static let doneMark = UInt8(ascii: "/")

  /// Starts a compaction unless one is running; returns whether it started.
  ///
  /// Call it where the outstanding paths are read, so that every path is either among them or
  /// appended after this call; then ``finishCompaction(keeping:)``, outside any lock.
  func beginCompaction() -> Bool {
    file.withLock { f in
      guard f.appendedDuringCompaction == nil else { return false }
      f.appendedDuringCompaction = []
      return true
    }
  }

  /// Replaces the journal's content with `outstanding` and what was appended since
  /// ``beginCompaction()``, which must have returned true.
  func finishCompaction(keeping outstanding: some Collection<SyncPath>) throws {
    defer { file.withLock { $0.appendedDuringCompaction = nil } }
    if outstanding.isEmpty, try truncateIfNothingAppended() { return }
    let temp = path + ".compacting"
    let fd = open(temp, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0o600)
    guard fd >= 0 else { throw Self.error("cannot create \(temp)") }
    var installed = false
    defer {
      if !installed {
        close(fd)
        unlink(temp)
      }
    }
    _ = fchmod(fd, 0o600)  // open's mode is filtered by the umask
    var size = try Self.writeAndSync(fd, Self.encode(outstanding), temp)
    compactionHook?()
    // Appends that came meanwhile go to the new file too; it replaces the journal once there are none.
    while let more = try install(fd, size: size, from: temp) {
      size += try Self.writeAndSync(fd, more, temp)
    }
    installed = true
    Self.syncDirectory(of: path)
  }

  /// Renames `temp` (open as `fd`) over the journal and appends to it from now on, unless records
  /// were appended since the last look: then returns them instead.
  private func install(_ fd: Int32, size: Int, from temp: String) throws -> [UInt8]? {
    try file.withLock { f in
      if let appended = f.appendedDuringCompaction, !appended.isEmpty {
        f.appendedDuringCompaction = []
        return appended
      }
      guard rename(temp, path) == 0 else { throw Self.error("cannot rename \(temp) to \(path)") }
      close(f.fd)
      f.fd = fd
      f.size = size
      return nil
    }
  }

  /// Empties the journal in place if nothing was appended since the compaction began.
  private func truncateIfNothingAppended() throws -> Bool {
    let fd: Int32? = try file.withLock { f in
      guard f.appendedDuringCompaction?.isEmpty ?? true else { return nil }
      guard ftruncate(f.fd, 0) == 0 else { throw Self.error("cannot truncate the journal \(path)") }
      f.size = 0
      return f.fd
    }
    guard let fd else { return false }
    // The descriptor stays open: only a compaction replaces it, and this is the one running.
    guard fdatasync(fd) == 0 else { throw Self.error("cannot sync the journal \(path)") }
    return true
  }

  private static func encode(_ paths: some Collection<SyncPath>) -> [UInt8] {
    var buf: [UInt8] = []
    for p in paths {
      buf.append(contentsOf: p.journalRecord)
      buf.append(0)
    }
    return buf
  }

  private static func writeAndSync(_ fd: Int32, _ buf: [UInt8], _ name: String) throws -> Int {
    try writeAll(fd, buf, what: "cannot write \(name)")
    guard fdatasync(fd) == 0 else { throw error("cannot sync \(name)") }
    return buf.count
  }

  private static func writeAll(_ fd: Int32, _ buf: [UInt8], what: @autoclosure () -> String) throws {
    var offset = 0
    while offset < buf.count {
      let n = buf[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
      if n < 0 {
        if errno == EINTR { continue }
        throw error(what())
      }
      offset += n
    }
  }

  private static func syncDirectory(of path: String) {
    let dir = path.lastIndex(of: "/").map { String(path[..<$0]) } ?? "."
    let fd = open(dir.isEmpty ? "/" : dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    guard fd >= 0 else { return }
    _ = fsync(fd)
    close(fd)
  }

  /// Reads the paths recorded at `path` and not done after their last record, de-duplicated, in
  /// first-seen order.
  ///
  /// A torn last record (no NUL) and records that are no safe path are skipped.
  static func replay(path: String) throws -> [SyncPath] {
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
    // Each outstanding path → when it was first recorded since it was last done.
    var outstanding: [SyncPath: Int] = [:]
    var start = 0
    for i in data.indices where data[i] == 0 {
      let record = data[start..<i]
      start = i + 1
      if record.first == doneMark {
        if let p = SyncPath(journalRecord: Array(record.dropFirst())) { outstanding[p] = nil }
      } else if let p = SyncPath(journalRecord: Array(record)), outstanding[p] == nil {
        outstanding[p] = i
      }
    }
    return outstanding.sorted { $0.value < $1.value }.map(\.key)
  }

  private static func error(_ what: String) -> FleetError {
    let code = errno
    return FleetError(.watchState, "\(what): \(String(cString: strerror(code)))")
  }
}

extension SyncPath {
  /// How the journal writes it (the format since the first version): `.` for the root, the path
  /// with a trailing `/` for a tree, the path for an entry.
  var journalRecord: [UInt8] {
    switch self {
    case .root: [UInt8(ascii: ".")]
    case .entry(let p): p.bytes
    case .tree(let p): p.bytes + [UInt8(ascii: "/")]
    }
  }

  /// Reads a journal record; nil if it is not one (absolute, empty, `.` or `..` inside).
  init?(journalRecord r: [UInt8]) {
    if r == [UInt8(ascii: ".")] {
      self = .root
    } else if r.last == UInt8(ascii: "/") {
      guard let p = RelativePath(Array(r.dropLast())) else { return nil }
      self = .tree(p)
    } else {
      guard let p = RelativePath(r) else { return nil }
      self = .entry(p)
    }
  }
}
