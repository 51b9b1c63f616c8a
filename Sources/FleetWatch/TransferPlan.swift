/// One transfer's paths by how rsync sends them.
struct TransferPlan: Equatable {
  /// Directories sent whole: `-r --delete`.
  var trees: [RelativePath] = []
  /// Paths sent by themselves.
  var entries: [RelativePath] = []
  /// Whether the source root's own attributes go too (a run of its own, `--exclude=/*`).
  var root = false

  init(_ paths: [SyncPath]) {
    for p in paths {
      switch p {
      case .root: root = true
      case .entry(let e): entries.append(e)
      case .tree(let t): trees.append(t)
      }
    }
  }

  /// The bytes of a `--files-from` list read with `--from0`: each path followed by a NUL.
  static func filesFrom(_ paths: [RelativePath]) -> [UInt8] {
    var data: [UInt8] = []
    data.reserveCapacity(paths.reduce(0) { $0 + $1.bytes.count + 1 })
    for p in paths {
      data.append(contentsOf: p.bytes)
      data.append(0)
    }
    return data
  }
}
