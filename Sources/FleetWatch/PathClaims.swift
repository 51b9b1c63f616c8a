/// Which owners (transfers, or shards of one batch) hold which paths, so that overlapping paths
/// never travel in two rsync runs at once.
///
/// Two paths overlap when they are equal or one is an ancestor of the other (`a` and `a/b`). Two
/// rsync runs over overlapping paths race on the backup: one sending `a/` recursively with
/// `--delete` could remove `a/b` that the other just created, or rename an older copy of `a/b`
/// over a newer one. Paths are relative to the source and have no trailing `/`.
struct PathClaims {
  /// Claimed path → owner → how many claims.
  private var exact: [[UInt8]: [Int: Int]] = [:]
  /// Proper ancestor of a claimed path → owner → how many claims below it.
  private var below: [[UInt8]: [Int: Int]] = [:]

  var isEmpty: Bool { exact.isEmpty }

  /// The owners holding a path that overlaps `path`.
  func owners(overlapping path: [UInt8]) -> Set<Int> {
    var out = Set<Int>()
    if let o = exact[path] { out.formUnion(o.keys) }
    if let o = below[path] { out.formUnion(o.keys) }
    Self.forEachAncestor(of: path) { prefix in
      if let o = exact[prefix] { out.formUnion(o.keys) }
    }
    return out
  }

  /// Records that `owner` holds `path`.
  mutating func claim(_ path: [UInt8], by owner: Int) {
    exact[path, default: [:]][owner, default: 0] += 1
    Self.forEachAncestor(of: path) { prefix in
      below[prefix, default: [:]][owner, default: 0] += 1
    }
  }

  /// Drops one claim of `path` by `owner`.
  mutating func release(_ path: [UInt8], by owner: Int) {
    Self.drop(&exact, path, owner)
    Self.forEachAncestor(of: path) { prefix in Self.drop(&below, prefix, owner) }
  }

  private static func drop(_ table: inout [[UInt8]: [Int: Int]], _ key: [UInt8], _ owner: Int) {
    guard var owners = table[key], let n = owners[owner] else { return }
    owners[owner] = n > 1 ? n - 1 : nil
    table[key] = owners.isEmpty ? nil : owners
  }

  /// Calls `body` with each proper ancestor of `path`, outermost first (`a`, `a/b` for `a/b/c`).
  private static func forEachAncestor(of path: [UInt8], _ body: ([UInt8]) -> Void) {
    for end in path.indices where path[end] == UInt8(ascii: "/") && end > 0 {
      body(Array(path[0..<end]))
    }
  }
}
