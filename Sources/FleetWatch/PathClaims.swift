/// Which owners (transfers, or shards of one batch) hold which paths, so that overlapping paths
/// never travel in two rsync runs at once.
///
/// Two paths overlap when they name the same path or one is an ancestor of the other (`a` and
/// `a/b`), whether sent as an entry or as a tree; the source root's attributes overlap only
/// themselves. Two rsync runs over overlapping paths race on the backup: one sending `a/`
/// recursively with `--delete` could remove `a/b` that the other just created, or rename an older
/// copy of `a/b` over a newer one.
struct PathClaims {
  /// Claimed path (entries stand for trees too; nil for the root) → owner → how many claims.
  private var exact: [RelativePath?: [Int: Int]] = [:]
  /// Proper ancestor of a claimed path → owner → how many claims below it.
  private var below: [RelativePath: [Int: Int]] = [:]

  var isEmpty: Bool { exact.isEmpty }

  /// The owners holding a path that overlaps `p`.
  func owners(overlapping p: SyncPath) -> Set<Int> {
    var out = Set<Int>()
    if let o = exact[p.path] { out.formUnion(o.keys) }
    guard let path = p.path else { return out }
    if let o = below[path] { out.formUnion(o.keys) }
    for a in path.ancestors {
      if let o = exact[a] { out.formUnion(o.keys) }
    }
    return out
  }

  /// Records that `owner` holds `p`.
  mutating func claim(_ p: SyncPath, by owner: Int) {
    exact[p.path, default: [:]][owner, default: 0] += 1
    for a in p.path?.ancestors ?? [] {
      below[a, default: [:]][owner, default: 0] += 1
    }
  }

  /// Drops one claim of `p` by `owner`.
  mutating func release(_ p: SyncPath, by owner: Int) {
    Self.drop(&exact, p.path, owner)
    for a in p.path?.ancestors ?? [] { Self.drop(&below, a, owner) }
  }

  private static func drop<Key: Hashable>(_ table: inout [Key: [Int: Int]], _ key: Key, _ owner: Int) {
    guard var owners = table[key], let n = owners[owner] else { return }
    owners[owner] = n > 1 ? n - 1 : nil
    table[key] = owners.isEmpty ? nil : owners
  }
}
