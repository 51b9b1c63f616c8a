/// The watched directories: watch descriptor → (parent watch descriptor, name).
///
/// Stores one name per directory, not a full path per file, so 100,000 watches stay small.
/// Paths are rebuilt by walking up the parents. Not thread-safe: one thread owns it.
struct DirTable {
  struct Entry {
    /// The parent's wd; ``rootParent`` for the source root, ``detached`` while moved away.
    var parent: Int32
    var name: [UInt8]
  }

  struct ChildKey: Hashable {
    var parent: Int32
    var name: [UInt8]
  }

  static let rootParent: Int32 = -1
  static let detached: Int32 = -2

  private(set) var entries: [Int32: Entry] = [:]
  private var children: [ChildKey: Int32] = [:]

  var count: Int { entries.count }

  /// Makes room for `more` directories at once (a tree walk's), so adding them never rehashes.
  mutating func reserve(_ more: Int) {
    entries.reserveCapacity(entries.count + more)
    children.reserveCapacity(children.count + more)
  }

  /// Records (or moves) `wd` as `name` inside `parent`.
  mutating func set(_ wd: Int32, parent: Int32, name: [UInt8]) {
    if let old = entries[wd] {
      if old.parent == parent && old.name == name { return }
      let key = ChildKey(parent: old.parent, name: old.name)
      if children[key] == wd { children[key] = nil }
    }
    entries[wd] = Entry(parent: parent, name: name)
    if parent >= 0 { children[ChildKey(parent: parent, name: name)] = wd }
  }

  /// Forgets `wd` (after `IN_IGNORED` or `inotify_rm_watch`).
  mutating func remove(_ wd: Int32) {
    guard let old = entries.removeValue(forKey: wd) else { return }
    let key = ChildKey(parent: old.parent, name: old.name)
    if children[key] == wd { children[key] = nil }
  }

  /// The wd of directory `name` inside `parent`, if watched.
  func child(of parent: Int32, named name: [UInt8]) -> Int32? {
    children[ChildKey(parent: parent, name: name)]
  }

  /// Marks `wd` as moved away; its subtree's events are dropped until it is re-attached.
  mutating func detach(_ wd: Int32) {
    guard let old = entries[wd] else { return }
    let key = ChildKey(parent: old.parent, name: old.name)
    if children[key] == wd { children[key] = nil }
    entries[wd] = Entry(parent: Self.detached, name: old.name)
  }

  /// The path of `wd` relative to the source ("" for the root), or nil if unknown or detached.
  func path(of wd: Int32) -> [UInt8]? {
    var names: [[UInt8]] = []
    var current = wd
    var depth = 0
    while true {
      guard let e = entries[current] else { return nil }
      if e.parent == Self.rootParent { break }
      if e.parent == Self.detached { return nil }
      names.append(e.name)
      current = e.parent
      depth += 1
      if depth > 4096 { return nil }  // a cycle would be a bug; never loop forever
    }
    var out: [UInt8] = []
    for (i, n) in names.reversed().enumerated() {
      if i > 0 { out.append(UInt8(ascii: "/")) }
      out.append(contentsOf: n)
    }
    return out
  }

  /// All wds whose ancestor chain reaches `root` (including `root`).
  func subtree(of root: Int32) -> [Int32] {
    var memo: [Int32: Bool] = [root: true]
    func inside(_ wd: Int32) -> Bool {
      if let m = memo[wd] { return m }
      var chain: [Int32] = []
      var current = wd
      var result = false
      while true {
        if let m = memo[current] {
          result = m
          break
        }
        guard let e = entries[current], e.parent >= 0, chain.count < 4096 else { break }
        chain.append(current)
        current = e.parent
      }
      for c in chain { memo[c] = result }
      memo[wd] = result
      return result
    }
    return entries.keys.filter { inside($0) }
  }
}
