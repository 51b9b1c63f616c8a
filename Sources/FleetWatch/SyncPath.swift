/// A path relative to the source directory, as bytes: names need not be UTF-8.
///
/// Never empty or absolute, no empty, `.` or `..` component, no trailing `/`: safe to hand to
/// rsync relative to the source, and to join to the source for a system call.
struct RelativePath: Hashable, Sendable, Comparable, CustomStringConvertible {
  /// The path's bytes, components separated by `/`.
  let bytes: [UInt8]

  /// Checks `bytes`; nil when they are not a safe relative path.
  init?(_ bytes: [UInt8]) {
    guard Self.isSafe(bytes) else { return nil }
    self.bytes = bytes
  }

  /// The entry `name` inside the directory `dir` (relative bytes, empty for the source root).
  ///
  /// `name` comes from the kernel (inotify, `readdir`): one non-empty component, never `.` or `..`.
  init(name: [UInt8], in dir: [UInt8]) {
    bytes = joinRelative(dir, name)
  }

  private init(trusted bytes: [UInt8]) {
    self.bytes = bytes
  }

  /// The entry `name` inside this directory; see ``init(name:in:)``.
  func appending(_ name: [UInt8]) -> RelativePath {
    RelativePath(name: name, in: bytes)
  }

  /// The proper ancestors, outermost first: `a`, `a/b` for `a/b/c`.
  var ancestors: [RelativePath] {
    bytes.indices.filter { bytes[$0] == Self.slash }.map { RelativePath(trusted: Array(bytes[..<$0])) }
  }

  var description: String { String(decoding: bytes, as: UTF8.self) }

  /// Hashes the bytes in one call (an array's own hashing feeds the hasher byte by byte; paths
  /// are hashed at every queue, claim and batch step).
  func hash(into hasher: inout Hasher) {
    hasher.combine(bytes.count)
    bytes.withUnsafeBytes { hasher.combine(bytes: $0) }
  }

  static func < (a: RelativePath, b: RelativePath) -> Bool {
    a.bytes.lexicographicallyPrecedes(b.bytes)
  }

  private static let slash = UInt8(ascii: "/")

  private static func isSafe(_ p: [UInt8]) -> Bool {
    guard !p.isEmpty else { return false }
    let dot = [UInt8(ascii: ".")]
    let dotDot = [UInt8(ascii: "."), UInt8(ascii: ".")]
    for comp in p.split(separator: slash, omittingEmptySubsequences: false) {
      if comp.isEmpty || comp.elementsEqual(dot) || comp.elementsEqual(dotDot) { return false }
    }
    return true
  }
}

/// One change to replicate: what the queue holds, the journal records and a transfer sends.
enum SyncPath: Hashable, Sendable, Comparable, CustomStringConvertible {
  /// The source root's own mode, owner and times, not its content.
  case root
  /// One path by itself, whatever it is now: a file, a symlink, a directory's own attributes, or
  /// nothing (then the backup's copy is deleted).
  case entry(RelativePath)
  /// A directory sent whole, recursively, deleting what the backup has in it and the source does not.
  case tree(RelativePath)

  /// The path it names; nil for the root.
  var path: RelativePath? {
    switch self {
    case .root: nil
    case .entry(let p), .tree(let p): p
    }
  }

  var description: String {
    switch self {
    case .root: "(source root)"
    case .entry(let p): p.description
    case .tree(let p): p.description + "/ (whole)"
    }
  }

  /// Bytewise by path, the root first, an entry before the tree of the same path.
  static func < (a: SyncPath, b: SyncPath) -> Bool {
    switch (a.path, b.path) {
    case (nil, nil), (_?, nil): return false
    case (nil, _?): return true
    case let (x?, y?):
      if x != y { return x < y }
      if case .entry = a, case .tree = b { return true }
      return false
    }
  }
}
